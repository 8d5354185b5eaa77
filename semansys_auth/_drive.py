"""The two drivers: they carry out the token core's effects (``_effects``),
one for blocking callers and one for async callers, for every adapter.

A driver runs the core's renewal generator, hands each token request
(:class:`~._wire.EndpointRequest`) to its adapter, carries out everything else
itself, and sends each result back in (a failure is thrown back in, for the
core to judge). The two differ only where they must: the blocking driver
sleeps with ``time.sleep``, waits for the renewal lock on a condition and makes
blocking calls in place; the async driver sleeps with anyio, waits for the lock
without blocking the event loop, and makes blocking calls in a worker thread.

Both are generators that *yield* the token requests: the httpx adapter yields
them on to the client (``yield from`` in its auth flow), and the others send
them with a function (:func:`run_blocking`, :func:`run_async`). Whatever the
flow still holds when it ends, early or not, is released.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

from ._effects import Blocking, Detach, ReleaseLock, Sleep, TakeLock
from ._fork import IMPORTING, preload_for_renewal, reset_after_fork
from ._locks import Holder, RenewalLock
from ._log import logger
from ._token import Token
from ._wire import EndpointRequest, EndpointResponse

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._core import Flow, TokenCore
    from ._endpoint import TokenEndpoint

    Send = Callable[[EndpointRequest], EndpointResponse]
    SendAsync = Callable[[EndpointRequest], Awaitable[EndpointResponse]]


class Shell:
    """The I/O side of one auth object, with which effects are carried out:
    the core, the renewal lock, and, for :meth:`~._effects.Blocking.run`, the
    endpoint (key derivation), the token cache and the ``on_token`` callback."""

    __slots__ = (
        "__weakref__",
        "_background",
        "_guard",
        "cache",
        "core",
        "endpoint",
        "lock",
        "on_token",
    )

    def __init__(self, core: TokenCore, lock: RenewalLock) -> None:
        self.core = core
        self.lock = lock
        self.endpoint: TokenEndpoint = core.endpoint
        self.cache = core.cache
        self.on_token = core.on_token
        self._after_fork()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # Also the constructor: a child of fork has no renewal thread, and a new
        # guard (another thread may have held the parent's).
        self._background: threading.Thread | None = None
        self._guard = threading.Lock()

    def detach(self, flow: Flow, send: Send) -> bool:
        """Go on with ``flow`` in a daemon thread (an advisory renewal), unless
        one runs already (then ``flow`` is closed). Whether the caller is free."""
        with self._guard:
            thread = self._background
            if thread is None or not thread.is_alive():
                thread = threading.Thread(
                    target=self._in_background,
                    args=(flow, send),
                    name="semansys-auth-renewal",
                    daemon=True,
                )
                self._background = thread
                thread.start()
                return True
        flow.close()
        return True

    def _in_background(self, flow: Flow, send: Send) -> None:
        try:
            run_blocking(flow, self, send)
        except Exception as exc:
            # Raised only when no valid token is left; the next request that
            # needs one renews in its own thread and sees the error.
            logger.warning("background token renewal failed: %s", self.core.redacted(exc))


class Steps:
    """Iterates over what a generator yields; the caller answers each item with
    :meth:`reply` (a result sent back) or :meth:`fail` (an exception thrown in).
    The generator's return value ends up in :attr:`value`."""

    __slots__ = ("_error", "_flow", "_result", "value")

    def __init__(self, flow: Generator[Any, Any, Any]) -> None:
        self._flow = flow
        self._result: Any = None
        self._error: Exception | None = None
        self.value: Any = None

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


def carry_out(
    flow: Flow, shell: Shell, send: Send | None = None
) -> Generator[EndpointRequest, EndpointResponse, Token]:
    """The blocking driver: carries out ``flow``'s effects in this thread and
    yields its token requests. With ``send``, an advisory renewal goes on in a
    background thread (that sends its token requests with ``send``)."""
    holder: Holder | None = None
    detached = False
    steps = Steps(flow)
    try:
        for effect in steps:
            try:
                if isinstance(effect, EndpointRequest):
                    steps.reply((yield effect))
                elif isinstance(effect, Blocking):
                    steps.reply(effect.run(shell, holder))
                elif isinstance(effect, TakeLock):
                    preload_for_renewal()
                    holder = holder or Holder()
                    steps.reply(shell.lock.take(holder, effect.wait))
                elif isinstance(effect, ReleaseLock):
                    assert holder is not None
                    shell.lock.release(holder)
                elif isinstance(effect, Sleep):
                    time.sleep(effect.seconds)
                elif isinstance(effect, Detach) and send is not None:
                    detached = True  # the thread owns the flow now
                    shell.detach(flow, send)
                    return effect.token  # type: ignore[no-any-return]
            except Exception as exc:
                steps.fail(exc)
    finally:
        if not detached:
            flow.close()
            if holder is not None:
                shell.lock.give_back(holder)
    return steps.value  # type: ignore[no-any-return]


def run_blocking(flow: Flow, shell: Shell, send: Send, *, background: bool = False) -> Token:
    """Carry out ``flow`` in this thread, sending its token requests with
    ``send``; an advisory renewal in a background thread with ``background``."""
    steps = Steps(carry_out(flow, shell, send if background else None))
    try:
        for request in steps:
            try:
                steps.reply(send(request))
            except Exception as exc:
                steps.fail(exc)
    finally:
        steps.close()
    return steps.value  # type: ignore[no-any-return]


async def carry_out_async(flow: Flow, shell: Shell) -> AsyncGenerator[Any, EndpointResponse]:
    """The async driver: :func:`carry_out` on an event loop, which it never
    blocks. Async generators return nothing: the token is the last item."""
    if "anyio.to_thread" not in sys.modules:  # the first async use (a fork waits: see _fork)
        with IMPORTING:
            import anyio.to_thread
    import anyio
    import anyio.to_thread

    holder: Holder | None = None
    steps = Steps(flow)
    try:
        for effect in steps:
            try:
                if isinstance(effect, Blocking):  # in a worker thread: the loop goes on
                    steps.reply(await anyio.to_thread.run_sync(effect.run, shell, holder))
                elif isinstance(effect, EndpointRequest):
                    steps.reply((yield effect))
                elif isinstance(effect, TakeLock):
                    preload_for_renewal()
                    holder = holder or Holder.current_task()
                    steps.reply(await shell.lock.take_async(holder, effect.wait))
                elif isinstance(effect, ReleaseLock):
                    assert holder is not None
                    shell.lock.release(holder)
                elif isinstance(effect, Sleep):
                    await anyio.sleep(effect.seconds)
            except Exception as exc:
                steps.fail(exc)
    finally:
        flow.close()
        if holder is not None:
            await shell.lock.give_back_async(holder)
    yield steps.value


async def run_async(flow: Flow, shell: Shell, send: SendAsync) -> Token:
    """Carry out ``flow`` on an event loop, sending its token requests with ``send``."""
    steps = carry_out_async(flow, shell)
    try:
        item = await anext(steps)
        while isinstance(item, EndpointRequest):
            try:
                answer = await send(item)
            except Exception as exc:
                item = await steps.athrow(exc)
                continue
            item = await steps.asend(answer)
    finally:
        await steps.aclose()
    token: Token = item
    return token


def cached_blocking(shell: Shell) -> Token | None:
    """A usable token from the cache, read in this thread, or None (no lock,
    no token request)."""
    steps = Steps(carry_out(shell.core.cached(), shell))
    for _ in steps:
        raise AssertionError("reading the cache sends no token request")
    return steps.value  # type: ignore[no-any-return]
