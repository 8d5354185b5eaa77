"""Loopback servers that tests control byte by byte.

``HostileServer`` plays a token endpoint that answers whatever bytes a test
sets (at whatever pace), and an API that echoes the ``Authorization`` header it
received. It records every request, and how many bytes of each answer it
managed to send (a client that stops reading makes the send stall).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def http_answer(
    status: int,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    framing: str = "length",
    reason: str = "Answer",
) -> bytes:
    """A well-formed HTTP/1.1 answer. ``framing``: ``length`` (Content-Length),
    ``chunked``, or ``close`` (the body ends when the connection closes)."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(
            f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            for piece in (body[i : i + 7] for i in range(0, len(body), 7))
        )
        payload += b"0\r\n\r\n"
    else:
        lines.append("Connection: close")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + payload


def json_answer(status: int, data: object, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    return http_answer(
        status, [("Content-Type", "application/json"), *headers], json.dumps(data).encode()
    )


Answer = bytes | Callable[[Received], "bytes | Iterator[bytes]"]


@dataclass
class HostileServer:
    """See the module docstring. Use as a context manager."""

    token_answer: Answer = b""
    pace: float = 0.0
    """Seconds between pieces of the token answer (0: all at once)."""
    piece: int = 65536
    received: list[Received] = field(default_factory=list)
    sent_bytes: list[int] = field(default_factory=list)
    closes_after_answer: bool = False

    def __post_init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    @property
    def token_url(self) -> str:
        return self.url + "/connect/token"

    @property
    def api_url(self) -> str:
        return self.url + "/api/reports"

    def token_requests(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == "/connect/token"]

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        self._sock.settimeout(0.05)  # so that the loop sees the stop flag
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buffer = b""
        try:
            while not self._stop.is_set():
                request, buffer = _read_request(conn, buffer)
                if request is None:
                    return
                with self._lock:
                    self.received.append(request)
                if request.path == "/connect/token":
                    answer = self.token_answer
                    data = answer(request) if callable(answer) else answer
                    keep_open = self._send(conn, data)
                else:
                    body = json.dumps({"authorization": request.headers.get("authorization")})
                    conn.sendall(
                        http_answer(200, [("Content-Type", "application/json")], body.encode())
                    )
                    keep_open = True
                if not keep_open or self.closes_after_answer:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def _send(self, conn: socket.socket, data: bytes | Iterator[bytes]) -> bool:
        """Send a token answer; False when the connection must close after it."""
        pieces = (
            (data[i : i + self.piece] for i in range(0, len(data), self.piece))
            if isinstance(data, bytes)
            else data
        )
        sent = 0
        head = b""
        try:
            for piece in pieces:
                if not head:
                    head = piece[:4096]
                conn.sendall(piece)
                sent += len(piece)
                if self.pace:
                    time.sleep(self.pace)
        finally:
            with self._lock:
                self.sent_bytes.append(sent)
        close_delimited = b"content-length" not in head.lower() and b"chunked" not in head.lower()
        return not close_delimited and b"connection: close" not in head.lower()


def _read_request(conn: socket.socket, buffer: bytes) -> tuple[Received | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    body, rest = rest[:length], rest[length:]
    return Received(method, path.split("?")[0], headers, body), rest
