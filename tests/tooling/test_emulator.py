"""The emulator as users use it: directly, through the command (a real port in a
subprocess), and through the pytest fixture (see test_pytest_plugin.py)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from semansys_auth import SemansysAuth
from semansys_auth._token import jwt_claims
from semansys_auth.testing import SemansysEmulator


def token(emulator: SemansysEmulator, **form: str) -> httpx.Response:
    data = {"grant_type": "password", **emulator.credentials, **form}
    return httpx.post(emulator.token_url, data=data, timeout=10)


def test_password_grant_answer_follows_the_semansys_contract(
    semansys_emulator: SemansysEmulator,
) -> None:
    answer = token(semansys_emulator)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    claims = jwt_claims(body["access_token"])
    assert claims is not None
    assert claims["sub"] == "demo@example.com" and claims["exp"] - claims["iat"] == 3600


def test_refresh_tokens_are_one_time(semansys_emulator: SemansysEmulator) -> None:
    refresh = token(semansys_emulator).json()["refresh_token"]
    first = token(semansys_emulator, grant_type="refresh_token", refresh_token=refresh)
    assert first.status_code == 200 and first.json()["refresh_token"] != refresh
    again = token(semansys_emulator, grant_type="refresh_token", refresh_token=refresh)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_client_secret_basic_is_accepted(semansys_emulator: SemansysEmulator) -> None:
    basic = base64.b64encode(b"demo-client:demo-client-secret").decode()
    answer = httpx.post(
        semansys_emulator.token_url,
        data={
            "grant_type": "password",
            "username": "demo@example.com",
            "password": "demo-password",
        },
        headers={"Authorization": f"Basic {basic}"},
        timeout=10,
    )
    assert answer.status_code == 200


def test_api_challenges_unknown_tokens(semansys_emulator: SemansysEmulator) -> None:
    reply = httpx.get(semansys_emulator.api_url + "/x", headers={"Authorization": "Bearer nope"})
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_access_tokens_expire_server_side(semansys_emulator: SemansysEmulator) -> None:
    semansys_emulator.access_token_lifetime = 2
    access = token(semansys_emulator).json()["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    assert httpx.get(semansys_emulator.api_url + "/x", headers=headers).status_code == 200
    time.sleep(2.1)
    assert httpx.get(semansys_emulator.api_url + "/x", headers=headers).status_code == 401


def test_other_paths_and_methods(semansys_emulator: SemansysEmulator) -> None:
    assert httpx.get(semansys_emulator.token_url).status_code == 405
    assert httpx.get(semansys_emulator.base_url + "/nothing").status_code == 404
    access = token(semansys_emulator).json()["access_token"]
    head = httpx.head(
        semansys_emulator.api_url + "/x", headers={"Authorization": f"Bearer {access}"}
    )
    assert head.status_code == 200 and head.content == b""


def test_unsupported_grant_and_missing_fields(semansys_emulator: SemansysEmulator) -> None:
    assert token(semansys_emulator, grant_type="client_credentials").json()["error"] == (
        "unsupported_grant_type"
    )
    answer = httpx.post(
        semansys_emulator.token_url,
        data={
            "grant_type": "password",
            **{"client_id": "demo-client", "client_secret": "demo-client-secret"},
        },
        timeout=10,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


def test_require_api_version() -> None:
    with SemansysEmulator(require_api_version=True) as emulator:
        auth = emulator.auth()
        assert httpx.get(emulator.api_url + "/x", auth=auth).status_code == 400
        assert (
            httpx.get(emulator.api_url + "/x", auth=emulator.auth(api_version="1")).status_code
            == 200
        )


def test_log_masks_secrets(semansys_emulator: SemansysEmulator) -> None:
    token(semansys_emulator)
    shown = repr(semansys_emulator.requests)
    assert "d***@example.com" in shown
    for secret in ("demo-client-secret", "demo-password", "demo@example.com"):
        assert secret not in shown


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="dialect"):
        SemansysEmulator(dialect="keycloak")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="access_token_lifetime"):
        SemansysEmulator(access_token_lifetime=0)
    with pytest.raises(ValueError, match="token_delay"):
        SemansysEmulator(token_delay=-1)


def test_not_running_is_explained() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = SemansysEmulator().token_url


def test_emulator_command_serves_and_prints_the_variables() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "semansys_auth", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        exported: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while "SEMANSYS_PASSWORD" not in exported and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                exported[name] = value
        assert set(exported) == {
            "SEMANSYS_TOKEN_URL",
            "SEMANSYS_CLIENT_ID",
            "SEMANSYS_CLIENT_SECRET",
            "SEMANSYS_USERNAME",
            "SEMANSYS_PASSWORD",
        }
        auth = SemansysAuth.from_env(exported)
        api = exported["SEMANSYS_TOKEN_URL"].replace("/connect/token", "/api/reports")
        reply = httpx.get(api, auth=auth, timeout=10)
        assert reply.status_code == 200 and reply.json()["subject"] == "demo@example.com"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0 and "stopped" in out
    finally:
        process.kill()
        process.wait(timeout=10)


def test_demo_command_walks_through_and_succeeds() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "semansys_auth", "demo"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sections = ("== requests ==", "== httpx ==", "== httpx async ==", "== aiohttp ==")
    sections += ("== niquests ==", "== niquests async ==")
    for section in sections:
        assert section in result.stdout
    assert result.stdout.count("[ok]") == 3 * len(sections)
    assert "All steps behaved as expected" in result.stdout
