"""Test helpers: one way to send a request through each supported client, and small
loopback servers for what the emulator does not play (another origin, an API that
always answers 401)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import httpx
import httpx2
import requests

TIMEOUT = 10.0

KINDS = [
    "requests",
    "httpx",
    "httpx-async",
    "httpx2",
    "httpx2-async",
    "aiohttp",
    "niquests",
    "niquests-async",
]


def is_async(kind: str) -> bool:
    return kind.endswith("-async") or kind == "aiohttp"


@dataclass
class Reply:
    status: int
    body: Any
    history: int
    request_headers: dict[str, str]


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def send(kind: str, auth: Any, method: str, url: str, **kwargs: Any) -> Reply:
    """Send one request with ``auth`` through the client named ``kind``.

    kwargs: content (bytes, a file or a generator), json, data (a dict), files, headers.
    """
    if kind == "requests":
        if "content" in kwargs:
            kwargs["data"] = kwargs.pop("content")
        r = requests.request(method, url, auth=auth, timeout=TIMEOUT, **kwargs)
        return Reply(
            r.status_code,
            _json(r.content),
            len(r.history),
            {k.lower(): v for k, v in r.request.headers.items()},
        )
    if kind == "aiohttp":
        return asyncio.run(_send_aiohttp(auth, method, url, **kwargs))
    if kind.startswith("niquests"):
        return _send_niquests(kind, auth, method, url, **kwargs)
    module: Any = httpx2 if kind.startswith("httpx2") else httpx
    if kind.endswith("-async"):

        async def go() -> Any:
            async with module.AsyncClient(auth=auth, timeout=TIMEOUT) as client:
                response = await client.request(method, url, **kwargs)
                await response.aread()
                return response

        r = asyncio.run(go())
    else:
        with module.Client(auth=auth, timeout=TIMEOUT) as client:
            r = client.request(method, url, **kwargs)
    return Reply(
        r.status_code,
        _json(r.content),
        len(r.history),
        {k.lower(): v for k, v in r.request.headers.items()},
    )


async def _send_aiohttp(auth: Any, method: str, url: str, **kwargs: Any) -> Reply:
    if "content" in kwargs:
        kwargs["data"] = kwargs.pop("content")
    if "files" in kwargs:
        form = aiohttp.FormData()
        for name, (filename, handle, content_type) in kwargs.pop("files").items():
            form.add_field(name, handle, filename=filename, content_type=content_type)
        kwargs["data"] = form
    if not kwargs.pop("follow_redirects", True):
        kwargs["allow_redirects"] = False
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with (
        aiohttp.ClientSession(middlewares=(auth,), timeout=timeout) as session,
        session.request(method, url, **kwargs) as response,
    ):
        content = await response.read()
        return Reply(
            response.status,
            _json(content),
            len(response.history),
            {k.lower(): v for k, v in response.request_info.headers.items()},
        )


def free_port() -> int:
    """A loopback port that nothing listens on (free when this returns)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _send_niquests(kind: str, auth: Any, method: str, url: str, **kwargs: Any) -> Reply:
    import niquests

    if "content" in kwargs:
        kwargs["data"] = kwargs.pop("content")
    kwargs["allow_redirects"] = kwargs.pop("follow_redirects", True)

    def reply(r: Any, content: bytes | None) -> Reply:
        headers = {k.lower(): v for k, v in r.request.headers.items()}
        return Reply(r.status_code, _json(content or b""), len(r.history), headers)

    if kind == "niquests":
        with niquests.Session() as session:
            r = session.request(method, url, auth=auth, timeout=TIMEOUT, **kwargs)
            return reply(r, r.content)

    async def go() -> Reply:
        async with niquests.AsyncSession() as session:
            r = await session.request(method, url, auth=auth, timeout=TIMEOUT, **kwargs)
            return reply(r, r.content)  # read already (stream=False)

    return asyncio.run(go())


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class RecordingServer:
    """A loopback server that records every request and answers ``status``."""

    def __init__(self, status: int = 200, body: bytes = b'{"ok": true}') -> None:
        self.status = status
        self.body = body
        self.seen: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                if owner.status == 401:
                    self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            do_GET = do_POST = do_PUT = _any

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
