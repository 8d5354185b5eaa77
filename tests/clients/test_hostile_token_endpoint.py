"""Every token answer (any status, headers and body, through every
client) ends in a usable token or a SemansysAuthError subclass; no foreign
exception, no hang, no secret in any message or log line, no header injection.

The answers come from a real loopback server that writes exactly the bytes a
test chooses (tests/support/servers.py). The property-based test lets hypothesis build
those bytes; the tests after it pin each known hostile answer.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import send
from semansys_auth import (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    SemansysAuth,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from servers import HostileServer, Received, http_answer, json_answer
from token_parts import jwt

# Secrets with characters that change under URL, JSON and HTML escaping, so that
# an echo in any of those forms must be caught.
SECRET = 'cs-"Zq8 &ü/+<x>'
PASSWORD = "pw-Kx3 %$&=é'"
USERNAME = "filer@example.com"
B64TOKEN = re.compile(r"Bearer [A-Za-z0-9\-._~+/]+=*")
TYPED = (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)


def make_auth(server: HostileServer, **options: Any) -> SemansysAuth:
    settings: dict[str, Any] = {
        "client_id": "hostile-client",
        "client_secret": SECRET,
        "username": USERNAME,
        "password": PASSWORD,
        "token_url": server.token_url,
        "max_retries": 0,
        "timeout": 3.0,
        "credentials_cooldown": 0,
    }
    settings.update(options)
    return SemansysAuth(**settings)


def secret_forms(request: Received | None) -> list[str]:
    forms = [SECRET, PASSWORD]
    if request is not None:
        forms.append(request.body.decode())  # the whole form, URL-encoded
    return forms


def fill(template: bytes, request: Received) -> bytes:
    """Put the secrets (as sent to us) where the template asks for them."""
    form = request.body.decode("latin-1")
    return (
        template.replace(b"{secret}", SECRET.encode())
        .replace(b"{password}", PASSWORD.encode())
        .replace(b"{jsecret}", json.dumps(SECRET)[1:-1].encode())
        .replace(b"{form}", form.encode("latin-1"))
    )


class Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def outcome(kind: str, server: HostileServer, **options: Any) -> tuple[Any, str]:
    """Fetch through ``kind``; return the reply or the exception, and the logs."""
    logs = Logs()
    logger = logging.getLogger("semansys_auth")
    logger.addHandler(logs)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        return send(kind, make_auth(server, **options), "GET", server.api_url), "\n".join(
            logs.lines
        )
    except Exception as exc:
        return exc, "\n".join(logs.lines)
    finally:
        logger.removeHandler(logs)
        logger.setLevel(previous)


def check(result: Any, logs: str, server: HostileServer) -> None:
    """The contract: a usable token that went out as a valid header, or one of
    our typed errors; never a secret in what the user or the logs see."""
    request = server.token_requests()[-1] if server.token_requests() else None
    if isinstance(result, (httpx.InvalidURL, httpx2.InvalidURL)):
        # httpx parses the Location of every redirect answer before the auth flow
        # sees it (to offer response.next_request); a malformed one raises there,
        # in httpx's own code, as httpx's own error.
        return
    if isinstance(result, BaseException):
        assert isinstance(result, TYPED), f"{type(result).__name__}: {result}"
        shown = " ".join(
            [str(result), repr(result), str(result.error), str(result.error_description), logs]
        )
    else:
        assert result.status == 200
        assert B64TOKEN.fullmatch(result.body["authorization"])
        shown = logs
    for secret in secret_forms(request):
        assert secret not in shown
    for secret in (SECRET, PASSWORD):  # nor any part of one
        for i in range(len(secret) - 5):
            assert secret[i : i + 6] not in shown, f"part of a secret shown: {secret[i : i + 6]!r}"


# -- the property: any answer -----------------------------------------------------------

RAW_NUMBERS = [
    "1e400", "-1e400", "Infinity", "-Infinity", "NaN", "9" * 400, "-5", "0", "0.5",
    "3600", "3600.5", '"3600"', '"soon"', "null", "true", "[]", "{}",
]  # fmt: skip
ODD_TEXT = [
    "{secret}", "{password}", "{jsecret}", "{form}", "abc\r\n X-Injected: 1", "tok\x00en",
    "tøken", "a b", "", "tab\there", "\u202eevil", "eyJhbGciOiJub25lIn0.e30.", "x" * 20000,
]  # fmt: skip


def json_text(value: object) -> str:
    return json.dumps(value)


texts = st.one_of(st.text(max_size=30), st.sampled_from(ODD_TEXT))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


def jwt_with_exp(exp_raw: str) -> str:
    """A JWT whose ``exp`` claim is the JSON number text ``exp_raw``, as written."""
    return jwt(('{"exp":' + exp_raw + "}").encode())


@st.composite
def token_bodies(draw: st.DrawFn) -> bytes:
    """A JSON object shaped like a token answer, with hostile values anywhere."""
    fields: list[tuple[str, str]] = []
    access = draw(
        st.one_of(
            st.just("good-token_1.2~3+4/5=="),
            st.sampled_from(RAW_NUMBERS).map(jwt_with_exp),
            texts,
            json_values,
        )
    )
    if draw(st.integers(0, 9)):  # mostly present
        fields.append(("access_token", json_text(access)))
    for name, values in (
        ("token_type", st.sampled_from(["bearer", "Bearer", "BEARER", "mac", "", "{secret}"])),
        ("refresh_token", st.one_of(st.just("rt-1"), texts)),
        ("scope", json_values),
        (
            "error",
            st.one_of(st.none(), st.sampled_from(["invalid_grant", "invalid_client"]), texts),
        ),
        ("error_description", texts),
    ):
        if draw(st.booleans()):
            fields.append((name, json_text(draw(st.one_of(values, json_values)))))
    if draw(st.booleans()):
        fields.append(("expires_in", draw(st.sampled_from(RAW_NUMBERS))))
    if draw(st.booleans()):
        fields.append((draw(st.sampled_from(["{secret}", "{form}", "x"])), "1"))
    fields = draw(st.permutations(fields))
    return ("{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields) + "}").encode()


bodies = st.one_of(
    token_bodies(),
    st.binary(max_size=200),
    st.sampled_from([b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000]),
    st.integers(0, 400).map(
        lambda n: b"<html><body>" + b"x" * n + b"{secret} {password} {form}</body></html>"
    ),
    st.just(b""),
)
statuses = st.one_of(
    st.sampled_from(
        [
            200,
            201,
            299,
            300,
            301,
            302,
            303,
            307,
            308,
            400,
            401,
            403,
            404,
            405,
            418,
            429,
            500,
            502,
            503,
            504,
            599,
        ]
    ),
    st.integers(200, 599).filter(lambda s: s not in (204, 304)),
)
header_values = st.one_of(
    st.sampled_from(
        [
            "3",
            "١٢",
            "²",
            "99999999999999999999",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "junk",
            "-1",
            "{secret}",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
)
headers = st.lists(
    st.tuples(
        st.sampled_from(["Content-Type", "Retry-After", "WWW-Authenticate", "Location", "X-Other"]),
        st.one_of(
            header_values,
            st.sampled_from(
                ["application/json", "text/html", 'Bearer error="invalid_token"', "Basic"]
            ),
        ),
    ),
    max_size=4,
)


@dataclass(frozen=True)
class Spec:
    """An answer to build once the request is known: the secrets it quotes are
    filled in first, then the body is encoded and framed."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    encoding: str | None
    framing: str

    def __repr__(self) -> str:
        body = self.body if len(self.body) < 300 else self.body[:300] + b"..."
        return (
            f"Spec({self.status}, {self.headers!r}, {body!r}, encoding={self.encoding!r}, "
            f"framing={self.framing!r})"
        )

    def render(self, request: Received) -> bytes:
        body = fill(self.body, request)
        if self.encoding == "gzip":
            body = gzip.compress(body)
        elif self.encoding == "deflate":
            body = zlib.compress(body)
        headers = [(name, fill(value.encode(), request).decode()) for name, value in self.headers]
        if self.encoding:
            headers.append(("Content-Encoding", self.encoding))
        return http_answer(self.status, headers, body, framing=self.framing)


@st.composite
def answers(draw: st.DrawFn) -> Spec:
    return Spec(
        status=draw(statuses),
        headers=draw(headers),
        body=draw(bodies),
        encoding=draw(st.sampled_from([None, "gzip", "deflate", "br", "identity", "gzip, gzip"])),
        framing=draw(st.sampled_from(["length", "chunked", "close"])),
    )


KINDS_HERE = [
    "requests",
    "httpx",
    "httpx-async",
    "httpx2",
    "httpx2-async",
    "aiohttp",
    "niquests",
    "niquests-async",
]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", KINDS_HERE)
@settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(answer=answers())
def test_any_answer_ends_in_a_token_or_a_typed_error(kind: str, answer: Spec) -> None:
    with HostileServer(token_answer=answer.render) as server:
        result, logs = outcome(kind, server)
        check(result, logs, server)


# -- known hostile answers, pinned ----------------------------------------------------------


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with HostileServer() as hostile:
        yield hostile


def token_json(**fields: object) -> bytes:
    return json_answer(200, {"access_token": "good-token", "token_type": "bearer", **fields})


def test_error_null_beside_a_token_is_a_token(server: HostileServer, kind: str) -> None:
    server.token_answer = token_json(error=None, expires_in=3600)
    result, logs = outcome(kind, server)
    check(result, logs, server)
    assert result.body["authorization"] == "Bearer good-token"


def expires_in_answer(raw: str) -> bytes:
    body = b'{"access_token": "good-token", "token_type": "bearer", "expires_in": ' + raw.encode()
    return http_answer(200, [("Content-Type", "application/json")], body + b"}")


@pytest.mark.parametrize("raw", ["1e400", "Infinity", "9" * 400, '"99999999999"'])
def test_a_huge_expires_in_is_capped_at_a_year(server: HostileServer, raw: str) -> None:
    server.token_answer = expires_in_answer(raw)
    auth = make_auth(server)
    assert send("httpx", auth, "GET", server.api_url).status == 200
    info = auth.token_info
    assert info is not None and info.expires_at is not None
    assert info.expires_at - info.obtained_at == 365 * 24 * 3600


@pytest.mark.parametrize("raw", ["-Infinity", "NaN", "-5", '"soon"', "true", "{}", "[]"])
def test_an_expires_in_that_is_not_seconds_is_a_typed_error(
    server: HostileServer, kind: str, raw: str
) -> None:
    server.token_answer = expires_in_answer(raw)
    result, _ = outcome(kind, server)
    assert isinstance(result, MalformedTokenResponseError)
    assert "expires_in that is not a number of seconds" in str(result)


@pytest.mark.parametrize(
    "exp", ["1e400", "NaN", "Infinity", "-Infinity", "9" * 400, "1", '"later"', "null"]
)
def test_odd_jwt_exp_never_causes_a_request_per_api_request(
    server: HostileServer, kind: str, exp: str
) -> None:
    server.token_answer = token_json(access_token=jwt_with_exp(exp))
    auth = make_auth(server)
    for _ in range(4):
        assert B64TOKEN.fullmatch(send(kind, auth, "GET", server.api_url).body["authorization"])
    assert len(server.token_requests()) == 1


@pytest.mark.parametrize("scope", [123, ["a", 1], {"a": 1}, "two  spaces", "ctl\x01", ["x", "y"]])
def test_non_string_scope_is_dropped_not_fatal(server: HostileServer, scope: object) -> None:
    server.token_answer = token_json(scope=scope)
    auth = make_auth(server)
    assert send("requests", auth, "GET", server.api_url).status == 200
    info = auth.token_info
    assert info is not None
    assert info.scope == ("x y" if scope == ["x", "y"] else None)


@pytest.mark.parametrize(
    "access",
    [
        "abc\r\n X-Injected: 1",  # obsolete line folding: http.client lets it through
        "abc\n\tX-Injected: 1",
        "abc\x00def",
        "abc\x7fdef",
        "tøken",
        "abc DEF",
        "",
        "x" * 20000,
    ],
)
def test_a_token_that_is_not_a_header_value_is_refused_without_echo(
    server: HostileServer, kind: str, access: str
) -> None:
    server.token_answer = token_json(access_token=access)
    result, logs = outcome(kind, server)
    assert isinstance(result, MalformedTokenResponseError), result
    assert access not in str(result) + repr(result) + logs if access else True
    assert "X-Injected" not in str(result) + logs
    assert [r.path for r in server.received] == ["/connect/token"], "nothing reached the API"


def test_deeply_nested_json_is_a_typed_error(server: HostileServer, kind: str) -> None:
    server.token_answer = http_answer(200, [], b"[" * 200_000 + b"]" * 200_000)
    result, _ = outcome(kind, server)
    assert isinstance(result, MalformedTokenResponseError)


@pytest.mark.parametrize("value", ["١٢", "²", "9" * 30, "Fri, 31 Dec 9999 23:59:59 GMT", "junk"])
def test_odd_retry_after_never_crashes(server: HostileServer, value: str) -> None:
    server.token_answer = json_answer(503, {}, [("Retry-After", value)])
    result, _ = outcome("requests", server)
    assert isinstance(result, TokenEndpointUnavailableError)
    assert result.retry_after is None or 0 <= result.retry_after <= 24 * 3600


def test_http_date_retry_after_is_honoured(server: HostileServer) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    server.token_answer = json_answer(503, {}, [("Retry-After", when)])
    result, _ = outcome("requests", server, retry_after_cap=0.5)
    assert isinstance(result, TokenEndpointUnavailableError)
    assert result.retry_after is not None and 0.5 < result.retry_after <= 3


# -- size and time ---------------------------------------------------------------------------


def endless(head: bytes) -> Iterator[bytes]:
    yield head
    chunk = b"x" * 65536
    for _ in range(50 * 16):  # 50 MiB
        yield chunk


@pytest.mark.parametrize("framing", ["length", "close"])
def test_a_huge_answer_is_refused_and_not_read_to_the_end(
    server: HostileServer, kind: str, framing: str
) -> None:
    size = 50 * 1024 * 1024
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {size}\r\n\r\n".encode() if framing == "length" else b"\r\n"
    server.token_answer = lambda request: endless(head)
    result, _ = outcome(kind, server)
    assert isinstance(result, MalformedTokenResponseError) and "1024 KiB" in str(result)
    # The client stopped reading: the server could not push the 50 MiB through.
    deadline = time.monotonic() + 10
    while not server.sent_bytes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.sent_bytes and server.sent_bytes[0] < 20 * 1024 * 1024


def test_a_gzip_bomb_is_cut_at_the_bound(server: HostileServer, kind: str) -> None:
    bomb = gzip.compress(b'{"access_token": "' + b"a" * (20 * 1024 * 1024) + b'"}')
    server.token_answer = http_answer(
        200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip")], bomb
    )
    result, _ = outcome(kind, server)
    assert isinstance(result, MalformedTokenResponseError) and "1024 KiB" in str(result)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", ["body"])
def test_timeout_bounds_a_trickling_answer(server: HostileServer, kind: str, where: str) -> None:
    body = json.dumps({"access_token": "good-token", "expires_in": 3600}).encode()
    answer = http_answer(200, [("Content-Type", "application/json")], body)
    head = answer[: len(answer) - len(body)]

    def trickle(request: Received) -> Iterator[bytes]:
        yield head
        for i in range(len(body)):  # one byte every 0.2 s: minutes for the whole answer
            yield body[i : i + 1]

    server.pace = 0.2
    server.token_answer = trickle
    started = time.monotonic()
    result, _ = outcome(kind, server, timeout=1.0)
    elapsed = time.monotonic() - started
    assert isinstance(result, Exception) and not isinstance(result, SemansysAuthError)
    assert "timeout" in type(result).__name__.lower() or isinstance(result, TimeoutError), result
    assert elapsed < 4, f"the fetch took {elapsed:.1f} s with timeout=1"


JSON = [("Content-Type", "application/json")]
QUOTED_BACK = {
    "error": Spec(400, JSON, b'{"error": "{jsecret}"}', None, "length"),
    "error_description": Spec(
        400, JSON, b'{"error": "invalid_request", "error_description": "{form}"}', None, "length"
    ),
    "token_type": Spec(
        200, JSON, b'{"access_token": "t", "token_type": "{jsecret}"}', None, "length"
    ),
    "location": Spec(
        302, [("Location", "https://x/?p={password}&s={secret}")], b"", None, "length"
    ),
    "field names": Spec(200, JSON, b'{"{jsecret}": 1, "{password}": 2}', None, "length"),
    "content type": Spec(502, [("Content-Type", "text/{secret}")], b"oops", None, "length"),
    "html across the cut": Spec(
        502, [], b"<p>" + b"y" * 150 + b"{secret}{password}</p>", None, "length"
    ),
}


@pytest.mark.parametrize("where", sorted(QUOTED_BACK))
def test_secrets_quoted_back_by_the_server_are_not_shown(
    server: HostileServer, kind: str, where: str
) -> None:
    server.token_answer = QUOTED_BACK[where].render
    result, logs = outcome(kind, server)
    assert isinstance(result, TYPED), result
    check(result, logs, server)


def test_a_secret_cut_in_half_by_the_body_end_is_not_shown(
    server: HostileServer, kind: str
) -> None:
    """A body that stops in the middle of an echoed secret."""
    password = PASSWORD.encode()

    def cut(request: Received) -> bytes:
        return http_answer(502, [], b"echo: " + password[:-5])

    server.token_answer = cut
    result, logs = outcome(kind, server)
    assert isinstance(result, TokenEndpointUnavailableError)
    assert "echo: ***" in str(result)
    check(result, logs, server)
