"""The lock around a renewal, for threads and for any event loop, and the token
cache's lock between processes.

Why not one library lock: a ``threading.Lock`` would block an event loop, and an
``anyio.Lock`` belongs to the event loop that first used it, while one auth
object may serve threads, several ``asyncio.run`` calls and trio at once. So:

* one ``threading.Lock`` is the real mutual exclusion inside the process;
  threads take it blocking;
* async tasks first queue on an ``anyio.Lock`` private to their event loop
  (``anyio.lowlevel.RunVar``), so that one task per loop contends, and that
  task takes the thread lock without blocking: it tries, and sleeps a growing
  moment (1 ms up to 20 ms) between tries. The loop keeps running;
* then, when the token cache offers one, the cache's own lock (a file lock, a
  Redis lock), which makes processes take turns. Async tasks call it in a
  worker thread: it may do I/O.

``hold()`` and ``hold_async()`` are context managers: whatever is raised inside,
or while taking the locks, everything taken is released. A cache lock that
fails in any method is a warning, and the renewal goes on without it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from ._core import TokenCore
from ._errors import TokenEndpointUnavailableError
from ._log import logger

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import anyio

    from ._cache import CacheLock


_POLL_FIRST = 0.001
_POLL_MAX = 0.02

_DEADLOCK = (
    "a blocking client (requests, httpx.Client) used SemansysAuth inside a running "
    "event loop while an async request of that loop was fetching the token: this "
    "would deadlock. Use an async client there, or run the blocking call in a worker "
    "thread (anyio.to_thread.run_sync)."
)


class FetchLock:
    """One per auth object. ``wait=False`` takes it only if it is free at once
    (an early renewal that someone else is already doing is not waited for)."""

    def __init__(self, core: TokenCore, *, wait_limit: float, cache_wait: float) -> None:
        self._core = core
        self._wait_limit = wait_limit
        self._cache_wait = cache_wait
        self._thread = threading.Lock()
        self._owner: int | None = None  # the thread that holds self._thread
        self._cache_lock: CacheLock | None = None
        self._guard = threading.Lock()
        self._loop_locks: Any = None  # an anyio RunVar, made on first async use
        _ALL.add(self)

    def _reset_after_fork(self) -> None:
        # A fork while another thread held the lock would leave it held forever
        # in the child, where that thread does not exist.
        self._thread = threading.Lock()
        self._guard = threading.Lock()
        self._owner = None
        self._cache_lock = None

    # -- threads ----------------------------------------------------------------------

    @contextmanager
    def hold(self, *, wait: bool) -> Iterator[bool]:
        """Hold the lock (True), or yield False when ``wait`` is off and someone
        else holds it, here or in another process."""
        if not self._take_thread_lock(wait):
            yield False
            return
        try:
            cache_lock = self._usable_cache_lock()
            got = None if cache_lock is None else self._acquire_cache(cache_lock, wait)
            if got is False and not wait:
                yield False
                return
            try:
                yield True
            finally:
                if got:
                    assert cache_lock is not None
                    self._release_cache(cache_lock)
        finally:
            self._owner = None
            self._thread.release()

    def _take_thread_lock(self, wait: bool) -> bool:
        if not self._thread.acquire(blocking=False):
            if not wait:
                return False
            if self._owner == threading.get_ident():
                # Only an async task of this very thread's event loop can hold it:
                # a blocking wait here would wait for the loop it is blocking.
                raise RuntimeError(_DEADLOCK)
            if not self._thread.acquire(timeout=self._wait_limit):
                raise self._stuck()
        self._owner = threading.get_ident()
        return True

    def _stuck(self) -> TokenEndpointUnavailableError:
        return TokenEndpointUnavailableError(
            f"another caller has been renewing the token for over {self._wait_limit:.0f} s; "
            "gave up waiting for it"
        )

    # -- the cache's lock (blocking calls: worker threads on event loops) --------------

    def _usable_cache_lock(self) -> CacheLock | None:
        with self._guard:
            if self._cache_lock is None:
                self._cache_lock = self._core.cache_lock()
            return self._cache_lock

    def _acquire_cache(self, lock: CacheLock, wait: bool) -> bool | None:
        """True: held. False: busy (or not obtained in time). None: it failed."""
        try:
            got = bool(lock.acquire(self._cache_wait if wait else 0.0))
        except Exception as exc:
            self._core.cache_failed("lock", exc)
            self._cache_lock = None
            return None
        if not got and wait:
            self._warn_cache_wait()
        return got

    def _warn_cache_wait(self) -> None:
        logger.warning(
            "token cache lock not obtained within %.0f s: renewing without it", self._cache_wait
        )

    def _try_cache(self, lock: CacheLock) -> bool | None:
        try:
            return bool(lock.acquire(0))
        except Exception as exc:
            self._core.cache_failed("lock", exc)
            self._cache_lock = None
            return None

    def _release_cache(self, lock: CacheLock) -> None:
        try:
            lock.release()
        except Exception as exc:
            self._core.cache_failed("unlock", exc)
            self._cache_lock = None

    # -- event loops --------------------------------------------------------------------

    def _loop_lock(self) -> anyio.Lock:
        import anyio
        from anyio.lowlevel import RunVar

        with self._guard:
            if self._loop_locks is None:
                self._loop_locks = RunVar("semansys_auth_loop_lock")
            locks = self._loop_locks
        try:
            lock: anyio.Lock = locks.get()
        except LookupError:
            lock = anyio.Lock()
            locks.set(lock)
        return lock

    @asynccontextmanager
    async def hold_async(self, *, wait: bool) -> AsyncIterator[bool]:
        """``hold()`` for async tasks: the event loop is never blocked."""
        import anyio
        import anyio.to_thread

        loop_lock = self._loop_lock()
        if wait:
            await loop_lock.acquire()
        else:
            try:
                loop_lock.acquire_nowait()
            except anyio.WouldBlock:
                yield False
                return
        try:
            if not await self._take_thread_lock_async(wait):
                yield False
                return
            try:
                cache_lock = await anyio.to_thread.run_sync(self._usable_cache_lock)
                got = (
                    None
                    if cache_lock is None
                    else await self._acquire_cache_async(cache_lock, wait)
                )
                if got is False and not wait:
                    yield False
                    return
                try:
                    yield True
                finally:
                    if got:
                        assert cache_lock is not None
                        with anyio.CancelScope(shield=True):
                            await anyio.to_thread.run_sync(self._release_cache, cache_lock)
            finally:
                self._owner = None
                self._thread.release()
        finally:
            loop_lock.release()

    async def _take_thread_lock_async(self, wait: bool) -> bool:
        import anyio

        if not self._thread.acquire(blocking=False):
            if not wait:
                return False
            deadline = time.monotonic() + self._wait_limit
            delay = _POLL_FIRST
            while not self._thread.acquire(blocking=False):
                if time.monotonic() >= deadline:
                    raise self._stuck()
                await anyio.sleep(delay)  # cancelled here, nothing is held
                delay = min(delay * 2, _POLL_MAX)
        self._owner = threading.get_ident()
        return True

    async def _acquire_cache_async(self, lock: CacheLock, wait: bool) -> bool | None:
        import anyio
        import anyio.to_thread

        deadline = time.monotonic() + self._cache_wait
        delay = _POLL_FIRST
        while True:
            # Shielded: a try that acquired must be seen, or the lock would leak.
            with anyio.CancelScope(shield=True):
                got = await anyio.to_thread.run_sync(self._try_cache, lock)
            if got is not False or not wait:
                return got
            if time.monotonic() >= deadline:
                self._warn_cache_wait()
                return False
            await anyio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX * 5)


_ALL: weakref.WeakSet[FetchLock] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lock in list(_ALL):
        lock._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
