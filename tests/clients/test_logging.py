"""Logging on the ``semansys_auth`` logger, and the on_token callback."""

from __future__ import annotations

import logging
import time

import pytest

from helpers import send, wait_until
from semansys_auth import TokenInfo
from semansys_auth.testing import SemansysEmulator


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "semansys_auth" and r.levelno == level
    ]


def test_debug_lines_for_each_step(
    semansys_emulator: SemansysEmulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="semansys_auth")
    semansys_emulator.access_token_lifetime = 4
    auth = semansys_emulator.auth()
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    debug = messages(caplog, logging.DEBUG)
    assert any(m.startswith("token request: grant_type=password") for m in debug)
    assert any(
        m.startswith("token obtained: grant_type=password expires_in=4s scope=read write")
        for m in debug
    )
    time.sleep(2.1)
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    wait_until(lambda: len(semansys_emulator.token_requests()) == 2)  # requests: in the background
    wait_until(lambda: any("renewing it early" in m for m in messages(caplog, logging.DEBUG)))
    semansys_emulator.expire_access_tokens()
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    assert any(
        "API answered 401" in m and "resending once" in m for m in messages(caplog, logging.DEBUG)
    )


def test_warning_on_fallback(
    semansys_emulator: SemansysEmulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = semansys_emulator.auth()
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    semansys_emulator.expire_access_tokens()
    semansys_emulator.revoke_refresh_tokens()
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    warnings = messages(caplog, logging.WARNING)
    assert warnings == [
        "refresh token refused (HTTP 400, invalid_grant): falling back to the password grant"
    ]


def test_quiet_by_default_at_warning_level(
    semansys_emulator: SemansysEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        send("requests", semansys_emulator.auth(), "GET", semansys_emulator.api_url + "/a")
    assert [r for r in caplog.records if r.name == "semansys_auth"] == []


def test_on_token_receives_non_secret_metadata(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    seen: list[TokenInfo] = []
    auth = semansys_emulator.auth(on_token=seen.append)
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    semansys_emulator.expire_access_tokens()
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    assert [info.grant_type for info in seen] == ["password", "refresh_token"]
    assert all(info.scope == "read write" and info.has_refresh_token for info in seen)
    assert all(info.expires_at is not None and info.expires_at > time.time() for info in seen)
    assert "access_token" not in repr(seen) and "eyJ" not in repr(seen)


def test_failing_on_token_callback_is_logged_not_raised(
    semansys_emulator: SemansysEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(info: TokenInfo) -> None:
        raise RuntimeError("metrics backend down")

    auth = semansys_emulator.auth(on_token=explode)
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("httpx", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert "on_token callback raised" in caplog.text
