"""The token state machine: the one place where token logic lives. No I/O.

:class:`TokenState` knows the current token, when to renew it, which grant to use
next, how to retry, when to stop hammering a server that rejected the
credentials, and what to keep in the cache. It never touches a socket, a lock or
a clock it was not given: :meth:`TokenState.obtain` is a generator that *yields*
what it needs done (a :class:`~semansys_auth._protocol.TokenRequest` to send, a
:class:`Sleep` to wait) and receives the answers. The requests and httpx adapters
in ``_auth.py`` drive it, each with its own I/O and its own locks, in the manner
of h11.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace

from ._cache import TokenCache
from ._errors import (
    BadTokenRequestError,
    ClientCredentialsError,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from ._protocol import REFRESH_TOKEN, Protocol, TokenRequest, TokenResponse, mask_username
from ._token import Token, TokenInfo

logger = logging.getLogger("semansys_auth")


@dataclass(frozen=True)
class Sleep:
    """Instruction from :meth:`TokenState.obtain`: wait this long, then go on."""

    seconds: float


class Held:
    """The token in use, with its header and renewal time computed once.

    Kept apart from :class:`Token` so the per-request fast path is one attribute
    read and one float comparison.
    """

    __slots__ = ("header", "refresh_at", "token")

    def __init__(self, token: Token, leeway: float) -> None:
        self.token = token
        self.header = token.authorization
        self.refresh_at = token.refresh_at(leeway)


Step = Generator["TokenRequest | Sleep", "TokenResponse | None", Held]


class TokenState:
    """Current token, renewal policy, retries and cooldown; shared by all adapters."""

    def __init__(
        self,
        protocol: Protocol,
        *,
        leeway: float,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        retry_after_cap: float,
        credentials_cooldown: float,
        cache: TokenCache | None = None,
        on_token: Callable[[TokenInfo], object] | None = None,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.protocol = protocol
        self.leeway = leeway
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retry_after_cap = retry_after_cap
        self.credentials_cooldown = credentials_cooldown
        self.cache = cache
        self.on_token = on_token
        self.clock = clock
        self._jitter = jitter
        self.current: Held | None = None
        self._refresh_token: str | None = None
        self._rejected: SemansysAuthError | None = None
        self._rejected_until = 0.0
        # Hashed: the key goes into cache files and names; the e-mail address must not.
        self.cache_key = hashlib.sha256(
            "\0".join([protocol.token_url, protocol.client_id, protocol.username]).encode()
        ).hexdigest()

    # -- the fast path, called without any lock ------------------------------

    def fresh(self) -> Held | None:
        """The current token if it can be sent now, else None."""
        held = self.current
        if held is not None and self.clock() < held.refresh_at:
            return held
        return None

    # -- the slow path, called with the adapter's lock held -------------------

    def obtain(self, stale: str | None = None) -> Step:
        """Make sure a usable token is held and return it.

        ``stale`` is the ``Authorization`` value that the server just answered 401
        to. Only that token is discarded: if another caller has already replaced
        it, the newer token is returned without a request (one refresh for a
        stampede of 401s). The caller holds the lock; everyone who waited on it
        re-checks here and uses the token that just arrived.
        """
        now = self.clock()
        held = self.current
        newer_than = -math.inf
        if held is not None:
            if held.header != stale and now < held.refresh_at:
                return held
            if held.header == stale:
                logger.debug("the API answered 401 to the current token: discarding it")
                self.current = None
                newer_than = held.token.obtained_at
            else:
                logger.debug(
                    "token expires in %.0f s: renewing it before use",
                    (held.token.expires_at or now) - now,
                )
        cached = self._from_cache(stale, now, newer_than)
        if cached is not None:
            return cached
        if now < self._rejected_until and self._rejected is not None:
            raise self._cooldown_error(now)
        token = yield from self._request_token()
        return self._adopt(token, save=True)

    def _request_token(self) -> Generator[TokenRequest | Sleep, TokenResponse | None, Token]:
        refresh_token = self._refresh_token
        attempt = 0
        while True:
            if refresh_token is not None:
                request = self.protocol.refresh_request(refresh_token)
            else:
                request = self.protocol.password_request()
            logger.debug(
                "token request: grant_type=%s url=%s attempt=%d",
                request.grant_type,
                request.url,
                attempt + 1,
            )
            response = yield request
            assert response is not None, "the driver must send a TokenResponse back"
            now = self.clock()
            try:
                token = self.protocol.parse(request.grant_type, response, now)
            except TokenEndpointUnavailableError as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    logger.debug("token request failed, not retried: %s", exc)
                    raise
                attempt += 1
                logger.debug(
                    "token request failed (%s); retry %d of %d in %.2f s",
                    exc,
                    attempt,
                    self.max_retries,
                    delay,
                )
                yield Sleep(delay)
                continue
            except (ClientCredentialsError, UserCredentialsError, BadTokenRequestError) as exc:
                if request.grant_type == REFRESH_TOKEN:
                    # Refresh tokens die (expiry, revocation, one-time use elsewhere):
                    # fall back to the password grant, once.
                    logger.warning(
                        "refresh token refused (HTTP %s, %s): falling back to the password grant",
                        exc.status_code,
                        exc.error or "no error code",
                    )
                    self._refresh_token = refresh_token = None
                    attempt = 0
                    continue
                if isinstance(exc, (ClientCredentialsError, UserCredentialsError)):
                    self._rejected = exc
                    self._rejected_until = now + self.credentials_cooldown
                logger.debug("token request rejected: %s", exc)
                raise
            if token.refresh_token is None and request.grant_type == REFRESH_TOKEN:
                # RFC 6749 section 6: no new refresh token means keep the old one.
                token = replace(token, refresh_token=refresh_token)
            logger.debug(
                "token obtained: grant_type=%s expires_in=%s scope=%s refresh_token=%s",
                token.grant_type,
                "unknown" if token.lifetime is None else f"{token.lifetime:.0f}s",
                token.scope,
                "issued" if token.refresh_token else "none",
            )
            if self.protocol.scope and token.scope and token.scope != self.protocol.scope:
                logger.debug("granted scope %r differs from requested", token.scope)
            return token

    def _retry_delay(self, exc: TokenEndpointUnavailableError, attempt: int) -> float | None:
        if attempt >= self.max_retries:
            return None
        if exc.retry_after is not None:
            # A server that asks for longer than we are willing to block is
            # answered with the error (and its retry_after) at once.
            return exc.retry_after if exc.retry_after <= self.retry_after_cap else None
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        return base / 2 + self._jitter() * base / 2

    def _cooldown_error(self, now: float) -> SemansysAuthError:
        rejected = self._rejected
        assert rejected is not None
        left = self._rejected_until - now
        return type(rejected)(
            f"{rejected.message}; not retried for another {math.ceil(left)} s "
            "(credentials cooldown, so that the account is not locked)",
            status_code=rejected.status_code,
            error=rejected.error,
            error_description=rejected.error_description,
            retry_after=left,
        )

    def _adopt(self, token: Token, *, save: bool) -> Held:
        held = Held(token, self.leeway)
        self.current = held
        self._refresh_token = token.refresh_token
        self._rejected = None
        self._rejected_until = 0.0
        self.protocol.redact.add(token.access_token, token.refresh_token)
        if save and self.cache is not None:
            try:
                self.cache.save(self.cache_key, token)
            except Exception as exc:  # a broken cache must not break the API call
                logger.warning("token cache save failed: %s", self._redacted_reason(exc))
        if self.on_token is not None:
            try:
                self.on_token(token.info())
            except Exception:
                logger.warning("on_token callback raised; ignored", exc_info=True)
        return held

    def _from_cache(self, stale: str | None, now: float, newer_than: float) -> Held | None:
        """A usable token from the cache (another process may have renewed it).

        After a 401, only a token obtained after the refused one is taken: an
        older one was probably refused as well.
        """
        if self.cache is None:
            return None
        try:
            token = self.cache.load(self.cache_key)
        except Exception as exc:
            logger.warning("token cache load failed: %s", self._redacted_reason(exc))
            return None
        if token is None or token.authorization == stale or token.obtained_at <= newer_than:
            return None
        if now >= token.refresh_at(self.leeway):
            # Its access token is spent, but its refresh token may be the newest one
            # (rotation by another process made ours invalid).
            if token.refresh_token and (
                self.current is None or token.obtained_at >= self.current.token.obtained_at
            ):
                self._refresh_token = token.refresh_token
            return None
        logger.debug("token taken from the cache (expires in %s)", _expires_in(token, now))
        return self._adopt(replace(token, grant_type="cache"), save=False)

    def _redacted_reason(self, exc: Exception) -> str:
        return self.protocol.redact(f"{type(exc).__name__}: {exc}")

    def describe(self) -> str:
        return (
            f"token_url={self.protocol.token_url!r}, client_id={self.protocol.client_id!r}, "
            f"username={mask_username(self.protocol.username)!r}"
        )


def _expires_in(token: Token, now: float) -> str:
    return "unknown" if token.expires_at is None else f"{token.expires_at - now:.0f}s"
