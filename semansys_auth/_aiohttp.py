"""aiohttp (>= 3.12): the auth object as a client middleware,
``aiohttp.ClientSession(middlewares=(auth,))``.

Token requests go through the request's own session (``request.session``), with
``middlewares=()`` so that they do not come back here, never following
redirects, with a total timeout, at most ``MAX_ANSWER_BYTES`` read and no
automatic decompression (done within the bound by ``decode_body``). Their
failures are ``aiohttp.ClientError`` (the total timeout while the body is read
is ``aiohttp.ServerTimeoutError``). A 401 is released without being read: aiohttp
closes a connection whose body was not read to its end.

aiohttp runs middlewares on every redirect hop, where requests and httpx run
auth once and drop ``Authorization`` on a cross-origin redirect. So, like
aiohttp's own ``DigestAuthMiddleware``, this middleware scopes the token to the
origin of the first request it handles: a request (or redirect hop) to any other
origin passes through without it. Use one ``SemansysAuth`` per API origin.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse, hdrs, payload

from ._body import CUT, LATE, read_bounded_async
from ._config import Settings
from ._drive import Shell, run_async
from ._log import logger
from ._token import Token
from ._wire import (
    MAX_ANSWER_BYTES,
    EndpointRequest,
    EndpointResponse,
    decode_body,
    header,
)


def _replayable(request: ClientRequest) -> bool:
    """aiohttp's own rule, asked after the first send: a payload that was not
    consumed can be sent again (bytes, str, JSON, forms; files, which aiohttp
    seeks back; multipart). An async iterable is consumed by its first send."""
    body = request.body
    return body == b"" or (isinstance(body, payload.Payload) and not body.consumed)


class AiohttpAdapter:
    """The aiohttp side of one ``SemansysAuth``."""

    def __init__(self, shell: Shell, settings: Settings) -> None:
        self._shell = shell
        self._core = shell.core
        self._settings = settings
        self._origin: Any = None

    def _in_scope(self, request: ClientRequest) -> bool:
        origin = request.url.origin()
        if self._origin is None:
            self._origin = origin
        elif origin != self._origin:
            logger.debug(
                "request to %s passes without the token: this object serves %s through aiohttp",
                origin,
                self._origin,
            )
            return False
        return True

    async def middleware(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> ClientResponse:
        if not self._in_scope(request):
            return await handler(request)
        core = self._core
        token = core.usable() or await self._token(request, None)
        self._settings.authorize(request.headers, token)
        response = await handler(request)
        refused = core.refused(
            response.status,
            lambda: (
                request.headers.get(hdrs.AUTHORIZATION),
                _replayable(request),
                f"{request.method} {request.url.path}",
            ),
        )
        if refused is None:
            return response
        response.release()
        token = await self._token(request, refused)
        self._settings.authorize(request.headers, token)
        return await handler(request)

    async def _token(self, request: ClientRequest, refused: str | None) -> Token:
        session = request.session

        async def send(step: EndpointRequest) -> EndpointResponse:
            return await post(session, step)

        return await run_async(self._core.renewal(refused), self._shell, send)


async def post(session: aiohttp.ClientSession, step: EndpointRequest) -> EndpointResponse:
    """Send a token request through ``session``; bounded in size and time.

    Every transport failure is an ``aiohttp.ClientError``: the total timeout,
    which aiohttp raises as a bare ``asyncio.TimeoutError`` once the headers
    are in (while the body is read), becomes ``aiohttp.ServerTimeoutError``
    (a ``ClientError`` and a ``TimeoutError`` both)."""
    try:
        return await _post(session, step)
    except aiohttp.ClientError:
        raise
    except (asyncio.TimeoutError, TimeoutError) as exc:
        raise aiohttp.ServerTimeoutError(
            f"the token endpoint {step.url} did not finish its answer within {step.timeout:g} s"
        ) from exc
    except OSError as exc:
        message = f"token request to {step.url} failed: {exc}"
        raise aiohttp.ClientOSError(exc.errno, message) from exc


async def _post(session: aiohttp.ClientSession, step: EndpointRequest) -> EndpointResponse:
    async with session.request(
        step.method,
        step.url,
        data=step.body,
        headers=dict(step.headers),
        allow_redirects=False,
        middlewares=(),
        raise_for_status=False,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=step.timeout),
    ) as response:
        # The total timeout applies to every read too.
        raw, how = await read_bounded_async(response.content.read, MAX_ANSWER_BYTES)
        assert how != LATE  # no deadline given
        body, cut = decode_body(raw, header(response.headers, "content-encoding"))
        return EndpointResponse(response.status, response.headers, body, how == CUT or cut)
