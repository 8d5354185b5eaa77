"""RFC 6749 on the wire, without the wire: token requests and the classification
of every answer a token endpoint can give.

Request bodies are built by oauthlib (the protocol core under requests-oauthlib),
imported on first use. Answers are read here, by hand, because reading them is
what this package is about and oauthlib's reader does not fit it: it raises a
bare ``Warning`` when the granted scope differs from the requested one (servers
routinely add ``offline_access``) unless a process-wide environment variable is
set, and it lets odd answers (``"error": null``, a non-string scope, an infinite
``expires_in``) escape as ``TypeError`` or ``OverflowError``. Here every answer,
whatever its status, headers and body, becomes a :class:`~._token.Token` or a
:class:`~._errors.SemansysAuthError` subclass.

oauthlib also refuses non-https URLs at request time unless another process-wide
variable is set; we check the URL once, at construction, and allow plain http on
loopback hosts only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from ._errors import (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from ._redact import Redactor, mask_username, shown
from ._token import (
    MAX_TOKEN_LENGTH,
    PASSWORD,
    REFRESH_TOKEN,
    Token,
    access_token_problem,
    jwt_claims,
    refresh_token_problem,
)
from ._version import __version__

MAX_ANSWER_BYTES = 1024 * 1024
"""Largest token answer read (after decompression); a longer one is an error and
nothing beyond this is read."""

MAX_LIFETIME = 365 * 24 * 3600.0
"""Longest token lifetime believed; a longer ``expires_in`` or JWT ``exp`` is cut to this."""

MAX_RETRY_AFTER = 24 * 3600.0

USER_AGENT = f"semansys-auth/{__version__}"

SEALING_KEY_INFO = b"semansys-auth/cache-entry/3"
"""The HKDF ``info`` of the key that seals cache entries (see ``TokenEndpoint.cache_keys``)."""

_FORM_HEADERS: Mapping[str, str] = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
    # Compressed answers are decoded by us, within MAX_ANSWER_BYTES; asking for
    # none keeps decompression bombs off the usual path.
    "Accept-Encoding": "identity",
    "User-Agent": USER_AGENT,
}


class EndpointRequest:
    """A request to send to the token endpoint: POST ``body`` (a form) to ``url``.

    ``timeout`` bounds the whole exchange, from connect to the last byte read.
    (A plain class, not a dataclass: those cost start-up time.)
    """

    __slots__ = ("body", "grant_type", "headers", "timeout", "url")

    method = "POST"

    def __init__(self, url: str, body: bytes, grant_type: str, timeout: float) -> None:
        self.url = url
        self.body = body
        self.grant_type = grant_type
        self.timeout = timeout
        self.headers = dict(_FORM_HEADERS)

    def __repr__(self) -> str:  # not the body: it holds the password or refresh token
        return f"EndpointRequest({self.method} {self.url}, grant_type={self.grant_type!r})"


class EndpointResponse:
    """What the token endpoint answered.

    ``headers``: any mapping (looked up case-insensitively). ``body``: at most
    :data:`MAX_ANSWER_BYTES`, decoded; ``truncated`` when there was more.
    ``redirected_to``: set when the HTTP client followed a redirect of the token
    request (the answer then comes from elsewhere and is not trusted).
    """

    __slots__ = ("body", "headers", "redirected_to", "status_code", "truncated")

    def __init__(
        self,
        status_code: int,
        headers: Mapping[str, str],
        body: bytes,
        truncated: bool = False,
        redirected_to: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.body = body
        self.truncated = truncated
        self.redirected_to = redirected_to

    def __repr__(self) -> str:
        return f"EndpointResponse({self.status_code}, {len(self.body)} bytes)"


# -- configuration checks ------------------------------------------------------------

_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")
_SCHEME_AND_SLASHES = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _without_userinfo(url: str) -> str:
    """``url`` as a message may quote it: everything before its last ``@`` (a
    user name and password, whatever the parser would make of them: a password
    may itself hold ``@``, ``/``, ``#`` or ``:``) becomes ``***``; a leading
    ``scheme://`` is kept. Over-masks a URL with ``@`` in its path or query,
    which is harmless in a message."""
    before, at, after = url.rpartition("@")
    if not at:
        return url
    scheme = _SCHEME_AND_SLASHES.match(before)
    return f"{scheme.group() if scheme else ''}***@{after}"


def check_token_url(url: object) -> str:
    """Refuse a token URL that would send the password in clear text or elsewhere.

    ``https`` is required, except on loopback hosts (tests, the emulator, a local
    tunnel): ``localhost``, 127.0.0.0/8 and ``::1``.

    No message quotes the user name or password of the URL, whichever check
    fails: the URL is quoted with its user info masked.

    Raises:
        TypeError: ``url`` is not a string.
        ValueError: it is not an absolute http(s) URL, holds a user or password,
            or is plain http to a host that is not loopback.
    """
    if not isinstance(url, str):
        raise TypeError(f"token_url must be a string, got {type(url).__name__}")
    example = "such as 'https://oidc-pre.semansys.com/connect/token'"
    if not url.strip():
        raise ValueError(f"token_url is empty: give the token endpoint's URL, {example}")
    quoted = repr(_without_userinfo(url))
    if _CONTROL_OR_SPACE.search(url):
        raise ValueError(f"token_url {quoted} contains spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        # urlsplit's own message may quote the netloc or a "port" cut out of a
        # password: say it only when the URL has no user info.
        reason = f" ({exc})" if "@" not in url else ""
        raise ValueError(f"token_url {quoted} is not a valid URL{reason}") from None
    if "@" in parts.netloc:
        raise ValueError(
            "token_url must not contain a user name or password: the client credentials "
            "go in client_id and client_secret"
        )
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValueError(f"token_url must be an absolute http(s) URL, {example}; got {quoted}")
    if parts.scheme == "http" and not is_loopback(hostname):
        raise ValueError(
            f"token_url {quoted} is not https: the password and client secret would travel "
            "in clear text. Use https (plain http is accepted for localhost, 127.0.0.0/8 "
            "and ::1 only)."
        )
    return url


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a host name as ``urlsplit(...).hostname`` gives it: no
    brackets, no port) is this machine."""
    import ipaddress

    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- reading answers -----------------------------------------------------------------


def decode_body(raw: bytes, content_encoding: str | None) -> tuple[bytes, bool]:
    """Undo a gzip or deflate ``Content-Encoding`` within :data:`MAX_ANSWER_BYTES`.

    Written by hand because the HTTP clients decompress without a bound. Returns
    the body and whether it was cut. An unknown or broken encoding leaves the
    bytes as they are: they are then not JSON, and the answer is classified by
    its status.
    """
    import zlib

    encoding = content_encoding.strip().lower() if content_encoding else None
    truncated = len(raw) > MAX_ANSWER_BYTES
    raw = raw[:MAX_ANSWER_BYTES]
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS if raw[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        return raw, truncated  # none, identity, or one we do not know
    decoder = zlib.decompressobj(wbits)
    try:
        body = decoder.decompress(raw, MAX_ANSWER_BYTES + 1)
    except zlib.error:
        return raw, truncated
    return body[:MAX_ANSWER_BYTES], truncated or len(body) > MAX_ANSWER_BYTES


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name in ``headers`` (``name``
    in lower case): the first one, for a mapping with several."""
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value if isinstance(value, str) else None
    return None


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
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+\Z")
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
    if not value or not all(_SCOPE_TOKEN.match(item) for item in items) or len(value) > 4096:
        return None
    return value


class TokenEndpoint:
    """The token endpoint as seen from a client: builds the two token requests
    and turns every answer into a :class:`Token` or a typed error."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        scope: str | None,
        timeout: float,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.username = username
        self.scope = scope
        self.timeout = timeout
        self._client_secret = client_secret
        self._password = password
        self.redact = Redactor([client_secret, password])

    def __repr__(self) -> str:
        return (
            f"TokenEndpoint(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"username={mask_username(self.username)!r}, scope={self.scope!r})"
        )

    # -- requests --------------------------------------------------------------

    def password_request(self) -> EndpointRequest:
        # oauthlib's body builder, without a client object (the one its
        # LegacyApplicationClient calls): client_id and client_secret in the body.
        from oauthlib.oauth2.rfc6749.parameters import prepare_token_request

        body = prepare_token_request(
            PASSWORD,
            username=self.username,
            password=self._password,
            scope=self.scope,
            client_id=self.client_id,
            client_secret=self._client_secret,
        )
        return EndpointRequest(self.token_url, body.encode(), PASSWORD, self.timeout)

    def refresh_request(self, refresh_token: str) -> EndpointRequest:
        from oauthlib.oauth2.rfc6749.parameters import prepare_token_request

        # No scope: RFC 6749 section 6 keeps the originally granted scope.
        body = prepare_token_request(
            REFRESH_TOKEN,
            refresh_token=refresh_token,
            client_id=self.client_id,
            client_secret=self._client_secret,
        )
        return EndpointRequest(self.token_url, body.encode(), REFRESH_TOKEN, self.timeout)

    def cache_key(self) -> str:
        """The key under which tokens of these credentials and scope are cached
        (see :meth:`cache_keys`)."""
        return self.cache_keys()[0]

    def cache_keys(self) -> tuple[str, bytes]:
        """The cache key, and the key that seals cache entries, of these
        credentials and scope.

        The cache key binds each cache entry to everything that obtained it:
        token URL, client id, username, scope, and (through scrypt, a
        deliberately slow salted KDF, about 35 ms) the client secret and
        password. An object with a wrong password or another scope finds
        nothing, and the key is no cheap offline test of the password. Hex, with
        no e-mail address in it.

        The sealing key (32 bytes, for AES-256-GCM) comes from the same scrypt
        output, so both cost one scrypt: a cache entry can be opened only with
        the credentials that wrote it.
        """
        # hmac is imported here: it is needed only where a cache is used.
        import hmac

        identity = json.dumps(
            ["semansys-auth/cache-key/2", self.token_url, self.client_id, self.username, self.scope]
        ).encode()
        secrets = json.dumps([self._client_secret, self._password]).encode()
        binding = hashlib.scrypt(
            secrets,
            salt=hashlib.sha256(identity).digest(),
            n=2**14,
            r=8,
            p=1,  # 16 MiB of memory: within OpenSSL's default maxmem of 32 MiB
            dklen=32,
        )
        # HKDF-Expand (RFC 5869, section 2.3) for a single 32-byte block, with
        # the scrypt output as the pseudorandom key: T(1) = HMAC(PRK, info | 0x01).
        # Written with the standard library's hmac rather than cryptography's
        # HKDFExpand so that the command's warm start does not import
        # cryptography's KDF modules (tests check it equals HKDFExpand).
        sealing_key = hmac.new(binding, SEALING_KEY_INFO + b"\x01", hashlib.sha256).digest()
        return hashlib.sha256(identity + binding).hexdigest(), sealing_key

    # -- answers -----------------------------------------------------------------

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
    "MAX_ANSWER_BYTES",
    "MAX_TOKEN_LENGTH",
    "EndpointRequest",
    "EndpointResponse",
    "TokenEndpoint",
    "check_token_url",
    "decode_body",
    "header",
    "is_loopback",
]
