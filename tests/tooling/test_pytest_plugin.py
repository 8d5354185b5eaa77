"""The ``semansys_emulator`` fixture, as a user's test suite gets it: through the
``pytest11`` entry point, with nothing imported or configured."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TEST = """
import requests

from semansys_auth import SemansysAuth


def test_my_filing_client(semansys_emulator):
    session = requests.Session()
    session.auth = semansys_emulator.auth()
    reply = session.get(semansys_emulator.api_url + "/reports", timeout=10)
    assert reply.status_code == 200
    semansys_emulator.expire_access_tokens()
    assert session.get(semansys_emulator.api_url + "/reports", timeout=10).status_code == 200
    grants = [r.grant_type for r in semansys_emulator.token_requests()]
    assert grants == ["password", "refresh_token"]


def test_each_test_gets_a_fresh_emulator(semansys_emulator):
    assert semansys_emulator.requests == []


def test_env_points_from_env_at_it(semansys_emulator, monkeypatch):
    for name, value in semansys_emulator.env().items():
        monkeypatch.setenv(name, value)
    assert SemansysAuth.from_env().token_url == semansys_emulator.token_url
"""


def test_fixture_is_available_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_fixture_is_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures")
    result.stdout.fnmatch_lines(["*semansys_emulator*", "*SemansysEmulator*"])
