"""The refresh grant, rotating refresh tokens, and the password-grant
fallback when a refresh is refused."""

from __future__ import annotations

import pytest

from helpers import send
from semansys_auth import UserCredentialsError
from semansys_auth.testing import SemansysEmulator


def test_rotating_refresh_tokens_always_use_the_newest(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    auth = semansys_emulator.auth()
    for _ in range(4):  # each renewal spends the refresh token it used
        assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
        semansys_emulator.expire_access_tokens()
    grants = [(r.grant_type, r.status) for r in semansys_emulator.token_requests()]
    assert grants == [("password", 200)] + [("refresh_token", 200)] * 3


def test_revoked_refresh_token_falls_back_to_password_grant(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    auth = semansys_emulator.auth()
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    semansys_emulator.expire_access_tokens()
    semansys_emulator.revoke_refresh_tokens()
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    grants = [(r.grant_type, r.status) for r in semansys_emulator.token_requests()]
    assert grants == [("password", 200), ("refresh_token", 400), ("password", 200)]


def test_fallback_happens_once(semansys_emulator: SemansysEmulator, kind: str) -> None:
    semansys_emulator.dialect = "identityserver"
    auth = semansys_emulator.auth()
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    semansys_emulator.expire_access_tokens()
    semansys_emulator.revoke_refresh_tokens()
    semansys_emulator.password = "changed-by-the-user"
    with pytest.raises(UserCredentialsError) as caught:
        send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    assert caught.value.error == "invalid_grant"
    grants = [(r.grant_type, r.status) for r in semansys_emulator.token_requests()]
    assert grants == [("password", 200), ("refresh_token", 400), ("password", 400)]


def test_server_without_refresh_tokens_uses_password_grant(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    semansys_emulator.issue_refresh_tokens = False
    auth = semansys_emulator.auth()
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    semansys_emulator.expire_access_tokens()
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert [r.grant_type for r in semansys_emulator.token_requests()] == ["password", "password"]
