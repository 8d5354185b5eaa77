"""An offline emulator of the Semansys identity server and a protected echo API.

A real HTTP server (``http.server``, one thread per connection) on 127.0.0.1, so
that code under test talks to it exactly as it would to Semansys: through its
own HTTP client, its own connection pool and real sockets.

This module holds the identity rules (accounts, grants, token issuing,
refresh-token rotation, the dialects of rejections) and the request log; the
HTTP side (request parsing, the echo API, sockets, the server thread) is in
``_http``, the records of requests in ``_records`` and the failures a test asks
for in ``_failures``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal

from ._failures import Failure
from ._records import RecordedRequest

if TYPE_CHECKING:
    from collections.abc import Callable

    from .. import SemansysAuth

__all__ = ["Dialect", "RecordedRequest", "SemansysEmulator"]

Dialect = Literal["semansys", "identityserver", "openiddict"]
"""How the emulator's rejections look: see `dialect` of
[SemansysEmulator][semansys_auth.testing.SemansysEmulator]."""
_DIALECTS = ("semansys", "identityserver", "openiddict")
_Answer = tuple[int, dict[str, str], bytes, "str | None"]


def _same(given: str, expected: str) -> bool:
    """A constant-time comparison that also takes non-ASCII text (which
    ``hmac.compare_digest`` refuses for ``str``)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class _Issued:
    username: str
    client_id: str
    scope: str
    expires_at: float


class SemansysEmulator:
    """A Semansys-style identity server and protected API on loopback, for tests.

    Use it as a context manager (or call
    [start][semansys_auth.testing.SemansysEmulator.start] and
    [stop][semansys_auth.testing.SemansysEmulator.stop]). Its
    endpoints: ``POST /connect/token`` (password and refresh_token grants, client
    credentials in the form or in HTTP Basic), and ``/api/<anything>``: any
    method, answered 200 with a JSON echo of the request when it carries a valid
    bearer token, else 401 with ``WWW-Authenticate: Bearer error="invalid_token"``;
    ``/api/redirect?to=URL`` answers a 302 to ``URL``. Every setting below is an
    attribute too, and may be changed while it runs.

    Args:
        host: the address to listen on (keep it on loopback: a test tool).
        port: the port; 0 picks a free one.
        access_token_lifetime: seconds an access token lives.
        refresh_token_lifetime: seconds a refresh token lives.
        issue_refresh_tokens: whether answers carry a refresh token.
        rotate_refresh_tokens: whether a refresh token is one-time (a new one
            with each answer).
        send_expires_in: whether answers carry ``expires_in`` (else only the
            JWT's ``exp``).
        dialect: how rejections look: ``"semansys"`` (401 or 403 without RFC
            codes), ``"identityserver"`` (400 ``invalid_client`` or
            ``invalid_grant``) or ``"openiddict"`` (401 ``invalid_client``).
        token_delay: seconds to think before each token answer.
        scope: the scope granted when none is asked for.
        client_id: the client id it accepts.
        client_secret: the client secret it accepts.
        username: the user name it accepts.
        password: the password it accepts.
        require_api_version: whether API requests need ``x-api-version``.
        on_request: called with a
            [RecordedRequest][semansys_auth.testing.RecordedRequest] for each
            request answered (see
            [on_request][semansys_auth.testing.SemansysEmulator.on_request]).

    Raises:
        ValueError: a setting is out of range.
    """

    CLIENT_ID = "demo-client"
    """The client id accepted by default (a demo value, not a secret)."""
    CLIENT_SECRET = "demo-client-secret"
    """The client secret accepted by default (a demo value, not a secret)."""
    USERNAME = "demo@example.com"
    """The user name accepted by default."""
    PASSWORD = "demo-password"
    """The password accepted by default (a demo value, not a secret)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_token_lifetime: float = 3600,
        refresh_token_lifetime: float = 30 * 24 * 3600,
        issue_refresh_tokens: bool = True,
        rotate_refresh_tokens: bool = True,
        send_expires_in: bool = True,
        dialect: Dialect = "semansys",
        token_delay: float = 0.0,
        scope: str = "read write",
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        username: str = USERNAME,
        password: str = PASSWORD,
        require_api_version: bool = False,
        on_request: Callable[[RecordedRequest], object] | None = None,
    ) -> None:
        if dialect not in _DIALECTS:
            raise ValueError(f"dialect must be one of {', '.join(_DIALECTS)}, got {dialect!r}")
        for name, value in (
            ("access_token_lifetime", access_token_lifetime),
            ("refresh_token_lifetime", refresh_token_lifetime),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if token_delay < 0:
            raise ValueError(f"token_delay must be >= 0, got {token_delay!r}")
        self.host = host
        """The address it listens on."""
        self._requested_port = port
        self.access_token_lifetime = access_token_lifetime
        """Seconds an access token lives (applies to tokens issued from now on)."""
        self.refresh_token_lifetime = refresh_token_lifetime
        """Seconds a refresh token lives (applies to tokens issued from now on)."""
        self.issue_refresh_tokens = issue_refresh_tokens
        """Whether answers carry a refresh token."""
        self.rotate_refresh_tokens = rotate_refresh_tokens
        """Whether a refresh token is one-time (a new one with each answer)."""
        self.send_expires_in = send_expires_in
        """Whether answers carry `expires_in` (else only the JWT's `exp`)."""
        self.dialect: Dialect = dialect
        """How rejections look: `"semansys"`, `"identityserver"` or `"openiddict"`."""
        self.token_delay = token_delay
        """Seconds to think before each token answer."""
        self.scope = scope
        """The scope granted when a token request asks for none."""
        self.client_id = client_id
        """The client id it accepts."""
        self.client_secret = client_secret
        """The client secret it accepts."""
        self.username = username
        """The user name it accepts."""
        self.password = password
        """The password it accepts."""
        self.require_api_version = require_api_version
        """Whether API requests without `x-api-version` are answered 400."""
        self.on_request = on_request
        """Called with a [RecordedRequest][semansys_auth.testing.RecordedRequest]
        for each request answered, in the thread that served it, just before
        the answer is sent (which is sent whatever the hook does; so a client
        sees the hook's effect of its earlier requests); None: nobody is
        called. It sees every request, including those the request log leaves out
        (kind `"other"`: an unknown path, or a GET of the token endpoint).
        `semansys-auth emulator -v` uses it to log each request. It must be
        thread-safe; an exception it raises is printed by the server thread,
        and the answer is not affected.

        ```python
        emulator.on_request = lambda r: print(r.method, r.path, r.grant_type, r.status)
        ```
        """
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._access: dict[str, _Issued] = {}
        self._refresh: dict[str, _Issued] = {}
        self._failures: deque[Failure] = deque()
        self._log: list[RecordedRequest] = []
        self._open = threading.Event()
        self._open.set()
        self._pending = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> SemansysEmulator:
        """Start serving, in a thread of its own; returns the emulator itself.

        Raises:
            RuntimeError: it is already running.
            OSError: the port cannot be listened on (e.g. it is taken).
        """
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        from ._http import serve  # imported here: it imports this module

        self._server, self._thread = serve(self, self.host, self._requested_port)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (nothing happens if it is
        not running). Tokens, settings and the request log are kept."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SemansysEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.base_url if self._server is not None else "stopped"
        return f"SemansysEmulator({state}, dialect={self.dialect!r})"

    # -- addresses and credentials ---------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (the free one it chose, if it was given 0).

        Raises:
            RuntimeError: it is not running.
        """
        if self._server is None:
            raise RuntimeError("the emulator is not running: use it in a with block")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`: the root of its endpoints, while it runs."""
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        """The URL of its token endpoint, `<base_url>/connect/token`: the
        `token_url` to give [SemansysAuth][semansys_auth.SemansysAuth]."""
        return self.base_url + "/connect/token"

    @property
    def api_url(self) -> str:
        """The URL of its protected echo API, `<base_url>/api`: any path below it
        answers 200 with a JSON echo of the request when it carries a valid
        token."""
        return self.base_url + "/api"

    @property
    def credentials(self) -> dict[str, str]:
        """client_id, client_secret, username and password, as keyword arguments."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "username": self.username,
            "password": self.password,
        }

    def env(self) -> dict[str, str]:
        """The `SEMANSYS_*` variables that point
        [SemansysAuth.from_env][semansys_auth.SemansysAuth.from_env] here."""
        return {
            "SEMANSYS_TOKEN_URL": self.token_url,
            "SEMANSYS_CLIENT_ID": self.client_id,
            "SEMANSYS_CLIENT_SECRET": self.client_secret,
            "SEMANSYS_USERNAME": self.username,
            "SEMANSYS_PASSWORD": self.password,
        }

    def auth(self, **options: Any) -> SemansysAuth:
        """A [SemansysAuth][semansys_auth.SemansysAuth] bound to this emulator.

        Args:
            **options: passed to `SemansysAuth`, over the emulator's credentials
                and token URL (e.g. `token_cache=`, `scope=`).
        """
        from .. import SemansysAuth

        kwargs: dict[str, Any] = {**self.credentials, "token_url": self.token_url}
        kwargs.update(options)
        return SemansysAuth(**kwargs)

    # -- controls ------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is refused from now on (401)."""
        with self._lock:
            self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Every refresh token issued so far is refused from now on (invalid_grant)."""
        with self._lock:
            self._refresh.clear()

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 503,
        html: bool = False,
        error: str | None = None,
        retry_after: float | str | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer the next ``count`` token requests with a failure.

        Args:
            count: how many token requests fail.
            status: the HTTP status of the failures.
            html: answer an HTML error page (as a proxy would).
            error: answer RFC 6749 JSON ``{"error": error}``.
            retry_after: a ``Retry-After`` header value.
            body: answer these bytes exactly.

        The body is an HTML error page when ``html``, ``body`` when given, RFC 6749
        JSON ``{"error": error}`` when ``error`` is given, else empty JSON ``{}``.
        """
        failure = Failure(
            status, html, error, None if retry_after is None else str(retry_after), body
        )
        with self._lock:
            self._failures.extend([failure] * count)

    def pause_token_responses(self) -> None:
        """Hold every token answer until
        [resume_token_responses][semansys_auth.testing.SemansysEmulator.resume_token_responses]
        (at most [pause_limit][semansys_auth.testing.SemansysEmulator.pause_limit]
        seconds, then it answers 503). Requests still arrive:
        [pending_token_requests][semansys_auth.testing.SemansysEmulator.pending_token_requests]
        counts those waiting."""
        self._open.clear()

    def resume_token_responses(self) -> None:
        """Answer the token requests held by
        [pause_token_responses][semansys_auth.testing.SemansysEmulator.pause_token_responses],
        and the later ones, at once again."""
        self._open.set()

    pause_limit: float = 10.0
    """Seconds a paused token answer is held at most; then it is a 503."""

    @property
    def pending_token_requests(self) -> int:
        """Token requests received and not yet answered."""
        with self._lock:
            return self._pending

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request seen so far, oldest first."""
        with self._lock:
            return list(self._log)

    def token_requests(self, grant_type: str | None = None) -> list[RecordedRequest]:
        """The token requests seen so far, optionally of one grant type."""
        return [
            r
            for r in self.requests
            if r.kind == "token" and (grant_type is None or r.grant_type == grant_type)
        ]

    def clear_log(self) -> None:
        """Forget the requests seen so far (tokens issued stay valid)."""
        with self._lock:
            self._log.clear()

    # -- token endpoint ---------------------------------------------------------------

    def _issue(self, username: str, client_id: str, scope: str) -> dict[str, Any]:
        now = time.time()
        jti = secrets.token_hex(8)
        claims = {
            "iss": self.base_url,
            "sub": username,
            "aud": "semansys-api",
            "client_id": client_id,
            "scope": scope,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + self.access_token_lifetime),
            "jti": jti,
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        access = f"{header}.{payload}.{_b64(signature)}"
        answer: dict[str, Any] = {"access_token": access, "token_type": "bearer", "scope": scope}
        if self.send_expires_in:
            answer["expires_in"] = int(self.access_token_lifetime)
        self._access[access] = _Issued(username, client_id, scope, now + self.access_token_lifetime)
        if self.issue_refresh_tokens:
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = _Issued(
                username, client_id, scope, now + self.refresh_token_lifetime
            )
            answer["refresh_token"] = refresh
        return answer

    def _token(self, form: dict[str, str]) -> _Answer:
        """Answer one token request: (status, headers, body, grant_type)."""
        grant = form.get("grant_type")
        json_headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        with self._lock:
            self._pending += 1
        try:
            if self.token_delay:
                time.sleep(self.token_delay)
            released = self._open.wait(self.pause_limit)
        finally:
            with self._lock:
                self._pending -= 1
        if not released:
            return 503, json_headers, b'{"error": "temporarily_unavailable"}', grant
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            return (*failure.answer(), grant)

        def error(status: int, code: str | None, description: str | None = None) -> _Answer:
            body: dict[str, str] = {}
            if code:
                body["error"] = code
            if description:
                body["error_description"] = description
            return status, json_headers, json.dumps(body).encode(), grant

        if grant not in ("password", "refresh_token"):
            return error(400, "unsupported_grant_type" if grant else "invalid_request")
        client_ok = _same(form.get("client_id", ""), self.client_id) & _same(
            form.get("client_secret", ""), self.client_secret
        )
        if not client_ok:
            if self.dialect == "semansys":
                return 401, json_headers, b'{"message": "Invalid client credentials"}', grant
            return error(401 if self.dialect == "openiddict" else 400, "invalid_client")
        with self._lock:
            if grant == "password":
                if "username" not in form or "password" not in form:
                    return error(400, "invalid_request", "username and password are required")
                user_ok = _same(form["username"], self.username) & _same(
                    form["password"], self.password
                )
                if not user_ok:
                    if self.dialect == "semansys":
                        refused = b'{"message": "User authentication failed"}'
                        return 403, json_headers, refused, grant
                    return error(400, "invalid_grant", "invalid_username_or_password")
                scope = form.get("scope") or self.scope
                answer = self._issue(self.username, self.client_id, scope)
                return 200, json_headers, json.dumps(answer).encode(), grant
            issued = self._refresh.get(form.get("refresh_token", ""))
            if issued is None or issued.expires_at < time.time():
                return error(400, "invalid_grant", "invalid refresh token")
            if self.rotate_refresh_tokens:
                del self._refresh[form["refresh_token"]]
            answer = self._issue(issued.username, issued.client_id, issued.scope)
            if not self.rotate_refresh_tokens:
                answer.pop("refresh_token", None)
            return 200, json_headers, json.dumps(answer).encode(), grant

    def _check_bearer(self, authorization: str | None) -> _Issued | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self._lock:
            issued = self._access.get(authorization[len("Bearer ") :])
        if issued is None or issued.expires_at <= time.time():
            return None
        return issued

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _served(self, entry: RecordedRequest) -> None:
        """The HTTP side answered ``entry``: tell the ``on_request`` hook, if any."""
        hook = self.on_request
        if hook is not None:
            hook(entry)
