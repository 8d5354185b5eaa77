"""Test helpers for what happens across ``os.fork()`` and beside event loops
that end: run work in a forked child under a hard time bound, and hold a
request in flight in another thread."""

from __future__ import annotations

import asyncio
import os
import pickle
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from semansys_auth.testing import SemansysEmulator


def fork(work: Callable[[], Any], *, limit: float) -> Any:
    """Run ``work()`` in a child of ``os.fork()`` and return its result.

    The child is killed by SIGALRM after ``limit`` seconds (a lock that is
    never released hangs it; no Python code needs to run for that), and the
    parent kills it anyway a little later. A child that raised, hung or died
    fails the test with what happened."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a threaded process: that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                outcome = ("ok", work())
                code = 0
            except BaseException as exc:
                outcome = ("error", f"{type(exc).__name__}: {exc}")
            data = pickle.dumps(outcome)
            while data:
                data = data[os.write(write_end, data) :]
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + limit + 10
    status = None
    try:
        while status is None:
            ready, _, _ = select.select([read_end], [], [], 0.05)
            if ready:
                chunk = os.read(read_end, 65536)
                if chunk:
                    chunks.append(chunk)
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"the child was still running after {limit + 10} s")
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_end)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise AssertionError(f"the child was killed by {name} (limit {limit} s): it hung")
    kind, value = pickle.loads(b"".join(chunks))
    if kind != "ok":
        raise AssertionError(f"the child failed: {value}")
    return value


def wait_for_pending_token_request(emulator: SemansysEmulator, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while emulator.pending_token_requests < count:
        if time.monotonic() > deadline:
            raise AssertionError("no token request arrived within 10 s")
        time.sleep(0.005)


class InFlight:
    """A request of ``kind`` (requests, httpx, httpx-async) started in another
    thread; :meth:`join` waits for it, bounded, and gives its status."""

    def __init__(self, kind: str, auth: Any, url: str) -> None:
        self.kind = kind
        self.status: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(auth, url), daemon=True)
        self._thread.start()

    def _run(self, auth: Any, url: str) -> None:
        import httpx
        import requests

        try:
            if self.kind == "requests":
                self.status = requests.get(url, auth=auth, timeout=30).status_code
            elif self.kind == "httpx":
                with httpx.Client(auth=auth, timeout=30) as client:
                    self.status = client.get(url).status_code
            else:

                async def go() -> int:
                    async with httpx.AsyncClient(auth=auth, timeout=30) as client:
                        return (await client.get(url)).status_code

                self.status = asyncio.run(asyncio.wait_for(go(), 30))
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 30) -> int | None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the {self.kind} request did not end"
        if self.error is not None:
            raise self.error
        return self.status


def request(kind: str, auth: Any, url: str) -> int:
    """One request through ``kind`` (requests, httpx, httpx-async), bounded."""
    import httpx
    import requests

    if kind == "requests":
        return requests.get(url, auth=auth, timeout=10).status_code
    if kind == "httpx":
        with httpx.Client(auth=auth, timeout=10) as client:
            return client.get(url).status_code

    async def go() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=10) as client:
            return (await client.get(url)).status_code

    return asyncio.run(asyncio.wait_for(go(), 10))
