"""The token endpoint, seen from the client, without sockets: the token requests
it builds, every kind of answer and what it becomes (a token, or the typed error
with the message the documentation quotes), and the helpers that read answers."""

from __future__ import annotations

import gzip
import re
import time
import zlib
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from semansys_auth import (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from semansys_auth._answers import excerpt, parse_retry_after
from semansys_auth._endpoint import TokenEndpoint
from semansys_auth._redact import Redactor
from semansys_auth._token_url import check_token_url, is_loopback
from semansys_auth._version import __version__
from semansys_auth._wire import (
    MAX_ANSWER_BYTES,
    USER_AGENT,
    EndpointResponse,
    decode_body,
    header,
)
from token_parts import answer, form, jwt

URL = "https://id.example/connect/token"
NOW = 1_000_000.0


def endpoint(**changes: Any) -> TokenEndpoint:
    settings: dict[str, Any] = {
        "token_url": URL,
        "client_id": "cid",
        "client_secret": "s3cret-client",
        "username": "jane@example.com",
        "password": "pa55word",
        "scope": "read write",
        "timeout": 12.5,
    }
    settings.update(changes)
    return TokenEndpoint(**settings)


def parse(response: EndpointResponse, grant_type: str = "password", **changes: Any) -> Any:
    return endpoint(**changes).parse(grant_type, response, NOW)


def failure(response: EndpointResponse, grant_type: str = "password", **changes: Any) -> Any:
    with pytest.raises(SemansysAuthError) as caught:
        parse(response, grant_type, **changes)
    return caught.value


# -- requests ----------------------------------------------------------------------------


def test_the_password_grant_request() -> None:
    request = endpoint().password_request()
    assert (request.method, request.url, request.grant_type) == ("POST", URL, "password")
    assert request.timeout == 12.5
    assert form(request.body) == {
        "grant_type": "password",
        "username": "jane@example.com",
        "password": "pa55word",
        "scope": "read write",
        "client_id": "cid",
        "client_secret": "s3cret-client",
    }
    assert request.headers == {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": f"semansys-auth/{__version__}",
    }
    assert f"semansys-auth/{__version__}" == USER_AGENT
    assert "pa55word" not in repr(request) and repr(request) == (
        f"EndpointRequest(POST {URL}, grant_type='password')"
    )


def test_without_scope_none_is_asked() -> None:
    assert "scope" not in form(endpoint(scope=None).password_request().body)


def test_the_refresh_grant_request() -> None:
    request = endpoint().refresh_request("rt-1")
    assert (request.method, request.url, request.grant_type) == ("POST", URL, "refresh_token")
    assert request.timeout == 12.5
    assert form(request.body) == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-1",
        "client_id": "cid",
        "client_secret": "s3cret-client",
    }


def test_each_request_has_its_own_headers() -> None:
    first, second = endpoint().password_request(), endpoint().password_request()
    assert first.headers is not second.headers


def test_the_cache_key_binds_every_credential_and_names_no_one() -> None:
    key = endpoint().cache_key()
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")
    assert key == endpoint().cache_key(), "the same inputs, the same key"
    others = {
        endpoint(**change).cache_key()
        for change in (
            {"password": "other"},
            {"client_secret": "other"},
            {"client_id": "other"},
            {"username": "other@example.com"},
            {"scope": None},
            {"token_url": URL + "/"},
        )
    }
    assert len(others) == 6 and key not in others
    assert "jane" not in key


def test_the_cache_key_is_stable_across_releases() -> None:
    """Entries written by one release are found by the next: a change of this
    value is a change of the cache format (and of the version string in it)."""
    assert endpoint().cache_key() == (
        "8d6a76f8e5d045d42b3ab584703b0631787a387fe2d069838f1ad1b31d4430f8"
    )
    assert endpoint(scope=None).cache_key() == (
        "4ef56b89f0f177d2a979c8e163a8aa49ec621c255cb957983bc763226a42fdd5"
    )


def test_repr_shows_no_secret() -> None:
    assert repr(endpoint()) == (
        f"TokenEndpoint(token_url='{URL}', client_id='cid', username='j***@example.com', "
        "scope='read write')"
    )


# -- success --------------------------------------------------------------------------------


def test_a_token_answer() -> None:
    body = {
        "access_token": "at-1",
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": "rt-1",
        "scope": "read write offline_access",
    }
    token = parse(answer(200, body))
    assert (token.access_token, token.refresh_token) == ("at-1", "rt-1")
    assert (token.obtained_at, token.expires_at) == (NOW, NOW + 3600)
    assert token.scope == "read write offline_access"
    assert (token.token_type, token.grant_type) == ("Bearer", "password")
    assert parse(answer(200, body), "refresh_token").grant_type == "refresh_token"


@pytest.mark.parametrize("status", [200, 201, 299])
def test_any_2xx_is_a_success(status: int) -> None:
    assert parse(answer(status, {"access_token": "at"})).access_token == "at"


@pytest.mark.parametrize(
    "extra",
    [{}, {"token_type": "Bearer"}, {"token_type": "BEARER"}, {"error": None}, {"error": ""}],
    ids=["no type", "Bearer", "BEARER", "error null", "error empty"],
)
def test_what_a_token_answer_may_leave_out(extra: dict[str, Any]) -> None:
    token = parse(answer(200, {"access_token": "at", **extra}))
    assert token.access_token == "at" and token.token_type == "Bearer"
    assert token.refresh_token is None and token.scope is None and token.expires_at is None


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("a b", "a b"),
        (["a", "b"], "a b"),
        ("", None),
        ([], None),
        (["a", 1], None),
        (123, None),
        ({"a": 1}, None),
        ("a  b", None),
        ("a\tb", None),
        ('a "b"', None),
        ("x" * 4096, "x" * 4096),
        ("x" * 4097, None),
    ],
)
def test_the_granted_scope(scope: object, expected: str | None) -> None:
    assert parse(answer(200, {"access_token": "at", "scope": scope})).scope == expected


@pytest.mark.parametrize("refresh", [5, "", "r\n", "r" * 16385, ["rt"]])
def test_an_unusable_refresh_token_is_dropped(refresh: object) -> None:
    token = parse(answer(200, {"access_token": "at", "refresh_token": refresh}))
    assert token.access_token == "at" and token.refresh_token is None


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [
        (3600, 3600.0),
        (2.5, 2.5),
        ("3600", 3600.0),
        (" 60 ", 60.0),
        ("1.5", 1.5),
        (365 * 24 * 3600, 365 * 24 * 3600.0),
        (365 * 24 * 3600 + 1, 365 * 24 * 3600.0),
        (10**400, 365 * 24 * 3600.0),
        (1e300, 365 * 24 * 3600.0),
    ],
)
def test_expires_in_sets_the_expiry_and_is_capped_at_a_year(
    expires_in: object, lifetime: float
) -> None:
    token = parse(answer(200, {"access_token": "at", "expires_in": expires_in}))
    assert token.expires_at == NOW + lifetime


def test_expires_in_zero_means_no_lifetime_given() -> None:
    assert parse(answer(200, {"access_token": "at", "expires_in": 0})).expires_at is None


@pytest.mark.parametrize(
    ("expires_in", "shown"),
    [
        (-1, "-1"),
        (-0.5, "-0.5"),
        ("soon", "soon"),
        ("-5", "-5"),
        ("1e3", "1e3"),
        (True, "True"),
        ([], "[]"),
        ({}, "{}"),
        ("9" * 13, "9" * 13),
        ("s" * 100, "s" * 39 + "…"),
    ],
    ids=["-1", "-0.5", "soon", "'-5'", "1e3", "True", "list", "dict", "13 digits", "long"],
)
def test_an_expires_in_that_is_not_seconds(expires_in: object, shown: str) -> None:
    error = failure(answer(200, {"access_token": "at", "expires_in": expires_in}))
    assert type(error) is MalformedTokenResponseError and error.status_code == 200
    assert error.message == (
        f"The token endpoint answered an expires_in that is not a number of seconds ({shown})"
    )


def test_a_nan_expires_in_is_not_seconds() -> None:
    body = b'{"access_token": "at", "expires_in": NaN}'
    assert type(failure(answer(200, body))) is MalformedTokenResponseError


@pytest.mark.parametrize(
    ("exp", "expires_at"),
    [
        (NOW + 100, NOW + 100),
        (int(NOW) + 100, NOW + 100),
        (NOW + 400 * 24 * 3600, NOW + 365 * 24 * 3600),
        (10**400, NOW + 365 * 24 * 3600),
        (NOW, None),
        (NOW - 1, None),
        ("later", None),
        (True, None),
        (None, None),
    ],
)
def test_without_expires_in_the_jwt_exp_is_used(exp: object, expires_at: float | None) -> None:
    token = parse(answer(200, {"access_token": jwt({"exp": exp})}))
    assert token.expires_at == expires_at


def test_an_opaque_token_without_expires_in_has_no_expiry() -> None:
    assert parse(answer(200, {"access_token": "opaque"})).expires_at is None


# -- answers that are not a token -----------------------------------------------------------


def test_a_success_without_access_token() -> None:
    error = failure(answer(200, {"token_type": "bearer", "{field}": 1}))
    assert type(error) is MalformedTokenResponseError and error.status_code == 200
    assert str(error) == (
        "The token endpoint answered success but without an access_token; check that "
        "token_url points at the token endpoint (fields present: token_type, {field}) [HTTP 200]"
    )


def test_the_fields_listed_are_few_and_short() -> None:
    body = {f"field{i:02d}-{'x' * 50}": i for i in range(20)}
    message = str(failure(answer(200, body)))
    assert len(re.findall(r"field\d\d-", message)) == 12
    assert f"(fields present: field00-{'x' * 31}…, field01-" in message  # 40 characters each
    assert "(fields present: none)" in str(failure(answer(200, {})))


@pytest.mark.parametrize("access", ["", "a b", 5, None, ["at"]], ids=repr)
def test_an_unusable_access_token(access: object) -> None:
    error = failure(answer(200, {"access_token": access}))
    assert type(error) is MalformedTokenResponseError and error.status_code == 200
    assert str(error).startswith("The token endpoint issued an unusable token: the access_token")


@pytest.mark.parametrize(
    ("token_type", "shown"),
    [
        ("mac", "'mac'"),
        ("", "''"),
        (5, "'5'"),
        (None, "'None'"),
        ("bearer2", "'bearer2'"),
        ("m" * 100, repr("m" * 39 + "…")),
    ],
    ids=["mac", "empty", "int", "null", "bearer2", "long"],  # ASCII: mutmut selects tests by id
)
def test_a_token_of_another_type(token_type: object, shown: str) -> None:
    error = failure(answer(200, {"access_token": "at", "token_type": token_type}))
    assert type(error) is MalformedTokenResponseError and error.status_code == 200
    assert str(error) == (
        f"The token endpoint issued a token of type {shown}; only bearer tokens are supported "
        "[HTTP 200]"
    )


CLIENT = "Semansys rejected the client credentials of client_id 'cid': check client_id and client_secret (both issued by the Semansys support desk)"  # noqa: E501
HINT = " (if they are right, check that token_url is the token endpoint)"
USER = "Semansys rejected the user credentials of 'j***@example.com': check username (the account's e-mail address) and password"  # noqa: E501
UNAVAILABLE = f"The token endpoint {URL} is unavailable"
REFUSED = f"The token endpoint {URL} refused the request: check token_url and scope ('read write')"


@pytest.mark.parametrize(
    ("response", "kind", "message"),
    [
        (answer(400, {"error": "invalid_client"}), ClientCredentialsError, CLIENT),
        (answer(401, {"error": "invalid_client"}), ClientCredentialsError, CLIENT),
        (answer(400, {"error": "unauthorized_client"}), ClientCredentialsError, CLIENT),
        (answer(401, {"message": "Invalid client"}), ClientCredentialsError, CLIENT + HINT),
        (answer(401, b""), ClientCredentialsError, CLIENT + HINT),
        (
            answer(401, b"", **{"WWW-Authenticate": 'Basic realm="x"'}),
            ClientCredentialsError,
            CLIENT + HINT,
        ),
        (answer(400, {"error": "invalid_grant"}), UserCredentialsError, USER),
        (answer(403, {"message": "User authentication failed"}), UserCredentialsError, USER),
        (answer(403, b"<html>denied</html>"), UserCredentialsError, USER),
        (
            answer(400, {"error": "invalid_request", "error_description": "Invalid Password"}),
            UserCredentialsError,
            USER,
        ),
        (
            answer(400, {"error": "invalid_request", "error_description": "no USERNAME"}),
            UserCredentialsError,
            USER,
        ),
        (answer(400, {"error": "invalid_request"}), BadTokenRequestError, REFUSED),
        (
            answer(400, {"error": "invalid_request", "error_description": 5}),
            BadTokenRequestError,
            REFUSED,
        ),
        (answer(400, {"error": "invalid_scope"}), BadTokenRequestError, REFUSED),
        (answer(400, {"error": "unsupported_grant_type"}), BadTokenRequestError, REFUSED),
        (answer(400, {}), BadTokenRequestError, REFUSED),
        (answer(400, b"<html>bad</html>"), BadTokenRequestError, REFUSED),
        (answer(418, {}), BadTokenRequestError, REFUSED),
        (
            answer(404, b"<html>Not Found</html>"),
            BadTokenRequestError,
            f"No token endpoint at {URL} (HTTP 404): check token_url",
        ),
        (
            answer(404, {"error": "not_found"}),
            BadTokenRequestError,
            f"No token endpoint at {URL} (HTTP 404): check token_url",
        ),
        (answer(503, {}), TokenEndpointUnavailableError, UNAVAILABLE + " (HTTP 503)"),
        (
            answer(500, {"message": "boom"}),
            TokenEndpointUnavailableError,
            UNAVAILABLE + " (HTTP 500)",
        ),
        (answer(429, {}), TokenEndpointUnavailableError, UNAVAILABLE + " (HTTP 429)"),
        (
            answer(400, {"error": "temporarily_unavailable"}),
            TokenEndpointUnavailableError,
            UNAVAILABLE + " (HTTP 400)",
        ),
        (
            answer(200, {"error": "server_error", "access_token": "at"}),
            TokenEndpointUnavailableError,
            UNAVAILABLE + " (HTTP 200)",
        ),
        (answer(200, {"error": "invalid_grant", "access_token": "at"}), UserCredentialsError, USER),
        (
            answer(401, {}, **{"WWW-Authenticate": ' Bearer error="invalid_token"'}),
            BadTokenRequestError,
            f"token_url {URL} answered like an API, not like a token endpoint (HTTP 401 "
            "with WWW-Authenticate: Bearer): the URL may be wrong; check token_url",
        ),
        (
            answer(403, b"", **{"www-authenticate": "bearer"}),
            BadTokenRequestError,
            f"token_url {URL} answered like an API, not like a token endpoint (HTTP 403 "
            "with WWW-Authenticate: Bearer): the URL may be wrong; check token_url",
        ),
    ],
)
def test_error_first_status_second(
    response: EndpointResponse, kind: type[SemansysAuthError], message: str
) -> None:
    error = failure(response)
    assert type(error) is kind
    assert error.message == message
    assert error.status_code == response.status_code


@pytest.mark.parametrize(
    ("response", "kind", "message"),
    [
        (answer(401, {"error": ""}), ClientCredentialsError, CLIENT + HINT),
        (answer(403, {"error": ""}), UserCredentialsError, USER),
        (answer(300, {}), BadTokenRequestError, "redirected to ?"),
        (answer(300, {"access_token": "at"}), BadTokenRequestError, "redirected to ?"),
        (EndpointResponse(300, {}, b"<html>"), BadTokenRequestError, "redirected to ?"),
        (answer(399, {"error": "x"}), BadTokenRequestError, "redirected to ?"),
        (answer(400, {"error": "x"}), BadTokenRequestError, REFUSED),
        (EndpointResponse(201, {}, b"<html>"), MalformedTokenResponseError, "HTTP 201 with a body"),
        (EndpointResponse(300, {}, b"{", truncated=True), BadTokenRequestError, "redirected to ?"),
        (EndpointResponse(201, {}, b"{", truncated=True), MalformedTokenResponseError, "1024 KiB"),
    ],
)
def test_the_edges_of_each_kind_of_answer(
    response: EndpointResponse, kind: type[SemansysAuthError], message: str
) -> None:
    error = failure(response)
    assert type(error) is kind
    assert message in error.message


def test_an_invalid_grant_on_a_refresh_names_the_refresh_token() -> None:
    error = failure(answer(400, {"error": "invalid_grant"}), "refresh_token")
    assert type(error) is UserCredentialsError
    assert error.message == "The token endpoint refused the refresh token"


def test_the_error_fields_are_kept_redacted_and_short() -> None:
    response = answer(
        400,
        {"error": "invalid_grant", "error_description": "bad pa55word " + "x" * 400},
        **{"Retry-After": "7"},
    )
    error = failure(response)
    assert (error.status_code, error.error, error.retry_after) == (400, "invalid_grant", 7.0)
    assert error.error_description.startswith("bad *** xxx") and len(error.error_description) == 300
    assert str(error) == f"{USER} [HTTP 400, invalid_grant, {error.error_description!r}]"


def test_an_error_code_that_is_not_an_rfc_6749_code_is_shown_but_not_matched() -> None:
    error = failure(answer(400, {"error": "invalid_client\n", "error_description": None}))
    assert type(error) is BadTokenRequestError and error.error == "invalid_client"
    assert error.error_description is None
    odd = failure(answer(400, {"error": {"code": "s3cret-client"}}))
    assert type(odd) is BadTokenRequestError and odd.error == "{'code': '***'}"
    long = failure(answer(400, {"error": "e" * 100}))
    assert long.error == "e" * 59 + "…"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_names_where_it_went(status: int) -> None:
    error = failure(answer(status, b"", Location="https://elsewhere.example/token"))
    assert type(error) is BadTokenRequestError and error.status_code == status
    assert error.message == (
        f"The token endpoint {URL} redirected to https://elsewhere.example/token: set token_url "
        "to the final URL (token requests are never redirected with credentials)"
    )
    assert "redirected to ?" in failure(answer(status, b"")).message
    far = "https://elsewhere.example/" + "p" * 200
    shown = failure(answer(status, b"", Location=far)).message.split(" ")[6]
    assert shown == far[:119] + "…:"


def test_a_redirect_the_client_followed_is_reported() -> None:
    followed = EndpointResponse(
        200, {}, b'{"access_token": "at"}', redirected_to="https://elsewhere.example/t"
    )
    error = failure(followed)
    assert type(error) is BadTokenRequestError and error.status_code == 200
    assert "redirected to https://elsewhere.example/t" in error.message


def test_a_truncated_success_is_refused() -> None:
    cut = EndpointResponse(200, {}, b'{"access_token": "at"}', truncated=True)
    error = failure(cut)
    assert type(error) is MalformedTokenResponseError and error.status_code == 200
    assert error.message == (
        "The token endpoint answered more than 1024 KiB; nothing beyond that was read. "
        "Check that token_url points at the token endpoint"
    )
    cut_error = EndpointResponse(502, {}, b"<html>", truncated=True)
    assert type(failure(cut_error)) is TokenEndpointUnavailableError


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, MalformedTokenResponseError),
        (299, MalformedTokenResponseError),
        (405, BadTokenRequestError),
        (429, TokenEndpointUnavailableError),
        (500, TokenEndpointUnavailableError),
        (502, TokenEndpointUnavailableError),
        (599, TokenEndpointUnavailableError),
    ],
)
def test_a_page_that_is_not_json(status: int, kind: type[SemansysAuthError]) -> None:
    page = b"<html><head><title>Oops</title><style>x{}</style></head><body><h1>Bad</h1></body>"
    error = failure(EndpointResponse(status, {"content-type": "text/html"}, page))
    assert type(error) is kind and error.status_code == status
    excerpt_shown = "'Oops Bad'"
    expected = {
        MalformedTokenResponseError: (
            f"The token endpoint answered HTTP {status} with a body that is not a JSON object "
            f"(text/html): {excerpt_shown}; check that token_url points at the token endpoint"
        ),
        BadTokenRequestError: (
            f"The token endpoint {URL} refused the request with HTTP {status} and a non-JSON "
            f"body (text/html): {excerpt_shown}; check token_url"
        ),
        TokenEndpointUnavailableError: (
            f"{UNAVAILABLE}: HTTP {status} with a non-JSON body (text/html): {excerpt_shown}"
        ),
    }[kind]
    assert error.message == expected


def test_a_long_content_type_is_cut() -> None:
    error = failure(EndpointResponse(502, {"Content-Type": "t" * 100}, b""))
    assert f"({'t' * 59}…)" in error.message


def test_an_empty_page_without_content_type() -> None:
    error = failure(EndpointResponse(502, {}, b""))
    assert (
        error.message
        == f"{UNAVAILABLE}: HTTP 502 with a non-JSON body (no content type): '(empty body)'"
    )


def test_json_that_is_not_an_object_is_not_json() -> None:
    for body in (b"[1, 2]", b'"text"', b"null", b"[" * 50000 + b"]" * 50000, b"\xff\xfe"):
        assert type(failure(answer(200, body))) is MalformedTokenResponseError


def test_retry_after_comes_with_unavailable_answers() -> None:
    assert failure(answer(503, {}, **{"Retry-After": "12"})).retry_after == 12.0
    page = EndpointResponse(503, {"retry-after": "3"}, b"<html>")
    assert failure(page).retry_after == 3.0
    assert failure(answer(503, {})).retry_after is None


def test_a_retry_after_date_counts_from_the_time_of_the_answer() -> None:
    date = format_datetime(datetime.fromtimestamp(NOW + 90, tz=timezone.utc), usegmt=True)
    assert failure(answer(503, {}, **{"Retry-After": date})).retry_after == 90.0
    for status in (503, 404):
        page = EndpointResponse(status, {"Retry-After": date}, b"<html>")
        assert failure(page).retry_after == 90.0


def test_a_refused_refresh_without_json_names_the_refresh_token() -> None:
    error = failure(EndpointResponse(403, {}, b"<html>Forbidden</html>"), "refresh_token")
    assert type(error) is UserCredentialsError
    assert error.message == "The token endpoint refused the refresh token"


# -- helpers that read answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("3", 3.0),
        (" 120 ", 120.0),
        ("86400", 86400.0),
        ("86401", 86400.0),
        ("999999999999", 86400.0),
        ("9999999999999", None),
        ("-1", None),
        ("1.5", None),
        ("²", None),
        ("١٢", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = time.time()
    future = datetime.fromtimestamp(now + 90, tz=timezone.utc)
    assert parse_retry_after(format_datetime(future, usegmt=True), now) == pytest.approx(90, abs=1)
    past = datetime.fromtimestamp(now - 90, tz=timezone.utc)
    assert parse_retry_after(format_datetime(past, usegmt=True), now) == 0.0
    far = "Fri, 31 Dec 9999 23:59:59 GMT"
    assert parse_retry_after(far, now) == 86400.0
    naive = format_datetime(future.replace(tzinfo=None))  # "-0000": UTC, offset unknown
    assert parse_retry_after(naive, now) == pytest.approx(90, abs=1)
    assert parse_retry_after("Wed, 99 Foo 2015 07:28:00 GMT", now) is None


def test_a_retry_after_date_without_offset_is_utc_in_every_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    when = "Sat, 28 Nov 2026 10:00:00 -0000"
    utc = datetime(2026, 11, 28, 10, tzinfo=timezone.utc).timestamp()
    for zone in ("Europe/Amsterdam", "America/New_York", "UTC"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        try:
            assert parse_retry_after(when, utc - 30) == 30.0
        finally:
            monkeypatch.undo()
            time.tzset()


def test_headers_are_found_whatever_their_case() -> None:
    assert header({"Content-Type": "a"}, "content-type") == "a"
    assert header({"content-type": "b"}, "content-type") == "b"
    assert header({"CONTENT-TYPE": "c", 5: "x"}, "content-type") == "c"  # type: ignore[dict-item]
    assert header({"X": "y"}, "content-type") is None
    assert header({"content-type": 5}, "content-type") is None  # type: ignore[dict-item]
    assert header({"Content-Type": 5}, "content-type") is None  # type: ignore[dict-item]


def test_decode_body_without_encoding() -> None:
    assert decode_body(b"plain", None) == (b"plain", False)
    assert decode_body(b"plain", " Identity ") == (b"plain", False)
    exact = b"x" * MAX_ANSWER_BYTES
    assert decode_body(exact, "") == (exact, False)
    assert decode_body(exact + b"y", "") == (exact, True)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        (" GZIP ", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send
    ],
    ids=["gzip", "x-gzip", "GZIP", "zlib deflate", "raw deflate"],
)
def test_decode_body_undoes_gzip_and_deflate(encoding: str, compress: Any) -> None:
    body = b'{"access_token": "at"}' * 100
    assert decode_body(compress(body), encoding) == (body, False)


def test_decode_body_stops_at_the_bound() -> None:
    exact = b"a" * MAX_ANSWER_BYTES
    assert decode_body(gzip.compress(exact), "gzip") == (exact, False)
    bomb = gzip.compress(b"a" * (MAX_ANSWER_BYTES + 1))
    assert decode_body(bomb, "gzip") == (exact, True)


def test_decode_body_never_holds_more_than_the_bound() -> None:
    """A small gzip answer that inflates to 256 MiB costs about the bound in memory."""
    import tracemalloc

    bomb = gzip.compress(b"\0" * (256 * 1024 * 1024), compresslevel=9)
    tracemalloc.start()
    try:
        body, cut = decode_body(bomb, "gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cut is True and len(body) == MAX_ANSWER_BYTES
    assert peak < 8 * MAX_ANSWER_BYTES, peak


def test_decode_body_leaves_what_it_cannot_decode() -> None:
    assert decode_body(b"not gzip", "gzip") == (b"not gzip", False)
    assert decode_body(b"brotli?", "br") == (b"brotli?", False)
    assert decode_body(b"twice", "gzip, gzip") == (b"twice", False)


def test_excerpt_is_short_tag_free_and_redacted() -> None:
    page = (
        b"<html><head><script>var s = 'x';</script><STYLE>b{}</STYLE></head><body>"
        b"<h1>502 Bad Gateway</h1><p>pa55word</p>" + b"z" * 500 + b"</body></html>"
    )
    shown = excerpt(page, Redactor(["pa55word"]))
    assert shown.startswith("502 Bad Gateway *** zzz") and shown.endswith("…")
    assert len(shown) == 160 and "var s" not in shown and "b{}" not in shown
    assert len(excerpt(b"x" * 500, Redactor(), limit=20)) == 20


# -- the token URL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://oidc-pre.semansys.com/connect/token",
        "http://localhost:8080/t",
        "http://LOCALHOST/t",
        "http://id.localhost/t",
        "http://127.0.0.1:1/t",
        "http://127.8.9.10/t",
        "http://[::1]:9/t",
        "https://10.0.0.1/t",
    ],
)
def test_accepted_token_urls(url: str) -> None:
    assert check_token_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "",
            "token_url is empty: give the token endpoint's URL, such as 'https://oidc-pre.semansys.com/connect/token'",
        ),
        ("   ", "token_url is empty"),
        (
            "https://id example/t",
            "token_url 'https://id example/t' contains spaces or control characters",
        ),
        ("https://id.example/t\n", "contains spaces or control characters"),
        (
            "https://id.example:99999/t",
            "token_url 'https://id.example:99999/t' is not a valid URL (",
        ),
        (
            "ftp://id.example/t",
            "token_url must be an absolute http(s) URL, such as "
            "'https://oidc-pre.semansys.com/connect/token'; got 'ftp://id.example/t'",
        ),
        ("id.example/t", "token_url must be an absolute http(s) URL"),
        ("https:///t", "token_url must be an absolute http(s) URL"),
        (
            "https://user@id.example/t",
            "token_url must not contain a user name or password (it has an '@'): the client "
            "credentials go in client_id and client_secret",
        ),
        ("https://:pw@id.example/t", "token_url must not contain a user name or password"),
        (
            "http://oidc-pre.semansys.com/t",
            "token_url 'http://oidc-pre.semansys.com/t' is not https: the password and "
            "client secret would travel in clear text. Use https (plain http is accepted "
            "for localhost, 127.0.0.0/8 and ::1 only).",
        ),
        ("http://10.0.0.1/t", "is not https"),
        ("http://localhost.example/t", "is not https"),
    ],
)
def test_refused_token_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        check_token_url(url)
    if message.startswith("token_url"):  # the whole message, from its start
        assert str(caught.value).startswith(message)
    else:
        assert message in str(caught.value)


def test_a_token_url_must_be_a_string() -> None:
    with pytest.raises(TypeError, match=r"^token_url must be a string, got bytes$"):
        check_token_url(b"https://id.example/t")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("a.localhost", True),
        ("localhost.example", False),
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("[::1]", False),  # a host name from urlsplit has no brackets
        ("10.0.0.1", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
