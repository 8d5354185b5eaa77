"""RFC 6749 on the wire, without the wire: token request bodies and token answers.

Bodies are built by oauthlib (the protocol core under requests-oauthlib). Answers
are classified here, because the classification is what this package is about:
``error`` first, status code second, and a non-JSON page (a proxy's HTML 502)
becomes a typed error with a short redacted excerpt instead of a JSONDecodeError.

Two deliberate departures from oauthlib's client helpers:

* Scope change. ``oauthlib`` raises a bare ``Warning`` *exception* when the
  granted scope differs from the requested one (unless OAUTHLIB_RELAX_TOKEN_SCOPE
  is set in the environment). Identity servers routinely add ``offline_access``;
  failing the user's request over it would be wrong. We never hand oauthlib the
  requested scope; the granted scope is recorded on the token and logged.
* Insecure transport. ``oauthlib`` refuses non-https URLs in
  ``prepare_token_request(url)`` unless OAUTHLIB_INSECURE_TRANSPORT is set, a
  process-wide switch. We build bodies with ``prepare_request_body`` (no URL) and
  check the URL ourselves once, at construction, allowing loopback hosts only.
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from oauthlib.oauth2 import LegacyApplicationClient
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from oauthlib.oauth2.rfc6749.parameters import parse_expires, validate_token_parameters
from oauthlib.oauth2.rfc6749.tokens import OAuth2Token

from ._errors import (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from ._token import Token, jwt_claims

PASSWORD = "password"
REFRESH_TOKEN = "refresh_token"

_FORM_HEADERS: Mapping[str, str] = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
}


@dataclass(frozen=True)
class TokenRequest:
    """A token request to send: POST ``body`` (form-encoded) to ``url``."""

    url: str
    body: bytes = field(repr=False)
    grant_type: str
    headers: Mapping[str, str] = field(default_factory=lambda: dict(_FORM_HEADERS))
    method: str = "POST"


@dataclass(frozen=True)
class TokenResponse:
    """What came back: status, headers (any case-insensitive mapping) and body."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)


def check_token_url(url: str) -> str:
    """Refuse a token URL that would send the password in clear text.

    ``https`` is required, except on loopback hosts (tests, the emulator, a local
    tunnel): ``localhost``, 127.0.0.0/8 and ``::1``.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(
            "token_url must be a non-empty string such as 'https://host/connect/token'"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"token_url must be an absolute http(s) URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"token_url {url!r} is not https: the password and client secret would travel "
            "in clear text. Use https (plain http is accepted for localhost, 127.0.0.0/8 "
            "and ::1 only)."
        )
    return url


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Redactor:
    """Removes secrets from text that is about to go into a message or a log line."""

    _JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
    _PAIR = re.compile(
        r"""(?ix)
        ((?:access_token|refresh_token|id_token|client_secret|password|secret|token)
         ["']?\s*[:=]\s*["']?)
        [^"'&\s,}]+
        """
    )

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._fixed: set[str] = {s for s in secrets if s}
        # Tokens come and go: keep the recent ones only, so that a process that
        # runs for months does not accumulate every token it ever held.
        self._recent: deque[str] = deque(maxlen=16)

    def add(self, *secrets: str | None) -> None:
        self._recent.extend(s for s in secrets if s and s not in self._recent)

    def __call__(self, text: str) -> str:
        # Longest first, so a secret that contains another is removed whole.
        for secret in sorted({*self._fixed, *self._recent}, key=len, reverse=True):
            text = text.replace(secret, "***")
        text = self._JWT.sub("<jwt>", text)
        return self._PAIR.sub(r"\1***", text)


def excerpt(body: bytes, redact: Redactor, limit: int = 160) -> str:
    """A short, single-line, tag-free, redacted excerpt of a response body."""
    text = body[: limit * 20].decode("utf-8", "replace")
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(redact(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mask_username(username: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``: enough to tell accounts apart."""
    local, at, domain = username.partition("@")
    return f"{local[:1]}***{at}{domain}"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class Protocol:
    """Builds the two token requests and classifies every answer."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        scope: str | None,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.username = username
        self.scope = scope
        self._client_secret = client_secret
        self._password = password
        self._oauth = LegacyApplicationClient(client_id)
        self.redact = Redactor([client_secret, password])

    def password_request(self) -> TokenRequest:
        body = self._oauth.prepare_request_body(
            username=self.username,
            password=self._password,
            scope=self.scope,
            include_client_id=True,
            client_secret=self._client_secret,
        )
        return TokenRequest(self.token_url, body.encode("utf-8"), PASSWORD)

    def refresh_request(self, refresh_token: str) -> TokenRequest:
        # No scope: RFC 6749 section 6 keeps the originally granted scope.
        body = self._oauth.prepare_refresh_body(
            refresh_token=refresh_token,
            client_id=self.client_id,
            client_secret=self._client_secret,
        )
        return TokenRequest(self.token_url, body.encode("utf-8"), REFRESH_TOKEN)

    # -- answers -------------------------------------------------------------

    def parse(self, grant_type: str, response: TokenResponse, now: float | None = None) -> Token:
        """Turn an answer into a :class:`Token` or raise the matching typed error."""
        now = time.time() if now is None else now
        status = response.status_code
        data: object = None
        with contextlib.suppress(ValueError):
            data = json.loads(response.body)
        if not isinstance(data, dict):
            raise self._non_json_error(grant_type, response, now)
        error = data.get("error")
        error = error if isinstance(error, str) and error else None
        if error is not None or not 200 <= status < 300:
            raise self._error(grant_type, response, error, data, now)
        return self._token(grant_type, data, now)

    def _token(self, grant_type: str, data: dict[str, object], now: float) -> Token:
        # oauthlib validates the fields (access_token present, token_type when
        # OAUTHLIB_STRICT_TOKEN_TYPE is set) and normalises expires_in.
        params = OAuth2Token(dict(data))
        try:
            validate_token_parameters(params)
            expires_in, _, _ = parse_expires(params)
        except OAuth2Error:
            raise MalformedTokenResponseError(
                "The token endpoint answered success but without an access_token; "
                "check that token_url points at the token endpoint "
                f"(fields present: {', '.join(sorted(map(str, data))) or 'none'})",
                status_code=200,
            ) from None
        except ValueError:
            raise MalformedTokenResponseError(
                f"The token endpoint answered an expires_in that is not a number "
                f"({type(data.get('expires_in')).__name__})",
                status_code=200,
            ) from None
        access = data.get("access_token")
        if not isinstance(access, str) or not access.strip():
            raise MalformedTokenResponseError(
                "The token endpoint answered an empty or non-string access_token",
                status_code=200,
            )
        token_type = data.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise MalformedTokenResponseError(
                f"The token endpoint issued a token of type {token_type!r}; only bearer "
                "tokens are supported",
                status_code=200,
            )
        refresh = data.get("refresh_token")
        refresh = refresh if isinstance(refresh, str) and refresh else None
        expires_at: float | None = None
        if expires_in is not None:
            expires_at = now + expires_in
        else:
            exp = (jwt_claims(access) or {}).get("exp")
            if isinstance(exp, (int, float)) and not isinstance(exp, bool):
                expires_at = float(exp)
        scope = data.get("scope")
        if isinstance(scope, list):
            scope = " ".join(map(str, scope))
        return Token(
            access_token=access,
            refresh_token=refresh,
            expires_at=expires_at,
            obtained_at=now,
            scope=scope if isinstance(scope, str) else None,
            token_type="Bearer",
            grant_type=grant_type,
        )

    def _non_json_error(
        self, grant_type: str, response: TokenResponse, now: float
    ) -> SemansysAuthError:
        status = response.status_code
        ctype = _header(response.headers, "content-type") or "no content type"
        shown = excerpt(response.body, self.redact) or "(empty body)"
        if status in (400, 401, 403, 404) or 300 <= status < 400:
            # The documented Semansys statuses (and a wrong URL's 404 or a redirect)
            # are meaningful even without JSON.
            return self._error(grant_type, response, None, {}, now)
        if 200 <= status < 300:
            return MalformedTokenResponseError(
                f"The token endpoint answered HTTP {status} with a body that is not a JSON "
                f"object ({ctype}): {shown!r}; check that token_url points at the token "
                "endpoint",
                status_code=status,
            )
        return TokenEndpointUnavailableError(
            f"The token endpoint {self.token_url} is unavailable: HTTP {status} with a "
            f"non-JSON body ({ctype}): {shown!r}",
            status_code=status,
            retry_after=parse_retry_after(_header(response.headers, "retry-after"), now),
        )

    def _error(
        self,
        grant_type: str,
        response: TokenResponse,
        error: str | None,
        data: Mapping[str, object],
        now: float,
    ) -> SemansysAuthError:
        status = response.status_code
        raw_description = data.get("error_description")
        description = (
            self.redact(raw_description)[:300] if isinstance(raw_description, str) else None
        )

        def make(cls: type[SemansysAuthError], message: str) -> SemansysAuthError:
            return cls(
                message,
                status_code=status,
                error=error,
                error_description=description,
                retry_after=parse_retry_after(_header(response.headers, "retry-after"), now),
            )

        if error in ("invalid_client", "unauthorized_client") or (error is None and status == 401):
            return make(
                ClientCredentialsError,
                f"Semansys rejected the client credentials of client_id {self.client_id!r}: "
                "check client_id and client_secret (both issued by the Semansys support desk)",
            )
        if (
            error == "invalid_grant"
            or (error is None and status == 403)
            or (error == "invalid_request" and _names_user_credentials(description))
        ):
            if grant_type == REFRESH_TOKEN:
                return make(UserCredentialsError, "The token endpoint refused the refresh token")
            return make(
                UserCredentialsError,
                f"Semansys rejected the user credentials of {mask_username(self.username)!r}: "
                "check username (the account's e-mail address) and password",
            )
        if error in ("temporarily_unavailable", "server_error") or (
            error is None and (status == 429 or status >= 500)
        ):
            return make(
                TokenEndpointUnavailableError,
                f"The token endpoint {self.token_url} is unavailable (HTTP {status})",
            )
        if 300 <= status < 400:
            location = _header(response.headers, "location") or "?"
            return make(
                BadTokenRequestError,
                f"The token endpoint {self.token_url} redirected to {location}: set token_url "
                "to the final URL (token requests are never redirected with credentials)",
            )
        if status == 404:
            return make(
                BadTokenRequestError,
                f"No token endpoint at {self.token_url} (HTTP 404): check token_url",
            )
        return make(
            BadTokenRequestError,
            f"The token endpoint {self.token_url} refused the request: check token_url "
            f"and scope ({self.scope!r})",
        )


def _names_user_credentials(description: str | None) -> bool:
    # Some servers (Authlib among them) answer a wrong password with
    # invalid_request "Invalid 'username' or 'password' in request." instead of
    # RFC 6749's invalid_grant. What the user must fix is the same.
    text = (description or "").lower()
    return "password" in text or "username" in text


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value
