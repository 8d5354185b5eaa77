"""The renewal lock, for threads and for any event loop, and the token cache's
lock between processes, as the drivers need them to carry out the core's lock
effects (``TakeLock``, ``ReleaseLock``, ``LockCache``, ``UnlockCache``).

Why not one library lock: a ``threading.Lock`` would block an event loop, and an
``anyio.Lock`` belongs to the event loop that first used it, while one auth
object may serve threads, several ``asyncio.run`` calls and trio at once. So
one holder record under a ``threading.Condition`` is the mutual exclusion
inside the process. Whoever finds it held waits for *that renewal to end* and
then looks at the token again (the core decides); nobody takes the lock in turn
just to find the token there:

* threads wait on the condition;
* async tasks wait on one ``anyio.Event`` per event loop and renewal, with no
  timer each: the renewer sets it when it ends on the same loop; the first task
  that waits on a loop also watches for the end (of a renewer elsewhere: another
  thread or loop), a holder that has gone and its own deadline, with short
  sleeps (1 ms up to 20 ms), and sets the event for the others. The loop keeps
  running.

The cache's own lock (a file lock, a Redis lock) makes processes take turns; it
is tried once per ``LockCache`` effect (the core sleeps between tries) and
recorded for its holder in the same call, in a worker thread on event loops.

Nothing outlives the caller that took it. An async task that holds the lock can
vanish without releasing it: when its event loop is closed (or stops) while the
task waits for the token endpoint, nothing resumes the task, and the drivers'
``finally`` blocks never run. The record says which thread, task and loop hold
the lock; a caller that finds the holder gone (its thread or task ended, its
loop closed or stopped) takes the lock over at once, with the cache lock the
holder left behind (released when the new holder is done). A blocking call is
refused as a deadlock only when the holder really runs on the caller's thread.
After ``os.fork()``, the child forgets the holder and makes new locks (``_fork``).
"""

from __future__ import annotations

import sys
import threading
import time
import weakref

from ._effects import Lock
from ._fork import reset_after_fork
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


def _loop_key() -> Any:
    """The event loop running now: an asyncio loop, or trio's run token."""
    asyncio = sys.modules.get("asyncio")
    loop = None if asyncio is None else asyncio._get_running_loop()
    if loop is not None:
        return loop
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:  # no trio run on this thread either
        return None


class Holder:
    """Who holds the renewal lock: a thread, or an async task on an event loop;
    the cache lock it took, if any; and the events its waiters sleep on.

    An async holder can vanish without releasing: when its event loop is closed
    (or stops for good) before the fetch ends, the task and the generators that
    hold the lock are never resumed, and their ``finally`` blocks never run.
    :meth:`gone` tells the others, who then take the lock over."""

    __slots__ = ("cache_lock", "ended", "loop", "task", "thread", "wakeups")

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.task: weakref.ref[Any] | None = None  # an asyncio task, or a trio task's coroutine
        self.loop: weakref.ref[Any] | None = None  # the asyncio loop; None on trio
        self.cache_lock: CacheLock | None = None
        self.ended = False  # released, or taken over
        # Per event loop whose tasks wait for this renewal: (event, watched).
        self.wakeups: dict[Any, list[Any]] = {}

    @classmethod
    def current_task(cls) -> Holder:
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


class RenewalLock:
    """One per auth object: who is renewing, and the cache lock they hold.

    A holder record under a condition variable rather than a bare
    ``threading.Lock``, so that a holder that has gone (see
    :meth:`Holder.gone`) can be taken over; a holder that comes back after a
    take-over releases nothing."""

    def __init__(self) -> None:
        self._after_fork()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # Also the constructor. In a child of fork, the holder (another thread, or
        # a task of an event loop that does not run there) is forgotten, and the
        # locks that thread may have held are new.
        self._state = threading.Condition(threading.Lock())
        self._holder: Holder | None = None
        self._cache_lock: CacheLock | None = None
        self._cache_key: str | None = None

    # -- the renewal lock -------------------------------------------------------------

    def _try_take(self, holder: Holder, waited_for: Holder | None) -> Lock | None:
        """Under ``_state``: TAKEN (free, or its holder has gone: taken over with
        the cache lock it held), ENDED (the renewal ``waited_for`` is over), or
        None (busy)."""
        current = self._holder
        if waited_for is not None and current is not waited_for:
            return Lock.ENDED
        if current is not None:
            if not current.gone():
                return None
            logger.warning(
                "the caller that was renewing the token is gone (its thread or task "
                "ended, or its event loop closed or stopped) and left the renewal "
                "unfinished: renewing here instead"
            )
            holder.cache_lock, current.cache_lock = current.cache_lock, None
            current.ended = True
        self._holder = holder
        return Lock.TAKEN

    def take(self, holder: Holder, wait: float) -> Lock:
        """For threads: take the lock, or wait at most ``wait`` seconds for the
        renewal under way to end."""
        deadline = time.monotonic() + wait
        waited_for = None
        with self._state:
            while True:
                taken = self._try_take(holder, waited_for)
                if taken is not None:
                    return taken
                current = self._holder
                assert current is not None
                if wait <= 0:
                    return Lock.BUSY
                if current.blocks_this_thread():
                    raise current.blocked_error()
                waited_for = current
                left = deadline - time.monotonic()
                if left <= 0:
                    return Lock.BUSY
                self._state.wait(min(left, _STALE_CHECK))

    async def take_async(self, holder: Holder, wait: float) -> Lock:
        """For async tasks: take the lock, or wait at most ``wait`` seconds for
        the renewal under way to end, without blocking the event loop.

        The first task of a loop to wait watches the renewal (short sleeps, or
        the loop's event when the renewer runs on this loop); the others sleep
        on the event, with no timer each, and are woken once, by the renewer
        or by the watcher, whatever ends the watch (the renewal's end, a
        take-over, the watcher's deadline or cancellation)."""
        deadline = time.monotonic() + wait
        waited_for = None
        while True:
            with self._state:  # held by anyone for microseconds only
                taken = self._try_take(holder, waited_for)
                if taken is not None or wait <= 0:
                    return taken or Lock.BUSY
                current = self._holder
                assert current is not None
                waited_for = current
                key = _loop_key()
                wakeup = current.wakeups.get(key)
                if wakeup is None or wakeup[0].is_set():
                    import anyio

                    wakeup = current.wakeups[key] = [anyio.Event(), False]
                watcher = not wakeup[1]
                wakeup[1] = True
            if time.monotonic() >= deadline:
                if watcher:
                    wakeup[1] = False
                return Lock.BUSY
            if watcher:
                await self._watch(current, wakeup, deadline)
            else:
                await wakeup[0].wait()

    async def _watch(self, current: Holder, wakeup: list[Any], deadline: float) -> None:
        """Watch ``current``'s renewal until it ends, its holder has gone or
        ``deadline`` passes; then wake the other tasks of this loop."""
        import anyio

        delay = _POLL_FIRST
        try:
            while not wakeup[0].is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                with anyio.move_on_after(min(left, delay)):
                    await wakeup[0].wait()
                with self._state:
                    if self._holder is not current or current.gone():
                        return
                delay = min(delay * 2, _POLL_MAX)
        finally:
            wakeup[1] = False
            wakeup[0].set()

    def release(self, holder: Holder) -> None:
        """Release the renewal lock (not the cache lock) if ``holder`` has it;
        wake the threads, and the tasks of this event loop, that wait for it."""
        with self._state:
            if self._holder is not holder:  # taken over: nothing of ours to release
                return
            self._holder = None
            holder.ended = True
            self._state.notify_all()
            wakeup = holder.wakeups.get(_loop_key()) if holder.wakeups else None
        if wakeup is not None:
            wakeup[0].set()

    # -- the cache's lock (blocking: worker threads on event loops) -------------------

    def try_cache(self, holder: Holder, cache: Any, key: str) -> bool:
        """Try once to take the cache's lock for ``key``, for ``holder``, and
        record it there in the same call: a lock taken here is known even if the
        event loop that asked is closed before the answer reaches it. Released
        at once if ``holder`` was taken over meanwhile. Raises what the cache
        raises (the core pauses the cache)."""
        if holder.cache_lock is not None:
            return True  # taken over from a holder that had gone, with its cache lock
        with self._state:
            lock = self._cache_lock if self._cache_key == key else None
        try:
            if lock is None:
                lock = cache.lock(key)
                with self._state:
                    self._cache_lock, self._cache_key = lock, key
            got = bool(lock.acquire(0))
        except Exception:
            with self._state:
                self._cache_lock = None  # made again after the pause
            raise
        if not got:
            return False
        with self._state:
            kept = not holder.ended
            if kept:
                holder.cache_lock = lock
        if not kept:
            self._release_quietly(lock)
        return True

    def release_cache(self, holder: Holder) -> None:
        """Release the cache lock ``holder`` took, unless a take-over moved it.
        Raises what the cache raises."""
        with self._state:
            lock, holder.cache_lock = holder.cache_lock, None
        if lock is not None:
            try:
                lock.release()
            except Exception:
                with self._state:
                    self._cache_lock = None
                raise

    def _release_quietly(self, lock: CacheLock) -> None:
        try:
            lock.release()
        except Exception as exc:  # a lease that passed: nothing is held any more
            logger.warning("token cache unlock failed: %s", type(exc).__name__)

    # -- what a driver left held -------------------------------------------------------

    def give_back(self, holder: Holder) -> None:
        """Release whatever ``holder`` still holds (a flow that ended early: an
        exception, a cancelled task, a closed generator). Blocking."""
        try:
            with self._state:
                lock, holder.cache_lock = holder.cache_lock, None
            if lock is not None:
                self._release_quietly(lock)
        finally:
            self.release(holder)

    async def give_back_async(self, holder: Holder) -> None:
        """:meth:`give_back` for async tasks: a cache lock is released in a
        worker thread, shielded from cancellation. Where this cannot run (the
        event loop has closed), the holder stays recorded, as a holder that has
        gone, and the next caller takes its cache lock over."""
        if holder.cache_lock is None:  # nothing that needs a worker thread
            self.release(holder)
            return
        import anyio
        import anyio.to_thread

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.give_back, holder)
