"""The token core: the one place where token logic lives. It does no I/O.

:class:`TokenCore` holds the current token and decides everything about it:
when it may be sent, when it must be renewed and by whom, which grant to use,
how to retry, when to stop asking a server that rejected the credentials, what
to take from and give to the cache, and whether a 401 may be answered by a
resend. It never touches a socket, a file, a lock, a thread or the user's
callback: :meth:`TokenCore.renew` is a generator that *yields* what it needs
done and receives the results, in the manner of h11:

* an :class:`~._wire.EndpointRequest` -> the adapter sends it and sends back an
  :class:`~._wire.EndpointResponse`;
* a :class:`Sleep` -> the adapter waits (``time.sleep`` or ``anyio.sleep``);
* a :class:`Call` -> the adapter runs a blocking function (a cache load or save,
  the ``on_token`` callback) and sends back its result; async adapters run it in
  a worker thread, so that it never blocks the event loop.

An adapter that fails to carry out an instruction throws the exception into the
generator (``generator.throw``), and the core decides what it means: a failing
cache is a warning, a failing early renewal is a warning and a retry later, a
failing required renewal reaches the caller.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Generator

from ._endpoint import TokenEndpoint
from ._entry import OLDER_FORMAT, seal, unseal
from ._errors import (
    BadTokenRequestError,
    ClientCredentialsError,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from ._fork import IMPORTING, reset_after_fork
from ._log import logger
from ._redact import mask_username, shown
from ._token import REFRESH_TOKEN, Token, TokenInfo
from ._wire import EndpointRequest, EndpointResponse

SAFETY_MARGIN = 5.0
"""A token is not sent in the last ``min(5 s, a tenth of its lifetime)`` before it
expires: the request must still reach the API in time."""

CACHE_PAUSE = 30.0
"""After a cache failure, the cache is left alone this long (one warning per pause)."""

RENEWAL_BACKOFF_MAX = 60.0


# The instruction and option classes are plain classes, not dataclasses:
# generating dataclass methods costs about 1.5 ms each at start-up.


class Sleep:
    """Instruction: wait this many seconds, then send back None."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Sleep({self.seconds!r})"


class Call:
    """Instruction: run this blocking function and send back its result.

    Used for cache loads and saves and the ``on_token`` callback. Async adapters
    run it in a worker thread.
    """

    __slots__ = ("function",)

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function

    def run(self) -> Any:
        return self.function()


# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Instruction: TypeAlias = EndpointRequest | Sleep | Call
    Flow: TypeAlias = Generator[Instruction, Any, Token]


class Need(enum.Enum):
    """What a caller without a fresh token must do (see :meth:`TokenCore.need`)."""

    NOTHING = "send the current token"
    RENEWAL = "send the current token; one caller may renew it meanwhile"
    TOKEN = "wait for a token"


class Policy:
    """The timing options of one auth object (checked by ``_config``)."""

    __slots__ = (
        "backoff",
        "credentials_cooldown",
        "leeway",
        "max_backoff",
        "max_retries",
        "retry_after_cap",
    )

    def __init__(
        self,
        *,
        leeway: float,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        retry_after_cap: float,
        credentials_cooldown: float,
    ) -> None:
        self.leeway = leeway
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_after_cap = retry_after_cap
        self.credentials_cooldown = credentials_cooldown

    def fetch_budget(self, timeout: float) -> float:
        """The longest a token fetch can take: every attempt and every wait."""
        waits = self.max_retries * max(self.max_backoff, self.retry_after_cap)
        return timeout * (self.max_retries + 1) * 2 + waits


class _Schedule:
    """The token in use and when to renew it: one attribute, replaced at once,
    so that the lock-free hot path never sees half an update.

    Each deadline is kept twice. ``renew_at`` and ``valid_until`` are in the
    monotonic clock, fixed when the token was adopted: a later step of the wall
    clock (NTP, a VM's clock set back) moves neither. The ``wall_`` copies, in
    epoch seconds, catch what the monotonic clock misses: it stands still while
    the machine sleeps (Linux's ``CLOCK_MONOTONIC``), so after a resume only the
    wall clock says that the token has expired. A deadline is passed when
    either clock says so: early is safe, late is not."""

    __slots__ = (
        "from_cache",
        "renew_at",
        "token",
        "valid_until",
        "wall_renew_at",
        "wall_valid_until",
    )

    def __init__(
        self,
        token: Token,
        wall_renew_at: float,
        wall_valid_until: float,
        shift: float,
        from_cache: bool,
    ) -> None:
        self.token = token
        self.wall_renew_at = wall_renew_at
        self.wall_valid_until = wall_valid_until
        self.renew_at = wall_renew_at + shift
        self.valid_until = wall_valid_until + shift
        self.from_cache = from_cache

    def fresh(self, mono: float, wall: float) -> bool:
        """No renewal due yet."""
        return mono < self.renew_at and wall < self.wall_renew_at

    def valid(self, mono: float, wall: float) -> bool:
        """May still be sent."""
        return mono < self.valid_until and wall < self.wall_valid_until


class TokenCore:
    """Current token, renewal decisions, retries, cooldown and cache policy."""

    # The last cache entry that could not be opened (one warning per entry); a
    # class default, set per object when an entry is first ignored.
    _ignored_entry: object = None

    def __init__(
        self,
        endpoint: TokenEndpoint,
        policy: Policy,
        *,
        cache: Any = None,
        on_token: Callable[[TokenInfo], object] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.cache = cache
        self.on_token = on_token
        self.clock = clock  # the wall clock: only for expiry shared with caches and servers
        self.monotonic = monotonic  # every decision inside this process
        self._jitter = jitter
        self._current: _Schedule | None = None
        self._refresh_token: str | None = None
        self._refused_at = -math.inf  # obtained_at of the newest token the API refused
        # The credentials error that started a cooldown, and when the cooldown ends.
        # This and the next two are in the monotonic clock.
        self._rejection: tuple[SemansysAuthError, float] | None = None
        self._renewal_failures = 0
        self._renew_again_at = -math.inf
        self._cache_paused_until = -math.inf
        self._key: tuple[str, bytes] | None = None  # (cache key, sealing key)
        self._key_lock = threading.Lock()
        reset_after_fork(self)
        # The Authorization values of the last few tokens held: a 401 to one of
        # them is a 401 to us (the newest may have replaced it meanwhile).
        self._issued: deque[str] = deque(maxlen=8)

    # -- what callers may do, decided without a lock ------------------------------

    def usable(self) -> Token | None:
        """The held token if it can be sent now with no renewal due (the hot path)."""
        current = self._current
        # _Schedule.fresh, inlined: this runs on every request.
        if (
            current is not None
            and self.monotonic() < current.renew_at
            and self.clock() < current.wall_renew_at
        ):
            return current.token
        return None

    def need(self, refused: str | None = None) -> tuple[Need, Token | None]:
        """What a caller must do when :meth:`usable` gave nothing, or after the API
        refused the ``Authorization`` value ``refused`` with a 401.

        * ``NOTHING``: send the returned token (it is valid, and a renewal is not
          due, or is paused after a failure, or another token replaced the
          refused one);
        * ``RENEWAL``: send the returned token, which is still valid; if no other
          caller is renewing, this one may run ``renew(required=False)``;
        * ``TOKEN``: no token may be sent; wait for the lock and run ``renew()``.
        """
        current = self._current
        mono, wall = self.monotonic(), self.clock()
        if (
            current is None
            or not current.valid(mono, wall)
            or current.token.authorization == refused
        ):
            return Need.TOKEN, None
        if current.fresh(mono, wall) or mono < self._renew_again_at or self._cooling_down(mono):
            return Need.NOTHING, current.token
        return Need.RENEWAL, current.token

    def cached(self) -> Generator[Instruction, Any, Token | None]:
        """A usable token from the cache, or None; no token request, no lock
        needed (cache reads are atomic). For a fresh process with a warm cache:
        the command line starts faster without taking the cache's lock."""
        return (yield from self._from_cache(self.clock()))

    # -- renewal, run by one caller at a time (the adapter holds the lock) ---------

    def renew(self, refused: str | None = None, *, required: bool = True) -> Flow:
        """Obtain a token and return it.

        Re-checks first: a caller that waited for the lock finds the token that
        the previous holder obtained, and sends no request. Only the token the
        API refused is discarded: a newer one is kept (one refresh for a stampede
        of 401s). Then the cache (another process may have renewed), then the
        token endpoint.

        With ``required=False`` (an early renewal while the current token is still
        valid) the request is tried once, and a failure is logged as a warning,
        tried again later with backoff, and the current token is returned; the
        error is raised only when no valid token is left.
        """
        now = self.clock()
        mono = self.monotonic()
        current = self._current
        usable: _Schedule | None = None
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
        if usable is None:
            required = True
        token = yield from self._from_cache(now)
        if token is not None:
            return token
        if self._cooling_down(mono):
            if usable is not None:
                return usable.token  # rejected credentials: keep the valid token quietly
            raise self._cooldown_error(mono)
        try:
            token = yield from self._request(self.policy.max_retries if required else 0)
        except Exception as exc:
            if usable is None or not usable.valid(self.monotonic(), self.clock()):
                raise
            self._early_renewal_failed(exc, usable)
            return usable.token
        yield from self._keep(token, from_cache=False)
        return token

    def _request(self, max_retries: int) -> Generator[Instruction, Any, Token]:
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
            response = yield request
            if not isinstance(response, EndpointResponse):
                raise TypeError("the adapter must send back an EndpointResponse")
            now = self.clock()
            try:
                token = self.endpoint.parse(request.grant_type, response, now)
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
            with IMPORTING:
                import random  # imported when a retry is due, not at start-up

            self._jitter = random.random
        return base / 2 + self._jitter() * base / 2

    def _early_renewal_failed(self, exc: Exception, usable: _Schedule) -> None:
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
        return type(rejected)(
            f"{rejected.message}; not retried for another {math.ceil(left)} s "
            "(credentials cooldown, so that the account is not locked)",
            status_code=rejected.status_code,
            error=rejected.error,
            error_description=rejected.error_description,
            retry_after=left,
        )

    # -- adopting a token ------------------------------------------------------------

    def _schedule(self, token: Token) -> tuple[float, float]:
        """(renew_at, valid_until): renew ``leeway`` before expiry, but never more
        than half the lifetime before it (a 4-second token is reused for 2 s);
        stop sending it a safety margin before expiry."""
        if token.expires_at is None:
            return math.inf, math.inf
        lifetime = max(token.expires_at - token.obtained_at, 0.0)
        valid_until = token.expires_at - min(SAFETY_MARGIN, lifetime / 10)
        renew_at = token.expires_at - min(self.policy.leeway, lifetime / 2)
        return min(renew_at, valid_until), valid_until

    def _adopt(self, token: Token, *, from_cache: bool) -> None:
        renew_at, valid_until = self._schedule(token)
        self.endpoint.redact.add(token.access_token, token.refresh_token)
        # The wall-clock deadlines, moved to the monotonic clock once, now.
        shift = self.monotonic() - self.clock()
        self._current = _Schedule(token, renew_at, valid_until, shift, from_cache)
        self._issued.append(token.authorization)
        self._refresh_token = token.refresh_token
        self._rejection = None
        self._renewal_failures = 0
        self._renew_again_at = -math.inf

    def _keep(self, token: Token, *, from_cache: bool) -> Generator[Instruction, Any, None]:
        """Adopt ``token``, save it to the cache (unless it came from there) and
        tell the ``on_token`` callback."""
        self._adopt(token, from_cache=from_cache)
        if not from_cache and self._cache_active():
            try:
                yield Call(lambda: self._save_sealed(token))
            except Exception as exc:
                self.cache_failed("save", exc)
        if self.on_token is not None:
            info = token.info(from_cache=from_cache)
            callback = self.on_token
            try:
                yield Call(lambda: callback(info))
            except Exception as exc:
                logger.warning("on_token callback raised %s; ignored", self.redacted(exc))

    # -- the cache ---------------------------------------------------------------------

    def cache_key(self) -> str:
        """This object's cache key (see ``TokenEndpoint.cache_keys``). Computed
        once, with the sealing key, on first use: it costs about 35 ms of CPU, so
        async adapters call it in a worker thread, as part of a cache call."""
        return self._cache_keys()[0]

    def sealing_key(self) -> bytes:
        """The key that seals this object's cache entries (computed with
        :meth:`cache_key`)."""
        return self._cache_keys()[1]

    def _cache_keys(self) -> tuple[str, bytes]:
        with self._key_lock:  # uncontended after the first call: well under a microsecond
            if self._key is None:
                self._key = self.endpoint.cache_keys()
            return self._key

    def _after_fork(self) -> None:
        # A fork while another thread computed the key would leave this held.
        self._key_lock = threading.Lock()

    def _save_sealed(self, token: Token) -> None:
        """Seal ``token`` and save it (blocking: run as a :class:`Call`)."""
        key, sealing_key = self._cache_keys()
        self.cache.save(key, seal(key, sealing_key, token))

    def _load_unsealed(self) -> Token | _Unopened | None:
        """The cached token, or why the stored entry cannot be used, or None
        (blocking: run as a :class:`Call`).

        Raises:
            TypeError: the cache returned something other than a str or bytes
                entry (a cache failure).
        """
        key, sealing_key = self._cache_keys()
        entry = self.cache.load(key)
        if entry is None:
            return None
        if not isinstance(entry, (str, bytes)):
            raise TypeError(f"it returned a {type(entry).__name__}, not the entry it was given")
        try:
            return unseal(key, sealing_key, entry)
        except ValueError as exc:
            return _Unopened(str(exc), entry)

    def _entry_ignored(self, unopened: _Unopened) -> None:
        """A stored entry that cannot be opened is a miss, not a cache failure:
        the cache stays in use, and the next token replaces the entry. One
        warning per entry (never quoting it)."""
        if unopened.entry == self._ignored_entry:
            return
        self._ignored_entry = unopened.entry
        reason = unopened.reason
        if reason == OLDER_FORMAT:
            logger.warning(
                "token cache entry of an older semansys-auth version ignored; it is "
                "replaced by the next token"
            )
        else:
            logger.warning(
                "token cache entry ignored: %s; it is replaced by the next token", reason
            )

    def _cache_active(self) -> bool:
        return self.cache is not None and self.monotonic() >= self._cache_paused_until

    def cache_lock(self) -> Any:
        """The cache's lock for this object's key, or None (no cache, no lock
        support, or the cache is paused after a failure). Blocking: call it where
        cache calls run."""
        if not self._cache_active():
            return None
        make = getattr(self.cache, "lock", None)
        if not callable(make):
            return None
        try:
            return make(self.cache_key())
        except Exception as exc:
            self.cache_failed("lock", exc)
            return None

    def cache_failed(self, what: str, exc: BaseException) -> None:
        """A cache call failed: warn (once per pause) and leave the cache alone for
        :data:`CACHE_PAUSE` seconds, so that each request does not pay for it."""
        now = self.monotonic()
        if now >= self._cache_paused_until:
            logger.warning(
                "token cache %s failed: %s; going on without the cache for %.0f s",
                what,
                self.redacted(exc),
                CACHE_PAUSE,
            )
        self._cache_paused_until = now + CACHE_PAUSE

    def _from_cache(self, now: float) -> Generator[Instruction, Any, Token | None]:
        """A usable token from the cache (another process or object may have
        renewed it), or None. An expired cached token still gives its refresh
        token when it is newer than ours (another process rotated it)."""
        if not self._cache_active():
            return None
        try:
            cached: Token | _Unopened | None = yield Call(self._load_unsealed)
        except Exception as exc:
            self.cache_failed("load", exc)
            return None
        if cached is None:
            return None
        if isinstance(cached, _Unopened):
            self._entry_ignored(cached)
            return None
        current = self._current
        if cached.obtained_at <= self._refused_at or (
            current is not None and cached.obtained_at <= current.token.obtained_at
        ):
            return None  # no newer than what we hold, or than what the API refused
        renew_at, _ = self._schedule(cached)
        if now < renew_at:
            logger.debug("token taken from the cache (%s)", _expires_in(cached, now))
            yield from self._keep(cached, from_cache=True)
            return cached
        if cached.refresh_token is not None:
            self._refresh_token = cached.refresh_token
        return None

    # -- 401 ----------------------------------------------------------------------------

    def may_resend(self, status: int, sent: str | None, replayable: bool, what: str) -> bool:
        """Whether an API answer calls for a renewal and one resend: a 401 to a
        request that carried one of our tokens (``sent`` is the ``Authorization``
        value as it left; a redirect to another origin drops it), whose body can
        be sent again. ``what`` (method and path, no query) is for the log."""
        if status != 401:
            return False
        if sent is None or sent not in self._issued:
            logger.debug("API answered 401 to %s without our token: not resent", what)
            return False
        if not replayable:
            logger.debug("API answered 401 to %s; its body cannot be sent again: not resent", what)
            return False
        logger.debug("API answered 401 to %s: renewing the token, resending once", what)
        return True

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


class _Unopened:
    """A cache entry that cannot be opened, and why (a reason from ``_entry``)."""

    __slots__ = ("entry", "reason")

    def __init__(self, reason: str, entry: str | bytes) -> None:
        self.reason = reason
        self.entry = entry


def _expires_in(token: Token, now: float) -> str:
    return (
        "expiry unknown"
        if token.expires_at is None
        else f"expires in {token.expires_at - now:.0f} s"
    )
