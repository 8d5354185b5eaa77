"""The wall clock, through every client: with the core's wall clock
stepped back, an expired token is never sent; stepped ahead (the machine
slept), the token is renewed before it is sent. (The decisions themselves, with
two fake clocks: tests/core/test_token_core_clocks.py.)"""

from __future__ import annotations

import time

import pytest

from helpers import send
from semansys_auth.testing import SemansysEmulator

HOUR = 3600.0


# -- every client, with the core's wall clock stepped for real ---------------------------------

LIFETIME = 2  # sent until 1.8 s after it was obtained


@pytest.fixture
def short_lived(semansys_emulator: SemansysEmulator) -> SemansysEmulator:
    semansys_emulator.access_token_lifetime = LIFETIME
    return semansys_emulator


def api_statuses(emulator: SemansysEmulator) -> list[int]:
    return [r.status for r in emulator.requests if r.kind == "api"]


@pytest.mark.timeout(60)
def test_an_expired_token_is_not_sent_after_the_wall_clock_steps_back(
    short_lived: SemansysEmulator, kind: str
) -> None:
    auth = short_lived.auth(leeway=0)
    assert send(kind, auth, "GET", short_lived.api_url + "/first").status == 200
    # The wall clock as the core sees it steps back an hour.
    auth._core.clock = lambda: time.time() - HOUR
    time.sleep(LIFETIME + 0.2)  # the token has expired at the server
    assert send(kind, auth, "GET", short_lived.api_url + "/second").status == 200
    assert api_statuses(short_lived) == [200, 200], "the expired token was sent (a 401)"
    assert len(short_lived.token_requests()) == 2


@pytest.mark.timeout(60)
def test_a_wall_clock_jump_ahead_renews_before_sending(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    auth = semansys_emulator.auth()
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/first").status == 200
    first = auth.token_info
    auth._core.clock = lambda: time.time() + 2 * HOUR  # the machine slept two hours
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/second").status == 200
    assert len(semansys_emulator.token_requests()) == 2
    assert auth.token_info != first
