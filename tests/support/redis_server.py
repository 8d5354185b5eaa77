"""A real ``redis-server`` on a free loopback port, for the Redis cache tests.

Started by the suite, stopped after. Where the binary is missing the tests skip
with a reason that names the Debian package; ``.ci/run`` installs it and sets
``SEMANSYS_TEST_REQUIRE_REDIS=1``, which turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import free_port

PACKAGE = "redis-server"


class RedisServer:
    """One ``redis-server`` process; ``stop()`` and ``start()`` may be called again."""

    def __init__(self, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            reason = (
                f"redis-server is not installed (Debian package {PACKAGE}: "
                f"apt-get install {PACKAGE})"
            )
            if os.environ.get("SEMANSYS_TEST_REQUIRE_REDIS"):
                pytest.fail(reason + "; SEMANSYS_TEST_REQUIRE_REDIS is set, so this is an error")
            pytest.skip(reason)
        self.binary = binary
        self.port = free_port()
        self.extra = extra
        self.directory = Path(tempfile.mkdtemp(prefix="semansys-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    answer = sock.recv(64)
                    if answer.startswith((b"+PONG", b"-NOAUTH")):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start within 10 s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
