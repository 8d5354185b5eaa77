"""Secrets stay out of repr, messages and logs; https is required;
the bearer token never follows a redirect to another origin."""

from __future__ import annotations

import logging
from urllib.parse import quote_plus

import pytest

import semansys_auth
from helpers import RecordingServer, send
from semansys_auth import BadTokenRequestError, SemansysAuth, SemansysAuthError
from semansys_auth._endpoint import TokenEndpoint
from semansys_auth.testing import SemansysEmulator
from servers import HostileServer, http_answer, json_answer

CLIENT_SECRET = "cs-Zq8-very-secret"
PASSWORD = "pw-Kx3-very-secret"


def secrets_of(auth: SemansysAuth) -> list[str]:
    """Every secret the object holds right now (white-box: the test must know them)."""
    found = [CLIENT_SECRET, PASSWORD]
    token = auth._core.usable()
    if token is not None:
        found.append(token.access_token)
        if token.refresh_token:
            found.append(token.refresh_token)
    return found


def test_repr_and_str_show_no_secret(semansys_emulator: SemansysEmulator) -> None:
    semansys_emulator.client_secret, semansys_emulator.password = CLIENT_SECRET, PASSWORD
    auth = semansys_emulator.auth()
    send("httpx", auth, "GET", semansys_emulator.api_url + "/a")
    token = auth._core.usable()
    assert token is not None
    shown = " ".join(
        [
            repr(auth),
            str(auth),
            repr(token),
            str(token),
            repr(token.info()),
            repr(auth._core.endpoint),
            repr(auth._core.endpoint.password_request()),
            repr(semansys_emulator),
            repr(semansys_emulator.requests),
        ]
    )
    for secret in secrets_of(auth):
        assert secret not in shown
    assert "demo@example.com" not in repr(auth)


def test_logs_at_every_level_hold_no_secret(
    semansys_emulator: SemansysEmulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    semansys_emulator.client_secret, semansys_emulator.password = CLIENT_SECRET, PASSWORD
    auth = semansys_emulator.auth(backoff=0.01)
    seen: list[str] = []
    url = semansys_emulator.api_url + "/a"
    send(kind, auth, "GET", url)  # password grant
    seen += secrets_of(auth)
    semansys_emulator.expire_access_tokens()
    send(kind, auth, "POST", url, content=b"x")  # 401, refresh, resend
    seen += secrets_of(auth)
    semansys_emulator.expire_access_tokens()
    semansys_emulator.revoke_refresh_tokens()
    semansys_emulator.fail_next(1, status=502, html=True)
    send(kind, auth, "GET", url)  # refused refresh, retry, password fallback
    seen += secrets_of(auth)
    # An error page that echoes the form back must not carry it into a message.
    semansys_emulator.expire_access_tokens()
    semansys_emulator.revoke_refresh_tokens()
    echo = f"<html>client_secret={CLIENT_SECRET}&password={PASSWORD} {seen[2]}</html>"
    semansys_emulator.fail_next(5, status=500, body=echo.encode())
    with pytest.raises(SemansysAuthError) as caught:
        send(kind, auth, "GET", url)
    text = (
        "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
        + str(caught.value)
        + repr(caught.value)
    )
    assert "semansys_auth" in {r.name for r in caplog.records}
    for secret in set(seen):
        assert secret not in text


def test_redactor_removes_known_secrets_jwts_and_pairs() -> None:
    endpoint = TokenEndpoint(
        token_url="https://x/t",
        client_id="c",
        client_secret=CLIENT_SECRET,
        username="u@x",
        password=PASSWORD,
        scope=None,
        timeout=30.0,
    )
    text = endpoint.redact(
        f'{CLIENT_SECRET} {{"access_token": "abc123", "refresh_token":"r-9"}} '
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln password=hunter2"
    )
    for leaked in (CLIENT_SECRET, "abc123", "r-9", "eyJhbGciOiJIUzI1NiJ9", "hunter2"):
        assert leaked not in text


@pytest.mark.parametrize(
    "url",
    [
        "http://oidc-pre.semansys.com/connect/token",
        "http://10.0.0.1/token",
        "ftp://x/token",
        "token",
    ],
)
def test_non_https_token_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="token_url"):
        SemansysAuth(client_id="c", client_secret="s", username="u", password="p", token_url=url)


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8080/t", "http://127.0.0.1:1/t", "http://127.8.9.10/t", "http://[::1]:9/t"],
)
def test_loopback_http_is_accepted(url: str) -> None:
    auth = SemansysAuth(client_id="c", client_secret="s", username="u", password="p", token_url=url)
    assert auth.token_url == url


def test_bearer_token_never_follows_a_redirect_to_another_origin(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    auth = semansys_emulator.auth()
    with RecordingServer(status=200) as other:
        url = f"{semansys_emulator.api_url}/redirect?to={other.url}/landing"
        options = {} if kind == "requests" else {"follow_redirects": True}
        reply = send(kind, auth, "GET", url, **options)
        assert reply.status == 200
        assert [s.path for s in other.seen] == ["/landing"]
        assert "Authorization" not in other.seen[0].headers
        assert not any(v.startswith("Bearer") for v in other.seen[0].headers.values())


def test_same_origin_redirect_keeps_the_token(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    auth = semansys_emulator.auth()
    url = f"{semansys_emulator.api_url}/redirect?to={semansys_emulator.api_url}/landed"
    options = {} if kind == "requests" else {"follow_redirects": True}
    reply = send(kind, auth, "GET", url, **options)
    assert reply.status == 200 and reply.body["path"] == "/api/landed"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_credentials_never_follow_a_redirect_of_the_token_request(kind: str, status: int) -> None:
    """Even through a client that follows redirects, the form (password, client
    secret) goes to token_url only: a 307/308 target never receives it."""
    with RecordingServer(status=200) as target:
        answer = http_answer(status, [("Location", target.url + "/connect/token")])
        with HostileServer(token_answer=answer) as token_endpoint:
            auth = SemansysAuth(
                client_id="c",
                client_secret=CLIENT_SECRET,
                username="u@example.com",
                password=PASSWORD,
                token_url=token_endpoint.token_url,
                max_retries=0,
            )
            options = {} if kind == "requests" else {"follow_redirects": True}
            with pytest.raises(BadTokenRequestError, match="redirect"):
                send(kind, auth, "GET", token_endpoint.api_url, **options)
            assert len(token_endpoint.token_requests()) == 1
        for seen in target.seen:
            everything = seen.body.decode("latin-1") + repr(seen.headers)
            for secret in (
                CLIENT_SECRET,
                PASSWORD,
                quote_plus(CLIENT_SECRET),
                quote_plus(PASSWORD),
            ):
                assert secret not in everything
            assert seen.body == b""


def test_token_requests_identify_the_library(kind: str) -> None:
    with HostileServer(token_answer=json_answer(200, {"access_token": "t", "expires_in": 60})) as s:
        auth = SemansysAuth(
            client_id="c", client_secret="s", username="u@x", password="p", token_url=s.token_url
        )
        assert send(kind, auth, "GET", s.api_url).status == 200
        (request,) = s.token_requests()
        assert request.headers["user-agent"] == f"semansys-auth/{semansys_auth.__version__}"
        assert request.headers["accept-encoding"] == "identity"
