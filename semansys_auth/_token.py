"""The token value object, its non-secret view, and the unverified JWT claim reader.

No I/O here. A [Token][semansys_auth.Token] checks its own fields when it is built, so that
nothing that reaches a header or a cache file can be malformed, whether it came
from a token endpoint, a cache file or a user's own cache.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Token", "TokenInfo", "jwt_claims"]

PASSWORD = "password"
REFRESH_TOKEN = "refresh_token"
GRANT_TYPES = (PASSWORD, REFRESH_TOKEN)

MAX_TOKEN_LENGTH = 16 * 1024
"""Longest access or refresh token accepted: servers refuse headers past 8-16 KiB."""

# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
# Anything else (a space, CR, LF, a control or non-ASCII character) could split
# or fold the Authorization header on its way out.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")
# RFC 6749 appendix A: refresh-token and scope are made of visible ASCII.
_VISIBLE = re.compile(r"[\x20-\x7e]*\Z")


def access_token_problem(value: object) -> str | None:
    """Why ``value`` cannot be sent as a bearer token, or None if it can.

    The answer never quotes the value: it may be a secret, or an attack.
    """
    if not isinstance(value, str):
        return f"the access_token is a {type(value).__name__}, not a string"
    if not value:
        return "the access_token is empty"
    if len(value) > MAX_TOKEN_LENGTH:
        return f"the access_token is longer than {MAX_TOKEN_LENGTH} characters"
    if not _B64TOKEN.match(value):
        return (
            "the access_token has characters that are not allowed in a bearer token "
            "(RFC 6750 b64token: letters, digits and -._~+/ with trailing =)"
        )
    return None


def refresh_token_problem(value: object) -> str | None:
    """Why ``value`` cannot be used as a refresh token, or None if it can."""
    if not isinstance(value, str):
        return f"the refresh_token is a {type(value).__name__}, not a string"
    if not value or len(value) > MAX_TOKEN_LENGTH or not _VISIBLE.match(value):
        return "the refresh_token is empty, too long, or not visible ASCII"
    return None


def _finite(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)  # an int too large for a float raises OverflowError here
    )


def _number_problem(name: str, value: object, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    try:
        if _finite(value):
            return None
    except OverflowError:
        pass
    return f"{name} is not a finite number"


def jwt_claims(access_token: str) -> dict[str, Any] | None:
    """Return the payload of a JWT *without verifying it*, or None if it is not a JWT.

    Used only to learn ``exp`` when the token answer has no ``expires_in``, and by
    ``semansys-auth inspect``. Never used for a security decision.
    """
    parts = access_token.split(".")
    if len(parts) != 3 or len(access_token) > MAX_TOKEN_LENGTH:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


class _Frozen:
    """Value-object plumbing for Token and TokenInfo: equality, hashing and
    immutability over ``_FIELDS``. Written out instead of ``@dataclass(frozen=True)``,
    whose generated methods cost about 8 ms per class at start-up (the command
    must start as fast as ``import requests``)."""

    __slots__ = ()
    _FIELDS: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)


class TokenInfo(_Frozen):
    """Non-secret facts about a token: safe to log, print or send to metrics.

    Passed to the ``on_token`` callback, returned by
    [SemansysAuth.token_info][semansys_auth.SemansysAuth.token_info] and printed
    by ``semansys-auth token --json``. Immutable; equal when every
    field is.

    Attributes:
        grant_type: the grant that obtained the token: ``"password"`` or
            ``"refresh_token"``.
        token_type: always ``"Bearer"``.
        obtained_at: when the token endpoint issued it, in epoch seconds.
        expires_at: epoch seconds, or None when the server gave no lifetime.
        scope: the granted scope, space-separated, or None when the server
            named none.
        has_refresh_token: whether a refresh token came with it.
        from_cache: True when this object took the token from its token cache
            (another process or object obtained it) rather than the endpoint.
    """

    __slots__ = (
        "expires_at",
        "from_cache",
        "grant_type",
        "has_refresh_token",
        "obtained_at",
        "scope",
        "token_type",
    )
    _FIELDS = (
        "grant_type",
        "token_type",
        "obtained_at",
        "expires_at",
        "scope",
        "has_refresh_token",
        "from_cache",
    )

    grant_type: str
    token_type: str
    obtained_at: float
    expires_at: float | None
    scope: str | None
    has_refresh_token: bool
    from_cache: bool

    def __init__(
        self,
        grant_type: str,
        token_type: str,
        obtained_at: float,
        expires_at: float | None,
        scope: str | None,
        has_refresh_token: bool,
        from_cache: bool = False,
    ) -> None:
        self._set(
            grant_type=grant_type,
            token_type=token_type,
            obtained_at=obtained_at,
            expires_at=expires_at,
            scope=scope,
            has_refresh_token=has_refresh_token,
            from_cache=from_cache,
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"TokenInfo({fields})"

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, plus ``expires_in`` (whole seconds of
        lifetime at issue, or None)."""
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
            "from_cache": self.from_cache,
        }


class Token(_Frozen):
    """An access token with what is needed to use and renew it.

    Every field is checked when the token is built (``ValueError`` otherwise):
    the access token must be a valid RFC 6750 bearer token, times must be finite
    numbers. Immutable; equal when every field is. ``repr`` and ``str`` never show
    ``access_token`` or ``refresh_token``.

    Attributes:
        access_token: the bearer token (a secret).
        expires_at: epoch seconds at which the server stops accepting it, or
            None if unknown.
        obtained_at: epoch seconds at which it was issued.
        refresh_token: the refresh token that came with it (a secret), or None.
        scope: the granted scope, or None.
        token_type: always ``"Bearer"``.
        grant_type: ``"password"`` or ``"refresh_token"``.
        authorization: the ``Authorization`` header value,
            ``"Bearer <access_token>"``.
    """

    __slots__ = (
        "access_token",
        "authorization",
        "expires_at",
        "grant_type",
        "obtained_at",
        "refresh_token",
        "scope",
        "token_type",
    )
    _FIELDS = (
        "access_token",
        "expires_at",
        "obtained_at",
        "refresh_token",
        "scope",
        "token_type",
        "grant_type",
    )

    access_token: str
    expires_at: float | None
    obtained_at: float
    refresh_token: str | None
    scope: str | None
    token_type: str
    grant_type: str
    authorization: str

    def __init__(
        self,
        access_token: str,
        expires_at: float | None,
        obtained_at: float,
        refresh_token: str | None = None,
        scope: str | None = None,
        token_type: str = "Bearer",
        grant_type: str = PASSWORD,
    ) -> None:
        problem = (
            access_token_problem(access_token)
            or (None if refresh_token is None else refresh_token_problem(refresh_token))
            or _number_problem("expires_at", expires_at, optional=True)
            or _number_problem("obtained_at", obtained_at, optional=False)
        )
        if problem is None and not (
            scope is None or (isinstance(scope, str) and _VISIBLE.match(scope))
        ):
            problem = "scope is not a string of visible ASCII"
        if problem is None and token_type != "Bearer":
            problem = "token_type is not 'Bearer'"
        if problem is None and grant_type not in GRANT_TYPES:
            problem = f"grant_type is not one of {', '.join(GRANT_TYPES)}"
        if problem is not None:
            raise ValueError(f"not a usable token: {problem}")
        self._set(
            access_token=access_token,
            expires_at=expires_at,
            obtained_at=obtained_at,
            refresh_token=refresh_token,
            scope=scope,
            token_type=token_type,
            grant_type=grant_type,
            authorization="Bearer " + access_token,
        )

    def __repr__(self) -> str:
        return (
            f"Token(expires_at={self.expires_at!r}, obtained_at={self.obtained_at!r}, "
            f"scope={self.scope!r}, token_type={self.token_type!r}, "
            f"grant_type={self.grant_type!r})"
        )

    def replace(self, **changes: Any) -> Token:
        """A copy with some fields changed (checked like a new token)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in self._FIELDS}
        values.update(changes)
        return Token(**values)

    @property
    def lifetime(self) -> float | None:
        """Seconds from issue to expiry, or None if unknown."""
        return None if self.expires_at is None else self.expires_at - self.obtained_at

    def info(self, *, from_cache: bool = False) -> TokenInfo:
        """The non-secret [TokenInfo][semansys_auth.TokenInfo] of this token."""
        return TokenInfo(
            grant_type=self.grant_type,
            token_type=self.token_type,
            obtained_at=self.obtained_at,
            expires_at=self.expires_at,
            scope=self.scope,
            has_refresh_token=self.refresh_token is not None,
            from_cache=from_cache,
        )

    # Caches store tokens as JSON; these two are the one format they share.
    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (secrets included: for caches only)."""
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
    def from_json(cls, data: object) -> Token:
        """Rebuild a token written by [to_json][semansys_auth.Token.to_json].

        Raises:
            ValueError: ``data`` is not such a dict, or a field is missing or
                invalid (the message never quotes a value).
        """
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            expires_at = data.get("expires_at")
            obtained_at = data.get("obtained_at")
            return cls(
                access_token=data.get("access_token"),  # type: ignore[arg-type]
                refresh_token=data.get("refresh_token"),
                expires_at=None if expires_at is None else _as_float(expires_at),
                obtained_at=_as_float(obtained_at),
                scope=data.get("scope"),
                token_type=data.get("token_type", "Bearer"),
                grant_type=data.get("grant_type", PASSWORD),
            )
        except (TypeError, OverflowError) as exc:
            raise ValueError(f"not a usable token: {type(exc).__name__}") from None


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("not a usable token: a time is not a number")
    return float(value)
