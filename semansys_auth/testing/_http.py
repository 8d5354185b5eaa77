"""The emulator's HTTP side: a threading ``http.server`` on loopback, request
parsing (forms, chunked bodies, HTTP Basic client credentials), the protected
echo API, and the thread that serves. What a token request gets is decided by
the emulator's identity rules (``SemansysEmulator`` in ``_emulator``). Each
request served is also handed to the emulator's ``on_request`` hook, if any.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

from ._records import RecordedRequest

if TYPE_CHECKING:
    from ._emulator import SemansysEmulator

_Reply = tuple[int, dict[str, str], bytes]  # status, headers, body


def serve(
    owner: SemansysEmulator, host: str, port: int
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start serving ``owner`` on ``host``:``port`` (0: a free port) in a daemon
    thread; the caller stops it with ``shutdown()``, ``server_close()`` and a join."""

    emulator = owner

    class Handler(_Handler):
        owner = emulator

    server = _Server((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="semansys-emulator",
        daemon=True,
    )
    thread.start()
    return server, thread


def _masked(username: str) -> str:
    """``jane@example.com`` -> ``j***@example.com``, for the request log."""
    local, at, domain = username.partition("@")
    return f"{local[:1]}***{at}{domain}"


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
    except ValueError:
        return None
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default listen backlog (5) resets bursts of clients

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request (a cancelled task, a closed pool) is
        # normal for a test server; anything else is printed as usual.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: SemansysEmulator
    protocol_version = "HTTP/1.1"
    server_version = "SemansysEmulator/1"
    # Headers and body go out in two writes: with Nagle's algorithm on, the body
    # would wait for the client's delayed ACK of the headers (40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read the emulator's own request log instead

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._chunks())
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():
                    pass
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        owner = self.owner
        received_at = time.time()
        url = urlsplit(self.path)
        body = self._body()
        if url.path == "/connect/token" and self.command == "POST":
            entry, answer = self._token(url.path, body, received_at)
        elif url.path == "/api" or url.path.startswith("/api/"):
            entry, answer = self._api(url.path, url.query, body, received_at)
        else:
            if url.path == "/connect/token":
                answer = 405, {"Allow": "POST"}, b""
            else:
                answer = 404, {"Content-Type": "application/json"}, b'{"message": "not found"}'
            entry = RecordedRequest(
                "other", self.command, url.path, answer[0], received_at=received_at
            )
        if entry.kind != "other":  # the log keeps what was served
            owner._record(entry)
        try:
            owner._served(entry)
        finally:
            self._send(*answer)

    def _token(self, path: str, body: bytes, received_at: float) -> tuple[RecordedRequest, _Reply]:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        basic = _basic_credentials(self.headers.get("Authorization"))
        if basic is not None:  # client_secret_basic (RFC 6749 section 2.3.1)
            form["client_id"], form["client_secret"] = basic
        status, headers, payload, grant = self.owner._token(form)
        entry = RecordedRequest(
            "token",
            self.command,
            path,
            status,
            grant_type=grant,
            client_id=form.get("client_id"),
            username=_masked(form["username"]) if "username" in form else None,
            received_at=received_at,
        )
        return entry, (status, headers, payload)

    def _api(
        self, path: str, query: str, body: bytes, received_at: float
    ) -> tuple[RecordedRequest, _Reply]:
        owner = self.owner
        api_version = self.headers.get("x-api-version")

        def answer(
            status: int, headers: dict[str, str], payload: bytes, version: bool = True
        ) -> tuple[RecordedRequest, _Reply]:
            entry = RecordedRequest(
                "api",
                self.command,
                path,
                status,
                api_version=api_version if version else None,
                received_at=received_at,
            )
            return entry, (status, headers, payload)

        json_type = {"Content-Type": "application/json"}
        if path == "/api/redirect":
            target = parse_qs(query).get("to", [""])[0]
            return answer(302, {"Location": target}, b"")
        issued = owner._check_bearer(self.headers.get("Authorization"))
        if issued is None:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"', **json_type}
            return answer(401, challenge, b'{"message": "invalid or expired token"}')
        if owner.require_api_version and not api_version:
            return answer(400, json_type, b'{"message": "x-api-version required"}', False)
        echo = {
            "method": self.command,
            "path": path,
            "query": query,
            "subject": issued.username,
            "scope": issued.scope,
            "api_version": api_version,
            "content_type": self.headers.get("Content-Type"),
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        return answer(200, json_type, json.dumps(echo).encode())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle
