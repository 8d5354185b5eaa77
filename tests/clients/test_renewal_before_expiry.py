"""Renewal shortly before expiry, before sending; JWT exp fallback."""

from __future__ import annotations

import time

from helpers import send, wait_until
from semansys_auth.testing import SemansysEmulator


def test_token_renewed_before_expiry_without_a_401(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    semansys_emulator.access_token_lifetime = 4  # renewed after half of it: 2 s
    auth = semansys_emulator.auth()
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert len(semansys_emulator.token_requests()) == 1
    time.sleep(2.1)
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    # requests renews in a background thread: the request did not wait for it.
    wait_until(lambda: len(semansys_emulator.token_requests()) == 2)
    assert [r.grant_type for r in semansys_emulator.token_requests()] == [
        "password",
        "refresh_token",
    ]
    assert all(r.status == 200 for r in semansys_emulator.requests if r.kind == "api")


def test_without_expires_in_the_jwt_exp_drives_renewal(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    semansys_emulator.send_expires_in = False
    semansys_emulator.access_token_lifetime = 3600
    auth = semansys_emulator.auth()
    send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    info = auth.token_info
    assert info is not None and info.expires_at is not None
    assert abs(info.expires_at - (time.time() + 3600)) < 5
