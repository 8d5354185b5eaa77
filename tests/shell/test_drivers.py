"""The two drivers (``_drive``): the core's effects carried out in process,
with a real renewal lock, real threads and real asyncio and trio loops, and a
token endpoint answered in memory. Each wait is bounded."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import anyio
import pytest
import trio

from core_parts import Clock, make_core, ok
from fake_caches import RecordingCache
from semansys_auth import TokenEndpointUnavailableError
from semansys_auth._drive import (
    Shell,
    cached_blocking,
    carry_out,
    carry_out_async,
    run_async,
    run_blocking,
)
from semansys_auth._effects import Lock
from semansys_auth._locks import Holder, RenewalLock
from semansys_auth._token import Token
from semansys_auth._wire import EndpointRequest, EndpointResponse
from token_parts import answer


class Endpoint:
    """A token endpoint in memory: answers each request with the next of
    ``answers`` (an exception is raised, as a transport failure), then with
    fresh tokens at-1, at-2, ...; records the requests and their threads."""

    def __init__(self, *answers: EndpointResponse | Exception, delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.delay = delay
        self.requests: list[EndpointRequest] = []
        self.threads: list[threading.Thread] = []
        self.issued = 0

    def _next(self, request: EndpointRequest) -> EndpointResponse:
        assert isinstance(request, EndpointRequest)
        self.requests.append(request)
        self.threads.append(threading.current_thread())
        if self.answers:
            reply = self.answers.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        self.issued += 1
        return ok(f"at-{self.issued}", refresh=f"rt-{self.issued}")

    def __call__(self, request: EndpointRequest) -> EndpointResponse:
        time.sleep(self.delay)
        return self._next(request)

    async def send_async(self, request: EndpointRequest) -> EndpointResponse:
        await anyio.sleep(self.delay)
        return self._next(request)

    @property
    def grants(self) -> list[str]:
        return [request.grant_type for request in self.requests]


def make_shell(clock: Clock | None = None, **options: Any) -> Shell:
    options.setdefault("cache_wait", 0.5)
    return Shell(make_core(clock or Clock(), **options), RenewalLock())


def lock_is_free(shell: Shell) -> bool:
    """Whether another thread finds the renewal lock free (and leaves it so)."""
    result: list[Lock] = []

    def probe() -> None:
        holder = Holder()
        result.append(shell.lock.take(holder, 0.0))
        shell.lock.release(holder)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(3)
    return result == [Lock.TAKEN]


class LockableCache(RecordingCache):
    """A token cache with a lock between processes, that records its use."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False

    def lock(self, key: str) -> Any:
        cache = self

        class CacheLock:
            def acquire(self, timeout: float) -> bool:
                cache.calls.append("acquire")
                if cache.held:
                    return False
                cache.held = True
                return True

            def release(self) -> None:
                cache.calls.append("release")
                cache.held = False

        return CacheLock()


# -- the blocking driver -----------------------------------------------------------------


def test_a_first_token_is_requested_once_and_the_lock_left_free() -> None:
    shell = make_shell()
    endpoint = Endpoint()
    token = run_blocking(shell.core.renewal(), shell, endpoint)
    assert token.access_token == "at-1"
    assert endpoint.grants == ["password"]
    assert shell.core.usable() is token
    assert lock_is_free(shell)


def test_every_blocking_effect_is_carried_out_in_the_callers_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keys, the cache's lock, load, save, unlock and on_token, in order, and
    none of them fails."""
    cache = LockableCache()
    seen: list[tuple[str, threading.Thread]] = []
    shell = make_shell(
        cache=cache,
        on_token=lambda info: seen.append((info.grant_type, threading.current_thread())),
    )
    token = run_blocking(shell.core.renewal(), shell, Endpoint())
    assert cache.calls == ["acquire", "load", "save", "release"]
    assert not cache.held
    assert cache.token(shell.core) == token
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert seen == [("password", threading.current_thread())]
    # A second object with the same cache takes the token from it, with no request.
    other = make_shell(cache=cache)
    endpoint = Endpoint()
    assert run_blocking(other.core.renewal(), other, endpoint) == token
    assert endpoint.requests == []


def test_a_transport_failure_reaches_the_caller_and_frees_the_lock() -> None:
    shell = make_shell()
    with pytest.raises(ConnectionError, match="refused"):
        run_blocking(shell.core.renewal(), shell, Endpoint(ConnectionError("refused")))
    assert lock_is_free(shell)
    assert run_blocking(shell.core.renewal(), shell, Endpoint()).access_token == "at-1"


def test_a_retry_waits_its_backoff_in_the_callers_thread() -> None:
    shell = make_shell(backoff=0.2, max_backoff=0.2)
    endpoint = Endpoint(answer(503, {}))
    start = time.monotonic()
    token = run_blocking(shell.core.renewal(), shell, endpoint)
    assert 0.18 < time.monotonic() - start < 5.0
    assert token.access_token == "at-1" and endpoint.grants == ["password", "password"]


def test_threads_that_need_a_token_share_one_renewal() -> None:
    shell = make_shell()
    endpoint = Endpoint(delay=0.2)
    tokens: list[Token] = []

    def caller() -> None:
        tokens.append(run_blocking(shell.core.renewal(), shell, endpoint))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3)
    assert len(endpoint.requests) == 1
    assert len(tokens) == 8 and {token.access_token for token in tokens} == {"at-1"}


def test_a_driver_closed_early_gives_everything_back() -> None:
    """A flow that ends early (the client's generator closed mid-request)
    releases the renewal lock and the cache's lock."""
    cache = LockableCache()
    shell = make_shell(cache=cache)
    flow = carry_out(shell.core.renewal(), shell)
    request = next(flow)
    assert isinstance(request, EndpointRequest)
    assert cache.held and not lock_is_free(shell)
    flow.close()
    assert not cache.held and lock_is_free(shell)


def test_an_advisory_renewal_in_the_background_does_not_hold_up_the_caller() -> None:
    clock = Clock()
    shell = make_shell(clock)
    first = run_blocking(shell.core.renewal(), shell, Endpoint())
    clock.now += 3550  # renewal due, the token still valid
    gate = threading.Event()
    endpoint = Endpoint()

    def slow(request: EndpointRequest) -> EndpointResponse:
        assert gate.wait(2)
        return endpoint(request)

    start = time.monotonic()
    assert run_blocking(shell.core.renewal(), shell, slow, background=True) is first
    assert time.monotonic() - start < 1.0
    # A second advisory caller meanwhile: no second renewal starts.
    assert run_blocking(shell.core.renewal(), shell, slow, background=True) is first
    gate.set()
    deadline = time.monotonic() + 5
    while shell.core.usable() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    renewed = shell.core.usable()
    assert renewed is not None and renewed.access_token == "at-1"
    assert endpoint.grants == ["refresh_token"]
    assert endpoint.threads[0].name == "semansys-auth-renewal"
    assert endpoint.threads[0] is not threading.current_thread()
    assert endpoint.threads[0].daemon, "a hung renewal does not keep the process alive"


def test_an_advisory_renewal_without_a_background_runs_in_place() -> None:
    clock = Clock()
    shell = make_shell(clock)
    run_blocking(shell.core.renewal(), shell, Endpoint())
    clock.now += 3550
    endpoint = Endpoint()
    token = run_blocking(shell.core.renewal(), shell, endpoint)
    assert token.access_token == "at-1" and endpoint.grants == ["refresh_token"]
    assert endpoint.threads == [threading.current_thread()]


def test_a_failed_background_renewal_is_a_warning_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    shell = make_shell(clock)
    first = run_blocking(shell.core.renewal(), shell, Endpoint())
    clock.now += 3599  # in the safety margin: no valid token is left
    flow = shell.core.renewal()
    gate = threading.Event()

    def failing(request: EndpointRequest) -> EndpointResponse:
        gate.wait(3)
        raise ConnectionError(f"down, refresh token {request.body.decode()}")

    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert shell.detach(flow, failing) is True
        gate.set()
        thread = shell._background
        assert thread is not None
        thread.join(3)
    (message,) = caplog.messages
    assert message.startswith("background token renewal failed: ConnectionError: down")
    assert "rt-1" not in caplog.text and "pa55word" not in caplog.text
    assert first.refresh_token == "rt-1"


def test_a_second_background_renewal_is_not_started_while_one_runs() -> None:
    shell = make_shell()
    gate = threading.Event()
    sent: list[EndpointRequest] = []

    def waiting(request: EndpointRequest) -> EndpointResponse:
        sent.append(request)
        assert gate.wait(3)
        return ok()

    def flow() -> Any:
        yield EndpointRequest(
            url="https://id.example/t", body=b"", grant_type="password", timeout=5
        )
        return None

    assert shell.detach(flow(), waiting)
    first_thread = shell._background
    second = flow()
    assert shell.detach(second, waiting)
    assert second.gi_frame is None, "closed, not run"
    time.sleep(0.1)
    assert len(sent) == 1 and shell._background is first_thread
    gate.set()
    assert first_thread is not None
    first_thread.join(3)
    # Once it has ended, the next advisory renewal gets a thread of its own.
    assert shell.detach(flow(), waiting)
    assert shell._background is not first_thread
    shell._background.join(3)
    assert len(sent) == 2


def test_a_lock_free_look_at_the_cache() -> None:
    cache = LockableCache()
    shell = make_shell(cache=cache)
    assert cached_blocking(shell) is None
    token = run_blocking(shell.core.renewal(), shell, Endpoint())
    other = make_shell(cache=cache)
    cache.calls.clear()
    assert cached_blocking(other) == token
    assert cache.calls == ["load"], "no lock taken"
    assert cached_blocking(make_shell()) is None, "no cache"


# -- the async driver ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_tasks_share_one_renewal_and_block_nothing(backend: str) -> None:
    seen: list[threading.Thread] = []
    cache = LockableCache()
    shell = make_shell(cache=cache, on_token=lambda info: seen.append(threading.current_thread()))
    endpoint = Endpoint(delay=0.1)

    async def main() -> tuple[list[Token], threading.Thread]:
        tokens: list[Token] = []

        async def caller() -> None:
            tokens.append(await run_async(shell.core.renewal(), shell, endpoint.send_async))

        with anyio.fail_after(3):
            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(caller)
        return tokens, threading.current_thread()

    tokens, loop_thread = anyio.run(main, backend=backend)
    assert len(endpoint.requests) == 1
    assert {token.access_token for token in tokens} == {"at-1"} and len(tokens) == 20
    assert cache.calls == ["acquire", "load", "save", "release"]
    assert len(seen) == 1 and seen[0] is not loop_thread, "on_token ran in a worker thread"
    assert lock_is_free(shell)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_async_retry_sleeps_without_blocking_the_loop(backend: str) -> None:
    shell = make_shell(backoff=0.2, max_backoff=0.2)
    endpoint = Endpoint(answer(503, {}))
    ticks = 0

    async def main() -> tuple[Token, float]:
        nonlocal ticks
        start = time.monotonic()
        async with anyio.create_task_group() as group:

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await anyio.sleep(0.01)

            group.start_soon(ticker)
            token = await run_async(shell.core.renewal(), shell, endpoint.send_async)
            group.cancel_scope.cancel()
        return token, time.monotonic() - start

    token, took = anyio.run(main, backend=backend)
    assert token.access_token == "at-1" and endpoint.grants == ["password", "password"]
    assert 0.18 < took < 5.0
    assert ticks > 5


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_async_transport_failure_reaches_the_caller_and_frees_the_lock(backend: str) -> None:
    cache = LockableCache()
    shell = make_shell(cache=cache)

    async def main() -> None:
        with pytest.raises(TimeoutError, match="slow"):
            await run_async(shell.core.renewal(), shell, Endpoint(TimeoutError("slow")).send_async)

    anyio.run(main, backend=backend)
    assert lock_is_free(shell) and not cache.held


def test_an_async_driver_closed_early_gives_everything_back() -> None:
    cache = LockableCache()
    shell = make_shell(cache=cache)

    async def main() -> None:
        steps = carry_out_async(shell.core.renewal(), shell)
        assert isinstance(await anext(steps), EndpointRequest)
        assert cache.held and not lock_is_free(shell)
        await steps.aclose()

    asyncio.run(main())
    assert not cache.held and lock_is_free(shell)


def test_an_async_waiter_raises_the_error_of_the_renewal_it_waited_for() -> None:
    shell = make_shell()
    endpoint = Endpoint(answer(400, {"error": "invalid_grant"}), delay=0.1)

    async def main() -> list[BaseException]:
        outcomes = await asyncio.gather(
            *(run_async(shell.core.renewal(), shell, endpoint.send_async) for _ in range(3)),
            return_exceptions=True,
        )
        return [outcome for outcome in outcomes if isinstance(outcome, BaseException)]

    errors = asyncio.run(main())
    assert len(endpoint.requests) == 1
    assert len(errors) == 3 and all("invalid_grant" in str(error) for error in errors)


def test_an_async_waiter_gives_up_after_the_lock_wait() -> None:
    shell = make_shell()
    shell.core.lock_wait = 0.2
    holder = Holder()
    assert shell.lock.take(holder, 0) is Lock.TAKEN

    async def main() -> None:
        with pytest.raises(TokenEndpointUnavailableError, match="gave up waiting"):
            await run_async(shell.core.renewal(), shell, Endpoint().send_async)

    trio.run(main)
    shell.lock.release(holder)


def test_a_cache_lock_that_cannot_be_released_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class StuckLock(LockableCache):
        def lock(self, key: str) -> Any:
            inner = super().lock(key)

            class Stuck:
                def acquire(self, timeout: float) -> bool:
                    return bool(inner.acquire(timeout))

                def release(self) -> None:
                    raise OSError("lease lost for s3cret-client")

            return Stuck()

    shell = make_shell(cache=StuckLock())
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        token = run_blocking(shell.core.renewal(), shell, Endpoint())
    assert token.access_token == "at-1"
    assert "token cache unlock failed: OSError: lease lost for" in caplog.text
    assert "s3cret-client" not in caplog.text
    assert lock_is_free(shell)
