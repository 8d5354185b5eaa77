"""niquests (>= 3.21): one auth object for ``niquests.Session`` and
``niquests.AsyncSession``, shaped like niquests' own ``HTTPDigestAuth`` and
``AsyncHTTPDigestAuth``.

niquests calls the auth object synchronously (its ``__call__`` is not a
coroutine function: a sync ``Session`` would drop an async one) and treats
hooks that are coroutine functions as async (``AsyncSession`` awaits them).
So :meth:`NiquestsAdapter.authorize`:

* puts a usable token on the request at once (no I/O);
* otherwise, on a sync ``Session``, renews in place (blocking, as for requests:
  advisory renewals go on in a background thread); on an ``AsyncSession``
  (a running event loop, and an ``AsyncSession`` calling), registers an async
  ``pre_request`` hook, which ``AsyncSession`` awaits before a byte is sent:
  the token request goes through niquests' async machinery and the loop goes on;
* registers one response hook, marked as a coroutine function so that
  ``AsyncSession`` awaits what it returns: on an async connection it returns
  a coroutine (the async 401 path), on a sync one it handles the 401 in place.

Token requests are built here (``niquests.Request(...).prepare()``: no
session auth, headers, cookies or ``.netrc``) and handed straight to the
transport adapter of a private ``Session`` / ``AsyncSession`` made for the one
renewal (which honours ``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``):
never following a redirect (``Session.send`` would read a 3xx body whole),
at most ``MAX_ANSWER_BYTES`` read, within ``timeout``. Their transport
failures are niquests' own exceptions (``niquests.RequestException``).

Before a resend, at most ``MAX_401_BODY`` bytes of the 401 are read (kept as
its ``content``); the connection of a longer body is closed, not drained.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing, closing
from typing import Any, TypeVar
from urllib.parse import urlsplit

import niquests
from niquests.cookies import extract_cookies_to_jar
from niquests.utils import arewind_body, rewind_body

from . import _body, _wire
from ._config import Settings
from ._drive import Shell, run_async, run_blocking
from ._token import Token
from ._wire import EndpointRequest, EndpointResponse, decode_body, header

_F = TypeVar("_F", bound=Callable[..., Any])


def _as_coroutine_function(func: _F) -> _F:
    """Mark ``func`` so that niquests' ``iscoroutinefunction`` is true for it
    (``AsyncSession`` then awaits what it returns; a sync ``Session`` just
    calls it): ``inspect.markcoroutinefunction`` on 3.12+, asyncio's marker before."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        mark(func)
    if sys.version_info < (3, 12):
        func._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return func


# -- token requests --------------------------------------------------------------------


def _prepared(request: EndpointRequest) -> niquests.PreparedRequest:
    return niquests.Request(
        request.method, request.url, data=request.body, headers=dict(request.headers)
    ).prepare()


def _timed_out(request: EndpointRequest) -> niquests.ReadTimeout:
    return niquests.ReadTimeout(
        f"the token endpoint {request.url} did not finish its answer within {request.timeout:g} s"
    )


def _transport_error(exc: Exception, request: EndpointRequest, deadline: float) -> Exception:
    """What a failure while a body was read becomes: niquests' own exception,
    and a timeout once the time is up (niquests maps a read timeout in a body
    to ``ConnectionError``). urllib3(-future)'s errors that niquests lets
    through (an illegal chunk header) are mapped too; anything else, a bug of
    ours, is left as it is."""
    if time.monotonic() >= deadline and isinstance(exc, (niquests.RequestException, OSError)):
        return _timed_out(request)
    if isinstance(exc, niquests.RequestException):
        return exc
    if isinstance(exc, TimeoutError):
        return _timed_out(request)
    message = f"token request to {request.url} failed: {exc}"
    if type(exc).__module__.partition(".")[0] in ("urllib3", "urllib3_future"):
        return niquests.exceptions.ChunkedEncodingError(message)
    if isinstance(exc, OSError):
        return niquests.ConnectionError(message)
    return exc


def _answer(response: Any, raw: bytes, how: str) -> EndpointResponse:
    body, cut = decode_body(raw, header(response.headers, "content-encoding"))
    return EndpointResponse(
        int(response.status_code or 0), response.headers, body, how == _body.CUT or cut
    )


def _sending(session: niquests.Session, prepared: niquests.PreparedRequest) -> dict[str, Any]:
    settings = session.merge_environment_settings(prepared.url or "", {}, True, None, None)
    return {
        "stream": True,
        "verify": True if settings["verify"] is None else settings["verify"],
        "cert": settings["cert"],
        "proxies": settings["proxies"],
    }


def post(request: EndpointRequest) -> EndpointResponse:
    """Send a token request with niquests (blocking); bounded in size and time."""
    deadline = time.monotonic() + request.timeout
    prepared = _prepared(request)
    # A token is fetched about once an hour: a private session per fetch keeps
    # no idle connection open in between and reads the environment each time.
    with niquests.Session() as session:
        response = session.get_adapter(prepared.url or request.url).send(
            prepared, timeout=request.timeout, **_sending(session, prepared)
        )
        try:
            with closing(response.iter_raw(_body.CHUNK)) as chunks:
                raw, how = _body.read_bounded(_next(chunks), _wire.MAX_ANSWER_BYTES, deadline)
        except Exception as exc:
            response.close()
            error = _transport_error(exc, request, deadline)
            if error is exc:
                raise
            raise error from exc
        response.close()  # back to the pool, or closed when unread bytes remain
        if how == _body.LATE:
            raise _timed_out(request)
        return _answer(response, raw, how)


async def post_async(request: EndpointRequest) -> EndpointResponse:
    """Send a token request with niquests' ``AsyncSession``; bounded in size and
    time (a wait past ``timeout`` is cancelled). Never blocks the event loop."""
    import anyio

    deadline = time.monotonic() + request.timeout
    prepared = _prepared(request)
    async with niquests.AsyncSession() as session:
        adapter = session.get_adapter(prepared.url or request.url)
        response: Any = None
        with anyio.move_on_after(request.timeout):
            response = await adapter.send(
                prepared,
                timeout=request.timeout,
                **_sending(session, prepared),
            )
        if response is None:
            raise _timed_out(request)
        try:
            async with aclosing(await response.iter_raw(_body.CHUNK)) as chunks:

                async def read(size: int) -> bytes:
                    return bytes(await anext(chunks, b""))

                raw, how = await _body.read_bounded_async(read, _wire.MAX_ANSWER_BYTES, deadline)
        except Exception as exc:
            await response.close()
            error = _transport_error(exc, request, deadline)
            if error is exc:
                raise
            raise error from exc
        await response.close()
        if how == _body.LATE:
            raise _timed_out(request)
        return _answer(response, raw, how)


def _next(chunks: Iterator[bytes]) -> Callable[[int], bytes]:
    return lambda size: bytes(next(chunks, b""))


# -- the 401 ----------------------------------------------------------------------------


def _kept(response: Any, raw: bytes, how: str) -> None:
    """Keep what was read of a 401 as its ``content`` (decoded, within bounds)."""
    body = raw
    if header(response.headers, "content-encoding"):
        body, _ = decode_body(raw, header(response.headers, "content-encoding"))
    response._content = body
    response._content_consumed = True


def drain_401(response: niquests.Response) -> None:
    """Read at most ``MAX_401_BODY`` raw bytes of a 401; its connection goes back
    to the pool when the body ended within the bound, else it is closed."""
    if response._content_consumed or response.raw is None:
        return
    try:
        with closing(response.iter_raw(_body.CHUNK)) as chunks:
            raw, how = _body.read_bounded(_next(chunks), _wire.MAX_401_BODY)
    except Exception:  # a broken 401 body does not matter: the request is sent again
        raw, how = b"", _body.CUT
    response.close()  # closes the connection when the body was not read to its end
    _kept(response, raw, how)


async def drain_401_async(response: Any) -> None:
    """:func:`drain_401` for an ``AsyncResponse``."""
    if response._content_consumed or response.raw is None:
        return
    try:
        async with aclosing(await response.iter_raw(_body.CHUNK)) as chunks:

            async def read(size: int) -> bytes:
                return bytes(await anext(chunks, b""))

            raw, how = await _body.read_bounded_async(read, _wire.MAX_401_BODY)
    except Exception:
        raw, how = b"", _body.CUT
    await response.close()
    _kept(response, raw, how)


def _replayable(prepared: niquests.PreparedRequest) -> bool:
    body = prepared.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    return hasattr(body, "seek") and isinstance(prepared._body_position, int)


def _in_async_session() -> bool:
    """Whether an ``AsyncSession`` is preparing the request being authorized:
    an event loop runs in this thread and the nearest niquests session among
    the callers is an ``AsyncSession`` (a request prepared by hand inside a
    coroutine, with no session among the callers, is authorized in place:
    both kinds of session can send it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    frame = sys._getframe(2)
    for _ in range(16):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        if isinstance(owner, niquests.AsyncSession):
            return True
        if isinstance(owner, niquests.Session):
            return False
        frame = frame.f_back  # type: ignore[assignment]
    return False


class NiquestsAdapter:
    """The niquests side of one ``SemansysAuth``, for ``Session`` and
    ``AsyncSession`` both."""

    def __init__(self, shell: Shell, settings: Settings) -> None:
        self._shell = shell
        self._core = shell.core
        self._settings = settings

    # -- token ---------------------------------------------------------------------

    def token(self, refused: str | None = None) -> Token:
        """A token to send now (blocking; advisory renewals in the background)."""
        return run_blocking(self._core.renewal(refused), self._shell, post, background=True)

    async def token_async(self, refused: str | None = None) -> Token:
        """A token to send now, on the event loop (which goes on meanwhile)."""
        return await run_async(self._core.renewal(refused), self._shell, post_async)

    # -- auth ----------------------------------------------------------------------

    def authorize(self, r: niquests.PreparedRequest) -> niquests.PreparedRequest:
        token = self._core.usable()
        if token is not None:
            self._settings.authorize(r.headers, token)
        elif _in_async_session():
            r.register_hook("pre_request", self._first_token_hook())
        else:
            self._settings.authorize(r.headers, self.token())
        r.register_hook("response", self.on_response)
        return r

    def _first_token_hook(self) -> Callable[..., Any]:
        done = False

        async def first_token(prepared: niquests.PreparedRequest, **kwargs: Any) -> None:
            # Once: a redirect hop comes here again, and must not get the token
            # back after niquests dropped it for another origin.
            nonlocal done
            if done:
                return
            done = True
            self._settings.authorize(prepared.headers, await self.token_async())

        return first_token

    @_as_coroutine_function
    def on_response(self, r: niquests.Response, **kwargs: Any) -> Any:
        """The response hook: a coroutine on an async connection (awaited by
        ``AsyncSession``), the handled response on a sync one."""
        if inspect.iscoroutinefunction(getattr(r.connection, "send", None)):
            return self._handle_401_async(r, kwargs)
        return self._handle_401(r, kwargs)

    def _refused(self, r: niquests.Response) -> str | None:
        request = r.request
        assert request is not None

        def facts() -> tuple[str | None, bool, str]:
            sent = request.headers.get("Authorization") if request.headers is not None else None
            return (
                sent if isinstance(sent, str) else None,
                _replayable(request),
                f"{request.method} {urlsplit(request.url or '').path}",  # no query
            )

        return self._core.refused(int(r.status_code or 0), facts)

    def _resend(self, r: niquests.Response, token: Token) -> niquests.PreparedRequest:
        request = r.request
        assert request is not None
        prepared = request.copy()
        # As niquests' own HTTPDigestAuth does: keep cookies the 401 set.
        jar: Any = prepared._cookies
        extract_cookies_to_jar(jar, request, r.raw)
        prepared.prepare_cookies(jar)
        self._settings.authorize(prepared.headers, token)
        # One resend only: the copy must not come back to this hook (copy()
        # shares the hooks dict with the original: replace it, do not mutate it).
        hooks: Any = prepared.hooks
        prepared.hooks = {
            **hooks,
            "response": [h for h in hooks["response"] if h != self.on_response],
        }
        return prepared

    def _handle_401(self, r: niquests.Response, kwargs: dict[str, Any]) -> niquests.Response:
        refused = self._refused(r)
        if refused is None:
            return r
        drain_401(r)  # the connection goes first, even if the renewal raises
        prepared = self._resend(r, self.token(refused))
        if prepared.body is not None and not isinstance(prepared.body, (bytes, str)):
            rewind_body(prepared)
        connection: Any = r.connection
        retried: niquests.Response = connection.send(prepared, **kwargs)
        retried.history.append(r)
        retried.request = prepared
        return retried

    async def _handle_401_async(self, r: Any, kwargs: dict[str, Any]) -> Any:
        refused = self._refused(r)
        if refused is None:
            return r
        await drain_401_async(r)
        prepared = self._resend(r, await self.token_async(refused))
        body = prepared.body
        if body is not None and not isinstance(body, (bytes, str)):
            if inspect.iscoroutinefunction(getattr(body, "seek", None)):
                await arewind_body(prepared)
            else:
                rewind_body(prepared)
        retried = await r.connection.send(prepared, **kwargs)
        retried.history.append(r)
        retried.request = prepared
        return retried
