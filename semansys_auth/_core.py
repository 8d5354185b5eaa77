"""The token core: the one place where token logic lives. It does no I/O.

[TokenCore][] holds the current token and decides everything about it: when it
may be sent, when a renewal is due and whether it is advisory or mandatory (in
botocore's sense), who renews, which grant to use, how to retry, when to stop
asking a server that rejected the credentials, what to take from and give to
the cache, and whether a 401 may be answered by a resend. It never touches a
socket, a file, a lock, a thread, a clock it was not given, or the user's
callback: :meth:`TokenCore.renewal` is one generator that *yields* what it
needs done, as the small immutable effects of ``_effects`` (a token request, a
sleep, the renewal lock, the cache and its lock, ``on_token``), and receives
the results, in the manner of h11. The drivers (``_drive``) carry them out.

An effect that fails is thrown back into the generator (``generator.throw``),
and the core decides what it means: a failing cache is a warning and a pause, a
failing advisory renewal is a warning and a retry later, a failing mandatory
renewal reaches the caller (and every caller that waited for it).

Nothing here imports threading, asyncio, anyio, os, sockets, an HTTP library or
a cache library; nothing here imports the layers above it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator

from ._cache_use import CacheUse
from ._effects import Detach, Lock, NotifyToken, ReleaseLock, Sleep, TakeLock
from ._endpoint import TokenEndpoint
from ._errors import (
    BadTokenRequestError,
    ClientCredentialsError,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from ._log import logger
from ._policy import Due, HeldToken, Policy
from ._redact import mask_username, shown
from ._token import REFRESH_TOKEN, Token, TokenInfo
from ._wire import EndpointRequest, EndpointResponse

RENEWAL_BACKOFF_MAX = 60.0
"""The longest pause between failed advisory renewals."""

BUSY_PAUSE = 0.05
"""After finding an advisory renewal under way elsewhere (another caller, or
another process holding the cache's lock), no caller tries one for this long."""

_TRY_LOCK = TakeLock(0.0)
_RELEASE_LOCK = ReleaseLock()

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    from ._effects import Effect

    Flow: TypeAlias = Generator[Effect | EndpointRequest, Any, Token]


class TokenCore:
    """Current token, renewal decisions, retries, cooldown and cache policy."""

    def __init__(
        self,
        endpoint: TokenEndpoint,
        policy: Policy,
        *,
        cache: Any = None,
        on_token: Callable[[TokenInfo], object] | None = None,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        jitter: Callable[[], float] | None = None,
        cache_wait: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.cache = cache
        self.on_token = on_token
        self.clock = clock  # the wall clock: only for expiry shared with caches and servers
        self.monotonic = monotonic  # every decision inside this process
        self._jitter = jitter
        # How long a caller waits for another caller's renewal, and for another
        # process's cache lock; then it gives up, or renews without that lock.
        self.lock_wait = policy.renewal_budget(endpoint.timeout) * 2
        self.cache_use = CacheUse(
            endpoint,
            cache,
            monotonic=monotonic,
            wait=endpoint.timeout if cache_wait is None else cache_wait,
        )
        self._current: HeldToken | None = None
        self._refresh_token: str | None = None
        self._refused_at = -math.inf  # obtained_at of the newest token the API refused
        # The credentials error that started a cooldown, and when the cooldown ends.
        # This and the next two are in the monotonic clock.
        self._rejection: tuple[SemansysAuthError, float] | None = None
        self._renewal_failures = 0
        self._renew_again_at = -math.inf
        # The error of the last mandatory renewal that failed, for the callers
        # that waited for it.
        self._failure: SemansysAuthError | None = None
        # The Authorization values of the last few tokens held: a 401 to one of
        # them is a 401 to us (the newest may have replaced it meanwhile).
        self._issued: deque[str] = deque(maxlen=8)

    # -- what callers may do, decided without a lock ------------------------------

    def usable(self) -> Token | None:
        """The held token if it can be sent now with no renewal due (the hot path)."""
        current = self._current
        # HeldToken.fresh, inlined: this runs on every request.
        if (
            current is not None
            and self.monotonic() < current.renew_at
            and self.clock() < current.wall_renew_at
        ):
            return current.token
        return None

    def due(self, refused: str | None = None) -> tuple[Due, Token | None]:
        """Whether a renewal is due, for a caller that :meth:`usable` gave
        nothing, or after the API refused the ``Authorization`` value
        ``refused`` with a 401; and the token to send meanwhile.

        * ``NOT_DUE``: send the returned token (it is valid, and a renewal is
          not due, or is paused after a failure, or another token replaced the
          refused one);
        * ``ADVISORY``: send the returned token, which is still valid; one
          caller renews meanwhile, if no other is at it;
        * ``MANDATORY``: no token may be sent until a renewal ends.
        """
        current = self._current
        mono, wall = self.monotonic(), self.clock()
        if (
            current is None
            or not current.valid(mono, wall)
            or current.token.authorization == refused
        ):
            return Due.MANDATORY, None
        if current.fresh(mono, wall) or mono < self._renew_again_at or self._cooling_down(mono):
            return Due.NOT_DUE, current.token
        return Due.ADVISORY, current.token

    # -- the renewal generator ---------------------------------------------------------

    def renewal(self, refused: str | None = None) -> Flow:
        """A token to send now: the whole rule, from "is a renewal due" through
        the renewal lock to the token endpoint.

        An advisory renewal is offered to the background (:class:`Detach`) and
        then run by the one caller that finds the lock free; the others send
        the current token. A mandatory one is run by the caller that takes the
        lock; the others wait for that renewal to end and go on with its token
        (or, if it failed, its error), without taking the lock in turn.
        """
        while True:
            due, current = self.due(refused)
            if due is Due.NOT_DUE:
                assert current is not None
                return current
            if due is Due.ADVISORY:
                assert current is not None
                yield Detach(current)
                if (yield _TRY_LOCK) is not Lock.TAKEN:
                    self._renew_again_at = self.monotonic() + BUSY_PAUSE
                    return current
                return (yield from self._holding_lock(refused, advisory=True))
            failure = self._failure
            taken = yield TakeLock(self.lock_wait)
            if taken is Lock.TAKEN:
                return (yield from self._holding_lock(refused, advisory=False))
            if taken is Lock.BUSY:
                raise TokenEndpointUnavailableError(
                    f"another caller has been renewing the token for over "
                    f"{self.lock_wait:.0f} s; gave up waiting for it"
                )
            # The renewal waited for has ended: its token, or its error.
            ended = self._failure
            if ended is not failure and ended is not None and self.due(refused)[0] is Due.MANDATORY:
                raise _copy(ended) from ended.__cause__

    def _holding_lock(self, refused: str | None, *, advisory: bool) -> Flow:
        try:
            token = yield from self.renew(refused, advisory=advisory)
        except Exception as exc:
            if not advisory:  # its callers wait for a token: they share the outcome
                self._failure = self._shared_failure(exc)
            yield _RELEASE_LOCK
            raise
        yield _RELEASE_LOCK
        return token

    def _shared_failure(self, exc: Exception) -> SemansysAuthError:
        """What the callers that waited for a failed renewal raise: a copy of
        our error, or, for a failure of the HTTP library of the caller that
        renewed (which may not be theirs), an unavailable endpoint caused by it."""
        if isinstance(exc, SemansysAuthError):
            return exc
        failure = TokenEndpointUnavailableError(
            f"the token renewal this request waited for failed: {self.redacted(exc)}"
        )
        failure.__cause__ = exc
        return failure

    def renew(self, refused: str | None = None, *, advisory: bool = False) -> Flow:
        """Obtain a token and return it; the caller holds the renewal lock.

        Re-checks first: a caller that took the lock after another renewal
        finds its token, and sends no request. Only the token the API refused
        is discarded: a newer one is kept (one refresh for a stampede of 401s).
        Then the cache's lock and the cache (another process may have renewed),
        then the token endpoint.

        ``advisory`` (a renewal while the current token is still valid): the
        request is tried once; a failure is logged as a warning and tried again
        later with backoff, and the current token is returned. The error is
        raised only when no valid token is left.
        """
        now = self.clock()
        mono = self.monotonic()
        current = self._current
        usable: HeldToken | None = None
        if current is not None:
            if current.token.authorization == refused:
                logger.debug("the API answered 401 to the current token: discarding it")
                self._current = None
                self._refused_at = max(self._refused_at, current.token.obtained_at)
            elif current.fresh(mono, now):
                return current.token  # renewed by the caller this one waited for
            elif current.valid(mono, now):
                usable = current
                logger.debug("token %s: renewing it early", _expires_in(current.token, now))
        advisory = advisory and usable is not None
        cache = self.cache_use
        keys = yield from cache.derive()
        locked = None
        if keys is not None:
            locked = yield from cache.lock(keys[0], wait=not advisory)
            if locked is False and advisory:
                self._renew_again_at = self.monotonic() + BUSY_PAUSE
                assert usable is not None
                return usable.token  # another process is renewing
        try:
            token = yield from self._renew_from_cache_or_endpoint(now, keys, usable, advisory)
        except Exception:
            if locked:
                yield from cache.unlock()
            raise
        if locked:
            yield from cache.unlock()
        return token

    def _renew_from_cache_or_endpoint(
        self, now: float, keys: tuple[str, bytes] | None, usable: HeldToken | None, advisory: bool
    ) -> Flow:
        if keys is not None and self.cache_use.active():  # not paused by a lock failure
            token = yield from self._from_cache(now, keys)
            if token is not None:
                return token
        mono = self.monotonic()
        if self._cooling_down(mono):
            if usable is not None:
                return usable.token  # rejected credentials: keep the valid token quietly
            raise self._cooldown_error(mono)
        try:
            token = yield from self._request(0 if advisory else self.policy.max_retries)
        except Exception as exc:
            if usable is None or not usable.valid(self.monotonic(), self.clock()):
                raise
            self._advisory_renewal_failed(exc, usable)
            return usable.token
        yield from self._keep(token, keys, from_cache=False)
        return token

    def cached(self) -> Flow:
        """A usable token from the cache, or None; no token request, no lock
        needed (cache reads are atomic). For a fresh process with a warm cache:
        the command line starts faster without taking the cache's lock."""
        keys = yield from self.cache_use.derive()
        if keys is None:
            return None  # type: ignore[return-value]
        token: Any = yield from self._from_cache(self.clock(), keys)
        return token  # type: ignore[no-any-return]

    # -- token requests ------------------------------------------------------------------

    def _request(self, max_retries: int) -> Flow:
        """Token requests until one succeeds: retries with backoff for an
        unavailable endpoint, the password grant once when a refresh is refused."""
        refresh_token = self._refresh_token
        attempt = 0
        while True:
            if refresh_token is not None:
                request = self.endpoint.refresh_request(refresh_token)
            else:
                request = self.endpoint.password_request()
            logger.debug(
                "token request: grant_type=%s url=%s attempt=%d",
                request.grant_type,
                request.url,
                attempt + 1,
            )
            answer = yield request
            if not isinstance(answer, EndpointResponse):
                raise TypeError("the adapter must send back an EndpointResponse")
            now = self.clock()
            try:
                token = self.endpoint.parse(request.grant_type, answer, now)
            except TokenEndpointUnavailableError as exc:
                delay = self._retry_delay(exc, attempt, max_retries)
                if delay is None:
                    logger.debug("token request failed, not retried: %s", exc)
                    raise
                attempt += 1
                logger.debug(
                    "token request failed (%s); retry %d of %d in %.2f s",
                    exc,
                    attempt,
                    max_retries,
                    delay,
                )
                yield Sleep(delay)
                continue
            except (ClientCredentialsError, UserCredentialsError, BadTokenRequestError) as exc:
                if request.grant_type == REFRESH_TOKEN:
                    # Refresh tokens die (expiry, revocation, one-time use elsewhere):
                    # fall back to the password grant, once, with its own retries.
                    logger.warning(
                        "refresh token refused (HTTP %s, %s): falling back to the password grant",
                        exc.status_code,
                        exc.error or "no error code",
                    )
                    self._refresh_token = refresh_token = None
                    attempt = 0
                    continue
                if isinstance(exc, (ClientCredentialsError, UserCredentialsError)):
                    until = self.monotonic() + self.policy.credentials_cooldown
                    self._rejection = (exc, until)
                logger.debug("token request rejected: %s", exc)
                raise
            if token.refresh_token is None and request.grant_type == REFRESH_TOKEN:
                # RFC 6749 section 6: no new refresh token means keep the old one.
                token = token.replace(refresh_token=refresh_token)
            logger.debug(
                "token obtained: grant_type=%s expires_in=%s scope=%s refresh_token=%s",
                token.grant_type,
                "unknown" if token.lifetime is None else f"{token.lifetime:.0f}s",
                token.scope,
                "issued" if token.refresh_token else "none",
            )
            return token

    def _retry_delay(
        self, exc: TokenEndpointUnavailableError, attempt: int, max_retries: int
    ) -> float | None:
        if attempt >= max_retries:
            return None
        if exc.retry_after is not None:
            # A server that asks for longer than we are willing to block is
            # answered with the error (and its retry_after) at once.
            return exc.retry_after if exc.retry_after <= self.policy.retry_after_cap else None
        base = min(self.policy.max_backoff, self.policy.backoff * (2.0**attempt))
        if self._jitter is None:
            import random  # on the first retry, not at start-up

            self._jitter = random.random
        return base / 2 + self._jitter() * base / 2

    def _advisory_renewal_failed(self, exc: Exception, usable: HeldToken) -> None:
        self._renewal_failures += 1
        delay = min(RENEWAL_BACKOFF_MAX, 2.0 ** (self._renewal_failures - 1))
        mono = self.monotonic()
        self._renew_again_at = mono + delay
        left = usable.valid_until - mono
        logger.warning(
            "early token renewal failed (%s); the current token stays in use for %.0f s "
            "more, next try in %.0f s",
            self.redacted(exc),
            left,
            delay,
        )

    def _cooling_down(self, now: float) -> bool:
        return self._rejection is not None and now < self._rejection[1]

    def _cooldown_error(self, now: float) -> SemansysAuthError:
        assert self._rejection is not None
        rejected, until = self._rejection
        left = until - now
        return _copy(
            rejected,
            f"{rejected.message}; not retried for another {math.ceil(left)} s "
            "(credentials cooldown, so that the account is not locked)",
            retry_after=left,
        )

    # -- adopting a token ------------------------------------------------------------

    def _adopt(self, token: Token, *, from_cache: bool) -> None:
        renew_at, valid_until = self.policy.deadlines(token)
        self.endpoint.redact.add(token.access_token, token.refresh_token)
        # The wall-clock deadlines, moved to the monotonic clock once, now.
        shift = self.monotonic() - self.clock()
        self._current = HeldToken(token, renew_at, valid_until, shift, from_cache)
        self._issued.append(token.authorization)
        self._refresh_token = token.refresh_token
        self._rejection = None
        self._renewal_failures = 0
        self._renew_again_at = -math.inf

    def _keep(
        self, token: Token, keys: tuple[str, bytes] | None, *, from_cache: bool
    ) -> Generator[Any, Any, None]:
        """Adopt ``token``, save it sealed to the cache (unless it came from
        there) and tell the ``on_token`` callback."""
        self._adopt(token, from_cache=from_cache)
        if not from_cache and keys is not None:
            yield from self.cache_use.save(keys, token)
        if self.on_token is not None:
            try:
                yield NotifyToken(token.info(from_cache=from_cache))
            except Exception as exc:
                logger.warning("on_token callback raised %s; ignored", self.redacted(exc))

    # -- the cache ---------------------------------------------------------------------

    def cache_key(self) -> str:
        """This object's cache key (see ``TokenEndpoint.cache_keys``), computed
        here if no renewal has yet (blocking: about 35 ms of CPU)."""
        return self.cache_use.derived()[0]

    def sealing_key(self) -> bytes:
        """The key that seals this object's cache entries."""
        return self.cache_use.derived()[1]

    def _from_cache(self, now: float, keys: tuple[str, bytes]) -> Generator[Any, Any, Token | None]:
        """A usable token from the cache (another process or object may have
        renewed it), or None. An expired cached token still gives its refresh
        token when it is newer than ours (another process rotated it)."""
        cached = yield from self.cache_use.load(keys)
        if cached is None:
            return None
        current = self._current
        if cached.obtained_at <= self._refused_at or (
            current is not None and cached.obtained_at <= current.token.obtained_at
        ):
            return None  # no newer than what we hold, or than what the API refused
        renew_at, _ = self.policy.deadlines(cached)
        if now < renew_at:
            logger.debug("token taken from the cache (%s)", _expires_in(cached, now))
            yield from self._keep(cached, keys, from_cache=True)
            return cached
        if cached.refresh_token is not None:
            self._refresh_token = cached.refresh_token
        return None

    # -- 401 ----------------------------------------------------------------------------

    def refused(
        self, status: int, request: Callable[[], tuple[str | None, bool, str]]
    ) -> str | None:
        """The one 401 rule: the ``Authorization`` value the API refused, when
        its answer calls for a renewal and one resend, else None. That is a 401
        to a request that carried one of our tokens, whose body can be sent
        again. ``request()`` tells, only for a 401: the ``Authorization`` value
        as the request left (a redirect to another origin drops it), whether its
        body can be sent again, and its method and path (no query) for the log."""
        if status != 401:  # the hot path: every answer comes here
            return None
        sent, replayable, what = request()
        if sent is None or sent not in self._issued:
            logger.debug("API answered 401 to %s without our token: not resent", what)
            return None
        if not replayable:
            logger.debug("API answered 401 to %s; its body cannot be sent again: not resent", what)
            return None
        logger.debug("API answered 401 to %s: renewing the token, resending once", what)
        return sent

    # -- introspection -----------------------------------------------------------------

    def info(self) -> TokenInfo | None:
        current = self._current
        return None if current is None else current.token.info(from_cache=current.from_cache)

    def describe(self) -> str:
        endpoint = self.endpoint
        return (
            f"token_url={endpoint.token_url!r}, client_id={endpoint.client_id!r}, "
            f"username={mask_username(endpoint.username)!r}, scope={endpoint.scope!r}"
        )

    def redacted(self, exc: BaseException) -> str:
        return shown(f"{type(exc).__name__}: {exc}", self.endpoint.redact, 300)


def _copy(
    error: SemansysAuthError | None, message: str | None = None, **changes: Any
) -> SemansysAuthError:
    """A new exception like ``error``: each caller raises its own, with its own
    traceback (one instance raised by many callers would grow one traceback)."""
    assert error is not None
    fields = {
        "status_code": error.status_code,
        "error": error.error,
        "error_description": error.error_description,
        "retry_after": error.retry_after,
        **changes,
    }
    return type(error)(error.message if message is None else message, **fields)


def _expires_in(token: Token, now: float) -> str:
    return (
        "expiry unknown"
        if token.expires_at is None
        else f"expires in {token.expires_at - now:.0f} s"
    )
