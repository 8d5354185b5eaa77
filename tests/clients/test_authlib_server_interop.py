"""Interoperability: SemansysAuth against a third-party OAuth 2.0 authorization
server, Authlib's (password and refresh_token grants, rotating refresh tokens,
its own bearer-token resource protector), served by werkzeug on loopback.

So that correctness does not rest on our own emulator alone."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector, current_token
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from helpers import send, wait_until
from semansys_auth import ClientCredentialsError, SemansysAuth, UserCredentialsError

CLIENT_ID, CLIENT_SECRET = "interop-client", "interop-secret"
USERNAME, PASSWORD = "filer@example.com", "interop-password"


class Client(ClientMixin):  # type: ignore[misc]
    def get_client_id(self) -> str:
        return CLIENT_ID

    def get_default_redirect_uri(self) -> str:
        return ""

    def get_allowed_scope(self, scope: str) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, CLIENT_SECRET)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("password", "refresh_token")


@dataclass
class User:
    name: str

    def get_user_id(self) -> str:
        return self.name


@dataclass
class Issued(TokenMixin):  # type: ignore[misc]
    access_token: str
    refresh_token: str | None
    scope: str
    expires_at: float
    user: User
    revoked: bool = False

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == CLIENT_ID)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked


@dataclass
class Store:
    lifetime: int = 3600
    issued: list[Issued] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expire_all(self) -> None:
        with self.lock:
            for token in self.issued:
                token.expires_at = 0


def build_app(store: Store) -> Flask:
    app = Flask("interop")
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {
        "password": store.lifetime,
        "refresh_token": store.lifetime,
    }

    def save_token(token: dict[str, Any], req: Any) -> None:
        token["expires_in"] = store.lifetime  # the same dict is then sent as the answer
        with store.lock:
            store.grants.append(req.payload.grant_type if req.payload else "?")
            store.issued.append(
                Issued(
                    token["access_token"],
                    token.get("refresh_token"),
                    token.get("scope", ""),
                    time.time() + token["expires_in"],
                    req.user,
                )
            )

    server = AuthorizationServer(
        app, query_client=lambda cid: Client() if cid == CLIENT_ID else None, save_token=save_token
    )

    class PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post"]

        def authenticate_user(self, username: str, password: str) -> User | None:
            ok = secrets.compare_digest(username, USERNAME) and secrets.compare_digest(
                password, PASSWORD
            )
            return User(username) if ok else None

    class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post"]
        INCLUDE_NEW_REFRESH_TOKEN = True  # rotate

        def authenticate_refresh_token(self, refresh_token: str) -> Issued | None:
            with store.lock:
                for token in store.issued:
                    if token.refresh_token == refresh_token and not token.revoked:
                        return token
            return None

        def authenticate_user(self, credential: Issued) -> User:
            return credential.user

        def revoke_old_credential(self, credential: Issued) -> None:
            credential.revoked = True

    server.register_grant(PasswordGrant)
    server.register_grant(RefreshGrant)

    class Validator(BearerTokenValidator):  # type: ignore[misc]
        def authenticate_token(self, token_string: str) -> Issued | None:
            with store.lock:
                for token in store.issued:
                    if token.access_token == token_string:
                        return token
            return None

    protect = ResourceProtector()
    protect.register_token_validator(Validator())

    @app.route("/oauth/token", methods=["POST"])
    def issue() -> Any:
        return server.create_token_response()

    @app.route("/api/me", methods=["GET", "POST", "PUT"])
    @protect()
    def me() -> Any:
        return jsonify(user=current_token.user.name, body=request.get_data().decode())

    return app


@pytest.fixture
def authlib_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Store]]:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback
    store = Store()
    httpd = make_server("127.0.0.1", 0, build_app(store), threaded=True)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", store
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def make_auth(base: str, **options: Any) -> SemansysAuth:
    values = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
    }
    values.update(options)
    return SemansysAuth(token_url=base + "/oauth/token", **values)


def test_password_grant_then_401_refresh_and_resend(
    authlib_server: tuple[str, Store], kind: str
) -> None:
    base, store = authlib_server
    auth = make_auth(base)
    first = send(kind, auth, "PUT", base + "/api/me", content=b"xbrl")
    assert first.status == 200 and first.body == {"user": USERNAME, "body": "xbrl"}
    store.expire_all()
    second = send(kind, auth, "PUT", base + "/api/me", content=b"xbrl")
    assert second.status == 200 and second.body == {"user": USERNAME, "body": "xbrl"}
    assert store.grants == ["password", "refresh_token"]


def test_rotated_refresh_tokens_keep_working(authlib_server: tuple[str, Store], kind: str) -> None:
    base, store = authlib_server
    auth = make_auth(base)
    for _ in range(3):
        assert send(kind, auth, "GET", base + "/api/me").status == 200
        store.expire_all()
    assert store.grants == ["password", "refresh_token", "refresh_token"]


def test_proactive_refresh_before_expiry(authlib_server: tuple[str, Store], kind: str) -> None:
    base, store = authlib_server
    store.lifetime = 4
    auth = make_auth(base)
    assert send(kind, auth, "GET", base + "/api/me").status == 200
    time.sleep(2.1)
    assert send(kind, auth, "GET", base + "/api/me").status == 200
    wait_until(lambda: len(store.grants) == 2)  # requests renews in the background
    assert store.grants == ["password", "refresh_token"]


def test_authlib_error_answers_are_classified(authlib_server: tuple[str, Store], kind: str) -> None:
    base, _ = authlib_server
    with pytest.raises(UserCredentialsError) as user_error:
        send(kind, make_auth(base, password="nope"), "GET", base + "/api/me")
    # Authlib answers a wrong password with invalid_request (RFC 6749 says
    # invalid_grant); its description names the username and password.
    assert user_error.value.status_code == 400
    assert user_error.value.error in ("invalid_grant", "invalid_request")
    with pytest.raises(ClientCredentialsError) as client_error:
        send(kind, make_auth(base, client_secret="nope"), "GET", base + "/api/me")
    assert client_error.value.error == "invalid_client"
