"""Bounded retries with backoff on 5xx, 429 and temporarily_unavailable;
Retry-After; no hammering after rejected credentials."""

from __future__ import annotations

import pytest

from helpers import send
from semansys_auth import (
    ClientCredentialsError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from semansys_auth.testing import SemansysEmulator


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 503},
        {"status": 500, "html": True},
        {"status": 429},
        {"status": 400, "error": "temporarily_unavailable"},
    ],
)
def test_transient_failures_are_retried(
    semansys_emulator: SemansysEmulator, kind: str, failure: dict[str, object]
) -> None:
    semansys_emulator.fail_next(2, **failure)  # type: ignore[arg-type]
    auth = semansys_emulator.auth(max_retries=3, backoff=0.01)
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    statuses = [r.status for r in semansys_emulator.token_requests()]
    assert statuses == [failure["status"], failure["status"], 200]


def test_retry_after_is_honoured(semansys_emulator: SemansysEmulator, kind: str) -> None:

    semansys_emulator.fail_next(1, status=429, retry_after=1)
    auth = semansys_emulator.auth(backoff=0.0)
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    requests = semansys_emulator.token_requests()
    assert len(requests) == 2
    assert requests[1].at - requests[0].at >= 0.9


def test_retry_after_beyond_the_cap_fails_at_once(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    semansys_emulator.fail_next(1, status=503, retry_after=600)
    auth = semansys_emulator.auth(retry_after_cap=5)
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    assert caught.value.retry_after == 600
    assert len(semansys_emulator.token_requests()) == 1


@pytest.mark.parametrize(
    ("field", "error_type"),
    [("password", UserCredentialsError), ("client_secret", ClientCredentialsError)],
)
def test_rejected_credentials_are_not_retried_and_cool_down(
    semansys_emulator: SemansysEmulator, kind: str, field: str, error_type: type[Exception]
) -> None:
    auth = semansys_emulator.auth(**{field: "wrong"}, credentials_cooldown=300)
    for _ in range(5):
        with pytest.raises(error_type):
            send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    assert len(semansys_emulator.token_requests()) == 1, "one doomed grant per cooldown"
