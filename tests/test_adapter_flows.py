"""The adapters (``_httpx``, ``_requests``, ``_aiohttp``) over in-memory
transports: httpx's ``MockTransport`` (sync and async, with read and streamed
bodies), a requests transport adapter mounted on a session, and aiohttp's test
server on loopback. One identity server and API, in memory, answer them all.
Fast enough to run against every mutant of the adapters."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import httpx
import httpx2
import pytest
import requests
import urllib3
from aiohttp import web
from aiohttp.test_utils import TestServer

from semansys_auth import (
    BadTokenRequestError,
    MalformedTokenResponseError,
    SemansysAuth,
)
from semansys_auth._wire import MAX_401_BODY, MAX_ANSWER_BYTES

TOKEN_URL = "https://id.example/connect/token"
API = "https://api.example/v1/items"
CHUNK = 64 * 1024


class Service:
    """The identity server and the API, in memory. Token requests get tokens
    at-1, at-2, ... (or the next of ``token_answers``); the API accepts the
    newest token, except that it refuses ``refuse`` requests with a 401 of
    ``refusal`` bytes first."""

    def __init__(self) -> None:
        self.issued = 0
        self.grants: list[str] = []
        self.token_headers: list[dict[str, str]] = []
        self.token_answers: list[tuple[int, dict[str, str], bytes]] = []
        self.refuse = 0
        self.refusal = b"not this token"
        self.api_seen: list[tuple[str | None, bytes, str | None]] = []

    def token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.grants.append(fields["grant_type"])
        self.token_headers.append({k.lower(): v for k, v in headers.items()})
        if self.token_answers:
            return self.token_answers.pop(0)
        self.issued += 1
        answer = {
            "access_token": f"at-{self.issued}",
            "token_type": "bearer",
            "expires_in": 3600,
            "refresh_token": f"rt-{self.issued}",
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()

    def api(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        lowered = {k.lower(): v for k, v in headers.items()}
        authorization = lowered.get("authorization")
        self.api_seen.append((authorization, body, lowered.get("x-api-version")))
        if self.refuse or authorization != f"Bearer at-{self.issued}":
            self.refuse = max(self.refuse - 1, 0)
            return 401, {"Content-Type": "text/plain"}, self.refusal
        return 200, {"Content-Type": "application/json"}, b'{"ok": true}'

    def handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/connect/token"):
            return self.token(headers, body)
        return self.api(headers, body)

    @property
    def api_bodies(self) -> list[bytes]:
        return [body for _, body, _ in self.api_seen]


def make_auth(token_url: str = TOKEN_URL, **options: Any) -> SemansysAuth:
    options.setdefault("api_version", "2")
    options.setdefault("max_retries", 0)
    return SemansysAuth(
        client_id="cid",
        client_secret="s3cret-client",
        username="jane@example.com",
        password="pa55word",
        token_url=token_url,
        **options,
    )


def gzipped_token(access: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"access_token": access, "token_type": "bearer", "expires_in": 3600})
    return 200, {"Content-Encoding": "gzip"}, gzip.compress(body.encode())


# -- httpx and httpx2 -------------------------------------------------------------------------


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A streamed body (the transport has not read it): ``body`` in chunks,
    with a pause before each; counts what was taken from it."""

    def __init__(self, body: bytes, pause: float = 0.0) -> None:
        self.body = body
        self.pause = pause
        self.given = 0
        self.closed = False

    def _chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), CHUNK):
            chunk = self.body[start : start + CHUNK]
            self.given += len(chunk)
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks():
            time.sleep(self.pause)
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            await asyncio.sleep(self.pause)
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class Chunks2(Chunks, httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """:class:`Chunks` for httpx2."""


class HttpxTransport:
    """A ``MockTransport`` handler over :class:`Service`; ``streamed``: bodies
    are streams that the adapter reads, as over a network."""

    def __init__(self, service: Service, streamed: bool = False, pause: float = 0.0) -> None:
        self.service = service
        self.streamed = streamed
        self.pause = pause
        self.streams: list[Chunks] = []
        self.requests: list[Any] = []

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        module = httpx2 if type(request).__module__.startswith("httpx2") else httpx
        # A token request's body is read from its stream, as a network
        # transport reads it (MockTransport itself reads request.content).
        token_paths = ("/connect/token", "/moved")
        sent = b"".join(request.stream) if request.url.path in token_paths else None
        if request.url.path == "/moved":
            return module.Response(307, headers={"Location": TOKEN_URL.replace("id.", "evil.")})
        status, headers, body = self.service.handle(
            request.url.path, dict(request.headers), request.content if sent is None else sent
        )
        if not self.streamed:
            return module.Response(status, headers=headers, content=body)
        stream = (Chunks if module is httpx else Chunks2)(body, self.pause)
        self.streams.append(stream)
        return module.Response(status, headers=headers, stream=stream)


def httpx_send(
    transport: HttpxTransport,
    auth: SemansysAuth,
    *,
    use_async: bool,
    library: Any = httpx,
    **request: Any,
) -> Any:
    request.setdefault("content", b"payload")
    timeout = request.pop("timeout", 10.0)
    follow = request.pop("follow_redirects", False)
    url = request.pop("url", API)
    if use_async:

        async def go() -> Any:
            async with library.AsyncClient(
                auth=auth,
                transport=library.MockTransport(transport),
                timeout=timeout,
                follow_redirects=follow,
            ) as client:
                response = await client.post(url, **request)
                await response.aread()
                return response

        return asyncio.run(go())
    with library.Client(
        auth=auth,
        transport=library.MockTransport(transport),
        timeout=timeout,
        follow_redirects=follow,
    ) as client:
        return client.post(url, **request)


ASYNC = [pytest.param(False, id="sync"), pytest.param(True, id="async")]


@pytest.mark.parametrize("use_async", ASYNC)
@pytest.mark.parametrize("streamed", [False, True], ids=["read", "streamed"])
@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_httpx_fetches_a_token_and_resends_once_after_a_401(
    use_async: bool, streamed: bool, library: Any
) -> None:
    service = Service()
    transport = HttpxTransport(service, streamed)
    auth = make_auth()
    response = httpx_send(transport, auth, use_async=use_async, library=library)
    assert response.status_code == 200 and service.grants == ["password"]
    assert service.api_seen == [("Bearer at-1", b"payload", "2")]
    service.refuse = 1
    response = httpx_send(transport, auth, use_async=use_async, library=library)
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert service.grants == ["password", "refresh_token"]
    assert service.api_seen[1:] == [
        ("Bearer at-1", b"payload", "2"),
        ("Bearer at-2", b"payload", "2"),
    ]
    # httpx lists the 401, then the token request's answer
    assert [r.status_code for r in response.history] == [401, 200]
    assert response.history[0].content == b"not this token", "the 401's body is kept"
    assert service.token_headers[0]["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in service.token_headers[0]


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_401_to_a_new_token_is_returned_not_resent_again(use_async: bool) -> None:
    service = Service()
    service.refuse = 5
    response = httpx_send(HttpxTransport(service), make_auth(), use_async=use_async)
    assert response.status_code == 401
    assert service.grants == ["password", "refresh_token"], "one renewal, one resend"
    assert len(service.api_seen) == 2


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_huge_401_is_cut_and_the_request_sent_again(use_async: bool) -> None:
    service = Service()
    transport = HttpxTransport(service, streamed=True)
    auth = make_auth()
    httpx_send(transport, auth, use_async=use_async)
    service.refuse = 1
    service.refusal = b"x" * (20 * MAX_401_BODY)
    response = httpx_send(transport, auth, use_async=use_async)
    assert response.status_code == 200
    refused = next(s for s in transport.streams if len(s.body) == len(service.refusal))
    assert refused.given <= MAX_401_BODY + CHUNK, "not drained"
    assert refused.closed
    assert len(response.history[0].content) <= MAX_401_BODY + CHUNK


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_small_streamed_401_is_read_whole_and_kept(use_async: bool) -> None:
    service = Service()
    transport = HttpxTransport(service, streamed=True)
    auth = make_auth()
    httpx_send(transport, auth, use_async=use_async)
    service.refuse = 1
    service.refusal = b"refused" * 1000
    response = httpx_send(transport, auth, use_async=use_async)
    assert response.status_code == 200
    assert response.history[0].content == service.refusal


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_compressed_streamed_token_answer_is_decoded(use_async: bool) -> None:
    service = Service()
    service.token_answers = [gzipped_token("at-1")]
    service.issued = 1  # the API takes at-1
    transport = HttpxTransport(service, streamed=True)
    response = httpx_send(transport, make_auth(), use_async=use_async)
    assert response.status_code == 200
    assert service.api_seen[0][0] == "Bearer at-1"


@pytest.mark.parametrize("use_async", ASYNC)
@pytest.mark.parametrize("streamed", [False, True], ids=["read", "streamed"])
def test_httpx_a_huge_token_answer_is_refused_and_not_read_to_the_end(
    use_async: bool, streamed: bool
) -> None:
    service = Service()
    service.token_answers = [(200, {}, b" " * (4 * MAX_ANSWER_BYTES))]
    transport = HttpxTransport(service, streamed)
    with pytest.raises(MalformedTokenResponseError, match="more than 1024 KiB"):
        httpx_send(transport, make_auth(), use_async=use_async)
    if streamed:
        assert transport.streams[0].given <= MAX_ANSWER_BYTES + CHUNK
        assert transport.streams[0].closed
    assert service.api_seen == []


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_trickling_token_answer_ends_at_the_timeout(use_async: bool) -> None:
    service = Service()
    service.token_answers = [(200, {}, b" " * (20 * CHUNK))]
    transport = HttpxTransport(service, streamed=True, pause=0.1)
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout, match=r"did not finish its answer within 0\.5 s"):
        httpx_send(transport, make_auth(timeout=0.5), use_async=use_async)
    assert time.monotonic() - start < 1.5
    assert transport.streams[0].closed


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_token_request_waits_at_most_the_shorter_timeout(use_async: bool) -> None:
    service = Service()
    transport = HttpxTransport(service)
    httpx_send(transport, make_auth(timeout=30.0), use_async=use_async, timeout=5.0)
    httpx_send(transport, make_auth(timeout=3.0), use_async=use_async, timeout=httpx.Timeout(None))
    token_requests = [r for r in transport.requests if r.url.path == "/connect/token"]
    assert token_requests[0].extensions["timeout"] == dict.fromkeys(
        ("connect", "read", "write", "pool"), 5.0
    )
    assert token_requests[1].extensions["timeout"] == dict.fromkeys(
        ("connect", "read", "write", "pool"), 3.0
    )
    assert token_requests[0].url == httpx.URL(TOKEN_URL) and token_requests[0].method == "POST"


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_followed_307_never_sends_the_credentials_on(use_async: bool) -> None:
    service = Service()
    transport = HttpxTransport(service)
    auth = make_auth(token_url="https://id.example/moved")
    with pytest.raises(BadTokenRequestError, match="307 or 308"):
        httpx_send(transport, auth, use_async=use_async, follow_redirects=True)
    assert [r.url.host for r in transport.requests] == ["id.example"], "nothing reached evil"


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_redirected_token_request_is_reported(use_async: bool) -> None:
    service = Service()

    def handler(request: Any) -> Any:
        if request.url.path == "/moved":
            return httpx.Response(303, headers={"Location": "https://id.example/elsewhere"})
        return httpx.Response(200, json={"access_token": "x", "token_type": "bearer"})

    auth = make_auth(token_url="https://id.example/moved")
    transport: Any = handler
    with pytest.raises(BadTokenRequestError, match=r"redirected to https://id\.example/elsewhere"):
        httpx_send(transport, auth, use_async=use_async, follow_redirects=True)
    assert service.grants == []


def test_httpx_a_file_body_is_rewound_for_the_resend() -> None:
    use_async = False
    service = Service()
    transport = HttpxTransport(service)
    auth = make_auth()
    httpx_send(transport, auth, use_async=use_async)
    service.refuse = 1
    body = io.BytesIO(b"head\nfile body\n")
    body.readline()  # sent from where it stands, and again from there
    response = httpx_send(transport, auth, use_async=use_async, content=body)
    assert response.status_code == 200
    assert service.api_bodies[1:] == [b"file body\n", b"file body\n"]


def test_httpx_a_generator_body_is_not_resent() -> None:
    service = Service()
    transport = HttpxTransport(service)
    auth = make_auth()
    httpx_send(transport, auth, use_async=False)
    service.refuse = 1
    response = httpx_send(transport, auth, use_async=False, content=iter([b"once"]))
    assert response.status_code == 401
    assert service.grants == ["password"], "no renewal for a request that cannot be resent"


def test_httpx_a_multipart_body_is_resent_whole() -> None:
    service = Service()
    transport = HttpxTransport(service)
    auth = make_auth()
    httpx_send(transport, auth, use_async=False)
    service.refuse = 1
    response = httpx_send(
        transport, auth, use_async=False, content=None, files={"f": ("a.txt", io.BytesIO(b"part"))}
    )
    assert response.status_code == 200
    first, second = service.api_bodies[1:]
    assert b"part" in first and first == second


# -- requests ------------------------------------------------------------------------------


class ReadCounter(io.BytesIO):
    """A response body as a transport adapter's file: counts what was read."""

    def __init__(self, body: bytes, fail: BaseException | None = None, pause: float = 0.0) -> None:
        super().__init__(body)
        self.size = len(body)
        self.taken = 0
        self.fail = fail
        self.pause = pause

    def read(self, size: int | None = -1) -> bytes:
        if self.fail is not None:
            raise self.fail
        time.sleep(self.pause)
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


class MemoryAdapter(requests.adapters.BaseAdapter):
    """A requests transport adapter that answers from :class:`Service` in
    memory; ``urllib3_raw``: bodies are urllib3 responses (content-encoded,
    as requests' own transport gives them), else plain files."""

    def __init__(self, service: Service, urllib3_raw: bool = False) -> None:
        super().__init__()
        self.service = service
        self.urllib3_raw = urllib3_raw
        self.sent: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []
        self.bodies: list[ReadCounter] = []
        self.fail: BaseException | None = None
        self.pause = 0.0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append((request, kwargs))
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        status, headers, content = self.service.handle(
            request.path_url, dict(request.headers), body or b""
        )
        response = requests.Response()
        response.status_code = status
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        file = ReadCounter(content, self.fail, self.pause)
        self.bodies.append(file)
        if self.urllib3_raw:
            response.raw = urllib3.HTTPResponse(
                body=file, headers=headers, status=status, preload_content=False
            )
        else:
            response.raw = file
        response.url = request.url or ""
        response.request = request
        response.connection = self  # type: ignore[attr-defined]
        return response

    def close(self) -> None:
        pass


def requests_session(service: Service, urllib3_raw: bool = False) -> tuple[Any, MemoryAdapter]:
    session = requests.Session()
    adapter = MemoryAdapter(service, urllib3_raw)
    session.mount("https://", adapter)
    return session, adapter


@pytest.mark.parametrize("urllib3_raw", [False, True], ids=["file", "urllib3"])
def test_requests_fetches_a_token_and_resends_once_after_a_401(urllib3_raw: bool) -> None:
    service = Service()
    session, adapter = requests_session(service, urllib3_raw)
    auth = make_auth(requests_session=session)
    assert session.post(API, data=b"payload", auth=auth).status_code == 200
    service.refuse = 1
    response = session.post(API, data=b"payload", auth=auth)
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert service.grants == ["password", "refresh_token"]
    assert service.api_seen[1:] == [
        ("Bearer at-1", b"payload", "2"),
        ("Bearer at-2", b"payload", "2"),
    ]
    assert [r.status_code for r in response.history] == [401]
    assert response.history[0].content == b"not this token"
    assert response.request.headers["Authorization"] == "Bearer at-2"
    token_kwargs = [kwargs for r, kwargs in adapter.sent if r.path_url == "/connect/token"]
    assert token_kwargs[0]["timeout"] == (30.0, 30.0)
    assert token_kwargs[0]["stream"] is True and token_kwargs[0]["verify"] not in (None, False)
    service.refuse = 5
    assert session.post(API, data=b"payload", auth=auth).status_code == 401, "resent once only"


def test_requests_token_requests_carry_no_session_auth() -> None:
    service = Service()
    session, _ = requests_session(service)
    session.auth = requests.auth.HTTPBasicAuth("user", "secret")
    session.headers["Authorization"] = "Basic c2VjcmV0"
    session.headers["X-Trace"] = "kept"
    auth = make_auth(requests_session=session)
    assert auth.get_token() == "at-1"
    assert "authorization" not in service.token_headers[0]
    assert service.token_headers[0]["x-trace"] == "kept", "other session headers apply"


def test_requests_a_huge_401_is_cut_and_the_request_sent_again() -> None:
    service = Service()
    session, adapter = requests_session(service)
    auth = make_auth(requests_session=session)
    session.post(API, data=b"payload", auth=auth)
    service.refuse = 1
    service.refusal = b"x" * (20 * MAX_401_BODY)
    response = session.post(API, data=b"payload", auth=auth, stream=True)
    assert response.status_code == 200
    refused = next(b for b in adapter.bodies if b.size == len(service.refusal))
    assert refused.taken <= MAX_401_BODY + CHUNK and refused.closed
    assert len(response.history[0].content) <= MAX_401_BODY + CHUNK


def test_requests_a_compressed_401_and_token_answer_are_decoded() -> None:
    service = Service()
    session, _ = requests_session(service, urllib3_raw=True)
    service.token_answers = [gzipped_token("at-1")]
    service.issued = 1
    auth = make_auth(requests_session=session)
    assert auth.get_token() == "at-1"


@pytest.mark.parametrize("urllib3_raw", [False, True], ids=["file", "urllib3"])
def test_requests_a_huge_token_answer_is_refused_and_not_read_to_the_end(
    urllib3_raw: bool,
) -> None:
    service = Service()
    session, adapter = requests_session(service, urllib3_raw)
    service.token_answers = [(200, {}, b" " * (4 * MAX_ANSWER_BYTES))]
    with pytest.raises(MalformedTokenResponseError, match="more than 1024 KiB"):
        make_auth(requests_session=session).get_token()
    assert adapter.bodies[0].taken <= MAX_ANSWER_BYTES + CHUNK


def test_requests_a_trickling_token_answer_ends_at_the_timeout() -> None:
    service = Service()
    session, adapter = requests_session(service)
    adapter.pause = 0.1
    service.token_answers = [(200, {}, b" " * (20 * 1024 * 1024))]
    start = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout, match=r"within 0\.5 s"):
        make_auth(requests_session=session, timeout=0.5).get_token()
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (TimeoutError("slow"), requests.exceptions.ReadTimeout),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "slow"), requests.exceptions.ReadTimeout),
        (urllib3.exceptions.SSLError("bad record"), requests.exceptions.SSLError),
        (urllib3.exceptions.ProtocolError("cut"), requests.exceptions.ChunkedEncodingError),
        (ConnectionResetError("reset"), requests.exceptions.ConnectionError),
        (urllib3.exceptions.DecodeError("odd"), requests.exceptions.ConnectionError),
    ],
)
def test_requests_a_broken_token_answer_is_a_requests_exception(
    failure: BaseException, expected: type[Exception]
) -> None:
    service = Service()
    session, adapter = requests_session(service)
    adapter.fail = failure
    with pytest.raises(expected) as raised:
        make_auth(requests_session=session).get_token()
    assert raised.value.__cause__ is failure
    assert raised.value.request is not None and raised.value.response is not None


def test_requests_a_bug_while_reading_is_not_disguised() -> None:
    service = Service()
    session, adapter = requests_session(service)
    adapter.fail = ValueError("a bug")
    with pytest.raises(ValueError, match="a bug"):
        make_auth(requests_session=session).get_token()


def test_requests_a_file_body_is_rewound_and_a_generator_is_not_resent() -> None:
    service = Service()
    session, _ = requests_session(service)
    auth = make_auth(requests_session=session)
    session.post(API, data=b"payload", auth=auth)
    service.refuse = 1
    body = io.BytesIO(b"file body")
    assert session.post(API, data=body, auth=auth).status_code == 200
    assert service.api_bodies[1:] == [b"file body", b"file body"]
    service.refuse = 1
    assert session.post(API, data=iter([b"once"]), auth=auth).status_code == 401
    assert service.grants == ["password", "refresh_token"]


def test_requests_the_default_session_is_private_per_fetch() -> None:
    """Without ``requests_session``, a token request goes through a new
    session: here, to an unreachable loopback port."""
    auth = make_auth(token_url="http://127.0.0.1:9/connect/token", timeout=2.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        auth.get_token()


# -- aiohttp -------------------------------------------------------------------------------


async def aiohttp_app(service: Service, pause: float = 0.0) -> TestServer:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        status, headers, content = service.handle(request.path, dict(request.headers), body)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(content)
        await response.prepare(request)
        for start in range(0, len(content), CHUNK):
            await asyncio.sleep(pause)
            await response.write(content[start : start + CHUNK])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def aiohttp_post(auth: SemansysAuth, url: str, data: Any = b"payload") -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession(middlewares=(auth,), timeout=aiohttp.ClientTimeout(total=10)) as s,
        s.post(url, data=data) as response,
    ):
        return response.status, await response.read()


def test_aiohttp_fetches_a_token_and_resends_once_after_a_401() -> None:
    service = Service()

    async def main() -> None:
        server = await aiohttp_app(service)
        try:
            auth = make_auth(token_url=str(server.make_url("/connect/token")))
            api = str(server.make_url("/v1/items"))
            assert await aiohttp_post(auth, api) == (200, b'{"ok": true}')
            service.refuse = 1
            assert await aiohttp_post(auth, api) == (200, b'{"ok": true}')
            service.refuse = 5
            assert (await aiohttp_post(auth, api))[0] == 401, "resent once only"
        finally:
            await server.close()

    asyncio.run(main())
    assert service.grants == ["password", "refresh_token", "refresh_token"]
    assert service.api_seen[:3] == [
        ("Bearer at-1", b"payload", "2"),
        ("Bearer at-1", b"payload", "2"),
        ("Bearer at-2", b"payload", "2"),
    ]
    assert "authorization" not in service.token_headers[0]


def test_aiohttp_another_origin_gets_no_token() -> None:
    service = Service()

    async def main() -> None:
        server = await aiohttp_app(service)
        try:
            auth = make_auth(token_url=str(server.make_url("/connect/token")))
            assert (await aiohttp_post(auth, str(server.make_url("/v1/items"))))[0] == 200
            other = str(server.make_url("/v1/items")).replace("127.0.0.1", "localhost")
            assert (await aiohttp_post(auth, other))[0] == 401
        finally:
            await server.close()

    asyncio.run(main())
    assert [seen[0] for seen in service.api_seen] == ["Bearer at-1", None]
    assert service.grants == ["password"]


def test_aiohttp_a_stream_body_is_not_resent() -> None:
    service = Service()

    async def once() -> AsyncIterator[bytes]:
        yield b"once"

    async def main() -> None:
        server = await aiohttp_app(service)
        try:
            auth = make_auth(token_url=str(server.make_url("/connect/token")))
            api = str(server.make_url("/v1/items"))
            await aiohttp_post(auth, api)
            service.refuse = 1
            assert (await aiohttp_post(auth, api, data=once()))[0] == 401
        finally:
            await server.close()

    asyncio.run(main())
    assert service.grants == ["password"]


def test_aiohttp_compressed_and_huge_token_answers() -> None:
    service = Service()
    service.token_answers = [gzipped_token("at-1"), (200, {}, b" " * (4 * MAX_ANSWER_BYTES))]
    service.issued = 1

    async def main() -> None:
        server = await aiohttp_app(service)
        try:
            api = str(server.make_url("/v1/items"))
            url = str(server.make_url("/connect/token"))
            assert (await aiohttp_post(make_auth(token_url=url), api))[0] == 200
            with pytest.raises(MalformedTokenResponseError, match="more than 1024 KiB"):
                await aiohttp_post(make_auth(token_url=url), api)
        finally:
            await server.close()

    asyncio.run(main())


def test_aiohttp_a_trickling_token_answer_ends_at_the_timeout() -> None:
    service = Service()
    service.token_answers = [(200, {}, b" " * (20 * CHUNK))]

    async def main() -> None:
        server = await aiohttp_app(service, pause=0.1)
        try:
            auth = make_auth(token_url=str(server.make_url("/connect/token")), timeout=0.5)
            start = time.monotonic()
            with pytest.raises(aiohttp.ServerTimeoutError, match=r"within 0\.5 s"):
                await aiohttp_post(auth, str(server.make_url("/v1/items")))
            assert time.monotonic() - start < 1.5
        finally:
            await server.close()

    asyncio.run(main())


def test_aiohttp_an_unreachable_token_endpoint_is_a_client_error() -> None:
    async def main() -> None:
        auth = make_auth(token_url="http://127.0.0.1:9/connect/token", timeout=2.0)
        with pytest.raises(aiohttp.ClientError):
            async with aiohttp.ClientSession(middlewares=(auth,)) as session:
                await session.get("http://127.0.0.1:9/v1/items")

    asyncio.run(main())
