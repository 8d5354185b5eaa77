"""Loopback servers for transport failures that ``servers.HostileServer``
cannot play: one that drops every connection as soon as it accepts it (before
reading the request), with a plain close or a reset."""

from __future__ import annotations

import socket
import struct
import threading


class DroppingServer:
    """Accepts connections and closes them at once; ``reset``: with an RST
    (SO_LINGER 0) instead of a FIN. Counts the connections it dropped."""

    def __init__(self, *, reset: bool = False) -> None:
        self.reset = reset
        self.dropped = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
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
            if self.reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            self.dropped += 1

    def __enter__(self) -> DroppingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
