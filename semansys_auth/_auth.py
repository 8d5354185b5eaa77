"""``SemansysAuth``: the thin requests and httpx adapters over the token core.

* httpx (and httpx2): :meth:`SemansysAuth._flow` is one generator for sync and
  async clients. It yields *instructions*: the API request, token requests,
  sleeps, lock and unlock. :meth:`sync_auth_flow` and :meth:`async_auth_flow`
  carry them out; they differ only in how they lock, sleep and read a body.
  Token requests are yielded to httpx, so they travel through the user's own
  client: its transport, TLS settings, proxies, timeouts and event loop.
* requests: :meth:`__call__` sets the header and registers
  :meth:`_handle_401`, a response hook that renews the token and resends the
  request once through ``r.connection`` (the way ``HTTPDigestAuth`` does).
  Token requests go through ``requests_session`` (a private ``requests.Session``
  by default, which honours ``HTTPS_PROXY``, ``REQUESTS_CA_BUNDLE`` and the other
  environment settings).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx
import requests
import requests.auth
from requests.cookies import extract_cookies_to_jar
from requests.utils import rewind_body

from ._cache import TokenCache
from ._core import Held, Sleep, TokenState
from ._locks import Gate
from ._protocol import Protocol, TokenRequest, TokenResponse, check_token_url
from ._token import TokenInfo

if TYPE_CHECKING:

    class _Httpx2Auth:
        """httpx2.Auth, when installed (see below)."""

else:
    try:  # httpx2 (the maintained successor of httpx) is optional: semansys-auth[httpx2]
        from httpx2 import Auth as _Httpx2Auth
    except ImportError:  # pragma: no cover - exercised when httpx2 is absent

        class _Httpx2Auth:
            pass


__all__ = ["PRE_PRODUCTION_TOKEN_URL", "SemansysAuth"]

logger = logging.getLogger("semansys_auth")

PRE_PRODUCTION_TOKEN_URL = "https://oidc-pre.semansys.com/connect/token"
"""The Semansys pre-production token endpoint (the default ``token_url``)."""

ENV_PREFIX = "SEMANSYS_"

_LOCK = object()
_UNLOCK = object()
_Instruction = Any  # an API request, a TokenRequest, a Sleep, _LOCK or _UNLOCK

# httpx keeps a bytes, JSON or form body in a ByteStream (re-iterable) and a
# multipart body in a MultipartStream (it seeks file parts back to 0 itself).
# Matched by name so that httpx and httpx2 are both covered.
_REPLAYABLE_STREAMS = frozenset({"ByteStream", "MultipartStream"})


def _noop() -> None:
    return None


def _httpx_rewinder(request: Any) -> Callable[[], None] | None:
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


def _token_response(sent: TokenRequest, response: Any, body: bytes) -> TokenResponse:
    """An httpx token answer for the core.

    A client created with ``follow_redirects=True`` follows redirects of the
    token request too; the answer of a redirected token request is not trusted
    but reported as the redirect it was (the core's message says to set
    ``token_url`` to the final URL).
    """
    if response.request.url != type(response.request.url)(sent.url):
        return TokenResponse(307, {"Location": str(response.request.url)}, b"")
    return TokenResponse(response.status_code, response.headers, body)


def _requests_replayable(prepared: requests.PreparedRequest) -> bool:
    body = prepared.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    return hasattr(body, "seek") and isinstance(prepared._body_position, int)


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} is empty")
    return value


def _check_scope(scope: str | Iterable[str] | None) -> str | None:
    if scope is None:
        return None
    items = scope.split() if isinstance(scope, str) else list(scope)
    for item in items:
        if not isinstance(item, str) or not item or any(c.isspace() for c in item):
            raise ValueError(f"scope entries must be non-empty strings without spaces: {item!r}")
    return " ".join(items) or None


def _check_number(name: str, value: float, *, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < minimum or (strict and value == minimum):
        relation = "greater than" if strict else "at least"
        raise ValueError(f"{name} must be {relation} {minimum}, got {value}")
    return float(value)


class SemansysAuth(requests.auth.AuthBase, httpx.Auth, _Httpx2Auth):
    """OAuth 2.0 password-grant auth for the Semansys API, for requests and httpx.

    >>> session.auth = SemansysAuth(client_id=..., client_secret=..., username=..., password=...)
    >>> httpx.Client(auth=SemansysAuth(...)); httpx.AsyncClient(auth=SemansysAuth(...))

    Nothing is fetched at construction. The first request fetches a token; later
    requests reuse it until ``leeway`` seconds before it expires (at most half
    its lifetime before), then it is renewed with the refresh token, or with the
    password grant when there is none or it is refused. A 401 from the API to a
    request that carried our token renews the token and resends the request
    once. One object may serve any number of sessions, clients, threads and
    event loops at once, with one token request per renewal between them.

    Options (all keyword-only):

    ``token_url``: the token endpoint; https, or http on a loopback host.
    ``scope``: a string or a list of strings, or None (the server's default).
    ``leeway``: seconds before expiry at which the token is renewed (default 60).
    ``timeout``: seconds for token requests made for requests users (default 30;
    httpx token requests use the client's own timeout).
    ``max_retries``: retries of a token request on 5xx, 429 and
    ``temporarily_unavailable`` (default 3), with exponential backoff from
    ``backoff`` seconds (default 0.5) up to ``max_backoff`` (default 8), halved
    at random (jitter). A ``Retry-After`` is honoured up to ``retry_after_cap``
    seconds (default 30); a longer one fails at once with ``retry_after`` set.
    ``credentials_cooldown``: after the server rejects the client or user
    credentials, further token requests fail at once with the same error for
    this many seconds (default 60), so that a misconfigured job cannot lock the
    account.
    ``api_version``: when set, sent as the ``x-api-version`` header that the
    Semansys API requires, unless a request already has one.
    ``token_cache``: a :class:`~semansys_auth.TokenCache`, e.g.
    :class:`~semansys_auth.FileTokenCache` to share tokens between processes.
    ``on_token``: called with the :class:`~semansys_auth.TokenInfo` (no secrets)
    of every new token, e.g. for metrics. Exceptions it raises are logged.
    ``requests_session``: the ``requests.Session`` that token requests go through
    for requests users (proxies, certificates); default: a private one, which
    reads the usual environment variables.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        token_url: str = PRE_PRODUCTION_TOKEN_URL,
        scope: str | Iterable[str] | None = None,
        leeway: float = 60.0,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        retry_after_cap: float = 30.0,
        credentials_cooldown: float = 60.0,
        api_version: str | None = None,
        token_cache: TokenCache | None = None,
        on_token: Callable[[TokenInfo], object] | None = None,
        requests_session: requests.Session | None = None,
    ) -> None:
        protocol = Protocol(
            token_url=check_token_url(token_url),
            client_id=_check_text("client_id", client_id),
            client_secret=_check_text("client_secret", client_secret),
            username=_check_text("username", username),
            password=_check_text("password", password),
            scope=_check_scope(scope),
        )
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        if api_version is not None:
            _check_text("api_version", api_version)
        if token_cache is not None and not isinstance(token_cache, TokenCache):
            raise TypeError("token_cache must have load(key) and save(key, token) methods")
        if on_token is not None and not callable(on_token):
            raise TypeError("on_token must be callable")
        self._timeout = _check_number("timeout", timeout, minimum=0, strict=True)
        self._state = TokenState(
            protocol,
            leeway=_check_number("leeway", leeway, minimum=0),
            max_retries=max_retries,
            backoff=_check_number("backoff", backoff, minimum=0),
            max_backoff=_check_number("max_backoff", max_backoff, minimum=0),
            retry_after_cap=_check_number("retry_after_cap", retry_after_cap, minimum=0),
            credentials_cooldown=_check_number(
                "credentials_cooldown", credentials_cooldown, minimum=0
            ),
            cache=token_cache,
            on_token=on_token,
        )
        cache_lock = getattr(token_cache, "lock", None)
        self._gate = Gate(
            cache_lock(self._state.cache_key) if callable(cache_lock) else None,
            cache_lock_timeout=max(self._timeout * 2, 10.0),
        )
        self._api_version = api_version
        self._requests_session = requests_session

    # -- construction from the environment -------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SemansysAuth:
        """Build from ``SEMANSYS_CLIENT_ID``, ``SEMANSYS_CLIENT_SECRET``,
        ``SEMANSYS_USERNAME``, ``SEMANSYS_PASSWORD`` and optionally
        ``SEMANSYS_TOKEN_URL``, ``SEMANSYS_SCOPE`` and ``SEMANSYS_API_VERSION``.
        Keyword arguments override the environment. A missing required value
        raises ``ValueError`` naming every missing variable.
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}
        missing = []
        for name in ("client_id", "client_secret", "username", "password"):
            if name in overrides:
                continue
            value = env.get(ENV_PREFIX + name.upper())
            if value:
                kwargs[name] = value
            else:
                missing.append(ENV_PREFIX + name.upper())
        if missing:
            raise ValueError(f"missing configuration: set {', '.join(missing)}")
        for name in ("token_url", "scope", "api_version"):
            value = env.get(ENV_PREFIX + name.upper())
            if value:
                kwargs[name] = value
        kwargs.update(overrides)
        return cls(**kwargs)

    # -- introspection -----------------------------------------------------------

    @property
    def token_url(self) -> str:
        return self._state.protocol.token_url

    @property
    def client_id(self) -> str:
        return self._state.protocol.client_id

    @property
    def username(self) -> str:
        return self._state.protocol.username

    @property
    def token_info(self) -> TokenInfo | None:
        """Non-secret facts about the token held now, or None before the first fetch."""
        held = self._state.current
        return None if held is None else held.token.info()

    def __repr__(self) -> str:
        return f"SemansysAuth({self._state.describe()}, scope={self._state.protocol.scope!r})"

    def __eq__(self, other: object) -> bool:
        # requests' AuthBase does not define equality; identity is the right one.
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __reduce_ex__(self, protocol: object) -> Any:
        # The default error ("cannot pickle '_thread.lock' object") says nothing
        # useful, and pickling would copy the credentials into a task queue.
        raise TypeError(
            "SemansysAuth cannot be pickled or deep-copied: create one per process "
            "(SemansysAuth.from_env() reads the SEMANSYS_* variables) and share tokens "
            "between processes with token_cache=FileTokenCache(directory)"
        )

    # -- explicit token access ---------------------------------------------------

    def get_token(self) -> str:
        """Return a valid access token, fetching one (through requests) if needed.

        For tools that need the raw token (``semansys-auth token``, a websocket
        handshake). The token is a secret: do not log it.
        """
        held = self._state.fresh() or self._obtain_blocking(None)
        return held.token.access_token

    # -- shared pieces -------------------------------------------------------------

    def _prepare(self, headers: Any, held: Held) -> None:
        headers["Authorization"] = held.header
        if self._api_version is not None and "x-api-version" not in headers:
            headers["x-api-version"] = self._api_version

    def _locked_obtain(self, stale: str | None) -> Generator[_Instruction, Any, Held]:
        yield _LOCK
        held = yield from self._state.obtain(stale)
        yield _UNLOCK
        return held

    # -- httpx ---------------------------------------------------------------------

    def _authorize(self, request: Any, held: Held) -> Callable[[], None] | None:
        """Put the token on an httpx request; return how to rewind its body for a
        resend (None if it cannot be resent). Called before the first send."""
        self._prepare(request.headers, held)
        return _httpx_rewinder(request)

    def _flow(self, request: Any) -> Generator[_Instruction, Any, None]:
        """The life of one httpx request that has no usable token yet.

        Shared by the sync and async clients. (When a usable token is held, the
        drivers take the hot path themselves: the same three steps, without the
        lock and without driving this generator.) The core re-checks under the
        lock, so a token that arrived meanwhile is used without a request.
        """
        held = yield from self._locked_obtain(None)
        rewind = self._authorize(request, held)
        response = yield request
        if response.status_code == 401:
            yield from self._after_401(request, response, held, rewind)

    def _after_401(
        self, request: Any, response: Any, held: Held, rewind: Callable[[], None] | None
    ) -> Generator[_Instruction, Any, None]:
        """Renew the token and resend ``request`` once, if the 401 was to our token."""
        if response.request.headers.get("Authorization") != held.header:
            return  # not our token (a redirect to another origin dropped it)
        if rewind is None:
            logger.debug("API answered 401; the request body cannot be replayed: not resent")
            return
        logger.debug(
            "API answered 401 to %s %s: renewing the token, resending once",
            request.method,
            request.url.path,  # no query, no userinfo: either may hold secrets
        )
        held = yield from self._locked_obtain(held.header)
        self._prepare(request.headers, held)
        rewind()
        yield request

    @staticmethod
    def _token_request(template: Any, instruction: TokenRequest) -> Any:
        # Built with the request class of the client in use (httpx or httpx2),
        # and with its timeouts: a request without them would wait forever.
        extensions = {}
        if "timeout" in template.extensions:
            extensions["timeout"] = template.extensions["timeout"]
        return type(template)(
            instruction.method,
            instruction.url,
            headers=instruction.headers,
            content=instruction.body,
            extensions=extensions,
        )

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        held = self._state.fresh()
        if held is not None:  # the hot path: a usable token, no lock needed
            rewind = self._authorize(request, held)
            response = yield request
            if response.status_code != 401:
                return
            flow = self._after_401(request, response, held, rewind)
        else:
            flow = self._flow(request)
        locked = False
        try:
            instruction = next(flow)
            while True:
                result: Any = None
                if instruction is request:  # the common case first
                    result = yield instruction
                elif instruction is _LOCK:
                    self._gate.acquire()
                    locked = True
                elif instruction is _UNLOCK:
                    locked = False
                    self._gate.release()
                elif isinstance(instruction, TokenRequest):
                    response = yield self._token_request(request, instruction)
                    result = _token_response(instruction, response, response.read())
                else:
                    assert isinstance(instruction, Sleep), instruction
                    time.sleep(instruction.seconds)
                instruction = flow.send(result)
        except StopIteration:
            return
        finally:
            flow.close()
            if locked:
                self._gate.release()

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        held = self._state.fresh()
        if held is not None:  # the hot path: a usable token, no lock needed
            rewind = self._authorize(request, held)
            response = yield request
            if response.status_code != 401:
                return
            flow = self._after_401(request, response, held, rewind)
        else:
            flow = self._flow(request)
        loop_lock: anyio.Lock | None = None
        try:
            instruction = next(flow)
            while True:
                result: Any = None
                if instruction is request:  # the common case first
                    result = yield instruction
                elif instruction is _LOCK:
                    lock = self._gate.loop_lock()
                    await self._gate.acquire_async(lock)
                    loop_lock = lock
                elif instruction is _UNLOCK:
                    assert loop_lock is not None
                    lock, loop_lock = loop_lock, None
                    self._gate.release_async(lock)
                elif isinstance(instruction, TokenRequest):
                    response = yield self._token_request(request, instruction)
                    result = _token_response(instruction, response, await response.aread())
                else:
                    assert isinstance(instruction, Sleep), instruction
                    await anyio.sleep(instruction.seconds)
                instruction = flow.send(result)
        except StopIteration:
            return
        finally:
            flow.close()
            if loop_lock is not None:
                self._gate.release_async(loop_lock)

    # -- requests ------------------------------------------------------------------

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        held = self._state.fresh() or self._obtain_blocking(None)
        self._prepare(r.headers, held)
        r.hooks["response"].append(self._handle_401)
        return r

    def _obtain_blocking(self, stale: str | None) -> Held:
        """Drive the token core with blocking I/O through requests (threads)."""
        self._gate.acquire()
        flow = self._state.obtain(stale)
        try:
            result: TokenResponse | None = None
            while True:
                try:
                    instruction = flow.send(result)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                if isinstance(instruction, Sleep):
                    time.sleep(instruction.seconds)
                    result = None
                else:
                    result = self._send_with_requests(instruction)
        finally:
            flow.close()
            self._gate.release()

    def _send_with_requests(self, instruction: TokenRequest) -> TokenResponse:
        def post(session: requests.Session) -> TokenResponse:
            response = session.request(
                instruction.method,
                instruction.url,
                data=instruction.body,
                headers=dict(instruction.headers),
                timeout=self._timeout,
                allow_redirects=False,
            )
            return TokenResponse(response.status_code, response.headers, response.content)

        if self._requests_session is not None:
            return post(self._requests_session)
        # A token is fetched about once an hour: a private session per fetch keeps
        # no idle connection (or socket) open in between, and re-reads the proxy
        # and CA-bundle environment variables each time.
        with requests.Session() as session:
            return post(session)

    def _handle_401(self, r: requests.Response, **kwargs: Any) -> requests.Response:
        if r.status_code != 401:
            return r
        sent = r.request.headers.get("Authorization")
        if not isinstance(sent, str) or not sent.startswith("Bearer "):
            return r  # not our token (a redirect to another origin dropped it)
        if not _requests_replayable(r.request):
            logger.debug("API answered 401; the request body cannot be replayed: not resent")
            return r
        logger.debug("API answered 401 to %s: renewing the token, resending once", r.request.method)
        # Drain and release the 401's connection first: it goes back to the pool
        # even if the renewal below raises.
        _ = r.content
        r.close()
        held = self._obtain_blocking(sent)
        prepared = r.request.copy()
        # As requests' own HTTPDigestAuth does: keep cookies the 401 set.
        jar = cast(Any, prepared)._cookies
        cast(Any, extract_cookies_to_jar)(jar, r.request, r.raw)
        prepared.prepare_cookies(jar)
        self._prepare(prepared.headers, held)
        # One resend only: the copy must not come back to this hook. (copy()
        # shares the hooks dict with the original: replace it, do not mutate it.)
        prepared.hooks = {
            **prepared.hooks,
            "response": [h for h in prepared.hooks["response"] if h != self._handle_401],
        }
        if prepared.body is not None and not isinstance(prepared.body, (bytes, str)):
            rewind_body(prepared)
        connection = r.connection
        retried: requests.Response = connection.send(prepared, **kwargs)
        retried.history.append(r)
        retried.request = prepared
        return retried
