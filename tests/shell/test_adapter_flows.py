"""The adapters (``_httpx``, ``_requests``, ``_aiohttp``) over in-memory
transports: httpx's ``MockTransport`` (sync and async, with read and streamed
bodies), a requests transport adapter mounted on a session, and aiohttp's test
server on loopback. One identity server and API, in memory, answer them all.
Fast enough to run against every mutant of the adapters."""

from __future__ import annotations

import asyncio
import errno
import gzip
import http.client
import io
import json
import logging
import threading
import time
import types
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
    SemansysAuthError,
    TokenEndpointUnavailableError,
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
        self.token_bodies: list[bytes] = []
        self.token_headers: list[dict[str, str]] = []
        self.token_answers: list[tuple[int, dict[str, str], bytes]] = []
        self.refuse = 0
        self.refusal = b"not this token"
        self.api_seen: list[tuple[str | None, bytes, str | None]] = []

    def token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.grants.append(fields["grant_type"])
        self.token_bodies.append(body)
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

    def __init__(self, body: bytes, pause: float = 0.0, broken: bool = False) -> None:
        self.body = body
        self.pause = pause
        self.broken = broken
        self.given = 0
        self.closed = False

    def _chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), CHUNK):
            if self.broken and start:
                raise httpx.RemoteProtocolError("peer closed the connection")
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
        self.broken_401 = False
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
        broken = self.broken_401 and status == 401
        stream = (Chunks if module is httpx else Chunks2)(body, self.pause, broken)
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

    def read1(self, size: int | None = -1) -> bytes:
        return self.read(size)

    close_fails = False

    def close(self) -> None:
        super().close()
        if self.close_fails:
            raise OSError("connection already gone")


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
        self.set_cookie: str | None = None
        self.encoding_401: str | None = None
        self.fail_401 = False
        self.close_fails_401 = False
        self.threads: list[threading.Thread] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append((request, kwargs))
        self.threads.append(threading.current_thread())
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        status, headers, content = self.service.handle(
            request.path_url, dict(request.headers), body or b""
        )
        if status == 401:
            if self.set_cookie is not None:
                headers = {**headers, "Set-Cookie": self.set_cookie}
            if self.encoding_401 is not None:
                headers = {**headers, "Content-Encoding": self.encoding_401}
        response = requests.Response()
        response.status_code = status
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        failure = OSError("connection reset") if status == 401 and self.fail_401 else self.fail
        file = ReadCounter(content, failure, self.pause)
        file.close_fails = status == 401 and self.close_fails_401
        self.bodies.append(file)
        if self.urllib3_raw:
            lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            # What requests reads the cookies from (http.client's response).
            original = types.SimpleNamespace(
                msg=http.client.parse_headers(io.BytesIO(lines.encode())),
                isclosed=lambda: file.closed,
                close=file.close,
            )
            response.raw = urllib3.HTTPResponse(
                body=file,
                headers=headers,
                status=status,
                preload_content=False,
                original_response=original,  # type: ignore[arg-type]
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
    adapter.close_fails_401 = True  # closing a connection that is gone is no error here
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
    assert str(raised.value) == str(failure), "the message says what failed"
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


# aiohttp tests give a short token timeout: a token request that came back
# through this middleware would wait for its own renewal, as long as twice the
# fetch budget (see TokenCore.lock_wait), before it fails.


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
            auth = make_auth(token_url=str(server.make_url("/connect/token")), timeout=1.0)
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
            auth = make_auth(token_url=str(server.make_url("/connect/token")), timeout=1.0)
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
            auth = make_auth(token_url=str(server.make_url("/connect/token")), timeout=1.0)
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
            assert (await aiohttp_post(make_auth(token_url=url, timeout=1.0), api))[0] == 200
            with pytest.raises(MalformedTokenResponseError, match="more than 1024 KiB"):
                await aiohttp_post(make_auth(token_url=url, timeout=1.0), api)
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


def test_aiohttp_token_requests_skip_the_sessions_middlewares_and_status_checks() -> None:
    """A token request goes through the session, but not through its other
    middlewares, its ``raise_for_status`` or a redirect."""
    service = Service()
    service.token_answers = [
        (302, {"Location": "/v1/elsewhere"}, b""),
        (400, {"Content-Type": "application/json"}, b'{"error": "invalid_request"}'),
    ]
    passed: list[str] = []

    async def recorder(request: Any, handler: Any) -> Any:
        passed.append(request.url.path)
        return await handler(request)

    async def main() -> None:
        server = await aiohttp_app(service)
        try:
            auth = make_auth(token_url=str(server.make_url("/connect/token")), timeout=1.0)
            async with aiohttp.ClientSession(
                middlewares=(recorder, auth), raise_for_status=True
            ) as session:
                api = str(server.make_url("/v1/items"))
                with pytest.raises(SemansysAuthError, match="HTTP 302"):
                    await session.get(api)
                with pytest.raises(BadTokenRequestError, match="invalid_request"):
                    await session.get(api)
                async with session.get(api) as response:
                    assert response.status == 200
        finally:
            await server.close()

    asyncio.run(main())
    assert passed == ["/v1/items"] * 3
    assert service.api_seen == [("Bearer at-1", b"", "2")], "the redirect was not followed"
    assert service.token_headers[0]["content-type"] == "application/x-www-form-urlencoded"
    assert service.token_headers[0]["user-agent"].startswith("semansys-auth/")


def test_aiohttp_a_retry_after_reaches_the_core() -> None:
    service = Service()
    service.token_answers = [(503, {"Retry-After": "100"}, b"busy")]

    async def main() -> None:
        server = await aiohttp_app(service)
        try:
            auth = make_auth(token_url=str(server.make_url("/connect/token")), max_retries=1)
            with pytest.raises(TokenEndpointUnavailableError) as failed:
                await aiohttp_post(auth, str(server.make_url("/v1/items")))
            assert failed.value.retry_after == 100
        finally:
            await server.close()

    asyncio.run(main())
    assert service.grants == ["password"], "longer than the cap: not waited for"


def test_aiohttp_a_request_without_a_body_is_resent_and_logged_without_its_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Service()

    async def main() -> None:
        server = await aiohttp_app(service)
        try:
            auth = make_auth(token_url=str(server.make_url("/connect/token")), timeout=1.0)
            api = str(server.make_url("/v1/items"))
            await aiohttp_post(auth, api)
            service.refuse = 1
            async with (
                aiohttp.ClientSession(middlewares=(auth,)) as session,
                session.get(api + "?key=hidden-value") as response,
            ):
                assert response.status == 200
        finally:
            await server.close()

    with caplog.at_level(logging.DEBUG, logger="semansys_auth"):
        asyncio.run(main())
    assert service.grants == ["password", "refresh_token"]
    assert "API answered 401 to GET /v1/items: renewing" in caplog.text
    assert "hidden-value" not in caplog.text


class BrokenSession:
    """An aiohttp session whose requests fail before an answer arrives."""

    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise self.failure


@pytest.mark.parametrize(
    ("failure", "expected", "message"),
    [
        (ConnectionResetError(errno.ECONNRESET, "reset"), aiohttp.ClientOSError, "failed: "),
        (asyncio.TimeoutError(), aiohttp.ServerTimeoutError, r"within 30 s"),
        (aiohttp.ClientPayloadError("cut"), aiohttp.ClientPayloadError, "cut"),
    ],
)
def test_aiohttp_every_transport_failure_is_a_client_error(
    failure: BaseException, expected: type[Exception], message: str
) -> None:
    from semansys_auth._aiohttp import post
    from semansys_auth._wire import EndpointRequest

    step = EndpointRequest(url=TOKEN_URL, body=b"", grant_type="password", timeout=30.0)
    with pytest.raises(expected, match=message) as raised:
        asyncio.run(post(BrokenSession(failure), step))  # type: ignore[arg-type]
    assert isinstance(raised.value, aiohttp.ClientError)
    if isinstance(failure, ConnectionError):
        assert raised.value.errno == errno.ECONNRESET
        assert TOKEN_URL in str(raised.value) and "reset" in str(raised.value)


# -- more of httpx --------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_compressed_or_broken_streamed_401_before_the_resend(use_async: bool) -> None:
    service = Service()
    transport = HttpxTransport(service, streamed=True)
    auth = make_auth()
    httpx_send(transport, auth, use_async=use_async)
    service.refuse = 1
    service.refusal = gzip.compress(b"refused, decoded")
    original = service.api

    def gzipped_401(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        status, answer_headers, content = original(headers, body)
        if status == 401:
            answer_headers = {**answer_headers, "Content-Encoding": "gzip"}
        return status, answer_headers, content

    service.api = gzipped_401  # type: ignore[method-assign]
    response = httpx_send(transport, auth, use_async=use_async)
    assert response.status_code == 200
    assert response.history[0].content == b"refused, decoded"
    service.api = original  # type: ignore[method-assign]
    service.refuse = 1
    service.refusal = b"r" * (3 * CHUNK)
    transport.broken_401 = True
    response = httpx_send(transport, auth, use_async=use_async)
    assert response.status_code == 200, "a broken 401 body does not stop the resend"
    assert response.history[0].content == b""
    assert service.grants == ["password", "refresh_token", "refresh_token"]


@pytest.mark.parametrize("use_async", ASYNC)
@pytest.mark.parametrize("streamed", [False, True], ids=["read", "streamed"])
def test_httpx_the_token_answers_headers_reach_the_core(use_async: bool, streamed: bool) -> None:
    service = Service()
    service.token_answers = [(503, {"Retry-After": "100"}, b"busy")]
    with pytest.raises(TokenEndpointUnavailableError) as failed:
        httpx_send(HttpxTransport(service, streamed), make_auth(max_retries=1), use_async=use_async)
    assert failed.value.retry_after == 100
    assert service.grants == ["password"]


@pytest.mark.parametrize("streamed", [False, True], ids=["read", "streamed"])
def test_httpx_a_token_answer_of_exactly_the_bound_is_read(streamed: bool) -> None:
    service = Service()
    answer = b'{"access_token": "at-1", "token_type": "bearer", "expires_in": 3600}'
    service.token_answers = [(200, {}, answer + b" " * (MAX_ANSWER_BYTES - len(answer)))]
    service.issued = 1
    response = httpx_send(HttpxTransport(service, streamed), make_auth(), use_async=False)
    assert response.status_code == 200


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_cut_error_answer_is_let_go_before_the_retry(use_async: bool) -> None:
    service = Service()
    service.token_answers = [(503, {}, b"x" * (4 * MAX_ANSWER_BYTES))]
    transport = HttpxTransport(service, streamed=True)
    auth = make_auth(max_retries=1, backoff=0.01, max_backoff=0.01)
    assert httpx_send(transport, auth, use_async=use_async).status_code == 200
    cut = transport.streams[0]
    assert cut.given <= MAX_ANSWER_BYTES + CHUNK
    assert cut.closed, "its connection is let go, not left open"


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_token_request_carries_its_length_and_a_timeout_names_it(use_async: bool) -> None:
    service = Service()
    transport = HttpxTransport(service)
    httpx_send(transport, make_auth(), use_async=use_async)
    token_request = transport.requests[0]
    assert token_request.headers["Content-Length"] == str(len(service.token_bodies[0]))
    assert int(token_request.headers["Content-Length"]) > 100
    assert "Transfer-Encoding" not in token_request.headers
    slow = Service()
    slow.token_answers = [(200, {}, b" " * (20 * CHUNK))]
    with pytest.raises(httpx.ReadTimeout) as raised:
        httpx_send(HttpxTransport(slow, True, 0.1), make_auth(timeout=0.3), use_async=use_async)
    assert str(raised.value.request.url) == TOKEN_URL


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_a_streamed_redirect_of_a_token_request_is_reported(use_async: bool) -> None:
    def handler(request: Any) -> Any:
        if request.url.path == "/moved":
            return httpx.Response(303, headers={"Location": "https://id.example/elsewhere"})
        return httpx.Response(200, stream=Chunks(b'{"access_token": "x", "token_type": "bearer"}'))

    auth = make_auth(token_url="https://id.example/moved")
    transport: Any = handler
    with pytest.raises(BadTokenRequestError, match=r"redirected to https://id\.example/elsewhere"):
        httpx_send(transport, auth, use_async=use_async, follow_redirects=True)


class NoTell(io.RawIOBase):
    """A readable, seekable body that cannot say where it stands."""

    def __init__(self) -> None:
        self.data = io.BytesIO(b"no tell")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.data.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        chunk = self.data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def __getattribute__(self, name: str) -> Any:
        if name == "tell":
            raise AttributeError(name)
        return super().__getattribute__(name)


class Unseekable(io.BytesIO):
    """A body such as a pipe: it says it cannot seek, and seeking fails."""

    def seekable(self) -> bool:
        return False

    def seek(self, *args: Any) -> int:
        raise OSError("illegal seek")


class OwnStream(httpx.SyncByteStream):
    """A request stream of the caller's own: httpx cannot replay it."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"own stream"


@pytest.mark.parametrize("body", ["no-tell", "unseekable", "own-stream"])
def test_httpx_a_body_that_cannot_be_replayed_is_not_resent(body: str) -> None:
    service = Service()
    transport = HttpxTransport(service)
    auth = make_auth()
    httpx_send(transport, auth, use_async=False)
    service.refuse = 1
    with httpx.Client(auth=auth, transport=httpx.MockTransport(transport)) as client:
        if body == "own-stream":
            request = httpx.Request("POST", API, stream=OwnStream())
            response = client.send(request)
        else:
            content = NoTell() if body == "no-tell" else Unseekable(b"pipe")
            response = client.post(API, content=content)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert service.grants == ["password"], "no renewal for a request that cannot be resent"


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_the_401_log_names_method_and_path_only(
    use_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    service = Service()
    transport = HttpxTransport(service)
    auth = make_auth()
    httpx_send(transport, auth, use_async=use_async)
    service.refuse = 1
    with caplog.at_level(logging.DEBUG, logger="semansys_auth"):
        httpx_send(transport, auth, use_async=use_async, url=API + "?key=hidden-value")
    assert "API answered 401 to POST /v1/items: renewing" in caplog.text
    assert "hidden-value" not in caplog.text


# -- more of requests ----------------------------------------------------------------------


def test_requests_token_requests_use_the_sessions_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proxies, certificates and the CA bundle of the session and of the
    environment apply to token requests; the session's auth does not, even
    when it is this very object."""
    service = Service()
    session, adapter = requests_session(service)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/semansys-test-ca.pem")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session.cert = "/etc/ssl/client.pem"
    auth = make_auth(requests_session=session)
    session.auth = auth
    assert session.post(API, data=b"payload").status_code == 200
    assert service.grants == ["password"]
    (token_call,) = [kwargs for r, kwargs in adapter.sent if r.path_url == "/connect/token"]
    assert token_call["verify"] == "/etc/ssl/semansys-test-ca.pem"
    assert token_call["cert"] == "/etc/ssl/client.pem"
    assert token_call["proxies"]["https"] == "http://proxy.example:3128"
    headers = service.token_headers[0]
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["user-agent"].startswith("semansys-auth/")


def test_requests_the_token_answers_headers_reach_the_core() -> None:
    service = Service()
    session, _ = requests_session(service)
    service.token_answers = [(503, {"Retry-After": "100"}, b"busy")]
    with pytest.raises(TokenEndpointUnavailableError) as failed:
        make_auth(requests_session=session, max_retries=1).get_token()
    assert failed.value.retry_after == 100


def test_requests_the_resend_keeps_the_401s_cookies_the_send_options_and_the_hooks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Service()
    session, adapter = requests_session(service, urllib3_raw=True)
    adapter.set_cookie = "visit=abc"
    auth = make_auth(requests_session=session)
    seen: list[int] = []
    session.post(API, data=b"payload", auth=auth)
    service.refuse = 1
    with caplog.at_level(logging.DEBUG, logger="semansys_auth"):
        response = session.post(
            API + "?key=hidden-value",
            data=b"payload",
            auth=auth,
            timeout=7,
            hooks={"response": [lambda r, **kwargs: seen.append(r.status_code)]},
        )
    assert response.status_code == 200
    first, resend = [kwargs for r, kwargs in adapter.sent if r.path_url.startswith("/v1")][1:]
    assert resend["timeout"] == first["timeout"] == 7
    assert response.request.headers["Cookie"] == "visit=abc"
    assert "API answered 401 to POST /v1/items: renewing" in caplog.text
    assert "hidden-value" not in caplog.text
    assert b"".join(response.history[0].iter_content(8)) == b"not this token"
    # Sent again by hand: the user's hook runs, and no second resend happens.
    seen.clear()
    service.refuse = 1
    again = session.send(response.request)
    assert again.status_code == 401 and seen == [401]
    assert service.grants == ["password", "refresh_token"]


def test_requests_a_compressed_or_broken_401_before_the_resend() -> None:
    service = Service()
    session, adapter = requests_session(service, urllib3_raw=True)
    auth = make_auth(requests_session=session)
    session.post(API, data=b"payload", auth=auth)
    service.refuse = 1
    service.refusal = gzip.compress(b"refused, decoded")
    adapter.encoding_401 = "gzip"
    response = session.post(API, data=b"payload", auth=auth)
    assert response.status_code == 200
    assert response.history[0].content == b"refused, decoded"
    service.refuse = 1
    adapter.encoding_401 = None
    adapter.fail_401 = True
    response = session.post(API, data=b"payload", auth=auth)
    assert response.status_code == 200, "a broken 401 body does not stop the resend"
    assert response.history[0].content == b""


class Untellable(io.BytesIO):
    def tell(self) -> int:
        raise OSError("cannot tell")


def test_requests_a_body_whose_start_is_unknown_is_not_resent() -> None:
    service = Service()
    session, _ = requests_session(service)
    auth = make_auth(requests_session=session)
    session.post(API, data=b"payload", auth=auth)
    service.refuse = 1
    assert session.post(API, data=Untellable(b"body"), auth=auth).status_code == 401
    assert service.grants == ["password"]


def test_requests_an_early_renewal_runs_in_the_background() -> None:
    service = Service()
    service.token_answers = [
        (
            200,
            {},
            json.dumps(
                {
                    "access_token": "at-1",
                    "token_type": "bearer",
                    "expires_in": 2,
                    "refresh_token": "r",
                }
            ).encode(),
        )
    ]
    service.issued = 1
    session, adapter = requests_session(service)
    auth = make_auth(requests_session=session, leeway=60.0)
    assert auth.get_token() == "at-1"
    time.sleep(1.1)  # renewal due (half the lifetime), the token still valid
    assert auth.get_token() == "at-1", "the caller goes on with the valid token"
    deadline = time.monotonic() + 5
    while auth.get_token() == "at-1" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert auth.get_token() == "at-2"
    assert adapter.threads[-1].name == "semansys-auth-renewal"


class StallingTokenEndpoint:
    """A token endpoint on loopback that sends the headers and a first part of
    its answer after ``head_pause`` seconds, a second part ``pause`` seconds
    later, then nothing."""

    def __init__(self, pause: float, head_pause: float = 0.0) -> None:
        import socket

        self.pause = pause
        self.head_pause = head_pause
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/connect/token"
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.recv(65536)
            self.done.wait(self.head_pause)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            if not self.done.wait(self.pause):
                connection.sendall(b' "access_token"')
            self.done.wait(10)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.listener.close()


def test_requests_each_read_of_a_token_answer_waits_only_the_time_left() -> None:
    """requests' own transport (a private session per fetch): a read that
    starts late in the timeout waits only what is left of it, not a whole
    socket timeout."""
    server = StallingTokenEndpoint(pause=0.7)
    try:
        auth = make_auth(token_url=server.url, timeout=1.0)
        start = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            auth.get_token()
        took = time.monotonic() - start
    finally:
        server.close()
    assert 0.9 < took < 1.45


@pytest.mark.parametrize("use_async", ASYNC)
def test_httpx_each_read_of_a_token_answer_waits_only_the_time_left(use_async: bool) -> None:
    """httpx's own transport: a body that starts late in the timeout is read
    only for what is left of it, not for a whole read timeout."""
    server = StallingTokenEndpoint(pause=10.0, head_pause=0.7)
    auth = make_auth(token_url=server.url, timeout=1.0)
    request = httpx.Request("GET", API)

    async def fetch_async() -> None:
        flow = auth.async_auth_flow(request)
        sent = await anext(flow)
        async with httpx.AsyncClient(timeout=10.0) as client:
            await flow.asend(await client.send(sent, stream=True))

    def fetch() -> None:
        if use_async:
            asyncio.run(fetch_async())
            return
        flow = auth.sync_auth_flow(request)
        sent = next(flow)
        with httpx.Client(timeout=10.0) as client:
            flow.send(client.send(sent, stream=True))

    try:
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            fetch()
        took = time.monotonic() - start
    finally:
        server.close()
    assert 0.9 < took < 1.45


def test_httpx_a_clients_shorter_read_timeout_bounds_the_token_answer() -> None:
    server = StallingTokenEndpoint(pause=10.0)
    auth = make_auth(token_url=server.url, timeout=3.0)
    try:
        with httpx.Client(timeout=0.5) as client:
            flow = auth.sync_auth_flow(client.build_request("GET", API))
            sent = next(flow)
            start = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                flow.send(client.send(sent, stream=True))
            took = time.monotonic() - start
    finally:
        server.close()
    assert took < 1.5, "the client's 0.5 s read timeout, not the token's 3 s"
