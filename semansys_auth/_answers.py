"""The classification of every answer a token endpoint can give: a
:class:`~._token.Token` or a :class:`~._errors.SemansysAuthError` subclass.

Answers are read here, by hand, because reading them is what this package is
about and oauthlib's reader does not fit it: it raises a bare ``Warning`` when
the granted scope differs from the requested one (servers routinely add
``offline_access``) unless a process-wide environment variable is set, and it
lets odd answers (``"error": null``, a non-string scope, an infinite
``expires_in``) escape as ``TypeError`` or ``OverflowError``. Here every answer,
whatever its status, headers and body, becomes a token or a typed error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from ._errors import (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from ._redact import Redactor, mask_username, shown
from ._token import REFRESH_TOKEN, Token, access_token_problem, jwt_claims, refresh_token_problem
from ._wire import MAX_ANSWER_BYTES, EndpointResponse, header

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._errors import SemansysAuthError

MAX_LIFETIME = 365 * 24 * 3600.0
"""Longest token lifetime believed; a longer ``expires_in`` or JWT ``exp`` is cut to this."""

MAX_RETRY_AFTER = 24 * 3600.0

_DELTA_SECONDS = re.compile(r"[0-9]{1,12}\Z")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date),
    at most a day; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.match(value):  # ASCII digits only: "²".isdigit() is True
        return min(float(value), MAX_RETRY_AFTER)
    import email.utils  # an HTTP-date is rare: these imports cost 30 ms at start-up
    from datetime import timezone

    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": RFC 5322 for UTC with no offset known
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now  # finite: a datetime is within years 1-9999
    except Exception:  # parsedate_to_datetime raises several types on junk
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


_TAGS = re.compile(r"<[^>]*>")
_SCRIPTS = re.compile(r"(?is)<(script|style)\b.*?</\1>")
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+\Z")
"""One scope entry (RFC 6749 section 3.3: visible ASCII except the double quote
and the backslash): checks the granted scope here, and the asked one in ``_config``."""
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?\Z")


def excerpt(body: bytes, redact: Redactor, limit: int = 160) -> str:
    """A short, single-line, tag-free, redacted excerpt of a response body."""
    # Redacted before the tags go: a secret with "<x>" in it would lose that
    # part to the tag stripper and no longer be recognised.
    text = redact(body.decode(errors="replace"))
    text = _TAGS.sub(" ", _SCRIPTS.sub(" ", text))
    return shown(text, redact, limit)


def _load_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def _scope(value: object) -> str | None:
    """The granted scope as one space-separated string, or None if unusable."""
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            return None
        value = " ".join(value)
    if not isinstance(value, str):
        return None
    items = value.split(" ")
    if not value or not all(SCOPE_TOKEN.match(item) for item in items) or len(value) > 4096:
        return None
    return value


class AnswerReader:
    """Turns every answer of the token endpoint into a :class:`Token` or a typed
    error, with messages that name the endpoint, the client and the (masked)
    user. The base of :class:`~._endpoint.TokenEndpoint`, which sets the
    attributes below."""

    token_url: str
    client_id: str
    username: str
    scope: str | None
    redact: Redactor

    def show(self, value: object, limit: int = 120) -> str:
        """A value from the server, made safe to put in a message."""
        return shown(value, self.redact, limit)

    def parse(self, grant_type: str, response: EndpointResponse, now: float) -> Token:
        """Turn an answer into a :class:`Token`, or raise the matching typed error:
        ``error`` first, status code second."""
        status = response.status_code
        if response.redirected_to is not None:
            raise BadTokenRequestError(
                self._redirect_message(response.redirected_to), status_code=status
            )
        if response.truncated and status // 100 == 2:
            raise MalformedTokenResponseError(
                f"The token endpoint answered more than {MAX_ANSWER_BYTES // 1024} KiB; "
                "nothing beyond that was read. Check that token_url points at the token "
                "endpoint",
                status_code=status,
            )
        data = _load_json(response.body)
        if not isinstance(data, dict):
            raise self._non_json_error(grant_type, response, now)
        raw_error = data.get("error")
        if (raw_error is not None and raw_error != "") or status // 100 != 2:
            raise self._error(grant_type, response, raw_error, data, now)
        return self._token(grant_type, data, now)

    def _token(self, grant_type: str, data: dict[str, object], now: float) -> Token:
        if "access_token" not in data:
            fields = ", ".join(self.show(name, 40) for name in list(data)[:12]) or "none"
            raise MalformedTokenResponseError(
                "The token endpoint answered success but without an access_token; "
                f"check that token_url points at the token endpoint (fields present: {fields})",
                status_code=200,
            )
        problem = access_token_problem(data["access_token"])
        if problem is not None:
            raise MalformedTokenResponseError(
                f"The token endpoint issued an unusable token: {problem}", status_code=200
            )
        access = data["access_token"]
        assert isinstance(access, str)
        token_type = data.get("token_type")
        # Required by RFC 6749, tolerated when missing; any value must say bearer.
        if "token_type" in data and (
            not isinstance(token_type, str) or token_type.lower() != "bearer"
        ):
            raise MalformedTokenResponseError(
                f"The token endpoint issued a token of type {self.show(token_type, 40)!r}; "
                "only bearer tokens are supported",
                status_code=200,
            )
        refresh = data.get("refresh_token")
        if not isinstance(refresh, str) or refresh_token_problem(refresh) is not None:
            refresh = None  # none, or unusable: the next renewal uses the password grant
        expires_at = self._expires_at(data, access, now)
        return Token(
            access_token=access,
            refresh_token=refresh,
            expires_at=expires_at,
            obtained_at=now,
            scope=_scope(data.get("scope")),
            grant_type=grant_type,
        )

    def _expires_at(self, data: dict[str, object], access: str, now: float) -> float | None:
        """When the token expires: ``expires_in`` if given, else the JWT's ``exp``,
        else unknown (the token is then kept until the API answers 401)."""
        raw = data.get("expires_in")
        if raw is not None:
            seconds: float | None = None
            if isinstance(raw, str) and _NUMBER.match(raw.strip()):
                seconds = float(raw)
            elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
                try:
                    seconds = float(raw)
                except OverflowError:  # an integer of hundreds of digits
                    seconds = math.inf
            if seconds is None or math.isnan(seconds) or seconds < 0:
                raise MalformedTokenResponseError(
                    "The token endpoint answered an expires_in that is not a number of "
                    f"seconds ({self.show(raw, 40)})",
                    status_code=200,
                )
            if seconds == 0:
                return None  # no lifetime given: kept until a 401
            return now + min(seconds, MAX_LIFETIME)
        exp = (jwt_claims(access) or {}).get("exp")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            try:
                exp = float(exp)
            except OverflowError:
                return now + MAX_LIFETIME
            if math.isfinite(exp) and exp > now:
                return min(exp, now + MAX_LIFETIME)
        return None

    # -- errors -------------------------------------------------------------------

    def _retry_after(self, response: EndpointResponse, now: float) -> float | None:
        return parse_retry_after(header(response.headers, "retry-after"), now)

    def _redirect_message(self, location: str) -> str:
        return (
            f"The token endpoint {self.token_url} redirected to {self.show(location)}: set "
            "token_url to the final URL (token requests are never redirected with credentials)"
        )

    def _non_json_error(
        self, grant_type: str, response: EndpointResponse, now: float
    ) -> SemansysAuthError:
        status = response.status_code
        if status // 100 == 3 or status in (400, 401, 403, 404):
            # The documented Semansys statuses (and a wrong URL's 404, or a
            # redirect) say what to fix even without JSON.
            return self._error(grant_type, response, None, {}, now)
        ctype = self.show(header(response.headers, "content-type") or "no content type", 60)
        body = excerpt(response.body, self.redact) or "(empty body)"
        if status // 100 == 2:
            return MalformedTokenResponseError(
                f"The token endpoint answered HTTP {status} with a body that is not a JSON "
                f"object ({ctype}): {body!r}; check that token_url points at the token "
                "endpoint",
                status_code=status,
            )
        if status == 429 or status >= 500:
            return TokenEndpointUnavailableError(
                f"The token endpoint {self.token_url} is unavailable: HTTP {status} with a "
                f"non-JSON body ({ctype}): {body!r}",
                status_code=status,
                retry_after=self._retry_after(response, now),
            )
        return BadTokenRequestError(
            f"The token endpoint {self.token_url} refused the request with HTTP {status} "
            f"and a non-JSON body ({ctype}): {body!r}; check token_url",
            status_code=status,
        )

    def _error(
        self,
        grant_type: str,
        response: EndpointResponse,
        raw_error: object,
        data: Mapping[str, object],
        now: float,
    ) -> SemansysAuthError:
        status = response.status_code
        # raw_error is compared with the RFC 6749 codes; only a redacted copy is shown.
        error = None if raw_error is None or raw_error == "" else self.show(raw_error, 60)
        raw_description = data.get("error_description")
        description = None if raw_description is None else self.show(raw_description, 300)

        def make(cls: type[SemansysAuthError], message: str) -> SemansysAuthError:
            return cls(
                message,
                status_code=status,
                error=error,
                error_description=description,
                retry_after=self._retry_after(response, now),
            )

        challenge = header(response.headers, "www-authenticate")
        if (
            error is None
            and status in (401, 403)
            and challenge is not None
            and challenge.lstrip().lower().startswith("bearer")
        ):
            # A resource server's challenge, not a token endpoint's answer.
            return make(
                BadTokenRequestError,
                f"token_url {self.token_url} answered like an API, not like a token "
                f"endpoint (HTTP {status} with WWW-Authenticate: Bearer): the URL may be "
                "wrong; check token_url",
            )
        if raw_error in ("invalid_client", "unauthorized_client") or (
            error is None and status == 401
        ):
            hint = (
                ""
                if error is not None
                else " (if they are right, check that token_url is the token endpoint)"
            )
            return make(
                ClientCredentialsError,
                f"Semansys rejected the client credentials of client_id {self.client_id!r}: "
                f"check client_id and client_secret (both issued by the Semansys support "
                f"desk){hint}",
            )
        if (
            raw_error == "invalid_grant"
            or (error is None and status == 403)
            or (raw_error == "invalid_request" and _names_user_credentials(raw_description))
        ):
            if grant_type == REFRESH_TOKEN:
                return make(UserCredentialsError, "The token endpoint refused the refresh token")
            return make(
                UserCredentialsError,
                f"Semansys rejected the user credentials of {mask_username(self.username)!r}: "
                "check username (the account's e-mail address) and password",
            )
        if raw_error in ("temporarily_unavailable", "server_error") or (
            error is None and (status == 429 or status >= 500)
        ):
            return make(
                TokenEndpointUnavailableError,
                f"The token endpoint {self.token_url} is unavailable (HTTP {status})",
            )
        if status // 100 == 3:
            location = header(response.headers, "location") or "?"
            return make(BadTokenRequestError, self._redirect_message(location))
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


def _names_user_credentials(description: object) -> bool:
    # Some servers (Authlib among them) answer a wrong password with
    # invalid_request "Invalid 'username' or 'password' in request." instead of
    # RFC 6749's invalid_grant. What the user must fix is the same.
    if not isinstance(description, str):
        return False
    text = description.lower()
    return "password" in text or "username" in text


__all__ = [
    "MAX_LIFETIME",
    "MAX_RETRY_AFTER",
    "SCOPE_TOKEN",
    "AnswerReader",
    "excerpt",
    "parse_retry_after",
]
