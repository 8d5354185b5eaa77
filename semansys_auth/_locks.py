"""The lock around a renewal, for threads and for any event loop, and the token
cache's lock between processes.

Why not one library lock: a ``threading.Lock`` would block an event loop, and an
``anyio.Lock`` belongs to the event loop that first used it, while one auth
object may serve threads, several ``asyncio.run`` calls and trio at once. So:

* one holder record under a ``threading.Condition`` is the real mutual
  exclusion inside the process; threads wait on the condition;
* async tasks first queue on an ``anyio.Lock`` private to their event loop
  (``anyio.lowlevel.RunVar``), so that one task per loop contends, and that
  task takes the lock without blocking: it tries, and sleeps a growing moment
  (1 ms up to 20 ms) between tries. The loop keeps running;
* then, when the token cache offers one, the cache's own lock (a file lock, a
  Redis lock), which makes processes take turns. Async tasks call it in a
  worker thread: it may do I/O.

``hold()`` and ``hold_async()`` are context managers: whatever is raised inside,
or while taking the locks, everything taken is released. A cache lock that
fails in any method is a warning, and the renewal goes on without it.

Nothing outlives the caller that took it. An async task that holds the lock
can vanish without releasing it: when its event loop is closed (or stops) while
the task waits for the token endpoint, nothing resumes the task, and the
``finally`` blocks of the generators that hold the lock never run. The record
says which thread, task and loop hold the lock; a caller that finds the holder
gone (its thread or task ended, its loop closed or stopped) takes the lock over
at once, and releases the cache lock the holder left behind. A blocking call is
refused as a deadlock only when the holder really runs on the caller's thread
(a task of the event loop running there, or the thread itself). After
``os.fork()``, the child forgets the holder and makes new locks (``_fork``).
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from ._core import TokenCore
from ._errors import TokenEndpointUnavailableError
from ._fork import IMPORTING, preload_for_renewal, reset_after_fork
from ._log import logger

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._cache import CacheLock


_POLL_FIRST = 0.001
_POLL_MAX = 0.02
_STALE_CHECK = 0.05
"""How often a waiting thread looks whether the holder has gone (a closed event
loop wakes nobody)."""

_LOOP_STALE_CHECK = 1.0
"""How often tasks queued for their event loop's turn look whether the task
that has it has ended (they are woken when it is released, else)."""

_DEADLOCK = (
    "a blocking client (requests, httpx.Client) used SemansysAuth inside a running "
    "event loop while an async request of that loop was fetching the token: this "
    "would deadlock. Use an async client there, or run the blocking call in a worker "
    "thread (anyio.to_thread.run_sync)."
)

_REENTERED = (
    "SemansysAuth was used for a request while this very thread was renewing its "
    "token (from a token cache, an on_token callback or an event hook): this would "
    "deadlock. Use another SemansysAuth object there, or make the request later."
)


class _Holder:
    """Who holds the renewal lock: a thread, or an async task on an event loop;
    and the cache lock it took, if any.

    An async holder can vanish without releasing: when its event loop is closed
    (or stops for good) before the fetch ends, the task and the async generators
    that hold the lock are never resumed, and their ``finally`` blocks never run.
    :meth:`gone` tells the others, who then take the lock over."""

    __slots__ = ("cache_lock", "loop", "task", "thread")

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.task: weakref.ref[Any] | None = None  # an asyncio task, or a trio task's coroutine
        self.loop: weakref.ref[Any] | None = None  # the asyncio loop; None on trio
        self.cache_lock: CacheLock | None = None

    @classmethod
    def current_task(cls) -> _Holder:
        """The async task running now (asyncio or trio, the two anyio backends)."""
        holder = cls()
        asyncio = sys.modules.get("asyncio")
        loop = None if asyncio is None else asyncio._get_running_loop()
        if loop is not None:
            task = asyncio.current_task(loop)  # type: ignore[union-attr]
            if task is not None:  # else a callback of the loop: judged as its thread
                holder.loop = weakref.ref(loop)
                holder.task = weakref.ref(task)
        else:
            import anyio

            holder.task = weakref.ref(anyio.get_current_task().coro)
        return holder

    def gone(self) -> bool:
        """Whether the holder can no longer release the lock: its thread has
        ended, or its task has ended, or the task's event loop is closed, or it
        is stopped and nothing can run it again: its thread has ended, or is
        this very thread (which would wait for it instead of running it). A loop
        stopped on a live thread of its own may be run again
        (``run_until_complete`` in bursts): it is waited for."""
        if self.task is None:
            return not self.thread.is_alive()
        task = self.task()
        if task is None:
            return True
        if self.loop is None:  # a trio task: its coroutine has ended
            return getattr(task, "cr_frame", True) is None
        loop = self.loop()
        if loop is None or loop.is_closed() or bool(task.done()):
            return True
        if loop.is_running():
            return False
        return not self.thread.is_alive() or self.thread is threading.current_thread()

    def blocks_this_thread(self) -> bool:
        """Whether a blocking wait on this thread would wait for the holder
        itself: the holder runs on this thread (asked about a holder that is
        not :meth:`gone`)."""
        if self.loop is None:  # a thread, or a trio task: they run on their thread
            return self.thread is threading.current_thread()
        asyncio = sys.modules["asyncio"]
        return bool(asyncio._get_running_loop() is self.loop())

    def blocked_error(self) -> RuntimeError:
        return RuntimeError(_REENTERED if self.task is None else _DEADLOCK)


class _LoopSlot:
    """One event loop's turn at the lock. A semaphore rather than an
    ``anyio.Lock``: a turn left by a task that has ended is given back by
    another task (an ``anyio.Lock`` may be released only by its owner)."""

    __slots__ = ("free", "owner")

    def __init__(self) -> None:
        import anyio

        self.free = anyio.Semaphore(1)
        self.owner: _Holder | None = None

    def free_if_gone(self) -> bool:
        owner = self.owner
        if owner is None or not owner.gone():
            return False
        self.leave(owner)
        return True

    def leave(self, holder: _Holder) -> None:
        if self.owner is holder:  # else freed already, for a holder that had gone
            self.owner = None
            self.free.release()


class FetchLock:
    """One per auth object. ``wait=False`` takes it only if it is free at once
    (an early renewal that someone else is already doing is not waited for).

    The lock is a holder record under a condition variable rather than a bare
    ``threading.Lock``, so that a holder that has gone (see :meth:`_Holder.gone`)
    can be taken over, and the cache lock it held released for it; a holder that
    comes back after a take-over releases nothing."""

    def __init__(self, core: TokenCore, *, wait_limit: float, cache_wait: float) -> None:
        self._core = core
        self._wait_limit = wait_limit
        self._cache_wait = cache_wait
        self._after_fork()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # Also the constructor. In a child of fork, the holder (another thread, or
        # a task of an event loop that does not run there) is forgotten, and the
        # locks that thread may have held are new.
        self._state = threading.Condition(threading.Lock())
        self._holder: _Holder | None = None
        self._cache_lock: CacheLock | None = None
        self._guard = threading.Lock()
        self._loop_locks: Any = None  # an anyio RunVar, made on first async use

    # -- the holder ---------------------------------------------------------------------

    def _try_take(self, holder: _Holder) -> tuple[bool, CacheLock | None]:
        """Under ``_state``: take the lock if it is free or its holder has gone.
        Returns whether it was taken, and a cache lock the gone holder left held,
        for the caller to release (outside ``_state``: it may do I/O)."""
        previous = self._holder
        if previous is not None and not previous.gone():
            return False, None
        left_behind = None
        if previous is not None:
            left_behind, previous.cache_lock = previous.cache_lock, None
            logger.warning(
                "the caller that was renewing the token is gone (its thread or task "
                "ended, or its event loop closed or stopped) and left the renewal "
                "unfinished: renewing here instead"
            )
        self._holder = holder
        return True, left_behind

    def _take(self, holder: _Holder, wait: bool) -> tuple[bool, CacheLock | None]:
        """For threads: wait (with ``wait``) for the lock, at most ``wait_limit``."""
        deadline = None
        with self._state:
            while True:
                taken = self._try_take(holder)
                if taken[0] or not wait:
                    return taken
                current = self._holder
                assert current is not None
                if current.blocks_this_thread():
                    raise current.blocked_error()
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._wait_limit
                elif now >= deadline:
                    raise self._stuck()
                self._state.wait(min(deadline - now, _STALE_CHECK))

    async def _take_async(self, holder: _Holder, wait: bool) -> tuple[bool, CacheLock | None]:
        """For async tasks: try, and sleep a growing moment between tries; the
        event loop keeps running. Cancelled only while sleeping: nothing held."""
        import anyio

        deadline = time.monotonic() + self._wait_limit
        delay = _POLL_FIRST
        while True:
            with self._state:  # held by anyone for microseconds only
                taken = self._try_take(holder)
            if taken[0] or not wait:
                return taken
            if time.monotonic() >= deadline:
                raise self._stuck()
            await anyio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)

    def _note_cache_lock(self, holder: _Holder, lock: CacheLock) -> None:
        """Record the cache lock ``holder`` took; released at once if ``holder``
        was taken over meanwhile (nobody would release it later)."""
        with self._state:
            current = self._holder is holder
            if current:
                holder.cache_lock = lock
        if not current:
            self._release_cache(lock)

    def _try_cache_for(self, holder: _Holder, lock: CacheLock) -> bool | None:
        """:meth:`_try_cache`, recorded for ``holder`` in the same worker call: a
        lock taken there is known even if the event loop that asked is closed
        before the answer reaches it (a take-over then releases it)."""
        got = self._try_cache(lock)
        if got:
            self._note_cache_lock(holder, lock)
        return got

    def _cache_lock_to_release(self, holder: _Holder) -> CacheLock | None:
        """The cache lock ``holder`` took, unless a take-over released it already."""
        with self._state:
            lock, holder.cache_lock = holder.cache_lock, None
            return lock

    def _release(self, holder: _Holder) -> None:
        with self._state:
            if self._holder is holder:  # else taken over: nothing of ours to release
                self._holder = None
                self._state.notify()

    def _stuck(self) -> TokenEndpointUnavailableError:
        return TokenEndpointUnavailableError(
            f"another caller has been renewing the token for over {self._wait_limit:.0f} s; "
            "gave up waiting for it"
        )

    # -- threads ----------------------------------------------------------------------

    @contextmanager
    def hold(self, *, wait: bool) -> Iterator[bool]:
        """Hold the lock (True), or yield False when ``wait`` is off and someone
        else holds it, here or in another process."""
        preload_for_renewal()
        holder = _Holder()
        taken, left_behind = self._take(holder, wait)
        if not taken:
            yield False
            return
        try:
            if left_behind is not None:
                self._release_cache(left_behind)
            cache_lock = self._usable_cache_lock()
            got = None if cache_lock is None else self._acquire_cache(cache_lock, wait)
            if got:
                assert cache_lock is not None
                self._note_cache_lock(holder, cache_lock)
            if got is False and not wait:
                yield False
                return
            yield True
        finally:
            self._give_back(holder)

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

    def _loop_slot(self) -> _LoopSlot:
        from anyio.lowlevel import RunVar

        with self._guard:
            if self._loop_locks is None:
                self._loop_locks = RunVar("semansys_auth_loop_lock")
            slots = self._loop_locks
        try:
            slot: _LoopSlot = slots.get()
        except LookupError:
            slot = _LoopSlot()
            slots.set(slot)
        return slot

    async def _enter_loop(self, holder: _Holder, wait: bool) -> _LoopSlot | None:
        """Take this event loop's turn (one task per loop contends for the lock),
        or None when ``wait`` is off and another task of the loop has it. A
        task that ended with the turn taken (an auth flow it started was left
        open) is seen within :data:`_LOOP_STALE_CHECK`, and its turn is freed."""
        import anyio

        slot = self._loop_slot()
        if not wait:
            if slot.free.value == 0:
                slot.free_if_gone()
            try:
                slot.free.acquire_nowait()
            except anyio.WouldBlock:
                return None
            slot.owner = holder
            return slot
        deadline = time.monotonic() + self._wait_limit
        while True:
            with anyio.move_on_after(_LOOP_STALE_CHECK):
                await slot.free.acquire()
                slot.owner = holder
                return slot
            slot.free_if_gone()
            if time.monotonic() >= deadline:
                raise self._stuck()

    @asynccontextmanager
    async def hold_async(self, *, wait: bool) -> AsyncIterator[bool]:
        """``hold()`` for async tasks: the event loop is never blocked."""
        with IMPORTING:  # the first async use imports them (a fork waits: see _fork)
            import anyio
            import anyio.lowlevel
            import anyio.to_thread

            preload_for_renewal()
        holder = _Holder.current_task()
        slot = await self._enter_loop(holder, wait)
        if slot is None:
            yield False
            return
        try:
            taken, left_behind = await self._take_async(holder, wait)
            if not taken:
                yield False
                return
            try:
                if left_behind is not None:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(self._release_cache, left_behind)
                cache_lock = await anyio.to_thread.run_sync(self._usable_cache_lock)
                got = (
                    None
                    if cache_lock is None
                    else await self._acquire_cache_async(holder, cache_lock, wait)
                )
                if got is False and not wait:
                    yield False
                    return
                yield True
            finally:
                await self._give_back_async(holder)
        finally:
            slot.leave(holder)

    async def _give_back_async(self, holder: _Holder) -> None:
        if holder.cache_lock is None:  # nothing that needs a worker thread
            self._release(holder)
            return
        import anyio
        import anyio.to_thread

        # Shielded: a cancelled task still gives the cache lock back. Where this
        # cannot run (the event loop has closed), the holder stays recorded, as a
        # holder that has gone, and the next caller releases its cache lock.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._give_back, holder)

    def _give_back(self, holder: _Holder) -> None:
        try:
            lock = self._cache_lock_to_release(holder)
            if lock is not None:
                self._release_cache(lock)
        finally:
            self._release(holder)

    async def _acquire_cache_async(
        self, holder: _Holder, lock: CacheLock, wait: bool
    ) -> bool | None:
        import anyio
        import anyio.to_thread

        deadline = time.monotonic() + self._cache_wait
        delay = _POLL_FIRST
        while True:
            # Shielded: a try that acquired must be seen, or the lock would leak.
            with anyio.CancelScope(shield=True):
                got = await anyio.to_thread.run_sync(self._try_cache_for, holder, lock)
            if got is not False or not wait:
                return got
            if time.monotonic() >= deadline:
                self._warn_cache_wait()
                return False
            await anyio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX * 5)
