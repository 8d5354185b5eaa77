"""niquests, sync (``Session``) and async (``AsyncSession``), through
its own adapter: what the shared behaviour tests (``KINDS``) do not show.

The event loop goes on during a slow token request; a 401 is answered by one
renewal and one resend of the same request, body included (sync and async);
one token request for threads and tasks sharing the object with requests and
httpx; token requests go through niquests (its exceptions, no session auth,
headers, cookies or netrc, no redirect, bounded answers).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from helpers import RecordingServer
from semansys_auth import (
    BadTokenRequestError,
    MalformedTokenResponseError,
    SemansysAuth,
)
from semansys_auth.testing import SemansysEmulator
from servers import HostileServer, http_answer, json_answer

niquests = pytest.importorskip("niquests")

PAYLOAD = b"<xbrl>" + b"x" * 20000 + b"</xbrl>"
TIMEOUT = 10.0
# What the loopback's kernel buffers hold for a client that stopped reading is
# well under this; a client that read on would take in about 1 GB in 20 s.
FAR_BELOW = 20 * 1024 * 1024


def sync_get(auth: Any, url: str, **kwargs: Any) -> Any:
    with niquests.Session() as session:
        session.auth = auth
        return session.get(url, timeout=TIMEOUT, **kwargs)


def async_get(auth: Any, url: str, **kwargs: Any) -> Any:
    async def go() -> Any:
        async with niquests.AsyncSession() as session:
            session.auth = auth
            return await session.get(url, timeout=TIMEOUT, **kwargs)

    return asyncio.run(go())


GET = {"niquests": sync_get, "niquests-async": async_get}
BOTH = pytest.mark.parametrize("kind", list(GET))


# -- the event loop ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_loop_never_stands_still_during_a_slow_token_request(
    semansys_emulator: SemansysEmulator,
) -> None:
    warm = semansys_emulator.auth()  # imports and the first AsyncSession, before the clock
    auth = semansys_emulator.auth()
    url = semansys_emulator.api_url + "/loop"

    async def main() -> tuple[list[int], float, float]:
        async with niquests.AsyncSession() as session:
            assert (await session.get(url, auth=warm)).status_code == 200
            semansys_emulator.token_delay = 1.0
            worst = 0.0
            stop = False

            async def ticker() -> None:
                nonlocal worst
                last = time.monotonic()
                while not stop:
                    await asyncio.sleep(0.005)
                    now = time.monotonic()
                    worst = max(worst, now - last)
                    last = now

            ticking = asyncio.create_task(ticker())
            started = time.monotonic()
            replies = await asyncio.gather(*(session.get(url, auth=auth) for _ in range(20)))
            took = time.monotonic() - started
            stop = True
            await ticking
            return [r.status_code for r in replies], worst, took

    statuses, worst, took = asyncio.run(asyncio.wait_for(main(), 30))
    assert statuses == [200] * 20
    assert took >= 0.9, "the token request was not slow: nothing was measured"
    assert worst < 0.25, f"the event loop stood still for {worst:.3f} s"
    assert len(semansys_emulator.token_requests()) == 2  # warm's and auth's


# -- 401: one renewal, one resend of the same request ----------------------------------------


@BOTH
@pytest.mark.parametrize("shape", ["bytes", "file"])
def test_a_401_renews_once_and_resends_the_same_body(
    semansys_emulator: SemansysEmulator, kind: str, shape: str, tmp_path: Path
) -> None:
    auth = semansys_emulator.auth()
    url = semansys_emulator.api_url + "/reports?entity=1"
    assert GET[kind](auth, url).status_code == 200
    semansys_emulator.expire_access_tokens()
    path = tmp_path / "report.xbrl"
    path.write_bytes(b"HEADER" + PAYLOAD)

    def put(session: Any, body: Any) -> Any:
        return session.put(url, data=body, headers={"X-Trace": "t-1"}, timeout=TIMEOUT)

    with path.open("rb") as handle:
        handle.seek(len(b"HEADER"))  # sent from here: the resend must rewind to here
        body = PAYLOAD if shape == "bytes" else handle
        if kind == "niquests":
            with niquests.Session() as session:
                session.auth = auth
                reply = put(session, body)
                refused = reply.history[0]
                refused_body = refused.content
        else:

            async def go() -> tuple[Any, Any, Any]:
                async with niquests.AsyncSession() as session:
                    session.auth = auth
                    r = await put(session, body)
                    # The 401 in the history stays an AsyncResponse.
                    return r, r.history[0], await r.history[0].content

            reply, refused, refused_body = asyncio.run(go())
    assert reply.status_code == 200
    assert refused.status_code == 401
    assert json.loads(refused_body) == {"message": "invalid or expired token"}
    assert len(reply.history) == 1
    echoed = reply.json()
    assert echoed["method"] == "PUT"
    assert echoed["body_sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert reply.request.headers["X-Trace"] == "t-1"
    api = [(r.method, r.status) for r in semansys_emulator.requests if r.kind == "api"]
    assert api == [("GET", 200), ("PUT", 401), ("PUT", 200)]
    grants = [r.grant_type for r in semansys_emulator.token_requests()]
    assert grants == ["password", "refresh_token"]


@BOTH
def test_still_401_after_the_renewal_is_returned_not_looped(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    auth = semansys_emulator.auth()
    with RecordingServer(status=401) as api:
        reply = GET[kind](auth, api.url + "/api/x")
        assert reply.status_code == 401
        assert len(api.seen) == 2
        assert api.seen[0].headers["Authorization"] != api.seen[1].headers["Authorization"]
    assert len(semansys_emulator.token_requests()) == 2


def test_an_async_stream_body_is_not_resent(semansys_emulator: SemansysEmulator) -> None:
    auth = semansys_emulator.auth()
    url = semansys_emulator.api_url + "/upload"

    async def chunks() -> Any:
        yield b"part-1;"
        yield b"part-2"

    async def go() -> int:
        async with niquests.AsyncSession() as session:
            session.auth = auth
            assert (await session.get(url)).status_code == 200
            semansys_emulator.expire_access_tokens()
            return int((await session.post(url, data=chunks(), timeout=TIMEOUT)).status_code)

    assert asyncio.run(go()) == 401
    assert len(semansys_emulator.token_requests()) == 1, "no renewal for a body we cannot resend"


def test_the_first_token_does_not_follow_a_redirect_to_another_origin(
    semansys_emulator: SemansysEmulator,
) -> None:
    """AsyncSession runs pre_request hooks on every hop: the first token is put
    on the first request only, and niquests drops it for the other origin."""
    auth = semansys_emulator.auth()
    with RecordingServer() as other:
        url = f"{semansys_emulator.api_url}/redirect?to={other.url}/elsewhere"
        reply = async_get(auth, url)
        assert reply.status_code == 200
        assert len(other.seen) == 1
        assert "Authorization" not in other.seen[0].headers


def test_a_sync_session_inside_a_coroutine_renews_in_place(
    semansys_emulator: SemansysEmulator,
) -> None:
    """A running loop alone does not make a request async: the caller is a
    sync Session, which cannot await a hook."""
    auth = semansys_emulator.auth()

    async def go() -> int:
        return int(sync_get(auth, semansys_emulator.api_url + "/in-loop").status_code)

    assert asyncio.run(go()) == 200


# -- one token request for everybody -------------------------------------------------------


@pytest.mark.timeout(60)
def test_threads_and_tasks_of_every_client_share_one_token_request(
    semansys_emulator: SemansysEmulator,
) -> None:
    semansys_emulator.token_delay = 1.0  # a slow token endpoint widens the race
    auth = semansys_emulator.auth()
    url = semansys_emulator.api_url + "/shared"
    barrier = threading.Barrier(4, timeout=10)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def niquests_thread() -> None:
        with niquests.Session() as session:
            session.auth = auth
            barrier.wait()
            statuses.extend(int(session.get(url, timeout=TIMEOUT).status_code) for _ in range(3))

    def requests_thread() -> None:
        with requests.Session() as session:
            session.auth = auth
            barrier.wait()
            statuses.extend(session.get(url, timeout=TIMEOUT).status_code for _ in range(3))

    def loop_thread() -> None:
        async def main() -> None:
            async with (
                niquests.AsyncSession() as niquests_session,
                httpx.AsyncClient(auth=auth, timeout=TIMEOUT) as client,
            ):
                niquests_session.auth = auth
                barrier.wait()
                replies = await asyncio.gather(
                    *(niquests_session.get(url) for _ in range(10)),
                    *(client.get(url) for _ in range(10)),
                )
                statuses.extend(int(r.status_code) for r in replies)

        asyncio.run(main())

    def guarded(target: Any) -> Any:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        return run

    threads = [
        threading.Thread(target=guarded(t))
        for t in (niquests_thread, niquests_thread, requests_thread, loop_thread)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert statuses == [200] * 29
    assert len(semansys_emulator.token_requests()) == 1


# -- token requests go through niquests ------------------------------------------------------


def make_auth(token_url: str, **options: Any) -> SemansysAuth:
    return SemansysAuth(
        client_id="nq-client",
        client_secret="cs-Nq-4b1",
        username="filer@example.com",
        password="pw-Nq-77k",
        token_url=token_url,
        max_retries=0,
        credentials_cooldown=0,
        **options,
    )


def token_json() -> bytes:
    return json_answer(200, {"access_token": "nq-token", "token_type": "bearer", "expires_in": 600})


@BOTH
def test_a_refused_token_endpoint_is_a_niquests_error(kind: str) -> None:
    with HostileServer() as server:
        url = server.url
    # The server is gone: its port refuses connections.
    with pytest.raises(niquests.ConnectionError) as caught:
        GET[kind](make_auth(url + "/connect/token"), url + "/api")
    assert not isinstance(caught.value, requests.RequestException)
    assert "cs-Nq-4b1" not in f"{caught.value} {caught.value!r}"


@BOTH
def test_token_requests_carry_no_session_auth_headers_cookies_or_netrc(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HostileServer(token_answer=token_json()) as server:
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-pass\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        auth = make_auth(server.token_url)

        def dress(session: Any) -> None:
            session.auth = auth
            session.headers["Authorization"] = "Basic c2Vzc2lvbjpwYXNz"
            session.headers["X-Session"] = "session-header"
            session.cookies.set("sid", "session-cookie")

        if kind == "niquests":
            with niquests.Session() as session:
                dress(session)
                reply = session.get(server.api_url, timeout=TIMEOUT)
        else:

            async def go() -> Any:
                async with niquests.AsyncSession() as session:
                    dress(session)
                    return await session.get(server.api_url, timeout=TIMEOUT)

            reply = asyncio.run(go())
        assert reply.json() == {"authorization": "Bearer nq-token"}
        (token_request,) = server.token_requests()
    headers = {name.lower(): value for name, value in token_request.headers.items()}
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert "x-session" not in headers
    assert headers["accept-encoding"] == "identity"
    assert token_request.method == "POST"
    assert b"grant_type=password" in token_request.body


@BOTH
def test_a_redirect_of_the_token_endpoint_is_not_followed(kind: str) -> None:
    with RecordingServer() as other:
        answer = http_answer(307, [("Location", other.url + "/connect/token")])
        with HostileServer(token_answer=answer) as server:
            with pytest.raises(BadTokenRequestError):
                GET[kind](make_auth(server.token_url), server.api_url)
            assert len(server.token_requests()) == 1
        assert other.seen == []  # the credentials never went there


@BOTH
@pytest.mark.timeout(30)
def test_an_endless_token_answer_is_cut(kind: str) -> None:
    def endless(request: Any) -> Any:
        yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        yield b"Transfer-Encoding: chunked\r\n\r\n"
        chunk = b"x" * 65536
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            yield framed

    with HostileServer(token_answer=endless) as server:
        started = time.monotonic()
        with pytest.raises(MalformedTokenResponseError, match="more than 1024 KiB"):
            GET[kind](make_auth(server.token_url, timeout=10.0), server.api_url)
        assert time.monotonic() - started < 8
    assert server.sent_bytes and server.sent_bytes[0] < FAR_BELOW


@BOTH
@pytest.mark.timeout(30)
def test_a_trickling_token_answer_ends_within_the_timeout(kind: str) -> None:
    def trickle(request: Any) -> Any:
        yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9000\r\n\r\n"
        for _ in range(9000):
            yield b" "
            time.sleep(0.05)

    with HostileServer(token_answer=trickle) as server:
        started = time.monotonic()
        with pytest.raises(niquests.Timeout):
            GET[kind](make_auth(server.token_url, timeout=1.0), server.api_url)
        assert time.monotonic() - started < 3


# -- registration ----------------------------------------------------------------------------


def test_requests_users_do_not_import_niquests(semansys_emulator: SemansysEmulator) -> None:
    script = (
        "import sys, requests\n"
        "from semansys_auth.testing import SemansysEmulator\n"
        "with SemansysEmulator() as emulator:\n"
        "    status = requests.get(emulator.api_url + '/a', auth=emulator.auth(), timeout=10)\n"
        "    assert status.status_code == 200, status\n"
        "print('niquests' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_niquests_left_requests_its_own_urllib3() -> None:
    """The test command installs niquests with URLLIB3_NO_OVERRIDE=1 (see
    docs/development.md): requests keeps the real urllib3 and is tested on it,
    niquests runs on urllib3_future."""
    import site

    import urllib3
    from niquests import _compat

    overrides = [p for p in site.getsitepackages() if Path(p, "urllib3_future.pth").exists()]
    assert overrides == [], (
        "urllib3-future was installed from its wheel and copies itself over urllib3: "
        "reinstall with the README's test command (URLLIB3_NO_OVERRIDE=1 pip install "
        "--no-binary urllib3-future 'niquests>=3.21')"
    )
    # niquests' own test: the urllib3 that requests imports is not its fork.
    assert _compat.HAS_LEGACY_URLLIB3, f"urllib3 {urllib3.__version__} is urllib3-future"
