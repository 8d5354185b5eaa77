"""A 401 to our token renews it and resends the same request once."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import RecordingServer, is_async, send
from semansys_auth.testing import SemansysEmulator

PAYLOAD = b"<xbrl>" + b"0123456789" * 3000 + b"</xbrl>"


def body_for(
    shape: str, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[dict[str, Any], bytes | None]:
    """Request kwargs for a body ``shape``, and the bytes the server must receive
    (None when the encoding is the client's business, as for forms and multipart)."""
    if shape == "bytes":
        return {"content": PAYLOAD}, PAYLOAD
    if shape == "json":
        document = {"report": "annual", "items": list(range(50))}
        return {"json": document}, None
    if shape == "form":
        return {"data": {"entity": "12345678", "period": "2026"}}, None
    if shape == "file":
        if kind.endswith("-async"):
            pytest.skip("httpx async clients take no sync file object")
        path = tmp_path / "report.xbrl"
        # requests sends a file from its current position: start mid-file to check
        # that the resend rewinds to there, not to 0. (httpx declares the whole
        # file's size as Content-Length, so it must start at 0.)
        prefix = b"HEADER" if kind == "requests" else b""
        path.write_bytes(prefix + PAYLOAD)
        handle = path.open("rb")
        request.addfinalizer(handle.close)
        handle.seek(len(prefix))
        return {"content": handle}, PAYLOAD
    if shape == "multipart":
        return {"files": {"report": ("report.xbrl", io.BytesIO(PAYLOAD), "application/xml")}}, None
    raise AssertionError(shape)


@pytest.mark.parametrize("shape", ["bytes", "json", "form", "file", "multipart"])
def test_401_renews_and_resends_the_same_request(
    semansys_emulator: SemansysEmulator,
    kind: str,
    shape: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    auth = semansys_emulator.auth()
    url = semansys_emulator.api_url + "/reports?entity=1"
    kwargs, _ = body_for(shape, kind, tmp_path, request)
    first = send(kind, auth, "PUT", url, headers={"X-Trace": "t-1"}, **kwargs)
    assert first.status == 200
    semansys_emulator.expire_access_tokens()
    kwargs, expected = body_for(shape, kind, tmp_path, request)
    second = send(kind, auth, "PUT", url, headers={"X-Trace": "t-1"}, **kwargs)
    assert second.status == 200
    # The 401 is kept in the history (httpx also keeps the token exchange there;
    # an aiohttp middleware has no history to add to).
    history = {"requests": 1, "aiohttp": 0, "niquests": 1, "niquests-async": 1}
    assert second.history == history.get(kind, 2)
    # Same method, URL and body as the first (identical) request.
    for key in ("method", "path", "query", "body_sha256", "body_length", "content_type"):
        if key in ("body_sha256", "content_type") and shape == "multipart":
            continue  # multipart boundaries are random per request
        assert second.body[key] == first.body[key], key
    if expected is not None:
        assert second.body["body_sha256"] == hashlib.sha256(expected).hexdigest()
    assert second.body["body_length"] > 0
    assert second.request_headers["x-trace"] == "t-1"
    api = [(r.method, r.status) for r in semansys_emulator.requests if r.kind == "api"]
    assert api == [("PUT", 200), ("PUT", 401), ("PUT", 200)]
    assert [r.grant_type for r in semansys_emulator.token_requests()] == [
        "password",
        "refresh_token",
    ]


def test_still_401_after_renewal_is_returned_without_loop(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    auth = semansys_emulator.auth()
    with RecordingServer(status=401) as api:
        reply = send(kind, auth, "POST", api.url + "/api/x", content=b"data")
        assert reply.status == 401
        assert len(api.seen) == 2
        assert api.seen[0].headers["Authorization"] != api.seen[1].headers["Authorization"]
        assert api.seen[1].body == b"data"
    assert [r.grant_type for r in semansys_emulator.token_requests()] == [
        "password",
        "refresh_token",
    ]


def test_generator_body_is_not_resent(semansys_emulator: SemansysEmulator, kind: str) -> None:
    auth = semansys_emulator.auth()
    send(kind, auth, "GET", semansys_emulator.api_url + "/warm-up")
    semansys_emulator.expire_access_tokens()

    def chunks() -> Iterator[bytes]:
        yield b"part-1;"
        yield b"part-2"

    async def achunks() -> AsyncIterator[bytes]:
        yield b"part-1;"
        yield b"part-2"

    body = achunks() if is_async(kind) else chunks()
    reply = send(kind, auth, "POST", semansys_emulator.api_url + "/upload", content=body)
    assert reply.status == 401
    assert len(semansys_emulator.token_requests()) == 1, "no renewal for a body we cannot resend"


def test_401_on_a_request_without_our_token_is_not_retried(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    """A redirect to another origin drops our header; that origin's 401 is not ours."""
    auth = semansys_emulator.auth()
    with RecordingServer(status=401) as other:
        url = f"{semansys_emulator.api_url}/redirect?to={other.url}/elsewhere"
        if kind == "requests":
            reply = send(kind, auth, "GET", url)
        else:
            reply = send(kind, auth, "GET", url, follow_redirects=True)
        assert reply.status == 401
        assert len(other.seen) == 1
        assert "Authorization" not in other.seen[0].headers
    assert len(semansys_emulator.token_requests()) == 1


def test_response_history_and_body_of_the_401_are_kept_for_requests(
    semansys_emulator: SemansysEmulator,
) -> None:
    import requests

    session = requests.Session()
    session.auth = semansys_emulator.auth()
    session.get(semansys_emulator.api_url + "/a", timeout=10)
    semansys_emulator.expire_access_tokens()
    response = session.get(semansys_emulator.api_url + "/a", timeout=10)
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert json.loads(response.history[0].content) == {"message": "invalid or expired token"}


def test_a_prepared_request_sent_twice_is_retried_both_times(
    semansys_emulator: SemansysEmulator,
) -> None:
    """The resend must not strip the 401 handling from the caller's own request."""
    import requests

    with requests.Session() as session:
        session.auth = semansys_emulator.auth()
        prepared = session.prepare_request(
            requests.Request("POST", semansys_emulator.api_url + "/a", data=b"x")
        )
        session.get(semansys_emulator.api_url + "/warm-up", timeout=10)
        for _ in range(2):
            semansys_emulator.expire_access_tokens()
            prepared.headers["Authorization"] = session.auth._core.usable().authorization  # type: ignore[union-attr]
            assert session.send(prepared, timeout=10).status_code == 200
