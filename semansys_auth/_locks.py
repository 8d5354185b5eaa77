"""The lock around a token fetch, usable from threads and from any event loop.

Why not one library lock: a ``threading.Lock`` would block the event loop, and an
``anyio.Lock`` belongs to the event loop that first used it, while one auth object
may serve threads, several ``asyncio.run`` calls and trio at once. So:

* one ``threading.Lock`` (plus, when the token cache offers one, a file lock
  shared with other processes) is the real mutual exclusion;
* threads take it blocking;
* async tasks first queue on an ``anyio.Lock`` private to their event loop
  (``anyio.lowlevel.RunVar``), so that only one task per loop contends, and that
  one task takes the thread lock without blocking: it tries, and sleeps a
  growing moment (1 ms up to 20 ms) between tries. The loop keeps running.
  Cancelled while waiting, it leaves nothing held.
"""

from __future__ import annotations

import logging
import threading
import time

import anyio
from anyio.lowlevel import RunVar

from ._cache import CacheLock

logger = logging.getLogger("semansys_auth")

_POLL_FIRST = 0.001
_POLL_MAX = 0.02


class Gate:
    def __init__(self, cache_lock: CacheLock | None, cache_lock_timeout: float) -> None:
        self._thread_lock = threading.Lock()
        self._cache_lock = cache_lock
        self._cache_lock_timeout = cache_lock_timeout
        self._cache_lock_held = False
        self._owner: int | None = None  # thread that holds the thread lock
        self._loop_lock: RunVar[anyio.Lock] = RunVar("semansys_auth_loop_lock")

    # -- threads --------------------------------------------------------------

    def acquire(self) -> None:
        if not self._thread_lock.acquire(blocking=False):
            if self._owner == threading.get_ident():
                # Only an async task of this very thread's event loop can hold it:
                # a blocking call here would wait for the loop it is blocking.
                raise RuntimeError(
                    "a blocking client (requests, httpx.Client) used SemansysAuth inside a "
                    "running event loop while an async request of that loop was fetching the "
                    "token: this would deadlock. Use httpx.AsyncClient there, or run the "
                    "blocking call in a worker thread (anyio.to_thread.run_sync)."
                )
            self._thread_lock.acquire()
        self._owner = threading.get_ident()
        if self._cache_lock is not None:
            self._cache_lock_held = self._cache_lock.acquire(self._cache_lock_timeout)
            if not self._cache_lock_held:
                self._warn_cache_lock()

    def release(self) -> None:
        if self._cache_lock_held:
            self._cache_lock_held = False
            assert self._cache_lock is not None
            self._cache_lock.release()
        self._owner = None
        self._thread_lock.release()

    # -- event loops ----------------------------------------------------------

    def loop_lock(self) -> anyio.Lock:
        try:
            return self._loop_lock.get()
        except LookupError:
            lock = anyio.Lock()
            self._loop_lock.set(lock)
            return lock

    async def acquire_async(self, loop_lock: anyio.Lock) -> None:
        """Take ``loop_lock`` then the gate, never blocking the event loop."""
        await loop_lock.acquire()
        try:
            delay = _POLL_FIRST
            while not self._thread_lock.acquire(blocking=False):
                await anyio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)
        except BaseException:
            loop_lock.release()
            raise
        self._owner = threading.get_ident()
        if self._cache_lock is None:
            return
        try:
            deadline = time.monotonic() + self._cache_lock_timeout
            delay = _POLL_FIRST
            while not self._cache_lock.acquire(0):
                if time.monotonic() >= deadline:
                    self._warn_cache_lock()
                    return
                await anyio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)
            self._cache_lock_held = True
        except BaseException:
            self._thread_lock.release()
            loop_lock.release()
            raise

    def release_async(self, loop_lock: anyio.Lock) -> None:
        self.release()
        loop_lock.release()

    def _warn_cache_lock(self) -> None:
        logger.warning(
            "token cache lock not obtained within %.0f s: fetching without it",
            self._cache_lock_timeout,
        )
