"""The renewal lock and the cache's lock (``_locks``), in process: real threads,
asyncio and trio loops, no servers. Each wait is bounded."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import anyio
import pytest
import trio

from semansys_auth._effects import Lock
from semansys_auth._locks import Holder, RenewalLock


class CacheLock:
    """A cache's lock between processes, in memory: records what is done with it."""

    def __init__(self, free: bool = True, fail: str | None = None) -> None:
        self.free = free
        self.fail = fail  # "acquire" or "release": that call raises
        self.held = False
        self.calls: list[str] = []

    def acquire(self, timeout: float) -> bool:
        self.calls.append(f"acquire({timeout:g})")
        if self.fail == "acquire":
            raise OSError("lock file unreachable")
        if self.free and not self.held:
            self.held = True
            return True
        return False

    def release(self) -> None:
        self.calls.append("release")
        if self.fail == "release":
            raise OSError("lease passed")
        self.held = False


class Cache:
    """A token cache that hands out one :class:`CacheLock` per call of ``lock``."""

    def __init__(self, **lock_options: Any) -> None:
        self.keys: list[str] = []
        self.locks: list[CacheLock] = []
        self.lock_options = lock_options

    def lock(self, key: str) -> CacheLock:
        self.keys.append(key)
        lock = CacheLock(**self.lock_options)
        self.locks.append(lock)
        return lock


def in_thread(function: Any, *args: Any) -> Any:
    """Run ``function`` in another thread and return what it returned (or raise)."""
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(("ok", function(*args)))
        except BaseException as exc:
            result.append(("error", exc))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(3)
    assert result, "the thread did not finish in time"
    kind, value = result[0]
    if kind == "error":
        raise value
    return value


def ended_thread_holder() -> Holder:
    """A holder whose thread has ended (a renewer that vanished)."""
    return in_thread(Holder)  # type: ignore[no-any-return]


# -- holders --------------------------------------------------------------------------


def test_a_thread_holder_is_gone_once_its_thread_has_ended() -> None:
    here = Holder()
    assert here.task is None and here.loop is None and not here.gone()
    assert ended_thread_holder().gone()


def test_an_asyncio_holder_lives_as_long_as_its_task_and_loop() -> None:
    async def main() -> tuple[Holder, bool]:
        holder = Holder.current_task()
        return holder, holder.gone()

    loop = asyncio.new_event_loop()
    try:
        holder, gone_while_running = loop.run_until_complete(main())
    finally:
        loop.close()
    assert holder.loop is not None and holder.task is not None
    assert not gone_while_running
    assert holder.gone(), "its task is done and its loop closed"


def test_an_asyncio_holder_whose_loop_closed_with_the_task_pending_is_gone() -> None:
    started = asyncio.Event()
    holders: list[Holder] = []

    async def renewer() -> None:
        holders.append(Holder.current_task())
        started.set()
        await asyncio.sleep(3600)

    async def main() -> None:
        asyncio.get_running_loop().create_task(renewer())
        await started.wait()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    (holder,) = holders
    # Stopped, on this very thread: nothing will run it while this thread waits.
    assert holder.gone()
    assert in_thread(holder.gone) is False, "another thread may still run the loop again"
    loop.close()
    assert holder.gone()


def test_an_asyncio_holder_gone_when_its_task_is_done_though_the_loop_runs() -> None:
    async def main() -> bool:
        task = asyncio.get_running_loop().create_task(asyncio.sleep(0, result=None))
        holders: list[Holder] = []

        async def renewer() -> None:
            holders.append(Holder.current_task())

        await asyncio.get_running_loop().create_task(renewer())
        await task
        return holders[0].gone()

    assert asyncio.run(main())


def test_a_holder_made_in_a_loop_callback_is_judged_as_its_thread() -> None:
    async def main() -> Holder:
        made: asyncio.Future[Holder] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(lambda: made.set_result(Holder.current_task()))
        return await made

    holder = asyncio.run(main())
    assert holder.task is None and holder.loop is None
    assert not holder.gone(), "its thread (this one) is alive"


def test_a_trio_holder_is_gone_once_its_task_has_ended() -> None:
    async def main() -> tuple[Holder, bool]:
        holder = Holder.current_task()
        return holder, holder.gone()

    holder, gone_while_running = trio.run(main)
    assert holder.loop is None and holder.task is not None
    assert not gone_while_running
    assert holder.gone()


def test_who_would_block_whom() -> None:
    here = Holder()
    assert here.blocks_this_thread()
    assert in_thread(here.blocks_this_thread) is False
    assert "renewing its token" in str(here.blocked_error())

    async def main() -> tuple[Holder, bool]:
        holder = Holder.current_task()
        return holder, holder.blocks_this_thread()

    loop = asyncio.new_event_loop()
    try:
        holder, inside = loop.run_until_complete(main())
        assert inside, "a blocking wait inside the holder's own running loop"
        assert not holder.blocks_this_thread(), "its loop does not run now"
    finally:
        loop.close()
    assert "would deadlock" in str(holder.blocked_error())
    assert "async client" in str(holder.blocked_error())


# -- the renewal lock, for threads ------------------------------------------------------


def test_one_holder_at_a_time() -> None:
    lock = RenewalLock()
    first, second = Holder(), Holder()
    assert lock.take(first, 0) is Lock.TAKEN
    assert in_thread(lock.take, Holder(), 0.0) is Lock.BUSY
    lock.release(second)  # not the holder: nothing happens
    assert in_thread(lock.take, Holder(), 0.0) is Lock.BUSY
    lock.release(first)
    assert first.ended
    assert in_thread(lock.take, Holder(), 0.0) is Lock.TAKEN


def test_a_waiting_thread_goes_on_as_soon_as_the_renewal_ends() -> None:
    lock = RenewalLock()
    renewer = Holder()
    assert lock.take(renewer, 0) is Lock.TAKEN
    outcome: list[tuple[Lock, float]] = []

    def waiter() -> None:
        start = time.monotonic()
        outcome.append((lock.take(Holder(), 3.0), time.monotonic() - start))

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    assert not outcome, "it waits while the renewal is under way"
    lock.release(renewer)
    thread.join(3)
    ((taken, waited),) = outcome
    assert taken is Lock.ENDED, "it looks at the token again; it does not take the lock"
    assert 0.15 < waited < 2.0
    assert in_thread(lock.take, Holder(), 0.0) is Lock.TAKEN, "the lock is free"


def test_a_thread_waits_no_longer_than_its_limit() -> None:
    lock = RenewalLock()
    assert lock.take(Holder(), 0) is Lock.TAKEN
    start = time.monotonic()
    assert in_thread(lock.take, Holder(), 0.3) is Lock.BUSY
    assert 0.25 < time.monotonic() - start < 3.0


def test_a_thread_that_would_wait_for_itself_is_refused() -> None:
    lock = RenewalLock()
    holder = Holder()
    assert lock.take(holder, 0) is Lock.TAKEN
    assert lock.take(Holder(), 0.0) is Lock.BUSY, "not waiting: no deadlock to refuse"
    with pytest.raises(RuntimeError, match="this very thread was renewing"):
        lock.take(Holder(), 5.0)


def test_a_lock_left_by_an_ended_thread_is_taken_over_with_its_cache_lock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lock = RenewalLock()
    cache = Cache()
    vanished = ended_thread_holder()
    assert lock.take(vanished, 0) is Lock.TAKEN
    assert lock.try_cache(vanished, cache, "k") is True
    left_behind = vanished.cache_lock
    assert left_behind is not None and left_behind.held
    heir = Holder()
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert lock.take(heir, 0) is Lock.TAKEN
    assert caplog.messages == [
        "the caller that was renewing the token is gone (its thread or task ended, or its "
        "event loop closed or stopped) and left the renewal unfinished: renewing here instead"
    ]
    assert vanished.ended and vanished.cache_lock is None
    assert heir.cache_lock is left_behind
    assert lock.try_cache(heir, cache, "k") is True, "it has that cache lock already"
    assert len(cache.locks) == 1
    lock.release(vanished)  # comes back: releases nothing
    assert in_thread(lock.take, Holder(), 0.0) is Lock.BUSY
    lock.give_back(heir)
    assert not left_behind.held
    assert in_thread(lock.take, Holder(), 0.0) is Lock.TAKEN


def test_a_waiting_thread_notices_a_vanished_holder_within_a_moment() -> None:
    """A loop closed with the renewer pending wakes nobody: the waiter looks
    again every 50 ms."""
    lock = RenewalLock()
    started = asyncio.Event()

    async def renewer() -> None:
        assert await lock.take_async(Holder.current_task(), 0) is Lock.TAKEN
        started.set()
        await asyncio.sleep(3600)

    async def main() -> None:
        asyncio.get_running_loop().create_task(renewer())
        await started.wait()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    outcome: list[tuple[Lock, float]] = []

    def waiter() -> None:
        start = time.monotonic()
        outcome.append((lock.take(Holder(), 3.0), time.monotonic() - start))

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)
    closed_at = time.monotonic()
    loop.close()
    thread.join(3)
    ((taken, _),) = outcome
    assert taken is Lock.TAKEN
    assert time.monotonic() - closed_at < 0.6


# -- the renewal lock, for async tasks ---------------------------------------------------


def test_tasks_of_one_loop_wait_for_a_renewal_there_and_go_on_together() -> None:
    lock = RenewalLock()

    async def main() -> list[Lock]:
        renewer = Holder.current_task()
        assert await lock.take_async(renewer, 0) is Lock.TAKEN
        assert await lock.take_async(Holder(), 0.0) is Lock.BUSY

        async def waiter() -> Lock:
            return await lock.take_async(Holder.current_task(), 3.0)

        tasks = [asyncio.ensure_future(waiter()) for _ in range(20)]
        await asyncio.sleep(0.1)
        assert not any(task.done() for task in tasks)
        lock.release(renewer)
        return await asyncio.wait_for(asyncio.gather(*tasks), 2.0)

    assert asyncio.run(main()) == [Lock.ENDED] * 20


def test_a_task_waits_without_blocking_its_loop_for_a_renewal_in_a_thread() -> None:
    lock = RenewalLock()
    renewer = Holder()
    assert lock.take(renewer, 0) is Lock.TAKEN
    ticks = 0

    async def main() -> tuple[list[Lock], float]:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        async def waiter() -> Lock:
            return await lock.take_async(Holder.current_task(), 3.0)

        tick = asyncio.ensure_future(ticker())
        tasks = [asyncio.ensure_future(waiter()) for _ in range(5)]
        await asyncio.sleep(0.2)
        released = time.monotonic()
        threading.Thread(target=lock.release, args=(renewer,)).start()
        outcome = await asyncio.wait_for(asyncio.gather(*tasks), 3.0)
        tick.cancel()
        return outcome, time.monotonic() - released

    outcome, after = asyncio.run(main())
    assert outcome == [Lock.ENDED] * 5
    assert ticks > 5, "the loop kept running"
    assert after < 0.5, "the watcher looks at least every 20 ms"


def test_a_task_waits_no_longer_than_its_limit() -> None:
    lock = RenewalLock()
    assert lock.take(Holder(), 0) is Lock.TAKEN

    async def main() -> tuple[Lock, float]:
        start = time.monotonic()
        taken = await lock.take_async(Holder.current_task(), 0.3)
        return taken, time.monotonic() - start

    taken, waited = asyncio.run(main())
    assert taken is Lock.BUSY
    assert 0.25 < waited < 3.0


def test_trio_tasks_wait_for_a_renewal_on_their_run() -> None:
    lock = RenewalLock()

    async def main() -> list[Lock]:
        renewer = Holder.current_task()
        assert await lock.take_async(renewer, 0) is Lock.TAKEN
        results: list[Lock] = []

        async def waiter() -> None:
            results.append(await lock.take_async(Holder.current_task(), 3.0))

        with trio.fail_after(3):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(waiter)
                await trio.sleep(0.05)
                assert results == []
                lock.release(renewer)
        return results

    assert trio.run(main) == [Lock.ENDED] * 3


def test_followers_look_for_themselves_when_their_watcher_is_cancelled() -> None:
    """The first task that waits on a loop watches the renewal of another
    thread; if it is cancelled, the others still see the end."""
    lock = RenewalLock()
    renewer = Holder()
    assert lock.take(renewer, 0) is Lock.TAKEN

    async def main() -> tuple[Lock, float]:
        async def waiter() -> Lock:
            return await lock.take_async(Holder.current_task(), 3.0)

        watcher = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.02)
        follower = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.02)
        watcher.cancel()
        await asyncio.sleep(0.01)
        lock.release(renewer)
        released = time.monotonic()
        taken = await asyncio.wait_for(follower, 3.0)
        return taken, time.monotonic() - released

    taken, after = asyncio.run(main())
    assert taken is Lock.ENDED
    assert after < 1.6, "a follower looks at least once a second"


# -- the cache's lock -------------------------------------------------------------------


def test_the_cache_lock_is_tried_once_and_recorded_for_its_holder() -> None:
    lock = RenewalLock()
    cache = Cache()
    holder = Holder()
    assert lock.try_cache(holder, cache, "k1") is True
    assert cache.keys == ["k1"] and cache.locks[0].calls == ["acquire(0)"]
    assert holder.cache_lock is cache.locks[0]
    lock.release_cache(holder)
    assert holder.cache_lock is None and not cache.locks[0].held
    assert lock.try_cache(holder, cache, "k1") is True
    assert len(cache.locks) == 1, "one lock object per key, made once"
    lock.release_cache(holder)
    assert lock.try_cache(holder, cache, "k2") is True
    assert cache.keys == ["k1", "k2"]
    lock.release_cache(holder)
    lock.release_cache(holder)  # nothing held: nothing done
    assert cache.locks[1].calls == ["acquire(0)", "release"]


def test_a_busy_cache_lock_is_not_recorded() -> None:
    lock = RenewalLock()
    holder = Holder()
    assert lock.try_cache(holder, Cache(free=False), "k") is False
    assert holder.cache_lock is None


def test_a_failing_cache_lock_is_made_again_after_the_failure() -> None:
    lock = RenewalLock()
    holder = Holder()
    failing = Cache(fail="acquire")
    with pytest.raises(OSError, match="unreachable"):
        lock.try_cache(holder, failing, "k")
    failing.lock_options = {}
    assert lock.try_cache(holder, failing, "k") is True
    assert len(failing.locks) == 2, "the failed lock object is not reused"

    releasing = Cache(fail="release")
    other = Holder()
    assert lock.try_cache(other, releasing, "r") is True
    with pytest.raises(OSError, match="lease passed"):
        lock.release_cache(other)
    assert other.cache_lock is None
    releasing.lock_options = {}
    assert lock.try_cache(other, releasing, "r") is True
    assert len(releasing.locks) == 2


def test_a_cache_lock_got_after_a_take_over_is_let_go_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lock = RenewalLock()
    late = Holder()
    late.ended = True  # taken over while it asked for the cache lock
    cache = Cache()
    assert lock.try_cache(late, cache, "k") is True
    assert late.cache_lock is None and not cache.locks[0].held
    failing = Cache(fail="release")
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert lock.try_cache(late, failing, "k2") is True
    assert caplog.messages == ["token cache unlock failed: OSError"]


def test_give_back_releases_the_cache_lock_and_the_renewal_lock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lock = RenewalLock()
    holder = Holder()
    assert lock.take(holder, 0) is Lock.TAKEN
    cache = Cache(fail="release")
    assert lock.try_cache(holder, cache, "k") is True
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        lock.give_back(holder)  # a failing release is only a warning here
    assert caplog.messages == ["token cache unlock failed: OSError"]
    assert holder.cache_lock is None and holder.ended
    assert in_thread(lock.take, Holder(), 0.0) is Lock.TAKEN


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_give_back_async_releases_the_cache_lock_even_when_cancelled(backend: str) -> None:
    lock = RenewalLock()
    cache = Cache()

    async def main() -> Holder:
        holder = Holder.current_task()
        assert await lock.take_async(holder, 0) is Lock.TAKEN
        assert lock.try_cache(holder, cache, "k") is True
        with anyio.CancelScope() as scope:
            scope.cancel()
            await lock.give_back_async(holder)
        return holder

    holder = anyio.run(main, backend=backend)
    assert holder.ended and holder.cache_lock is None
    assert not cache.locks[0].held
    assert lock.take(Holder(), 0) is Lock.TAKEN


def test_give_back_async_without_a_cache_lock_releases_in_place() -> None:
    lock = RenewalLock()

    async def main() -> tuple[Holder, Lock]:
        holder = Holder.current_task()
        assert await lock.take_async(holder, 0) is Lock.TAKEN
        waiter = asyncio.ensure_future(lock.take_async(Holder(), 3.0))
        await asyncio.sleep(0.02)
        await lock.give_back_async(holder)
        return holder, await asyncio.wait_for(waiter, 2.0)

    holder, waited = asyncio.run(main())
    assert holder.ended and waited is Lock.ENDED


def test_tasks_of_several_loops_and_backends_wait_for_one_renewal_together() -> None:
    """Each event loop (asyncio in two threads, trio in a third) waits on its
    own wakeup; the renewal of another thread ends them all."""
    lock = RenewalLock()
    renewer = Holder()
    assert lock.take(renewer, 0) is Lock.TAKEN
    outcomes: list[Any] = []

    async def waiters() -> None:
        async def one() -> None:
            outcomes.append(await lock.take_async(Holder.current_task(), 3.0))

        with anyio.fail_after(3):
            async with anyio.create_task_group() as group:
                for _ in range(3):
                    group.start_soon(one)

    threads = [
        threading.Thread(target=anyio.run, args=(waiters,), kwargs={"backend": backend})
        for backend in ("asyncio", "trio", "asyncio")
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    assert outcomes == []
    lock.release(renewer)
    for thread in threads:
        thread.join(3)
    assert outcomes == [Lock.ENDED] * 9


def test_a_renewal_on_one_loop_wakes_its_waiters_and_those_of_another_loop() -> None:
    lock = RenewalLock()
    other_loop: list[Lock] = []
    started = threading.Event()

    def elsewhere() -> None:
        async def wait() -> None:
            started.set()
            other_loop.append(await lock.take_async(Holder.current_task(), 3.0))

        asyncio.run(wait())

    async def main() -> Lock:
        renewer = Holder.current_task()
        assert await lock.take_async(renewer, 0) is Lock.TAKEN
        thread = threading.Thread(target=elsewhere)
        thread.start()
        waiter = asyncio.ensure_future(lock.take_async(Holder.current_task(), 3.0))
        await asyncio.to_thread(started.wait, 3)
        await asyncio.sleep(0.05)
        lock.release(renewer)
        here = await asyncio.wait_for(waiter, 2.0)
        await asyncio.to_thread(thread.join, 3)
        return here

    assert asyncio.run(main()) is Lock.ENDED
    assert other_loop == [Lock.ENDED]


def test_a_waiting_task_takes_over_from_a_renewer_whose_loop_closed() -> None:
    lock = RenewalLock()
    started = asyncio.Event()

    async def renewer() -> None:
        assert await lock.take_async(Holder.current_task(), 0) is Lock.TAKEN
        started.set()
        await asyncio.sleep(3600)

    async def begin() -> None:
        asyncio.get_running_loop().create_task(renewer())
        await started.wait()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(begin())

    async def heir() -> tuple[Lock, Lock]:
        timer = threading.Timer(0.2, loop.close)
        timer.start()
        taken = await lock.take_async(Holder.current_task(), 3.0)
        probe = await asyncio.to_thread(lambda: lock.take(Holder(), 0.0))
        return taken, probe

    # In another thread: the renewer's loop, stopped on this one, may still be
    # run again until it is closed.
    taken, probe = in_thread(asyncio.run, heir())
    assert taken is Lock.TAKEN
    assert probe is Lock.BUSY, "the heir holds the lock now"
