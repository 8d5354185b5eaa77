"""Typed errors that say what to fix; transport errors stay the
HTTP library's own."""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
import httpx2
import niquests
import pytest
import requests

from helpers import free_port, send
from semansys_auth import (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    SemansysAuth,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from semansys_auth.testing import SemansysEmulator


@pytest.mark.parametrize(
    ("dialect", "status", "code"),
    [
        ("semansys", 401, None),
        ("identityserver", 400, "invalid_client"),
        ("openiddict", 401, "invalid_client"),
    ],
)
def test_wrong_client_secret(
    semansys_emulator: SemansysEmulator, kind: str, dialect: str, status: int, code: str | None
) -> None:
    semansys_emulator.dialect = dialect  # type: ignore[assignment]
    auth = semansys_emulator.auth(client_secret="wrong-secret-value")
    with pytest.raises(ClientCredentialsError) as caught:
        send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    error = caught.value
    assert (error.status_code, error.error) == (status, code)
    assert "client_id 'demo-client'" in str(error) and "client_secret" in str(error)
    assert "wrong-secret-value" not in str(error) + repr(error)


@pytest.mark.parametrize(
    ("dialect", "status", "code"),
    [
        ("semansys", 403, None),
        ("identityserver", 400, "invalid_grant"),
        ("openiddict", 400, "invalid_grant"),
    ],
)
def test_wrong_password(
    semansys_emulator: SemansysEmulator, kind: str, dialect: str, status: int, code: str | None
) -> None:
    semansys_emulator.dialect = dialect  # type: ignore[assignment]
    auth = semansys_emulator.auth(password="wrong-password-value")
    with pytest.raises(UserCredentialsError) as caught:
        send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    error = caught.value
    assert (error.status_code, error.error) == (status, code)
    assert "d***@example.com" in str(error)
    assert "wrong-password-value" not in str(error) + repr(error)
    assert "demo@example.com" not in str(error)


def test_html_502_page_becomes_a_typed_error(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    semansys_emulator.fail_next(10, status=502, html=True)
    auth = semansys_emulator.auth(max_retries=1, backoff=0.01)
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        send(kind, auth, "GET", semansys_emulator.api_url + "/a")
    message = str(caught.value)
    assert caught.value.status_code == 502
    assert "HTTP 502" in message and "Bad Gateway" in message and "<html" not in message
    assert len(semansys_emulator.token_requests()) == 2


def test_success_without_access_token_is_malformed(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    semansys_emulator.fail_next(status=200, body=b'{"token_type": "bearer", "expires_in": 3600}')
    with pytest.raises(MalformedTokenResponseError, match="without an access_token"):
        send(kind, semansys_emulator.auth(), "GET", semansys_emulator.api_url + "/a")


def test_4xx_json_without_error_field_is_an_error(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    semansys_emulator.fail_next(status=400, body=b'{"access_token": "not-really"}')
    with pytest.raises(BadTokenRequestError) as caught:
        send(kind, semansys_emulator.auth(), "GET", semansys_emulator.api_url + "/a")
    assert caught.value.status_code == 400


def test_wrong_token_url_path(semansys_emulator: SemansysEmulator, kind: str) -> None:
    auth = semansys_emulator.auth(token_url=semansys_emulator.base_url + "/connect/tokne")
    with pytest.raises(BadTokenRequestError, match="No token endpoint"):
        send(kind, auth, "GET", semansys_emulator.api_url + "/a")


def test_all_errors_share_one_root() -> None:
    for error_type in (
        ClientCredentialsError,
        UserCredentialsError,
        BadTokenRequestError,
        TokenEndpointUnavailableError,
        MalformedTokenResponseError,
    ):
        assert issubclass(error_type, SemansysAuthError)


def test_connection_refused_stays_the_libraries_own_error(kind: str) -> None:
    port = free_port()
    auth = SemansysAuth(
        client_id="c",
        client_secret="s",
        username="u@example.com",
        password="p",
        token_url=f"http://127.0.0.1:{port}/connect/token",
    )
    expected: type[BaseException]
    if kind == "requests":
        expected = requests.ConnectionError
    elif kind == "aiohttp":
        expected = aiohttp.ClientConnectorError
    elif kind.startswith("niquests"):
        expected = niquests.ConnectionError
    elif kind.startswith("httpx2"):
        expected = httpx2.ConnectError
    else:
        expected = httpx.ConnectError
    with pytest.raises(expected):
        send(kind, auth, "GET", f"http://127.0.0.1:{port}/api/a")


def test_errors_pickle_with_their_fields() -> None:
    import pickle

    error = UserCredentialsError("m", status_code=403, error="invalid_grant", retry_after=5.0)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is UserCredentialsError
    assert (copy.status_code, copy.error, copy.retry_after, str(copy)) == (
        403,
        "invalid_grant",
        5.0,
        str(error),
    )


def test_redirected_token_endpoint_is_reported_not_followed(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    """Even through a client that follows redirects, a redirected token request is
    an error that says where it went."""
    token_url = f"{semansys_emulator.api_url}/redirect?to={semansys_emulator.token_url}"
    auth = semansys_emulator.auth(token_url=token_url)
    options = {} if kind == "requests" else {"follow_redirects": True}
    with pytest.raises(BadTokenRequestError, match="redirected to") as caught:
        send(kind, auth, "GET", semansys_emulator.api_url + "/a", **options)
    assert semansys_emulator.token_url in str(caught.value)
    # No client reached the token endpoint with the form: requests and aiohttp do
    # not follow token redirects, and httpx turns the 302 into a body-less GET.
    assert semansys_emulator.token_requests() == []
    gets = [r for r in semansys_emulator.requests if r.path == "/connect/token"]
    assert gets == [], "the emulator records no GET of the token endpoint as a token request"


def test_token_request_timeouts_stay_the_libraries_own(semansys_emulator: SemansysEmulator) -> None:
    """A client's shorter timeout applies to token requests too (a request built without
    one would wait forever); requests users set ``timeout``."""
    import asyncio

    semansys_emulator.token_delay = 3
    url = semansys_emulator.api_url + "/a"
    with pytest.raises(requests.ReadTimeout):
        requests.get(url, auth=semansys_emulator.auth(timeout=0.3), timeout=10)
    for module in (httpx, httpx2):
        with (
            module.Client(auth=semansys_emulator.auth(), timeout=0.3) as client,
            pytest.raises(module.ReadTimeout),
        ):
            client.get(url)

        async def go(module: Any = module) -> None:
            async with module.AsyncClient(auth=semansys_emulator.auth(), timeout=0.3) as client:
                await client.get(url)

        with pytest.raises(module.ReadTimeout):
            asyncio.run(go())


def test_the_timeout_option_bounds_token_requests_in_every_client(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    """``timeout`` bounds each token request whatever the client's own (longer)
    timeout; the error stays the library's own timeout."""
    import asyncio

    semansys_emulator.token_delay = 3
    auth = semansys_emulator.auth(timeout=0.3, max_retries=0)
    expected: tuple[type[BaseException], ...] = {
        "requests": (requests.Timeout,),
        "aiohttp": (asyncio.TimeoutError, aiohttp.ServerTimeoutError),
        "niquests": (niquests.Timeout,),
        "niquests-async": (niquests.Timeout,),
    }.get(kind, (httpx2.TimeoutException if kind.startswith("httpx2") else httpx.TimeoutException,))
    with pytest.raises(expected):
        send(kind, auth, "GET", semansys_emulator.api_url + "/a")
