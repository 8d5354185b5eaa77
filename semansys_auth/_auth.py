"""``SemansysAuth``: the one public object, a thin front over the token core.

It checks its options (``_config``), owns the core and the lock, and hands each
HTTP library to its adapter: requests (``_requests``), httpx and httpx2
(``_httpx``, whose ``HttpxAuth`` base makes the object an ``httpx.Auth``),
aiohttp (``_aiohttp``), niquests (``_niquests``, told from requests by the
module of the request's class). The requests, aiohttp and niquests adapters,
and their libraries, are imported on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, overload

from ._config import build, env_options
from ._fork import IMPORTING, reset_after_fork
from ._httpx import HttpxAdapter, HttpxAuth
from ._token import TokenInfo
from ._token_url import PRE_PRODUCTION_TOKEN_URL

if TYPE_CHECKING:
    from collections.abc import Coroutine

    import niquests
    import requests
    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

    from ._aiohttp import AiohttpAdapter
    from ._cache import TokenCache
    from ._niquests import NiquestsAdapter
    from ._requests import RequestsAdapter

__all__ = ["PRE_PRODUCTION_TOKEN_URL", "SemansysAuth"]


class SemansysAuth(HttpxAuth):
    """OAuth 2.0 password-grant auth for the Semansys API, for requests, httpx,
    httpx2, aiohttp and niquests, sync and async.

    Use it as requests' ``session.auth = auth``, as httpx's (and httpx2's)
    ``httpx.Client(auth=auth)`` or ``httpx.AsyncClient(auth=auth)``, and as an
    aiohttp client middleware: ``aiohttp.ClientSession(middlewares=(auth,))``,
    and as niquests' ``session.auth = auth`` (``Session`` and ``AsyncSession``).
    It is an ``httpx.Auth`` (and an ``httpx2.Auth`` when httpx2 is installed).

    Nothing is fetched at construction. The first request fetches a token; later
    requests reuse it until ``leeway`` seconds before it expires (at most half
    its lifetime before), when one caller renews it while the others keep
    sending the still-valid token; a renewal uses the refresh token, or the
    password grant when there is none or it is refused. A 401 from the API to a
    request that carried our token renews the token and resends the request
    once. One object may serve any number of sessions, clients, threads and
    event loops at once, with one token request per renewal between them.

    Args:
        client_id: issued by the Semansys support desk.
        client_secret: issued by the Semansys support desk.
        username: the account's e-mail address.
        password: the account's password.
        token_url: the token endpoint; https, or http on a loopback host. The
            default is the pre-production endpoint.
        scope: a string or a list of strings; None lets the server choose.
        leeway: seconds before expiry at which the token is renewed (at most
            half its lifetime).
        timeout: seconds that one token request may take, from connect to the
            last byte.
        max_retries: retries of a token request on 5xx, 429 and
            ``temporarily_unavailable``.
        backoff: the first wait between retries, in seconds (doubled each
            time, halved at random).
        max_backoff: the longest wait between retries.
        retry_after_cap: the longest ``Retry-After`` honoured; a longer one
            fails at once with ``retry_after`` set.
        credentials_cooldown: seconds during which rejected credentials fail
            at once, without a request, so that the account is not locked.
        api_version: sent as the ``x-api-version`` header of every API request
            that has none of its own. Semansys requires this header on every
            request; a request's own header wins.
        token_cache: a [TokenCache][semansys_auth.TokenCache], e.g.
            [FileTokenCache][semansys_auth.FileTokenCache] or
            [RedisTokenCache][semansys_auth.RedisTokenCache], to share tokens.
        on_token: called with the [TokenInfo][semansys_auth.TokenInfo] (no
            secrets) of every new token, e.g. for metrics; what it raises is
            logged.
        requests_session: the ``requests.Session`` that token requests of
            requests users go through (proxies, certificates); default: a
            private one per fetch, which reads the usual environment variables.

    Raises:
        TypeError: an option has the wrong type.
        ValueError: an option has a wrong value; the message names it and
            says what is expected. Nothing touches the network or the disk.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        # These defaults repeat _config.build's (tests/clients/test_env_config.py checks
        # they match): the command builds through _config without importing this
        # module (and httpx), and the signature shows the values, not names.
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
        self._shell, self._settings = build(
            client_id=client_id,
            client_secret=client_secret,
            username=username,
            password=password,
            token_url=token_url,
            scope=scope,
            leeway=leeway,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            retry_after_cap=retry_after_cap,
            credentials_cooldown=credentials_cooldown,
            api_version=api_version,
            token_cache=token_cache,
            on_token=on_token,
            requests_session=requests_session,
        )
        self._core = self._shell.core
        self._httpx = HttpxAdapter(self._shell, self._settings)
        self._requests: RequestsAdapter | None = None
        self._aiohttp: AiohttpAdapter | None = None
        self._niquests: NiquestsAdapter | None = None
        self._adapters_guard = threading.Lock()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        # Another thread may have held the guard at the fork (it imports an adapter).
        self._adapters_guard = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SemansysAuth:
        """Build from the ``SEMANSYS_*`` environment variables.

        Reads ``SEMANSYS_CLIENT_ID``, ``SEMANSYS_CLIENT_SECRET``,
        ``SEMANSYS_USERNAME``, ``SEMANSYS_PASSWORD`` and, when set,
        ``SEMANSYS_TOKEN_URL``, ``SEMANSYS_SCOPE``, ``SEMANSYS_API_VERSION`` and
        ``SEMANSYS_TOKEN_CACHE`` (a directory, or a ``redis://``, ``rediss://`` or
        ``unix://`` URL).

        Args:
            environ: the variables to read; default ``os.environ``.
            **overrides: keyword arguments of
                [SemansysAuth][semansys_auth.SemansysAuth]; they win
                over the environment.

        Returns:
            A new auth object.

        Raises:
            ValueError: a required variable is missing or blank (every missing
                one is named), or a value is wrong.
            TypeError: an override has the wrong type.
        """
        return cls(**env_options(environ, overrides))

    # -- introspection --------------------------------------------------------------

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return self._core.endpoint.token_url

    @property
    def client_id(self) -> str:
        """The client id."""
        return self._core.endpoint.client_id

    @property
    def username(self) -> str:
        """The account's e-mail address."""
        return self._core.endpoint.username

    @property
    def token_info(self) -> TokenInfo | None:
        """Non-secret facts about the token held now, or None before the first fetch."""
        return self._core.info()

    def __repr__(self) -> str:
        return f"SemansysAuth({self._core.describe()})"

    def __reduce_ex__(self, protocol: object) -> Any:
        # The default error ("cannot pickle '_thread.lock' object") says nothing
        # useful, and pickling would copy the credentials into a task queue.
        raise TypeError(
            "SemansysAuth cannot be pickled or copied: create one per process "
            "(SemansysAuth.from_env() reads the SEMANSYS_* variables) and share tokens "
            "between processes with token_cache=FileTokenCache(directory) or RedisTokenCache"
        )

    # -- explicit token access ------------------------------------------------------

    def get_token(self) -> str:
        """A valid access token, fetched (through requests) if needed.

        For tools that need the raw token (``semansys-auth token``, a websocket
        handshake). The token is a secret: do not log it.

        Returns:
            The access token.

        Raises:
            SemansysAuthError: the token endpoint refused or failed (a subclass
                says what to fix).
            requests.RequestException: the token endpoint could not be reached.
        """
        token = self._core.usable() or self._requests_adapter().token()
        return token.access_token

    # -- requests, aiohttp and niquests: they call the object ------------------------

    @overload
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest: ...

    @overload
    def __call__(self, r: niquests.PreparedRequest) -> niquests.PreparedRequest: ...

    @overload
    def __call__(
        self, r: ClientRequest, handler: ClientHandlerType
    ) -> Coroutine[Any, Any, ClientResponse]: ...

    def __call__(self, r: Any, handler: Any = None) -> Any:
        """requests calls ``auth(prepared_request)``; aiohttp calls a middleware
        with ``(request, handler)``; niquests (sync and async) calls
        ``auth(prepared_request)`` with its own request class."""
        if handler is None:
            if type(r).__module__.startswith("niquests"):
                return (self._niquests or self._niquests_adapter()).authorize(r)
            return (self._requests or self._requests_adapter()).authorize(r)
        return (self._aiohttp or self._aiohttp_adapter()).middleware(r, handler)

    def _requests_adapter(self) -> RequestsAdapter:
        with self._adapters_guard:
            if self._requests is None:
                with IMPORTING:
                    from ._requests import RequestsAdapter

                self._requests = RequestsAdapter(self._shell, self._settings)
            return self._requests

    def _aiohttp_adapter(self) -> AiohttpAdapter:
        with self._adapters_guard:
            if self._aiohttp is None:
                with IMPORTING:
                    from ._aiohttp import AiohttpAdapter

                self._aiohttp = AiohttpAdapter(self._shell, self._settings)
            return self._aiohttp

    def _niquests_adapter(self) -> NiquestsAdapter:
        with self._adapters_guard:
            if self._niquests is None:
                with IMPORTING:
                    from ._niquests import NiquestsAdapter

                self._niquests = NiquestsAdapter(self._shell, self._settings)
            return self._niquests
