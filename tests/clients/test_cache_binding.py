"""A cached token is used only by an object that holds the same token
URL, client id, username, scope, client secret and password that obtained it.
The binding is a scrypt hash, computed once per object, not per request."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import send
from semansys_auth import (
    ClientCredentialsError,
    FileTokenCache,
    MemoryTokenCache,
    UserCredentialsError,
)
from semansys_auth.testing import SemansysEmulator


@pytest.fixture(params=["memory", "file"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryTokenCache() if request.param == "memory" else FileTokenCache(tmp_path)


@pytest.mark.parametrize(
    ("wrong", "error"),
    [("password", UserCredentialsError), ("client_secret", ClientCredentialsError)],
)
def test_a_warm_cache_does_not_serve_wrong_credentials(
    semansys_emulator: SemansysEmulator, kind: str, cache: Any, wrong: str, error: type
) -> None:
    good = semansys_emulator.auth(token_cache=cache)
    assert send(kind, good, "GET", semansys_emulator.api_url + "/a").status == 200
    bad = semansys_emulator.auth(token_cache=cache, **{wrong: "not-the-right-one"})
    with pytest.raises(error):
        send(kind, bad, "GET", semansys_emulator.api_url + "/a")
    refused = 401 if wrong == "client_secret" else 403  # the Semansys dialect's statuses
    assert [r.status for r in semansys_emulator.token_requests()] == [200, refused]


def test_another_scope_gets_its_own_token(
    semansys_emulator: SemansysEmulator, kind: str, cache: Any
) -> None:
    read = semansys_emulator.auth(token_cache=cache, scope="read")
    write = semansys_emulator.auth(token_cache=cache, scope="write")
    assert send(kind, read, "GET", semansys_emulator.api_url + "/a").body["scope"] == "read"
    assert send(kind, write, "GET", semansys_emulator.api_url + "/a").body["scope"] == "write"
    again = semansys_emulator.auth(token_cache=cache, scope=["read"])
    assert send(kind, again, "GET", semansys_emulator.api_url + "/a").body["scope"] == "read"
    assert len(semansys_emulator.token_requests()) == 2


def test_the_key_names_no_user_and_is_bound_to_every_credential(
    semansys_emulator: SemansysEmulator,
) -> None:
    keys = {
        semansys_emulator.auth(**change)._core.cache_key()
        for change in (
            {},
            {"password": "other"},
            {"client_secret": "other"},
            {"client_id": "other"},
            {"username": "other@example.com"},
            {"scope": "read"},
            {"token_url": semansys_emulator.token_url + "/"},
        )
    }
    assert len(keys) == 7
    for key in keys:
        assert len(key) == 64 and set(key) <= set("0123456789abcdef")


def test_scrypt_runs_once_per_object_not_per_request(
    semansys_emulator: SemansysEmulator, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(kwargs["n"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    auth = semansys_emulator.auth(token_cache=MemoryTokenCache())
    assert calls == [], "nothing at construction"
    for _ in range(3):
        semansys_emulator.expire_access_tokens()
        assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert calls == [2**14], "one deliberately slow hash (scrypt, n=2**14) for the object"


def test_the_command_with_a_wrong_password_fails_even_with_a_warm_cache(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(semansys_emulator.env(), SEMANSYS_TOKEN_CACHE=str(tmp_path))

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "semansys_auth", "token"],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run().returncode == 0
    wrong = run(SEMANSYS_PASSWORD="wrong")
    assert wrong.returncode == 3, wrong.stderr
    assert wrong.stdout == "" and "user credentials" in wrong.stderr
    assert run().returncode == 0
    assert len(semansys_emulator.token_requests()) == 2  # the good runs share one token
