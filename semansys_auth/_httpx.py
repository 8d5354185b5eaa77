"""httpx and httpx2: an auth flow that yields its token requests to the client.

Shaped like httpx's own ``DigestAuth``: the flow yields the API request,
receives the response, and on a 401 to our token yields token requests and the
request again. Token requests therefore travel through the user's own client:
its transport, proxies, certificates and event loop. Sync and async clients get
one flow each; they differ only in how they lock, sleep, read a body and run a
blocking call.

Two guards that httpx has no switch for:

* Redirects. A client made with ``follow_redirects=True`` also follows a
  redirect of a token request, and re-posts the body of a 307 or 308. The body
  of a token request is therefore a one-shot stream: a second read raises
  :class:`BadTokenRequestError` before a byte of it leaves, so the password
  and client secret never reach the redirect target (which sees only headers
  that carry no secret). A 301/302/303 turns the POST into a body-less GET; its
  answer is reported as the redirect it was.
* Size and time. The answer is read with ``iter_raw`` up to
  ``MAX_ANSWER_BYTES`` and until ``timeout`` has passed since the request left.
  A 401 that calls for a resend is read up to ``MAX_401_BODY`` only (httpx
  would read all of it when the flow yields its next request): a longer body is
  cut and its connection closed.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
)
from contextlib import aclosing, closing
from typing import TYPE_CHECKING, Any

import httpx

from ._body import CUT, ENDED, LATE, read_bounded, read_bounded_async
from ._config import Settings
from ._drive import Shell, Steps, carry_out, carry_out_async
from ._errors import BadTokenRequestError
from ._token import Token
from ._wire import (
    MAX_401_BODY,
    MAX_ANSWER_BYTES,
    EndpointRequest,
    EndpointResponse,
    decode_body,
    header,
)

if TYPE_CHECKING:

    class _Httpx2Auth:
        """httpx2.Auth, when installed (see below)."""

else:
    try:  # httpx2 (the maintained successor of httpx) is optional: semansys-auth[httpx2]
        from httpx2 import Auth as _Httpx2Auth
    except ImportError:  # pragma: no cover - exercised when httpx2 is absent

        class _Httpx2Auth:
            pass


# httpx keeps a bytes, JSON or form body in a ByteStream (re-iterable) and a
# multipart body in a MultipartStream (it seeks file parts back to 0 itself).
# Matched by name so that httpx and httpx2 are both covered.
_REPLAYABLE_STREAMS = frozenset({"ByteStream", "MultipartStream"})

_REDIRECTED_BODY = (
    "The token endpoint answered with a redirect that keeps the request body (307 or "
    "308), and the client follows redirects: the credentials were not sent again. Set "
    "token_url to the final URL"
)


def _library(request: Any) -> Any:
    """The module (httpx or httpx2) whose Request this is."""
    return sys.modules[type(request).__module__.partition(".")[0]]


def _noop() -> None:
    return None


def rewinder(request: Any) -> Callable[[], None] | None:
    """How to make ``request``'s body sendable again, or None if it cannot be.

    Called before the first send, so that a file's starting position is known.
    """
    stream = request.stream
    if type(stream).__name__ in _REPLAYABLE_STREAMS:
        return _noop
    # httpx wraps a file passed as ``content=`` in an IteratorByteStream that keeps
    # the file as ``_stream``; no public API exposes it. A generator is not replayable.
    source = getattr(stream, "_stream", None)
    if source is None or inspect.isgenerator(source) or inspect.isasyncgen(source):
        return None
    seek = getattr(source, "seek", None)
    tell = getattr(source, "tell", None)
    if seek is None or tell is None:
        return None
    try:
        if hasattr(source, "seekable") and not source.seekable():
            return None
        position = tell()
    except (OSError, ValueError):
        return None

    def rewind() -> None:
        seek(position)

    return rewind


_ONE_SHOT: dict[Any, type] = {}


def _one_shot_body(library: Any, body: bytes) -> Any:
    """A request stream of ``library`` that gives ``body`` once, and raises on a
    second read (a followed 307/308), before anything of it is sent."""
    cls = _ONE_SHOT.get(library)
    if cls is None:

        def take(self: Any) -> bytes:
            if self.sent:
                raise BadTokenRequestError(_REDIRECTED_BODY)
            self.sent = True
            return bytes(self.body)

        def sync_iter(self: Any) -> Iterator[bytes]:
            yield take(self)

        async def async_iter(self: Any) -> AsyncIterator[bytes]:
            yield take(self)

        def init(self: Any, body: bytes) -> None:
            self.body = body
            self.sent = False

        cls = type(
            "OneShotBody",
            (library.SyncByteStream, library.AsyncByteStream),
            {"__init__": init, "__iter__": sync_iter, "__aiter__": async_iter},
        )
        _ONE_SHOT[library] = cls
    return cls(body)


def token_request(template: Any, step: EndpointRequest) -> Any:
    """The httpx (or httpx2) request for a token request, made with the request
    class of the client in use. Every phase waits at most ``step.timeout``, or
    the client's own shorter timeout."""
    client_timeouts = template.extensions.get("timeout") or {}
    timeouts = {
        phase: min(step.timeout, client_timeouts.get(phase) or step.timeout)
        for phase in ("connect", "read", "write", "pool")
    }
    sent = type(template)(
        step.method,
        step.url,
        headers=step.headers,
        content=step.body,  # for the Host and Content-Length headers httpx adds
        extensions={"timeout": timeouts},
    )
    sent.stream = _one_shot_body(_library(template), step.body)
    return sent


def _answer(
    sent: Any, response: Any, raw: bytes, truncated: bool, step: EndpointRequest
) -> EndpointResponse:
    body, cut = decode_body(raw, header(response.headers, "content-encoding"))
    # httpx reads this response again when the flow goes on (Response.read());
    # its stream is spent, so hand it the bytes read here. (No public API.)
    response._content = body
    redirected = None if response.request is sent else str(response.request.url)
    return EndpointResponse(
        response.status_code, response.headers, body, truncated or cut, redirected
    )


def _timed_out(sent: Any, step: EndpointRequest) -> Exception:
    error: Exception = _library(sent).ReadTimeout(
        f"the token endpoint {step.url} did not finish its answer within {step.timeout:g} s",
        request=sent,
    )
    return error


def _remaining_for_body(sent: Any, deadline: float) -> float:
    # httpx reads the body's read timeout from this very dict when the body
    # starts: let each read wait at most the time that is left.
    left = max(deadline - time.monotonic(), 0.001)
    timeouts = sent.extensions.get("timeout")
    if isinstance(timeouts, dict):
        timeouts["read"] = min(timeouts.get("read") or left, left)
    return left


def _read_already(sent: Any, response: Any) -> EndpointResponse | None:
    """The answer of a transport that read the body itself (httpx's
    MockTransport, ASGI and WSGI transports, which work in memory), else None."""
    if not response.is_stream_consumed:
        return None
    body = response.content  # decoded already
    redirected = None if response.request is sent else str(response.request.url)
    return EndpointResponse(
        response.status_code,
        response.headers,
        body[:MAX_ANSWER_BYTES],
        len(body) > MAX_ANSWER_BYTES,
        redirected,
    )


def _iter_read(chunks: Iterator[bytes]) -> Callable[[int], bytes]:
    return lambda size: next(chunks, b"")


def _aiter_read(chunks: AsyncIterator[bytes]) -> Callable[[int], Awaitable[bytes]]:
    async def read(size: int) -> bytes:
        return await anext(chunks, b"")

    return read


def read_sync(sent: Any, response: Any, step: EndpointRequest, deadline: float) -> EndpointResponse:
    answer = _read_already(sent, response)
    if answer is not None:
        return answer
    _remaining_for_body(sent, deadline)
    with closing(response.iter_raw()) as chunks:
        raw, how = read_bounded(_iter_read(chunks), MAX_ANSWER_BYTES, deadline)
    if how != ENDED:
        response.close()
    if how == LATE:
        raise _timed_out(sent, step)
    return _answer(sent, response, raw, how == CUT, step)


async def read_async(
    sent: Any, response: Any, step: EndpointRequest, deadline: float
) -> EndpointResponse:
    answer = _read_already(sent, response)
    if answer is not None:
        return answer
    _remaining_for_body(sent, deadline)
    async with aclosing(response.aiter_raw()) as chunks:
        raw, how = await read_bounded_async(_aiter_read(chunks), MAX_ANSWER_BYTES, deadline)
    if how != ENDED:
        await response.aclose()
    if how == LATE:
        raise _timed_out(sent, step)
    return _answer(sent, response, raw, how == CUT, step)


def _kept_401_body(response: Any, raw: bytes) -> None:
    """What httpx's own ``response.read()`` returns for the 401 (it reads the
    response when the flow yields its next request; no public API lets the
    flow do it first): the part read here, decoded within a bound."""
    body, _ = decode_body(raw, header(response.headers, "content-encoding"))
    response._content = body


def drain_401_sync(response: Any) -> None:
    """Read at most :data:`MAX_401_BODY` raw bytes of a 401 before the
    renewal; close the response when more remains instead of draining it."""
    if response.is_stream_consumed or response.is_closed:
        return
    try:
        with closing(response.iter_raw()) as chunks:
            raw, how = read_bounded(_iter_read(chunks), MAX_401_BODY)
    except Exception:  # a broken 401 body does not matter: the request is sent again
        raw, how = b"", CUT
    if how != ENDED:
        response.close()
    _kept_401_body(response, raw)


async def drain_401_async(response: Any) -> None:
    """:func:`drain_401_sync` for async clients."""
    if response.is_stream_consumed or response.is_closed:
        return
    try:
        async with aclosing(response.aiter_raw()) as chunks:
            raw, how = await read_bounded_async(_aiter_read(chunks), MAX_401_BODY)
    except Exception:
        raw, how = b"", CUT
    if how != ENDED:
        await response.aclose()
    _kept_401_body(response, raw)


class _Renew:
    """Item of the shared flow: renew (``refused``: after a 401); the sync or
    async wrapper carries the renewal out and sends back the token."""

    __slots__ = ("refused",)

    def __init__(self, refused: str | None) -> None:
        self.refused = refused


class _Drain:
    """Item of the shared flow: read a little of this 401 before the renewal."""

    __slots__ = ("response",)

    def __init__(self, response: Any) -> None:
        self.response = response


class HttpxAdapter:
    """The httpx and httpx2 side of one ``SemansysAuth``: one flow, shaped like
    httpx's ``DigestAuth.auth_flow``, serves sync and async clients; each of
    the two wrappers only carries out its renewals and 401 reads."""

    def __init__(self, shell: Shell, settings: Settings) -> None:
        self._shell = shell
        self._core = shell.core
        self._settings = settings

    def _flow(self, request: Any) -> Generator[Any, Any, None]:
        token = self._core.usable()
        if token is None:
            token = yield _Renew(None)
        rewind = rewinder(request)
        self._settings.authorize(request.headers, token)
        response = yield request
        refused = self._core.refused(
            response.status_code,
            lambda: (
                response.request.headers.get("Authorization"),
                rewind is not None,
                f"{request.method} {request.url.path}",  # no query, no userinfo: secrets
            ),
        )
        if refused is None or rewind is None:
            return
        yield _Drain(response)
        token = yield _Renew(refused)
        rewind()
        self._settings.authorize(request.headers, token)
        yield request

    def sync_flow(self, request: Any) -> Generator[Any, Any, None]:
        flow = self._flow(request)
        item = next(flow)
        while True:
            result: Any = None
            if type(item) is _Renew:
                result = yield from self._renewed_sync(request, item.refused)
            elif type(item) is _Drain:
                drain_401_sync(item.response)
            else:
                result = yield item
            try:
                item = flow.send(result)
            except StopIteration:
                return

    async def async_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        flow = self._flow(request)
        item = next(flow)
        while True:
            result: Any = None
            if type(item) is _Drain:
                await drain_401_async(item.response)
            elif type(item) is _Renew:
                async with aclosing(self._renewed_async(request, item.refused)) as renewal:
                    async for step in renewal:
                        if isinstance(step, _Exchange):
                            step.response = yield step.request
                        else:
                            result = step
            else:
                result = yield item
            try:
                item = flow.send(result)
            except StopIteration:
                break

    def _renewed_sync(self, template: Any, refused: str | None) -> Generator[Any, Any, Token]:
        steps = Steps(carry_out(self._core.renewal(refused), self._shell))
        try:
            for step in steps:
                try:
                    deadline = time.monotonic() + step.timeout
                    sent = token_request(template, step)
                    response = yield sent
                    steps.reply(read_sync(sent, response, step, deadline))
                except Exception as exc:
                    steps.fail(exc)
        finally:
            steps.close()
        token: Token = steps.value
        return token

    async def _renewed_async(self, template: Any, refused: str | None) -> AsyncGenerator[Any, None]:
        """``_renewed_sync`` for async flows. Async generators can neither
        ``yield from`` nor return a value: this one yields each token request
        as an :class:`_Exchange` (the flow sends it and fills in the response),
        and last the token. Iterate it under ``aclosing``: the locks it holds
        are released when it closes."""
        steps = carry_out_async(self._core.renewal(refused), self._shell)
        try:
            item = await steps.asend(None)  # type: ignore[arg-type]
            while isinstance(item, EndpointRequest):
                try:
                    deadline = time.monotonic() + item.timeout
                    exchange = _Exchange(token_request(template, item))
                    yield exchange
                    answer = await read_async(exchange.request, exchange.response, item, deadline)
                except Exception as exc:
                    item = await steps.athrow(exc)
                else:
                    item = await steps.asend(answer)
        finally:
            await steps.aclose()
        yield item


class _Exchange:
    """A token request on its way through the async flow, and its response."""

    __slots__ = ("request", "response")

    def __init__(self, request: Any) -> None:
        self.request = request
        self.response: Any = None


class HttpxAuth(httpx.Auth, _Httpx2Auth):
    """What makes the auth object an ``httpx.Auth`` (and an ``httpx2.Auth``):
    the two flows, handed to its :class:`HttpxAdapter`."""

    requires_request_body = False
    requires_response_body = False
    _httpx: HttpxAdapter

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        return self._httpx.sync_flow(request)

    def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        return self._httpx.async_flow(request)
