"""The timing options of one auth object, and the token it holds with its
deadlines: pure values that the token core (``_core``) decides with."""

from __future__ import annotations

import enum
import math

from ._token import Token

SAFETY_MARGIN = 5.0
"""A token is not sent in the last ``min(5 s, a tenth of its lifetime)`` before it
expires: the request must still reach the API in time."""


class Due(enum.Enum):
    """Whether a renewal is due, in botocore's sense (see ``TokenCore.due``)."""

    NOT_DUE = "send the current token"
    ADVISORY = "send the current token; one caller may renew it meanwhile"
    MANDATORY = "no token may be sent: a renewal must end first"


class Policy:
    """The timing options of one auth object (checked by ``_config``).

    A plain class, not a dataclass: generating dataclass methods costs about
    1.5 ms each at start-up."""

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

    def renewal_budget(self, timeout: float) -> float:
        """The longest a renewal can take: every attempt and every wait."""
        waits = self.max_retries * max(self.max_backoff, self.retry_after_cap)
        return timeout * (self.max_retries + 1) * 2 + waits

    def deadlines(self, token: Token) -> tuple[float, float]:
        """(renew_at, valid_until) in epoch seconds: renew ``leeway`` before
        expiry, but never more than half the lifetime before it (a 4-second
        token is reused for 2 s); stop sending it a safety margin before expiry."""
        if token.expires_at is None:
            return math.inf, math.inf
        lifetime = max(token.expires_at - token.obtained_at, 0.0)
        valid_until = token.expires_at - min(SAFETY_MARGIN, lifetime / 10)
        renew_at = token.expires_at - min(self.leeway, lifetime / 2)
        return min(renew_at, valid_until), valid_until


class HeldToken:
    """The token in use and its deadlines: one attribute of the core, replaced at
    once, so that the lock-free hot path never sees half an update.

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
