"""One token request for any number of threads, tasks and event loops;
a loop that never blocks; cancellation; the 401 stampede. Every test is bounded
by pytest-timeout and by anyio/trio deadlines inside."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import anyio
import httpx
import httpx2
import pytest
import requests
import trio

from semansys_auth.testing import SemansysEmulator

MODULES = pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])


def run_threads(count: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(count, timeout=10)

    def start(i: int) -> Any:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count), timeout=60))


def test_threads_with_requests_make_one_token_request(
    semansys_emulator: SemansysEmulator,
) -> None:
    semansys_emulator.token_delay = 1.0  # a slow token endpoint widens the race
    auth = semansys_emulator.auth()

    def work(i: int) -> list[int]:
        with requests.Session() as session:
            session.auth = auth
            url = f"{semansys_emulator.api_url}/t{i}"
            return [session.get(url, timeout=10).status_code for _ in range(5)]

    results = run_threads(16, work)
    assert all(status == 200 for statuses in results for status in statuses)
    assert len(semansys_emulator.token_requests()) == 1


@MODULES
def test_threads_sharing_one_sync_client_make_one_token_request(
    semansys_emulator: SemansysEmulator, module: Any
) -> None:
    semansys_emulator.token_delay = 1.0
    auth = semansys_emulator.auth()
    with module.Client(auth=auth, timeout=10) as client:
        results = run_threads(
            16,
            lambda i: [
                client.get(f"{semansys_emulator.api_url}/t{i}").status_code for _ in range(5)
            ],
        )
    assert all(status == 200 for statuses in results for status in statuses)
    assert len(semansys_emulator.token_requests()) == 1


async def token_request_pending(emulator: SemansysEmulator) -> None:
    """Wait, at most 10 s, until the emulator holds a token request."""
    with anyio.fail_after(10):
        while emulator.pending_token_requests == 0:
            await anyio.sleep(0.005)


async def release_token_when_asked(emulator: SemansysEmulator) -> None:
    """Answer the paused token requests once the first one has arrived."""
    await token_request_pending(emulator)
    emulator.resume_token_responses()


@MODULES
def test_200_asyncio_tasks_make_one_token_request_without_blocking_the_loop(
    semansys_emulator: SemansysEmulator, module: Any
) -> None:
    """The token answer is released by a coroutine on the same loop: if the fetch
    blocked the loop, that coroutine could not run and the answer would never come
    (the emulator then answers 503 after 10 s and the test fails)."""
    auth = semansys_emulator.auth(max_retries=0)
    semansys_emulator.pause_token_responses()

    async def main() -> list[int]:
        limits = module.Limits(max_connections=50)
        async with module.AsyncClient(auth=auth, timeout=30, limits=limits) as client:
            releaser = asyncio.create_task(release_token_when_asked(semansys_emulator))
            replies = await asyncio.gather(
                *(client.get(f"{semansys_emulator.api_url}/t{i}") for i in range(200))
            )
            await releaser
            return [r.status_code for r in replies]

    statuses = asyncio.run(asyncio.wait_for(main(), 60))
    assert statuses == [200] * 200
    assert len(semansys_emulator.token_requests()) == 1


@MODULES
def test_trio_tasks_make_one_token_request(
    semansys_emulator: SemansysEmulator, module: Any
) -> None:
    semansys_emulator.token_delay = 0.3
    auth = semansys_emulator.auth()
    statuses: list[int] = []

    async def main() -> None:
        with trio.fail_after(60):
            async with module.AsyncClient(auth=auth, timeout=30) as client:

                async def one(i: int) -> None:
                    statuses.append(
                        (await client.get(f"{semansys_emulator.api_url}/t{i}")).status_code
                    )

                async with trio.open_nursery() as nursery:
                    for i in range(50):
                        nursery.start_soon(one, i)

    trio.run(main)
    assert statuses == [200] * 50
    assert len(semansys_emulator.token_requests()) == 1


def test_one_object_on_several_event_loops(semansys_emulator: SemansysEmulator) -> None:
    """asyncio.run twice in turn, then a loop per thread at once, then trio."""
    semansys_emulator.token_delay = 0.3
    auth = semansys_emulator.auth()

    async def burst(tag: str) -> list[int]:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            replies = await asyncio.gather(
                *(client.get(f"{semansys_emulator.api_url}/{tag}{i}") for i in range(20))
            )
        return [r.status_code for r in replies]

    assert asyncio.run(burst("a")) == [200] * 20
    assert asyncio.run(burst("b")) == [200] * 20
    semansys_emulator.expire_access_tokens()  # the threads below race for a renewal
    results = run_threads(4, lambda i: asyncio.run(asyncio.wait_for(burst(f"t{i}-"), 60)))
    assert results == [[200] * 20] * 4

    async def trio_burst() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            return (await client.get(semansys_emulator.api_url + "/trio")).status_code

    assert trio.run(trio_burst) == 200
    assert [r.grant_type for r in semansys_emulator.token_requests()] == [
        "password",
        "refresh_token",
    ]


@MODULES
def test_cancelled_fetcher_does_not_strand_the_others(
    semansys_emulator: SemansysEmulator, module: Any
) -> None:
    auth = semansys_emulator.auth()
    semansys_emulator.pause_token_responses()

    async def main() -> list[int]:
        async with module.AsyncClient(auth=auth, timeout=30) as client:
            fetcher = asyncio.create_task(client.get(semansys_emulator.api_url + "/first"))
            await token_request_pending(semansys_emulator)
            waiters = [
                asyncio.create_task(client.get(f"{semansys_emulator.api_url}/w{i}"))
                for i in range(10)
            ]
            await asyncio.sleep(0.05)  # let the waiters queue on the lock
            fetcher.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fetcher
            # The cancelled fetch's answer is still held; the next task must take
            # over with a token request of its own.
            while semansys_emulator.pending_token_requests < 2:
                await asyncio.sleep(0.005)
            semansys_emulator.resume_token_responses()
            replies = await asyncio.gather(*waiters)
            return [r.status_code for r in replies]

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [200] * 10


def test_cancelled_waiter_leaves_nothing_held(semansys_emulator: SemansysEmulator) -> None:
    auth = semansys_emulator.auth()
    semansys_emulator.pause_token_responses()

    async def main() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            async with anyio.create_task_group() as group:
                group.start_soon(client.get, semansys_emulator.api_url + "/first")
                await token_request_pending(semansys_emulator)
                with anyio.move_on_after(0.2):
                    await client.get(semansys_emulator.api_url + "/gives-up")
                semansys_emulator.resume_token_responses()
            return (await client.get(semansys_emulator.api_url + "/after")).status_code

    assert anyio.run(main) == 200
    assert len(semansys_emulator.token_requests()) == 1


def test_401_stampede_threads_one_refresh(semansys_emulator: SemansysEmulator) -> None:
    auth = semansys_emulator.auth()
    with requests.Session() as warm:
        warm.auth = auth
        assert warm.get(semansys_emulator.api_url + "/warm", timeout=10).status_code == 200
    semansys_emulator.expire_access_tokens()
    semansys_emulator.token_delay = 0.3

    def work(i: int) -> int:
        return requests.put(
            f"{semansys_emulator.api_url}/s{i}", data=b"payload", auth=auth, timeout=10
        ).status_code

    assert run_threads(32, work) == [200] * 32
    assert [r.grant_type for r in semansys_emulator.token_requests()] == [
        "password",
        "refresh_token",
    ]
    statuses = [r.status for r in semansys_emulator.requests if r.kind == "api"]
    assert statuses.count(401) >= 2, "the stampede must actually have happened"


@MODULES
def test_401_stampede_tasks_one_refresh(semansys_emulator: SemansysEmulator, module: Any) -> None:
    auth = semansys_emulator.auth()

    async def main() -> list[int]:
        async with module.AsyncClient(auth=auth, timeout=30) as client:
            assert (await client.get(semansys_emulator.api_url + "/warm")).status_code == 200
            semansys_emulator.expire_access_tokens()
            semansys_emulator.token_delay = 0.3
            replies = await asyncio.gather(
                *(client.put(f"{semansys_emulator.api_url}/s{i}", content=b"p") for i in range(32))
            )
            return [r.status_code for r in replies]

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [200] * 32
    assert [r.grant_type for r in semansys_emulator.token_requests()] == [
        "password",
        "refresh_token",
    ]
    statuses = [r.status for r in semansys_emulator.requests if r.kind == "api"]
    assert statuses.count(401) >= 2, "the stampede must actually have happened"


def test_sync_and_async_users_share_the_token(semansys_emulator: SemansysEmulator) -> None:
    semansys_emulator.token_delay = 0.5
    auth = semansys_emulator.auth()
    sync_results: list[int] = []

    def sync_user() -> None:
        with httpx.Client(auth=auth, timeout=10) as client:
            sync_results.extend(
                client.get(f"{semansys_emulator.api_url}/s{i}").status_code for i in range(5)
            )

    async def async_user() -> list[int]:
        async with httpx.AsyncClient(auth=auth, timeout=10) as client:
            replies = await asyncio.gather(
                *(client.get(f"{semansys_emulator.api_url}/a{i}") for i in range(20))
            )
            return [r.status_code for r in replies]

    thread = threading.Thread(target=sync_user)
    thread.start()
    assert asyncio.run(asyncio.wait_for(async_user(), 30)) == [200] * 20
    thread.join(timeout=30)
    assert sync_results == [200] * 5
    assert len(semansys_emulator.token_requests()) == 1


def test_blocking_call_inside_the_fetching_loop_fails_fast_instead_of_deadlocking(
    semansys_emulator: SemansysEmulator,
) -> None:
    auth = semansys_emulator.auth()
    semansys_emulator.pause_token_responses()

    async def main() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=30) as client:
            fetch = asyncio.create_task(client.get(semansys_emulator.api_url + "/async"))
            await token_request_pending(semansys_emulator)
            # A blocking call on the loop's own thread, while this loop fetches:
            with pytest.raises(RuntimeError, match="deadlock"):
                requests.get(semansys_emulator.api_url + "/blocking", auth=auth, timeout=5)  # noqa: ASYNC210 (the misuse under test)
            semansys_emulator.resume_token_responses()
            return (await fetch).status_code

    assert asyncio.run(asyncio.wait_for(main(), 60)) == 200
    assert len(semansys_emulator.token_requests()) == 1


# -- aiohttp ---------------------------------------------------------------------------------


def aiohttp_session(auth: Any, **options: Any) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        middlewares=(auth,), timeout=aiohttp.ClientTimeout(total=30), **options
    )


def test_200_aiohttp_tasks_make_one_token_request_without_blocking_the_loop(
    semansys_emulator: SemansysEmulator,
) -> None:
    """As for httpx: the answer is released by a coroutine on the same loop."""
    auth = semansys_emulator.auth(max_retries=0)
    semansys_emulator.pause_token_responses()

    async def main() -> list[int]:
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp_session(auth, connector=connector) as session:
            releaser = asyncio.create_task(release_token_when_asked(semansys_emulator))

            async def one(i: int) -> int:
                async with session.get(f"{semansys_emulator.api_url}/t{i}") as response:
                    return response.status

            statuses = await asyncio.gather(*(one(i) for i in range(200)))
            await releaser
            return list(statuses)

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [200] * 200
    assert len(semansys_emulator.token_requests()) == 1


def test_401_stampede_aiohttp_tasks_one_refresh(semansys_emulator: SemansysEmulator) -> None:
    auth = semansys_emulator.auth()

    async def main() -> list[int]:
        async with aiohttp_session(auth) as session:
            async with session.get(semansys_emulator.api_url + "/warm") as response:
                assert response.status == 200
            semansys_emulator.expire_access_tokens()
            semansys_emulator.token_delay = 0.3

            async def one(i: int) -> int:
                async with session.put(f"{semansys_emulator.api_url}/s{i}", data=b"p") as r:
                    return r.status

            return list(await asyncio.gather(*(one(i) for i in range(32))))

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [200] * 32
    assert [r.grant_type for r in semansys_emulator.token_requests()] == [
        "password",
        "refresh_token",
    ]
    statuses = [r.status for r in semansys_emulator.requests if r.kind == "api"]
    assert statuses.count(401) >= 2, "the stampede must actually have happened"


def test_cancelled_aiohttp_fetcher_does_not_strand_the_others(
    semansys_emulator: SemansysEmulator,
) -> None:
    auth = semansys_emulator.auth()
    semansys_emulator.pause_token_responses()

    async def get(session: aiohttp.ClientSession, path: str) -> int:
        async with session.get(semansys_emulator.api_url + path) as response:
            return response.status

    async def main() -> list[int]:
        async with aiohttp_session(auth) as session:
            fetcher = asyncio.create_task(get(session, "/first"))
            await token_request_pending(semansys_emulator)
            waiters = [asyncio.create_task(get(session, f"/w{i}")) for i in range(10)]
            await asyncio.sleep(0.05)
            fetcher.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fetcher
            while semansys_emulator.pending_token_requests < 2:
                await asyncio.sleep(0.005)
            semansys_emulator.resume_token_responses()
            return list(await asyncio.gather(*waiters))

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [200] * 10


# -- blocking calls of async clients run in worker threads -----------------------------------


class SlowCache:
    """300 ms per call, recording on which thread and when each call ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, float, float]] = []
        self.tokens: dict[str, Any] = {}

    def _slow(self, what: str) -> None:
        started = time.monotonic()
        time.sleep(0.3)
        self.calls.append((what, threading.get_ident(), started, time.monotonic()))

    def load(self, key: str) -> Any:
        self._slow("load")
        return self.tokens.get(key)

    def save(self, key: str, token: Any) -> None:
        self._slow("save")
        self.tokens[key] = token

    def lock(self, key: str) -> Any:
        cache = self

        class Lock:
            def acquire(self, timeout: float) -> bool:
                cache._slow("acquire")
                return True

            def release(self) -> None:
                cache._slow("release")

        self._slow("lock")
        return Lock()


ASYNC_KINDS = pytest.mark.parametrize(
    "kind", ["httpx-async", "httpx2-async", "aiohttp", "niquests-async"]
)


@ASYNC_KINDS
def test_cache_calls_its_lock_and_the_callback_never_run_on_the_event_loop(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    cache = SlowCache()
    callbacks: list[int] = []

    def on_token(info: Any) -> None:
        time.sleep(0.3)
        callbacks.append(threading.get_ident())

    auth = semansys_emulator.auth(token_cache=cache, on_token=on_token)
    ticks: list[float] = []

    async def main() -> int:
        loop_thread = threading.get_ident()

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        try:
            status = await async_get(kind, auth, semansys_emulator.api_url + "/a")
        finally:
            ticking.cancel()
        assert [what for what, *_ in cache.calls] == ["lock", "acquire", "load", "save", "release"]
        assert all(thread != loop_thread for _, thread, _, _ in cache.calls)
        assert callbacks and callbacks[0] != loop_thread
        return status

    assert asyncio.run(asyncio.wait_for(main(), 60)) == 200
    # The loop kept ticking while each 300 ms call ran.
    for _, _, started, ended in cache.calls:
        assert any(started < tick < ended for tick in ticks)


async def async_get(kind: str, auth: Any, url: str) -> int:
    if kind == "aiohttp":
        async with aiohttp_session(auth) as session, session.get(url) as response:
            return response.status
    if kind == "niquests-async":
        import niquests

        async with niquests.AsyncSession(timeout=30) as niquests_session:
            return int((await niquests_session.get(url, auth=auth)).status_code or 0)
    module: Any = httpx2 if kind.startswith("httpx2") else httpx
    async with module.AsyncClient(auth=auth, timeout=30) as client:
        return int((await client.get(url)).status_code)
