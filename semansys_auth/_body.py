"""The one bounded body reader: every token answer and every 401 body is read
through it, by every adapter, blocking or async. Written by hand because the
HTTP clients read a body whole, or without a bound on its size or time.

The state (``_Body``) is shared; the two loops differ only in how they wait for
a chunk.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

CHUNK = 64 * 1024

ENDED = "ended"
CUT = "cut"
LATE = "late"


class _Body:
    """The bytes of a body read so far, within ``limit``: the bounded reader's
    state, shared by its blocking and async loops."""

    __slots__ = ("chunks", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit

    def wanted(self) -> int:
        """How much to ask the next read for: one byte past the limit at most."""
        return min(CHUNK, self.limit + 1 - self.size)

    def add(self, chunk: bytes) -> str | None:
        """Keep ``chunk`` (b"": the end); :data:`ENDED` or :data:`CUT` when done."""
        if not chunk:
            return ENDED
        self.chunks.append(chunk)
        self.size += len(chunk)
        return CUT if self.size > self.limit else None

    def result(self, how: str) -> tuple[bytes, str]:
        return b"".join(self.chunks)[: self.limit], how


def read_bounded(
    read: Callable[[int], bytes], limit: int, deadline: float | None = None
) -> tuple[bytes, str]:
    """The one bounded body reader (blocking): at most ``limit`` bytes of a body,
    read with ``read(size)`` (b"" at its end), until ``deadline`` (monotonic).

    Returns the bytes and how reading stopped: :data:`ENDED` (the whole body),
    :data:`CUT` (more than ``limit``: the rest is not read) or :data:`LATE`
    (the deadline passed first). Each library's adapter turns a transport
    failure or :data:`LATE` into that library's own exception."""
    body = _Body(limit)
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return body.result(LATE)
        how = body.add(read(body.wanted()))
        if how is not None:
            return body.result(how)


async def read_bounded_async(
    read: Callable[[int], Awaitable[bytes]], limit: int, deadline: float | None = None
) -> tuple[bytes, str]:
    """:func:`read_bounded` for async bodies; a read that waits past
    ``deadline`` is cancelled (anyio: asyncio or trio)."""
    import anyio

    body = _Body(limit)
    with anyio.move_on_after(None if deadline is None else deadline - time.monotonic()):
        while (how := body.add(await read(body.wanted()))) is None:
            pass
        return body.result(how)
    return body.result(LATE)
