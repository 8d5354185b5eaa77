"""No network at construction, the first request fetches a token,
every request carries it, and it is reused."""

from __future__ import annotations

import pytest

from helpers import send
from semansys_auth import PRE_PRODUCTION_TOKEN_URL, SemansysAuth
from semansys_auth.testing import SemansysEmulator


def test_construction_makes_no_request(semansys_emulator: SemansysEmulator) -> None:
    auth = semansys_emulator.auth()
    assert semansys_emulator.requests == []
    assert auth.token_info is None


def test_without_token_url_the_pre_production_endpoint_is_asked() -> None:
    """Through a requests session whose transport records the URL instead of
    going out: no real host is contacted."""
    import requests
    from requests.adapters import BaseAdapter

    asked: list[str] = []

    class Recorder(BaseAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
            asked.append(str(request.url))
            raise requests.ConnectionError("recorded, not sent")

        def close(self) -> None:
            pass

    session = requests.Session()
    session.mount("https://", Recorder())
    auth = SemansysAuth(
        client_id="c", client_secret="s", username="u@x", password="p", requests_session=session
    )
    assert auth.token_url == PRE_PRODUCTION_TOKEN_URL
    with pytest.raises(requests.ConnectionError, match="recorded"):
        auth.get_token()
    assert asked == ["https://oidc-pre.semansys.com/connect/token"]


def test_first_request_fetches_then_reuses(semansys_emulator: SemansysEmulator, kind: str) -> None:
    auth = semansys_emulator.auth()
    for _ in range(3):
        reply = send(kind, auth, "GET", semansys_emulator.api_url + "/reports")
        assert reply.status == 200
        assert reply.body["subject"] == semansys_emulator.username
        assert reply.request_headers["authorization"].startswith("Bearer eyJ")
    assert [r.grant_type for r in semansys_emulator.token_requests()] == ["password"]
    api = [r for r in semansys_emulator.requests if r.kind == "api"]
    assert [r.status for r in api] == [200, 200, 200]


def test_one_object_serves_every_client_kind_with_one_token(
    semansys_emulator: SemansysEmulator,
) -> None:
    auth = semansys_emulator.auth()
    for client in ("requests", "httpx", "httpx-async", "httpx2", "httpx2-async"):
        assert send(client, auth, "GET", semansys_emulator.api_url + "/x").status == 200
    assert len(semansys_emulator.token_requests()) == 1


def test_scope_is_requested(semansys_emulator: SemansysEmulator, kind: str) -> None:
    auth = semansys_emulator.auth(scope=["xbrl.validate", "xbrl.render"])
    reply = send(kind, auth, "GET", semansys_emulator.api_url + "/x")
    assert reply.body["scope"] == "xbrl.validate xbrl.render"
    assert auth.token_info is not None and auth.token_info.scope == "xbrl.validate xbrl.render"


def test_api_version_header_added_unless_present(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    auth = semansys_emulator.auth(api_version="2.0")
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/x").body["api_version"] == "2.0"
    reply = send(
        kind, auth, "GET", semansys_emulator.api_url + "/x", headers={"x-api-version": "3"}
    )
    assert reply.body["api_version"] == "3"


def test_get_token_returns_the_access_token(semansys_emulator: SemansysEmulator) -> None:
    auth = semansys_emulator.auth()
    token = auth.get_token()
    assert token.startswith("eyJ") and token.count(".") == 2
    assert auth.get_token() == token
    assert len(semansys_emulator.token_requests()) == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("client_id", "", "client_id is empty"),
        ("client_secret", None, "client_secret must be a string"),
        ("username", 42, "username must be a string"),
        ("password", "", "password is empty"),
        ("scope", ["a b"], "scope entries"),
        ("leeway", -1, "leeway must be at least 0"),
        ("timeout", 0, "timeout must be greater than 0"),
        ("max_retries", -1, "max_retries"),
        ("on_token", "nope", "on_token must be callable"),
        ("token_cache", object(), "token_cache must have load"),
    ],
)
def test_bad_options_name_the_problem(field: str, value: object, message: str) -> None:
    kwargs: dict[str, object] = {
        "client_id": "c",
        "client_secret": "s",
        "username": "u@x",
        "password": "p",
        field: value,
    }
    with pytest.raises((ValueError, TypeError), match=message):
        SemansysAuth(**kwargs)  # type: ignore[arg-type]


def test_pickling_is_refused_with_advice() -> None:
    import copy
    import pickle

    auth = SemansysAuth(client_id="c", client_secret="s3cr3t", username="u@x", password="p4ss")
    for attempt in (pickle.dumps, copy.deepcopy, copy.copy):
        with pytest.raises(TypeError, match="FileTokenCache") as caught:
            attempt(auth)
        assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize("module_name", ["httpx", "httpx2"])
def test_through_an_in_memory_transport(module_name: str) -> None:
    """httpx's MockTransport (what users' own tests use) reads bodies itself."""
    import asyncio
    import importlib
    import json

    module = importlib.import_module(module_name)

    def handler(request: object) -> object:
        if request.url.path == "/connect/token":  # type: ignore[attr-defined]
            body = {"access_token": "memory-token", "token_type": "bearer", "expires_in": 60}
            return module.Response(200, content=json.dumps(body).encode())
        return module.Response(200, json={"auth": request.headers["Authorization"]})  # type: ignore[attr-defined]

    auth = SemansysAuth(
        client_id="c", client_secret="s", username="u@x", password="p",
        token_url="https://id.invalid/connect/token",
    )  # fmt: skip
    transport = module.MockTransport(handler)
    with module.Client(transport=transport, auth=auth) as client:
        assert client.get("https://api.invalid/x").json() == {"auth": "Bearer memory-token"}

    async def go() -> object:
        async with module.AsyncClient(transport=transport, auth=auth) as client:
            return (await client.get("https://api.invalid/x")).json()

    assert asyncio.run(go()) == {"auth": "Bearer memory-token"}
