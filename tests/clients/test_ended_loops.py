"""Nothing outlives the caller that took it: a task fetching the token
whose event loop is closed or stopped, a cancelled task, a task or thread that
ended with an auth flow left open. The others take the renewal over at once
(not after the whole fetch budget, 660 s with the defaults), and the cache lock
the gone caller held is released for it, exactly once. Real event loops, real
threads, a real emulator; every wait is bounded."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import Any

import aiohttp
import httpx
import pytest
import requests
import trio
from forking import InFlight, wait_for_pending_token_request

from semansys_auth import FileTokenCache, MemoryTokenCache, SemansysAuth
from semansys_auth.testing import SemansysEmulator

BOUND = 3.0  # far below the fetch budget: a take-over, not a time-out
TAKEN_OVER = "renewing here instead"

_KEPT: list[Any] = []  # abandoned loops and tasks stay referenced: no collection mid-test


@pytest.fixture(autouse=True)
def _close_kept_loops() -> Any:
    yield
    for kept in _KEPT:
        if isinstance(kept, asyncio.AbstractEventLoop) and not kept.is_running():
            kept.close()  # a loop left stopped; its task stays referenced, never resumed


async def fetch(client: str, auth: SemansysAuth, url: str) -> int:
    if client == "aiohttp":
        async with (
            aiohttp.ClientSession(middlewares=(auth,)) as session,
            session.get(url) as response,
        ):
            return response.status
    async with httpx.AsyncClient(auth=auth, timeout=30) as http:
        return (await http.get(url)).status_code


def abandon_mid_fetch(
    emulator: SemansysEmulator, auth: SemansysAuth, client: str, how: str
) -> tuple[asyncio.AbstractEventLoop, asyncio.Task[int]]:
    """In another thread, a task of a long-lived event loop starts the first
    token fetch; once its token request is at the (paused) emulator, the loop is
    closed (``close``) or just left stopped (``stop``), and the thread ends."""
    made: list[Any] = []

    def runner() -> None:
        loop = asyncio.new_event_loop()
        task = loop.create_task(fetch(client, auth, emulator.api_url + "/abandoned"))
        made.extend((loop, task))

        async def pending() -> None:
            while emulator.pending_token_requests < 1:
                await asyncio.sleep(0.005)

        loop.run_until_complete(asyncio.wait_for(pending(), 10))
        if how == "close":
            loop.close()

    emulator.pause_token_responses()
    thread = threading.Thread(target=runner)
    thread.start()
    thread.join(15)
    assert not thread.is_alive()
    emulator.resume_token_responses()
    _KEPT.extend(made)
    loop, task = made
    return loop, task


def timed(work: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = work()
    return result, time.monotonic() - started


def sync_request(auth: SemansysAuth, url: str) -> int:
    return requests.get(url, auth=auth, timeout=10).status_code


def async_request_on_a_new_loop(auth: SemansysAuth, url: str) -> int:
    return asyncio.run(asyncio.wait_for(fetch("httpx", auth, url), 10))


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("client", "how"),
    [("httpx", "close"), ("httpx", "stop"), ("aiohttp", "close"), ("aiohttp", "stop")],
)
def test_a_loop_that_ends_mid_fetch_does_not_keep_the_renewal(
    semansys_emulator: SemansysEmulator, client: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = semansys_emulator.auth()
    abandon_mid_fetch(semansys_emulator, auth, client, how)
    url = semansys_emulator.api_url + "/after"
    with caplog.at_level("WARNING", logger="semansys_auth"):
        status, took = timed(lambda: sync_request(auth, url))
    assert status == 200 and took < BOUND
    assert [m for m in caplog.messages if TAKEN_OVER in m] != []
    semansys_emulator.expire_access_tokens()  # the next caller must renew too
    status, took = timed(lambda: async_request_on_a_new_loop(auth, url))
    assert status == 200 and took < BOUND
    assert len(semansys_emulator.token_requests()) == 3  # abandoned, sync, async


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["close", "stop"])
def test_a_blocking_call_on_the_thread_whose_loop_ended_is_not_refused(
    semansys_emulator: SemansysEmulator, how: str
) -> None:
    """The loop ran on this very thread, and ended mid-fetch: no loop runs here
    now, so a blocking call is no deadlock."""
    auth = semansys_emulator.auth()
    semansys_emulator.pause_token_responses()
    loop = asyncio.new_event_loop()
    _KEPT.append(loop)
    task = loop.create_task(fetch("httpx", auth, semansys_emulator.api_url + "/abandoned"))
    _KEPT.append(task)

    async def pending() -> None:
        while semansys_emulator.pending_token_requests < 1:
            await asyncio.sleep(0.005)

    loop.run_until_complete(asyncio.wait_for(pending(), 10))
    if how == "close":
        loop.close()
    semansys_emulator.resume_token_responses()
    status, took = timed(lambda: sync_request(auth, semansys_emulator.api_url + "/blocking"))
    assert status == 200 and took < BOUND


@pytest.mark.timeout(60)
@pytest.mark.parametrize("client", ["httpx", "aiohttp"])
def test_asyncio_run_that_returns_mid_fetch_cancels_and_releases(
    semansys_emulator: SemansysEmulator, client: str
) -> None:
    """``asyncio.run`` cancels the tasks still running when its main returns."""
    auth = semansys_emulator.auth()
    semansys_emulator.pause_token_responses()

    async def main() -> None:
        task = asyncio.create_task(fetch(client, auth, semansys_emulator.api_url + "/left"))
        _KEPT.append(task)
        while semansys_emulator.pending_token_requests < 1:
            await asyncio.sleep(0.005)

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    thread.join(15)
    assert not thread.is_alive()
    semansys_emulator.resume_token_responses()
    url = semansys_emulator.api_url + "/after"
    status, took = timed(lambda: sync_request(auth, url))
    assert status == 200 and took < BOUND
    status, took = timed(lambda: async_request_on_a_new_loop(auth, url))
    assert status == 200 and took < BOUND


@pytest.mark.timeout(60)
def test_a_trio_fetch_cancelled_mid_way_releases(semansys_emulator: SemansysEmulator) -> None:
    auth = semansys_emulator.auth()
    semansys_emulator.pause_token_responses()

    async def main() -> bool:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client, trio.open_nursery() as n:
            n.start_soon(client.get, semansys_emulator.api_url + "/cancelled")
            with trio.fail_after(10):
                while semansys_emulator.pending_token_requests < 1:
                    await trio.sleep(0.005)
            n.cancel_scope.cancel()
        return True

    assert trio.run(main)
    semansys_emulator.resume_token_responses()
    url = semansys_emulator.api_url + "/after"
    status, took = timed(lambda: sync_request(auth, url))
    assert status == 200 and took < BOUND


# -- a task or thread that ended with an auth flow left open -------------------------------------


@pytest.mark.timeout(60)
def test_a_thread_that_ended_with_a_sync_flow_open(semansys_emulator: SemansysEmulator) -> None:
    """httpx drives ``sync_auth_flow``; code that drives it by hand and whose
    thread ends between the token request and its answer leaves the lock held.
    The next caller takes it over; when the old flow is closed at last, it
    releases nothing of the new holder's: a third caller still waits for it."""

    emulator = semansys_emulator
    auth = emulator.auth()
    flows: list[Any] = []

    def start_a_flow() -> None:
        flow = auth.sync_auth_flow(httpx.Request("GET", emulator.api_url + "/x"))
        token_request = next(flow)
        assert token_request.url == emulator.token_url
        flows.append(flow)

    thread = threading.Thread(target=start_a_flow)
    thread.start()
    thread.join(10)
    assert flows, "the flow did not reach its token request"
    emulator.pause_token_responses()
    started = time.monotonic()
    taker = InFlight("requests", auth, emulator.api_url + "/taker")
    wait_for_pending_token_request(emulator)
    assert time.monotonic() - started < BOUND
    flows[0].close()  # the old holder, back
    third = InFlight("httpx", auth, emulator.api_url + "/third")
    time.sleep(0.3)
    assert emulator.pending_token_requests == 1, "the third caller did not wait"
    emulator.resume_token_responses()
    assert taker.join() == 200 and third.join() == 200
    assert len(emulator.token_requests()) == 1


async def start_an_async_flow(auth: SemansysAuth, url: str, flows: list[Any], keep: bool) -> None:
    flow = auth.async_auth_flow(httpx.Request("GET", url))
    await flow.__anext__()  # the token request: the lock and the loop's turn are held
    flows.append(flow)
    if keep and trio_running():  # the task object stays referenced: its coroutine too
        flows.append(trio.lowlevel.current_task())


def trio_running() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


KEEP = pytest.mark.parametrize("keep", [False, True], ids=["task-collected", "task-kept"])


@pytest.mark.timeout(60)
@KEEP
def test_an_asyncio_task_that_ended_with_a_flow_open(
    semansys_emulator: SemansysEmulator, keep: bool
) -> None:
    """Another thread takes the renewal over, and so does a later task of the
    same event loop (queued for the loop's turn, which the ended task kept)."""
    auth = semansys_emulator.auth()
    url = semansys_emulator.api_url + "/x"

    async def main() -> tuple[float, float]:
        flows: list[Any] = []
        first = asyncio.create_task(start_an_async_flow(auth, url, flows, keep))
        await first
        if not keep:
            del first
        status, took_sync = await asyncio.to_thread(timed, lambda: sync_request(auth, url))
        assert status == 200
        semansys_emulator.expire_access_tokens()
        started = time.monotonic()
        assert await asyncio.wait_for(fetch("httpx", auth, url), 10) == 200
        took_async = time.monotonic() - started
        await flows[0].aclose()  # the old holder, back: releases nothing of the others'
        assert auth._shell.lock._holder is None, "nothing of the others' released, nothing kept"
        assert await asyncio.wait_for(fetch("httpx", auth, url), 10) == 200
        return took_sync, took_async

    took_sync, took_async = asyncio.run(asyncio.wait_for(main(), 30))
    assert took_sync < BOUND and took_async < BOUND


@pytest.mark.timeout(60)
@KEEP
def test_a_trio_task_that_ended_with_a_flow_open(
    semansys_emulator: SemansysEmulator, keep: bool
) -> None:
    auth = semansys_emulator.auth()
    url = semansys_emulator.api_url + "/x"

    async def main() -> tuple[float, float]:
        flows: list[Any] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(start_an_async_flow, auth, url, flows, keep)
        status, took_sync = await trio.to_thread.run_sync(timed, lambda: sync_request(auth, url))
        assert status == 200
        semansys_emulator.expire_access_tokens()
        started = time.monotonic()
        with trio.fail_after(10):
            assert await fetch("httpx", auth, url) == 200
        took_async = time.monotonic() - started
        await flows[0].aclose()
        return took_sync, took_async

    took_sync, took_async = trio.run(main)
    assert took_sync < BOUND and took_async < BOUND


# -- the cache lock that a gone holder took ------------------------------------------------------


class StrictLock:
    """A cache lock like one between processes: not re-entrant; a second
    release is an error."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self.held = False
        self.acquired = 0
        self.released = 0

    def acquire(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            with self._mutex:
                if not self.held:
                    self.held = True
                    self.acquired += 1
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def release(self) -> None:
        with self._mutex:
            if not self.held:
                raise RuntimeError("released a lock that is not held")
            self.held = False
            self.released += 1


class StrictCache(MemoryTokenCache):
    def __init__(self) -> None:
        super().__init__()
        self.the_lock = StrictLock()

    def lock(self, key: str) -> StrictLock:
        return self.the_lock


@pytest.mark.timeout(60)
def test_the_cache_lock_of_a_gone_holder_is_released_once_even_when_it_comes_back(
    semansys_emulator: SemansysEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    cache = StrictCache()
    auth = semansys_emulator.auth(token_cache=cache)
    with caplog.at_level("WARNING", logger="semansys_auth"):
        loop, task = abandon_mid_fetch(semansys_emulator, auth, "httpx", "stop")
        assert cache.the_lock.held
        status, took = timed(lambda: sync_request(auth, semansys_emulator.api_url + "/after"))
        assert status == 200 and took < BOUND  # not cache_wait: the lock was released for it
        # The stopped loop runs again: its task finishes, and releases nothing twice.
        result: list[int] = []
        thread = threading.Thread(
            target=lambda: result.append(loop.run_until_complete(asyncio.wait_for(task, 20)))
        )
        thread.start()
        thread.join(25)
        loop.close()
    assert result == [200]
    assert not cache.the_lock.held
    # Taken over with the renewal: held on by the new holder, released once.
    assert (cache.the_lock.acquired, cache.the_lock.released) == (1, 1)
    assert not [m for m in caplog.messages if "unlock" in m or "not obtained" in m]


@pytest.mark.timeout(60)
def test_a_file_cache_lock_left_by_a_closed_loop_is_free_for_other_processes(
    semansys_emulator: SemansysEmulator, tmp_path: Any
) -> None:
    auth = semansys_emulator.auth(token_cache=FileTokenCache(tmp_path))
    abandon_mid_fetch(semansys_emulator, auth, "httpx", "close")
    status, took = timed(lambda: sync_request(auth, semansys_emulator.api_url + "/after"))
    assert status == 200 and took < BOUND
    key = auth._core.cache_key()
    probe = (
        "import sys; from semansys_auth import FileTokenCache; "
        "lock = FileTokenCache(sys.argv[1]).lock(sys.argv[2]); "
        "print(lock.acquire(0))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path), key],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == "True", "another process finds the cache lock still held"


# -- the deadlock guard fires only when the holder runs on this very thread ----------------------


@pytest.mark.timeout(60)
def test_a_blocking_call_inside_a_trio_run_whose_task_is_fetching_is_refused(
    semansys_emulator: SemansysEmulator,
) -> None:
    auth = semansys_emulator.auth()
    semansys_emulator.pause_token_responses()

    async def main() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            statuses: list[int] = []

            async def get() -> None:
                statuses.append((await client.get(semansys_emulator.api_url + "/a")).status_code)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(get)
                with trio.fail_after(10):
                    while semansys_emulator.pending_token_requests < 1:
                        await trio.sleep(0.005)
                started = time.monotonic()
                with pytest.raises(RuntimeError, match="would deadlock"):
                    requests.get(semansys_emulator.api_url + "/b", auth=auth, timeout=5)  # noqa: ASYNC210 (the misuse under test)
                assert time.monotonic() - started < BOUND
                semansys_emulator.resume_token_responses()
            return statuses[0]

    assert trio.run(main) == 200


class ReenteringCache(MemoryTokenCache):
    """A cache whose load makes a request with the auth object that is renewing."""

    auth: SemansysAuth
    url: str

    def load(self, key: str) -> Any:
        requests.get(self.url, auth=self.auth, timeout=5)
        return None


@pytest.mark.timeout(60)
def test_a_request_from_inside_a_renewal_on_the_same_thread_is_refused_at_once(
    semansys_emulator: SemansysEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The renewing thread itself calls again (from its token cache): waiting
    would wait for itself. The cache call fails at once, which is a warning,
    and the renewal goes on."""
    cache = ReenteringCache()
    auth = semansys_emulator.auth(token_cache=cache)
    cache.auth, cache.url = auth, semansys_emulator.api_url + "/inner"
    with caplog.at_level("WARNING", logger="semansys_auth"):
        status, took = timed(lambda: sync_request(auth, semansys_emulator.api_url + "/outer"))
    assert status == 200 and took < BOUND
    assert any("this very thread was renewing" in m for m in caplog.messages), caplog.messages


@pytest.mark.timeout(60)
def test_a_loop_idle_between_runs_is_waited_for_not_taken_over(
    semansys_emulator: SemansysEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop run in bursts (``run_until_complete`` again and again) on a live
    thread is idle, not gone: another thread waits for its renewal instead of
    sending a second token request."""
    auth = semansys_emulator.auth()
    loop = asyncio.new_event_loop()
    try:
        semansys_emulator.pause_token_responses()
        task = loop.create_task(fetch("httpx", auth, semansys_emulator.api_url + "/burst"))

        async def pending() -> None:
            while semansys_emulator.pending_token_requests < 1:
                await asyncio.sleep(0.005)

        loop.run_until_complete(asyncio.wait_for(pending(), 10))  # the loop is idle now
        statuses: list[int] = []
        other = threading.Thread(
            target=lambda: statuses.append(sync_request(auth, semansys_emulator.api_url + "/other"))
        )
        with caplog.at_level("WARNING", logger="semansys_auth"):
            other.start()
            time.sleep(0.5)  # long enough for a take-over, had the loop counted as gone
            assert semansys_emulator.pending_token_requests == 1
            semansys_emulator.resume_token_responses()
            assert loop.run_until_complete(asyncio.wait_for(task, 10)) == 200
            other.join(10)
        assert statuses == [200]
        assert len(semansys_emulator.token_requests()) == 1
        assert TAKEN_OVER not in caplog.text
    finally:
        semansys_emulator.resume_token_responses()
        loop.close()


def test_a_cache_lock_taken_for_a_holder_already_taken_over_is_released_at_once() -> None:
    """A worker thread that acquires the cache lock for a task whose loop has
    closed meanwhile records it for that task; if another caller took the
    renewal over in between, nobody would release it later: it is released."""
    from semansys_auth._effects import Lock
    from semansys_auth._locks import Holder

    lock = SemansysAuth(
        client_id="c",
        client_secret="s",
        username="u@example.com",
        password="p",
        token_url="http://127.0.0.1:9/t",
    )._shell.lock
    released: list[str] = []

    class CacheLock:
        def acquire(self, timeout: float) -> bool:
            return True

        def release(self) -> None:
            released.append("released")

    class Cache:
        def lock(self, key: str) -> CacheLock:
            return CacheLock()

    first = Holder()
    assert lock.take(first, 0.0) is Lock.TAKEN
    assert lock.try_cache(first, Cache(), "k") is True
    assert first.cache_lock is not None and released == [], "kept while first holds"
    lock.give_back(first)
    assert released == ["released"]
    released.clear()
    holders: list[Holder] = []
    ended = threading.Thread(target=lambda: holders.append(Holder()))
    ended.start()
    ended.join(10)
    second = holders[0]  # its thread has ended: gone
    assert lock.take(second, 0.0) is Lock.TAKEN
    assert lock.take(Holder(), 0.0) is Lock.TAKEN, "taken over"
    assert lock.try_cache(second, Cache(), "k") is True  # its worker call comes back late
    assert released == ["released"] and second.cache_lock is None
