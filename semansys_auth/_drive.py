"""Carrying out the core's instructions, for adapters that *call* their HTTP
library: blocking callers (requests, the command line) and async callers that
await their I/O (aiohttp). The httpx adapter *yields* its token requests to the
client, so it has its own two loops, built from the same :class:`Steps`.

Every adapter follows the same three-way rule from :meth:`TokenCore.need`:
send the current token; send it and let one caller renew early; or wait for the
lock and renew.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

from ._core import Call, Need, Sleep
from ._fork import reset_after_fork
from ._locks import FetchLock
from ._log import logger
from ._token import Token
from ._wire import EndpointRequest, EndpointResponse

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._core import Flow, TokenCore

if TYPE_CHECKING:
    Send = Callable[[EndpointRequest], EndpointResponse]
    SendAsync = Callable[[EndpointRequest], Awaitable[EndpointResponse]]


class Steps:
    """Iterates over what a generator yields; the adapter answers each item with
    :meth:`reply` (a result sent back) or :meth:`fail` (an exception thrown in,
    for the core to judge). The generator's return value ends up in
    :attr:`value`."""

    __slots__ = ("_error", "_flow", "_result", "value")

    def __init__(self, flow: Generator[Any, Any, Token | None]) -> None:
        self._flow = flow
        self._result: Any = None
        self._error: Exception | None = None
        self.value: Token | None = None

    def __iter__(self) -> Steps:
        return self

    def __next__(self) -> Any:
        result, error = self._result, self._error
        self._result = self._error = None
        try:
            if error is not None:
                return self._flow.throw(error)
            return self._flow.send(result)
        except StopIteration as done:
            self.value = done.value
            raise StopIteration from None

    def reply(self, result: Any) -> None:
        self._result = result

    def fail(self, error: Exception) -> None:
        self._error = error

    def close(self) -> None:
        self._flow.close()

    def token(self) -> Token:
        assert self.value is not None, "the flow ended without a token"
        return self.value


def carry_out(
    flow: Generator[Any, Any, Token | None],
) -> Generator[EndpointRequest, EndpointResponse, Token | None]:
    """Carry out a flow's sleeps and blocking calls in this thread; yield its
    token requests, for the adapter to send (a failure is thrown back in)."""
    steps = Steps(flow)
    try:
        for step in steps:
            try:
                if isinstance(step, EndpointRequest):
                    steps.reply((yield step))
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                else:
                    steps.reply(step.run())
            except Exception as exc:
                steps.fail(exc)
    finally:
        flow.close()
    return steps.value


def run_blocking(flow: Flow, send: Send) -> Token:
    """Carry out a flow in this thread, sending its token requests with ``send``."""
    steps = Steps(carry_out(flow))
    try:
        for request in steps:
            try:
                steps.reply(send(request))
            except Exception as exc:
                steps.fail(exc)
    finally:
        steps.close()
    return steps.token()


def cached_blocking(core: TokenCore) -> Token | None:
    """A usable token from the cache, read in this thread, or None."""
    steps = Steps(carry_out(core.cached()))
    try:
        for _ in steps:
            raise AssertionError("reading the cache sends no token request")
    finally:
        steps.close()
    return steps.value


def obtain_blocking(
    core: TokenCore,
    lock: FetchLock,
    send: Send,
    refused: str | None = None,
    *,
    renewer: BackgroundRenewal | None = None,
) -> Token:
    """A token to send now, for a blocking caller. An early renewal runs in the
    background when a ``renewer`` is given, else in this caller if no other
    caller is already at it."""
    need, current = core.need(refused)
    if need is Need.TOKEN:
        with lock.hold(wait=True):
            return run_blocking(core.renew(refused), send)
    assert current is not None
    if need is Need.RENEWAL:
        if renewer is not None:
            renewer.start()
        else:
            with lock.hold(wait=False) as got:
                if got:
                    return run_blocking(core.renew(refused, required=False), send)
    return current


class BackgroundRenewal:
    """Renews early in a daemon thread, so that no request waits for it."""

    _BUSY_PAUSE = 0.05  # after finding another renewal under way, before trying again

    def __init__(self, core: TokenCore, lock: FetchLock, send: Send) -> None:
        self._core = core
        self._lock = lock
        self._send = send
        self._next_try = 0.0
        self._after_fork()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # Also the constructor. A child of fork has no renewal thread, whatever
        # the parent had under way, and a new guard (another thread may have
        # held the parent's).
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def start(self) -> None:
        with self._guard:
            busy = self._thread is not None and self._thread.is_alive()
            if busy or time.monotonic() < self._next_try:
                return
            self._thread = threading.Thread(
                target=self._run, name="semansys-auth-renewal", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        try:
            with self._lock.hold(wait=False) as got:
                if got:
                    run_blocking(self._core.renew(required=False), self._send)
                else:  # another thread or process is at it
                    self._next_try = time.monotonic() + self._BUSY_PAUSE
        except Exception as exc:
            # Raised only when no valid token is left; the next request that
            # needs one renews in its own thread and sees the error.
            logger.warning("background token renewal failed: %s", self._core.redacted(exc))


class AsyncSteps:
    """:class:`Steps` for an async generator that yields token requests."""

    __slots__ = ("_error", "_flow", "_result", "value")

    def __init__(self, flow: AsyncGenerator[EndpointRequest, EndpointResponse]) -> None:
        self._flow = flow
        self._result: Any = None
        self._error: Exception | None = None
        self.value: Token | None = None

    def __aiter__(self) -> AsyncSteps:
        return self

    async def __anext__(self) -> EndpointRequest:
        result, error = self._result, self._error
        self._result = self._error = None
        step = await (self._flow.athrow(error) if error is not None else self._flow.asend(result))
        if isinstance(step, Token):  # the last item: the flow's result
            self.value = step
            raise StopAsyncIteration
        return step

    def reply(self, result: Any) -> None:
        self._result = result

    def fail(self, error: Exception) -> None:
        self._error = error

    async def aclose(self) -> None:
        await self._flow.aclose()

    def token(self) -> Token:
        assert self.value is not None, "the flow ended without a token"
        return self.value


async def carry_out_async(flow: Flow) -> AsyncGenerator[Any, EndpointResponse]:
    """:func:`carry_out` on an event loop: sleeps with anyio, blocking calls
    in a worker thread. Async generators return nothing: the token comes last."""
    import anyio
    import anyio.to_thread

    steps = Steps(flow)
    try:
        for step in steps:
            try:
                if isinstance(step, EndpointRequest):
                    steps.reply((yield step))
                elif isinstance(step, Sleep):
                    await anyio.sleep(step.seconds)
                else:
                    steps.reply(await anyio.to_thread.run_sync(_run_call, step))
            except Exception as exc:
                steps.fail(exc)
    finally:
        flow.close()
    yield steps.token()


def _run_call(call: Call) -> Any:
    return call.run()


async def run_async(flow: Flow, send: SendAsync) -> Token:
    """Carry out a flow on an event loop, sending its token requests with ``send``."""
    steps = AsyncSteps(carry_out_async(flow))
    try:
        async for request in steps:
            try:
                steps.reply(await send(request))
            except Exception as exc:
                steps.fail(exc)
    finally:
        await steps.aclose()
    return steps.token()


async def obtain_async(
    core: TokenCore, lock: FetchLock, send: SendAsync, refused: str | None = None
) -> Token:
    """A token to send now, for an async caller: the task that finds the lock
    free renews; while the current token is valid, the others do not wait."""
    need, current = core.need(refused)
    if need is Need.NOTHING:
        assert current is not None
        return current
    required = need is Need.TOKEN
    async with lock.hold_async(wait=required) as got:
        if got:
            return await run_async(core.renew(refused, required=required), send)
    assert current is not None
    return current
