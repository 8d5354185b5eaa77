"""Loopback servers for transport failures that ``servers.HostileServer``
cannot play: one that drops every connection as soon as it accepts it (before
reading the request), with a plain close or a reset."""

from __future__ import annotations

import json
import socket
import struct
import threading
from typing import TypeVar

_L = TypeVar("_L", bound="_Listener")


class _Listener:
    """A loopback socket whose thread accepts connections and hands each to
    :meth:`accepted`; a context manager that starts and stops it."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)  # so that the loop sees the stop flag
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted(conn)

    def accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self: _L) -> _L:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


class DroppingServer(_Listener):
    """Accepts connections and closes them at once; ``reset``: with an RST
    (SO_LINGER 0) instead of a FIN. Counts the connections it dropped."""

    def __init__(self, *, reset: bool = False) -> None:
        self.reset = reset
        self.dropped = 0
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        if self.reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.dropped += 1  # before the close, which the client may see at once
        conn.close()


class Api401Server(_Listener):
    """A token endpoint and an API on one loopback port. Tokens are ``tok-1``,
    ``tok-2``...; the API answers a request carrying ``tok-1`` with a 401
    whose body is ``size`` bytes long (Content-Length), or endless (chunked)
    when ``size`` is None, and any other request with 200 and the
    ``Authorization`` it received. It records, per 401, how many bytes it
    managed to send and how the sending ended: ``complete``, ``closed`` (the
    client closed the connection) or ``stalled`` (the client stopped reading
    and kept the connection open for ``stall_limit`` seconds)."""

    def __init__(self, size: int | None, *, stall_limit: float = 8.0) -> None:
        self.size = size
        self.body_401: bytes | None = None
        """A fixed 401 body (``size`` is then ignored), with ``headers_401``."""
        self.headers_401 = ""
        self.stall_limit = stall_limit
        self.tokens_issued = 0
        self.sent_401: list[int] = []
        self.ends_401: list[str] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        # A small send buffer: what the kernel holds for a client that
        # stopped reading stays small beside what the server counts.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        from servers import _read_request, http_answer, json_answer

        conn.settimeout(self.stall_limit)
        buffer = b""
        try:
            while not self._stop.is_set():
                request, buffer = _read_request(conn, buffer)
                if request is None:
                    return
                if request.path == "/connect/token":
                    with self._lock:
                        self.tokens_issued += 1
                        token = f"tok-{self.tokens_issued}"
                    conn.sendall(
                        json_answer(
                            200, {"access_token": token, "token_type": "bearer", "expires_in": 3600}
                        )
                    )
                    continue
                authorization = request.headers.get("authorization")
                with self._lock:
                    self.authorizations.append(authorization)
                if authorization == "Bearer tok-1":
                    if not self._send_401(conn):
                        return
                    continue
                body = json.dumps({"authorization": authorization}).encode()
                conn.sendall(http_answer(200, [("Content-Type", "application/json")], body))
        except OSError:
            return
        finally:
            conn.close()

    def _send_401(self, conn: socket.socket) -> bool:
        head = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n" + self.headers_401
        if self.body_401 is not None:
            head += f"Content-Length: {len(self.body_401)}\r\n\r\n"
            conn.sendall(head.encode() + self.body_401)
            with self._lock:
                self.sent_401.append(len(self.body_401))
                self.ends_401.append("complete")
            return True
        head += (
            "Transfer-Encoding: chunked\r\n\r\n"
            if self.size is None
            else f"Content-Length: {self.size}\r\n\r\n"
        )
        conn.sendall(head.encode())
        piece = b"x" * 65536
        chunk = b"10000\r\n" + piece + b"\r\n"  # one chunk of 64 KiB
        sent = 0
        end = "complete"
        try:
            while self.size is None or sent < self.size:
                if self.size is None:
                    conn.sendall(chunk)
                    sent += len(piece)
                else:
                    part = piece[: self.size - sent]
                    conn.sendall(part)
                    sent += len(part)
        except TimeoutError:
            end = "stalled"
        except OSError:
            end = "closed"
        with self._lock:
            self.sent_401.append(sent)
            self.ends_401.append(end)
        return end == "complete"
