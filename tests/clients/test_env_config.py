"""SemansysAuth.from_env(): the SEMANSYS_* variables, with keyword overrides."""

from __future__ import annotations

import pytest

from helpers import send
from semansys_auth import PRE_PRODUCTION_TOKEN_URL, SemansysAuth
from semansys_auth.testing import SemansysEmulator

FULL = {
    "SEMANSYS_CLIENT_ID": "env-client",
    "SEMANSYS_CLIENT_SECRET": "env-secret",
    "SEMANSYS_USERNAME": "env@example.com",
    "SEMANSYS_PASSWORD": "env-password",
}


def test_reads_the_four_required_variables() -> None:
    auth = SemansysAuth.from_env(FULL)
    assert (auth.client_id, auth.username, auth.token_url) == (
        "env-client",
        "env@example.com",
        PRE_PRODUCTION_TOKEN_URL,
    )


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FULL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SEMANSYS_SCOPE", "a b")
    auth = SemansysAuth.from_env()
    assert auth.client_id == "env-client"
    assert auth._core.endpoint.scope == "a b"


@pytest.mark.parametrize("missing", sorted(FULL))
def test_missing_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in FULL.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        SemansysAuth.from_env(env)


def test_every_missing_variable_is_named_at_once() -> None:
    with pytest.raises(ValueError, match="missing configuration") as caught:
        SemansysAuth.from_env({})
    for name in FULL:
        assert name in str(caught.value)


def test_keyword_arguments_override(semansys_emulator: SemansysEmulator) -> None:
    env = {**FULL, "SEMANSYS_TOKEN_URL": "https://elsewhere.example/token"}
    auth = SemansysAuth.from_env(
        env, **semansys_emulator.credentials, token_url=semansys_emulator.token_url
    )
    assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200


def test_override_fills_a_missing_variable() -> None:
    env = {k: v for k, v in FULL.items() if k != "SEMANSYS_PASSWORD"}
    assert SemansysAuth.from_env(env, password="given").username == "env@example.com"


def test_optional_variables(semansys_emulator: SemansysEmulator) -> None:
    env = {**semansys_emulator.env(), "SEMANSYS_SCOPE": "x y", "SEMANSYS_API_VERSION": "1.2"}
    auth = SemansysAuth.from_env(env)
    reply = send("httpx", auth, "GET", semansys_emulator.api_url + "/a")
    assert reply.body["scope"] == "x y" and reply.body["api_version"] == "1.2"


def test_the_command_and_the_object_share_their_defaults() -> None:
    """The command builds without SemansysAuth (no HTTP library on its start-up
    path), through _config.build: both must default every option alike."""
    import inspect

    from semansys_auth._config import build

    def defaults(function: object) -> dict[str, object]:
        parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
        return {p.name: p.default for p in parameters if p.default is not p.empty}

    ours = defaults(SemansysAuth.__init__)
    assert ours == defaults(build)
    assert ours["token_url"] == PRE_PRODUCTION_TOKEN_URL and len(ours) == 13
