"""The token value object and the unverified JWT claim reader. No I/O here."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Token", "TokenInfo", "jwt_claims"]


def jwt_claims(access_token: str) -> dict[str, Any] | None:
    """Return the payload of a JWT *without verifying it*, or None if it is not a JWT.

    Used only to learn ``exp`` when the token answer has no ``expires_in``, and by
    ``semansys-auth inspect``. Never used for any security decision.
    """
    parts = access_token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


@dataclass(frozen=True)
class TokenInfo:
    """Non-secret facts about a token: safe to log, print or send to metrics.

    Passed to the ``on_token`` callback and printed by ``semansys-auth token --json``.
    """

    grant_type: str
    """How it was obtained: ``"password"``, ``"refresh_token"`` or ``"cache"``."""
    token_type: str
    obtained_at: float
    """Epoch seconds."""
    expires_at: float | None
    """Epoch seconds, or None when the server gave no lifetime."""
    scope: str | None
    has_refresh_token: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "grant_type": self.grant_type,
            "token_type": self.token_type,
            "obtained_at": self.obtained_at,
            "expires_at": self.expires_at,
            "expires_in": (
                None if self.expires_at is None else round(self.expires_at - self.obtained_at)
            ),
            "scope": self.scope,
            "has_refresh_token": self.has_refresh_token,
        }


@dataclass(frozen=True)
class Token:
    """An access token with what is needed to use and renew it.

    ``repr`` and ``str`` never show ``access_token`` or ``refresh_token``.
    """

    access_token: str = field(repr=False)
    expires_at: float | None
    """Epoch seconds at which the server stops accepting it, or None if unknown."""
    obtained_at: float
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    token_type: str = "Bearer"
    grant_type: str = "password"

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        return "Bearer " + self.access_token

    @property
    def lifetime(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - self.obtained_at

    def refresh_at(self, leeway: float) -> float:
        """When to stop using it and fetch a new one: ``leeway`` seconds before expiry,
        but never more than half the token's lifetime before it (a 4-second token is
        reused for 2 seconds, not fetched for every request)."""
        if self.expires_at is None:
            return math.inf
        lifetime = max(self.expires_at - self.obtained_at, 0.0)
        return self.expires_at - min(leeway, lifetime / 2)

    def info(self) -> TokenInfo:
        return TokenInfo(
            grant_type=self.grant_type,
            token_type=self.token_type,
            obtained_at=self.obtained_at,
            expires_at=self.expires_at,
            scope=self.scope,
            has_refresh_token=self.refresh_token is not None,
        )

    # The cache stores tokens as JSON; these two are its only format.
    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "obtained_at": self.obtained_at,
            "scope": self.scope,
            "token_type": self.token_type,
            "grant_type": self.grant_type,
        }

    @classmethod
    def from_json(cls, data: Any) -> Token:
        """Rebuild a token written by :meth:`to_json`; ``ValueError`` if it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        access = data.get("access_token")
        refresh = data.get("refresh_token")
        expires_at = data.get("expires_at")
        obtained_at = data.get("obtained_at")
        scope = data.get("scope")
        if not isinstance(access, str) or not access:
            raise ValueError("access_token missing")
        if refresh is not None and not isinstance(refresh, str):
            raise ValueError("refresh_token is not a string")
        if expires_at is not None and not isinstance(expires_at, (int, float)):
            raise ValueError("expires_at is not a number")
        if not isinstance(obtained_at, (int, float)):
            raise ValueError("obtained_at is not a number")
        if scope is not None and not isinstance(scope, str):
            raise ValueError("scope is not a string")
        return cls(
            access_token=access,
            refresh_token=refresh,
            expires_at=None if expires_at is None else float(expires_at),
            obtained_at=float(obtained_at),
            scope=scope,
            token_type=str(data.get("token_type") or "Bearer"),
            grant_type=str(data.get("grant_type") or "password"),
        )
