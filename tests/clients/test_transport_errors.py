"""Every transport failure of a token request reaches the user as an exception
of the HTTP library in use (``requests.RequestException``, ``httpx.HTTPError``,
``httpx2.HTTPError``, ``aiohttp.ClientError``), never as urllib3's, h11's or a
bare ``OSError``/``TimeoutError``, so that the user's ``except`` clause for the
library catches it. Through every client, against loopback servers that fail
byte by byte."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, cast

import aiohttp
import httpx
import httpx2
import niquests
import pytest
import requests
import urllib3
from wire_servers import DroppingServer

from helpers import send
from semansys_auth import SemansysAuth, SemansysAuthError
from servers import HostileServer, Received

TIMEOUT = 1.0
SECRET = "cs-Wire-9f3"
PASSWORD = "pw-Wire-77k"

BASE: dict[str, tuple[type[BaseException], ...]] = {
    "requests": (requests.RequestException,),
    "httpx": (httpx.HTTPError,),
    "httpx-async": (httpx.HTTPError,),
    "httpx2": (httpx2.HTTPError,),
    "httpx2-async": (httpx2.HTTPError,),
    "aiohttp": (aiohttp.ClientError,),
    "niquests": (niquests.RequestException,),
    "niquests-async": (niquests.RequestException,),
}
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    b'{"access_token": "'
)


def make_auth(token_url: str) -> SemansysAuth:
    return SemansysAuth(
        client_id="wire-client",
        client_secret=SECRET,
        username="filer@example.com",
        password=PASSWORD,
        token_url=token_url,
        max_retries=0,
        timeout=TIMEOUT,
        credentials_cooldown=0,
    )


def failure(kind: str, token_url: str, api_url: str) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(Exception) as caught:  # noqa: PT011 (checked below, per library)
        send(kind, make_auth(token_url), "GET", api_url)
    return caught.value, time.monotonic() - started


def check(kind: str, error: BaseException, *, typed: bool = False) -> None:
    """The library's own base exception (or, where ``typed``, also one of ours);
    never a foreign one, and no secret in its message."""
    allowed = BASE[kind] + ((SemansysAuthError,) if typed else ())
    assert isinstance(error, allowed), f"{type(error).__module__}.{type(error).__name__}: {error}"
    foreign = (urllib3.exceptions.HTTPError,)
    assert not isinstance(error, foreign)
    if kind != "requests":
        assert not isinstance(error, requests.RequestException)
    shown = f"{error} {error!r}"
    assert SECRET not in shown
    assert PASSWORD not in shown


def stalls_mid_body(request: Received) -> Iterator[bytes]:
    yield HEAD
    time.sleep(TIMEOUT + 4)


def stalls_before_headers(request: Received) -> Iterator[bytes]:
    time.sleep(TIMEOUT + 4)
    yield b""


@pytest.mark.timeout(30)
def test_a_body_that_stalls_beyond_the_timeout(kind: str) -> None:
    with HostileServer(token_answer=stalls_mid_body) as server:
        error, took = failure(kind, server.token_url, server.api_url)
    check(kind, error)
    assert took < TIMEOUT + 3
    timeouts = {
        "requests": requests.Timeout,
        "httpx": httpx.TimeoutException,
        "httpx-async": httpx.TimeoutException,
        "httpx2": httpx2.TimeoutException,
        "httpx2-async": httpx2.TimeoutException,
        "aiohttp": aiohttp.ServerTimeoutError,
        "niquests": niquests.Timeout,
        "niquests-async": niquests.Timeout,
    }
    assert isinstance(error, timeouts[kind])
    if kind == "requests":  # urllib3's own error is kept as the cause
        assert isinstance(error.__cause__, urllib3.exceptions.ReadTimeoutError)
    if kind == "aiohttp":
        assert isinstance(error, TimeoutError)  # an asyncio timeout, as before
        assert "did not finish its answer within 1 s" in str(error)


@pytest.mark.timeout(30)
def test_headers_that_never_come(kind: str) -> None:
    with HostileServer(token_answer=stalls_before_headers) as server:
        error, took = failure(kind, server.token_url, server.api_url)
    check(kind, error)
    assert took < TIMEOUT + 3


@pytest.mark.timeout(30)
def test_a_body_shorter_than_its_content_length(kind: str) -> None:
    with HostileServer(token_answer=HEAD, closes_after_answer=True) as server:
        error, _ = failure(kind, server.token_url, server.api_url)
    check(kind, error)
    if kind == "requests":
        assert isinstance(error, requests.exceptions.ChunkedEncodingError)
        assert isinstance(error.__cause__, urllib3.exceptions.ProtocolError)


@pytest.mark.timeout(30)
def test_a_broken_chunked_body(kind: str) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"acc\r\nzz-not-hex\r\n'
    )
    with HostileServer(token_answer=answer, closes_after_answer=True) as server:
        error, _ = failure(kind, server.token_url, server.api_url)
    check(kind, error)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_a_connection_dropped_on_accept(kind: str, reset: bool) -> None:
    with DroppingServer(reset=reset) as server:
        error, _ = failure(kind, server.url + "/connect/token", server.url + "/api")
        assert server.dropped >= 1
    check(kind, error)


@pytest.mark.timeout(30)
def test_a_connection_closed_without_an_answer(kind: str) -> None:
    with HostileServer(token_answer=b"", closes_after_answer=True) as server:
        error, _ = failure(kind, server.token_url, server.api_url)
        assert server.token_requests()  # (aiohttp sends it a second time on its own)
    check(kind, error)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "garbage",
    [b"garbage instead of a status line\r\n\r\n", b"\x00\xff\x16\x03\x01 binary\r\n\r\n"],
    ids=["text", "binary"],
)
def test_garbage_instead_of_a_status_line(kind: str, garbage: bytes) -> None:
    with HostileServer(token_answer=garbage, closes_after_answer=True) as server:
        error, _ = failure(kind, server.token_url, server.api_url)
    check(kind, error, typed=True)


@pytest.mark.timeout(30)
def test_a_refused_connection(kind: str) -> None:
    with DroppingServer() as server:
        url = server.url
    # The port is closed now: the connection is refused.
    error, _ = failure(kind, url + "/connect/token", url + "/api")
    check(kind, error)


def test_only_transport_failures_are_mapped() -> None:
    from semansys_auth._requests import _requests_error

    prepared: Any = requests.Request("POST", "http://127.0.0.1/t").prepare()
    response = requests.Response()
    assert _requests_error(ValueError("a bug"), prepared, response) is None
    mapped = {
        urllib3.exceptions.ReadTimeoutError(None, "u", "slow"): requests.exceptions.ReadTimeout,
        TimeoutError("slow"): requests.exceptions.ReadTimeout,
        urllib3.exceptions.SSLError("bad record"): requests.exceptions.SSLError,
        urllib3.exceptions.ProtocolError("broken"): requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.DecodeError("bad"): requests.exceptions.ConnectionError,
        ConnectionResetError(104, "reset"): requests.exceptions.ConnectionError,
    }
    for exc, expected in mapped.items():
        error = _requests_error(exc, prepared, response)
        assert type(error) is expected, exc
        assert error.request is prepared
        assert error.response is response


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (asyncio.TimeoutError(), aiohttp.ServerTimeoutError),
        (TimeoutError(), aiohttp.ServerTimeoutError),
        (ConnectionResetError(104, "reset by peer"), aiohttp.ClientOSError),
        (aiohttp.ClientPayloadError("cut"), aiohttp.ClientPayloadError),
    ],
    ids=["asyncio-timeout", "timeout", "reset", "client-error"],
)
def test_aiohttp_failures_become_client_errors(
    raised: BaseException, expected: type[BaseException]
) -> None:
    """The mapping itself, for failures a loopback server cannot force at will."""
    from semansys_auth._aiohttp import post
    from semansys_auth._wire import EndpointRequest

    class Failing:
        async def __aenter__(self) -> None:
            raise raised

        async def __aexit__(self, *exc: object) -> None:
            return None

    class Session:
        def request(self, *args: Any, **kwargs: Any) -> Failing:
            return Failing()

    step = EndpointRequest("http://127.0.0.1:9/connect/token", b"secret-form", "password", 2.0)
    with pytest.raises(expected) as caught:
        asyncio.run(post(cast(Any, Session()), step))
    assert isinstance(caught.value, aiohttp.ClientError)
    if expected is not type(raised):
        assert caught.value.__cause__ is raised
        assert "secret-form" not in str(caught.value)
