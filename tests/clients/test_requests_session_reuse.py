"""``requests_session`` used two ways: the session whose ``auth`` is the very
SemansysAuth that posts its token requests through it (natural, to share
proxies, certificates and mounted adapters), and sessions with credentials of
their own. Token requests never carry the session's auth, nor an
``Authorization`` header of the session, nor ~/.netrc credentials; they still
go through the session's adapters with its headers. Real loopback servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth

from semansys_auth import SemansysAuth
from semansys_auth.testing import SemansysEmulator
from servers import HostileServer, json_answer

TOKEN = json_answer(200, {"access_token": "good-token", "token_type": "bearer", "expires_in": 3600})


def make_auth(server: HostileServer, session: requests.Session) -> SemansysAuth:
    return SemansysAuth(
        client_id="session-client",
        client_secret="session-secret",
        username="filer@example.com",
        password="session-password",
        token_url=server.token_url,
        max_retries=0,
        timeout=5.0,
        requests_session=session,
    )


@pytest.mark.timeout(30)
def test_the_session_whose_auth_is_the_object_itself(semansys_emulator: SemansysEmulator) -> None:
    with requests.Session() as session:
        auth = semansys_emulator.auth(requests_session=session)
        session.auth = auth
        for _ in range(3):
            r = session.get(semansys_emulator.api_url + "/reports", timeout=10)
            assert r.status_code == 200
            assert r.json()["subject"] == semansys_emulator.username
    assert [t.grant_type for t in semansys_emulator.token_requests()] == ["password"]


@pytest.mark.timeout(30)
def test_the_token_request_carries_no_bearer_of_the_session_auth() -> None:
    with HostileServer(token_answer=TOKEN) as server, requests.Session() as session:
        session.auth = make_auth(server, session)
        r = session.get(server.api_url, timeout=10)
        assert r.json() == {"authorization": "Bearer good-token"}
        (token_request,) = server.token_requests()
    assert "authorization" not in token_request.headers
    assert b"client_secret=session-secret" in token_request.body


@pytest.mark.timeout(30)
def test_a_session_with_basic_auth_keeps_it_from_the_token_endpoint() -> None:
    with HostileServer(token_answer=TOKEN) as server, requests.Session() as session:
        session.auth = HTTPBasicAuth("alice", "basic-secret")
        auth = make_auth(server, session)
        r = session.get(server.api_url, auth=auth, timeout=10)
        assert r.json() == {"authorization": "Bearer good-token"}
        (token_request,) = server.token_requests()
    assert "authorization" not in token_request.headers
    assert b"alice" not in token_request.body


@pytest.mark.timeout(30)
def test_an_authorization_header_of_the_session_stays_off_the_token_request() -> None:
    with HostileServer(token_answer=TOKEN) as server, requests.Session() as session:
        session.headers["Authorization"] = "Basic YWxpY2U6c2VjcmV0"
        session.headers["X-Trace"] = "kept"
        auth = make_auth(server, session)
        assert auth.get_token() == "good-token"
        (token_request,) = server.token_requests()
    assert "authorization" not in token_request.headers
    assert token_request.headers["x-trace"] == "kept"  # other session headers still apply


@pytest.mark.timeout(30)
def test_netrc_credentials_stay_off_the_token_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password netrc-secret\n", encoding="utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with HostileServer(token_answer=TOKEN) as server, requests.Session() as session:
        # The file is read: a plain request of this session carries it.
        assert requests.utils.get_netrc_auth(server.url) == ("alice", "netrc-secret")
        auth = make_auth(server, session)
        assert auth.get_token() == "good-token"
        (token_request,) = server.token_requests()
    assert "authorization" not in token_request.headers


@pytest.mark.timeout(30)
def test_the_session_adapters_still_carry_the_token_request() -> None:
    sent: list[str] = []

    class Counting(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            sent.append(str(request.url))
            return super().send(request, **kwargs)

    with HostileServer(token_answer=TOKEN) as server, requests.Session() as session:
        session.mount(server.url, Counting())
        session.auth = make_auth(server, session)
        body = session.get(server.api_url, timeout=10).json()
        assert sent == [server.token_url, server.api_url]
    assert body == {"authorization": "Bearer good-token"}
