"""The sans-I/O token core, driven by hand: no sockets, a fake clock."""

from __future__ import annotations

import base64
import json
from collections.abc import Generator
from typing import Any
from urllib.parse import parse_qs

import pytest

from semansys_auth import (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from semansys_auth._core import Call, Policy, Sleep, TokenCore
from semansys_auth._oauth import EndpointRequest, EndpointResponse, TokenEndpoint
from semansys_auth._token import Token, jwt_claims

URL = "https://id.example/connect/token"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_core(clock: Clock, **options: Any) -> TokenCore:
    endpoint = TokenEndpoint(
        token_url=URL,
        client_id="cid",
        client_secret="s3cret-client",
        username="jane@example.com",
        password="pa55word",
        scope=options.pop("scope", None),
        timeout=30.0,
    )
    policy: dict[str, Any] = {
        "leeway": 60.0,
        "max_retries": 2,
        "backoff": 1.0,
        "max_backoff": 8.0,
        "retry_after_cap": 30.0,
        "credentials_cooldown": 60.0,
    }
    policy.update({k: options.pop(k) for k in list(options) if k in policy})
    return TokenCore(endpoint, Policy(**policy), clock=clock, jitter=lambda: 1.0, **options)


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> EndpointResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return EndpointResponse(status, headers or {"Content-Type": "application/json"}, raw)


def ok(
    access: str = "at-1", expires_in: Any = 3600, refresh: str | None = "rt-1"
) -> EndpointResponse:
    body: dict[str, Any] = {"access_token": access, "token_type": "bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    if refresh:
        body["refresh_token"] = refresh
    return answer(200, body)


def run(
    flow: Generator[Any, Any, Token], answers: list[EndpointResponse]
) -> tuple[Token, list[Any]]:
    """Drive the core: feed ``answers`` to its token requests, run its calls,
    record what it yielded."""
    yielded: list[Any] = []
    result: Any = None
    while True:
        try:
            step = flow.send(result)
        except StopIteration as done:
            return done.value, yielded
        yielded.append(step)
        if isinstance(step, EndpointRequest):
            result = answers.pop(0)
        elif isinstance(step, Call):
            result = step.run()
        else:
            result = None


def form(request: EndpointRequest) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


def test_password_grant_body_has_every_documented_field() -> None:
    core = make_core(Clock(), scope="read write")
    held, steps = run(core.renew(), [ok()])
    assert held.authorization == "Bearer at-1"
    assert form(steps[0]) == {
        "grant_type": "password",
        "client_id": "cid",
        "client_secret": "s3cret-client",
        "username": "jane@example.com",
        "password": "pa55word",
        "scope": "read write",
    }
    assert steps[0].headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_token_reused_until_leeway_then_refreshed_with_refresh_grant() -> None:
    clock = Clock()
    core = make_core(clock)
    run(core.renew(), [ok()])
    clock.now += 3600 - 61
    assert core.usable() is not None
    clock.now += 2
    assert core.usable() is None
    held, steps = run(core.renew(), [ok("at-2", refresh="rt-2")])
    assert held.authorization == "Bearer at-2"
    assert form(steps[0])["grant_type"] == "refresh_token"
    assert form(steps[0])["refresh_token"] == "rt-1"
    assert form(steps[0])["client_secret"] == "s3cret-client"


def test_leeway_never_exceeds_half_the_lifetime() -> None:
    clock = Clock()
    core = make_core(clock)
    run(core.renew(), [ok(expires_in=4)])
    clock.now += 1.9
    assert core.usable() is not None, "a 4-second token must be reused, not fetched per request"
    clock.now += 0.2
    assert core.usable() is None


def test_leeway_zero_uses_the_token_until_the_safety_margin() -> None:
    """leeway=0: no early renewal; the token is sent until min(5 s, a tenth of
    its lifetime) before it expires, then every caller waits for a new one."""
    from semansys_auth._core import Need

    clock = Clock()
    core = make_core(clock, leeway=0.0)
    run(core.renew(), [ok(expires_in=100)])
    clock.now += 94.9
    assert core.usable() is not None
    clock.now += 0.2
    assert core.usable() is None
    assert core.need()[0] is Need.TOKEN


def jwt(claims: dict[str, Any]) -> str:
    def enc(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'none'})}.{enc(claims)}.sig"


def test_without_expires_in_the_jwt_exp_is_used() -> None:
    clock = Clock()
    core = make_core(clock)
    token = jwt({"exp": clock.now + 1000, "sub": "x"})
    held, _ = run(core.renew(), [ok(token, expires_in=None)])
    assert held.expires_at == clock.now + 1000
    assert jwt_claims(token) == {"exp": clock.now + 1000, "sub": "x"}


def test_without_expires_in_and_opaque_token_kept_until_401() -> None:
    clock = Clock()
    core = make_core(clock)
    held, _ = run(core.renew(), [ok("opaque", expires_in=None)])
    assert held.expires_at is None
    clock.now += 10 * 365 * 86400
    assert core.usable() is held


def test_stale_discards_only_the_failed_token() -> None:
    clock = Clock()
    core = make_core(clock)
    first, _ = run(core.renew(), [ok("at-1", refresh="rt-1")])
    second, steps = run(core.renew(first.authorization), [ok("at-2", refresh="rt-2")])
    assert len(steps) == 1 and second.authorization == "Bearer at-2"
    # A late 401 for the first token must not throw away the second.
    third, steps = run(core.renew(first.authorization), [])
    assert steps == [] and third is second


def test_refresh_token_rotation_keeps_newest_and_missing_keeps_old() -> None:
    clock = Clock()
    core = make_core(clock)
    run(core.renew(), [ok("at-1", refresh="rt-1")])
    clock.now += 4000
    run(core.renew(), [ok("at-2", refresh="rt-2")])
    clock.now += 4000
    held, steps = run(core.renew(), [ok("at-3", refresh=None)])
    assert form(steps[0])["refresh_token"] == "rt-2"
    assert held.refresh_token == "rt-2"


@pytest.mark.parametrize(
    "refusal",
    [
        answer(400, {"error": "invalid_grant"}),
        answer(401, {"error": "invalid_client"}),
        answer(400, {}),
        answer(401, b"Unauthorized"),
    ],
)
def test_refused_refresh_falls_back_to_password_once(refusal: EndpointResponse) -> None:
    clock = Clock()
    core = make_core(clock)
    run(core.renew(), [ok()])
    clock.now += 4000
    held, steps = run(core.renew(), [refusal, ok("at-2")])
    assert [form(s)["grant_type"] for s in steps] == ["refresh_token", "password"]
    assert held.authorization == "Bearer at-2"


def test_refused_refresh_then_refused_password_raises_without_loop() -> None:
    clock = Clock()
    core = make_core(clock)
    run(core.renew(), [ok()])
    clock.now += 4000
    with pytest.raises(UserCredentialsError):
        run(core.renew(), [answer(400, {"error": "invalid_grant"})] * 2)


@pytest.mark.parametrize(
    ("response", "error_type", "code"),
    [
        (answer(400, {"error": "invalid_client"}), ClientCredentialsError, "invalid_client"),
        (answer(401, {"error": "invalid_client"}), ClientCredentialsError, "invalid_client"),
        (answer(401, {"message": "Invalid client"}), ClientCredentialsError, None),
        (
            answer(400, {"error": "unauthorized_client"}),
            ClientCredentialsError,
            "unauthorized_client",
        ),
        (answer(400, {"error": "invalid_grant"}), UserCredentialsError, "invalid_grant"),
        (answer(403, {"message": "User authentication failed"}), UserCredentialsError, None),
        (answer(403, b""), UserCredentialsError, None),
        (answer(400, {"error": "invalid_scope"}), BadTokenRequestError, "invalid_scope"),
        (answer(400, {"error": "invalid_request"}), BadTokenRequestError, "invalid_request"),
        (
            answer(400, {"error": "invalid_request", "error_description": "Invalid password"}),
            UserCredentialsError,
            "invalid_request",
        ),
        (answer(400, {}), BadTokenRequestError, None),
        (answer(404, b"<html>Not Found</html>"), BadTokenRequestError, None),
        (answer(302, b"", {"Location": "https://x/"}), BadTokenRequestError, None),
        (answer(200, {"token_type": "bearer"}), MalformedTokenResponseError, None),
        (
            answer(200, {"access_token": "a", "token_type": "mac"}),
            MalformedTokenResponseError,
            None,
        ),
        (
            answer(200, {"access_token": "a", "expires_in": "soon"}),
            MalformedTokenResponseError,
            None,
        ),
        (answer(200, {"access_token": ""}), MalformedTokenResponseError, None),
        (answer(200, b"<html>login page</html>"), MalformedTokenResponseError, None),
        (answer(200, b"[1, 2]"), MalformedTokenResponseError, None),
    ],
)
def test_answers_are_classified_error_first_status_second(
    response: EndpointResponse, error_type: type[Exception], code: str | None
) -> None:
    core = make_core(Clock(), max_retries=0)
    with pytest.raises(error_type) as caught:
        run(core.renew(), [response])
    assert type(caught.value) is error_type
    assert caught.value.status_code == response.status_code  # type: ignore[attr-defined]
    assert caught.value.error == code  # type: ignore[attr-defined]


def test_html_502_is_unavailable_with_status_and_short_excerpt() -> None:
    page = b"<html><head><style>x{}</style></head><body><h1>502 Bad Gateway</h1>" + b"x" * 5000
    core = make_core(Clock(), max_retries=0)
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        run(core.renew(), [answer(502, page, {"Content-Type": "text/html"})])
    message = str(caught.value)
    assert "HTTP 502" in message and "502 Bad Gateway" in message and "text/html" in message
    assert "<h1>" not in message and len(message) < 500


def test_unavailable_is_retried_with_exponential_backoff() -> None:
    core = make_core(Clock(), max_retries=2, backoff=1.0)
    held, steps = run(
        core.renew(),
        [answer(503, {}), answer(200, {"error": "temporarily_unavailable"}), ok()],
    )
    assert held.authorization == "Bearer at-1"
    sleeps = [s.seconds for s in steps if isinstance(s, Sleep)]
    assert sleeps == [1.0, 2.0]  # jitter fixed at its top


def test_retries_are_bounded() -> None:
    core = make_core(Clock(), max_retries=2)
    with pytest.raises(TokenEndpointUnavailableError):
        run(core.renew(), [answer(500, {})] * 3)


def test_retry_after_is_honoured_and_capped() -> None:
    core = make_core(Clock(), retry_after_cap=5.0)
    _, steps = run(core.renew(), [answer(429, {}, {"Retry-After": "3"}), ok()])
    assert [s.seconds for s in steps if isinstance(s, Sleep)] == [3.0]
    core = make_core(Clock(), retry_after_cap=5.0)
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        run(core.renew(), [answer(429, {}, {"Retry-After": "120"})])
    assert caught.value.retry_after == 120.0


def test_rejected_user_credentials_start_a_cooldown() -> None:
    clock = Clock()
    core = make_core(clock, credentials_cooldown=60.0)
    with pytest.raises(UserCredentialsError):
        run(core.renew(), [answer(400, {"error": "invalid_grant"})])
    clock.now += 30
    with pytest.raises(UserCredentialsError) as caught:
        run(core.renew(), [])  # no request is even yielded
    assert "not retried for another 30 s" in str(caught.value)
    assert caught.value.retry_after == pytest.approx(30.0)
    clock.now += 31
    held, steps = run(core.renew(), [ok()])
    assert len(steps) == 1 and held.authorization == "Bearer at-1"


def test_token_repr_hides_secrets() -> None:
    token = Token(
        access_token="AT-secret", refresh_token="RT-secret", expires_at=1.0, obtained_at=0.0
    )
    assert "AT-secret" not in repr(token) and "RT-secret" not in str(token)
    assert Token.from_json(token.to_json()) == token


def test_cache_gives_a_newer_token_but_not_an_older_one_after_a_401() -> None:
    from semansys_auth import MemoryTokenCache

    clock = Clock()
    cache = MemoryTokenCache()
    core = make_core(clock, cache=cache)
    old = Token(access_token="at-0", expires_at=clock.now + 3600, obtained_at=clock.now - 10)
    first, _ = run(core.renew(), [ok("at-1")])  # saved to the cache
    cache.save(core.cache_key(), old)  # an older token, written by a slow process
    held, steps = run(core.renew(first.authorization), [ok("at-2")])
    requests = [s for s in steps if isinstance(s, EndpointRequest)]
    assert held.authorization == "Bearer at-2" and len(requests) == 1, "the older one not taken"
    newer = Token(access_token="at-3", expires_at=clock.now + 3600, obtained_at=clock.now + 1)
    cache.save(core.cache_key(), newer)  # another process renewed meanwhile
    held, steps = run(core.renew(held.authorization), [])
    assert held.authorization == "Bearer at-3"
    assert not any(isinstance(s, EndpointRequest) for s in steps)


def test_redactor_keeps_a_bounded_number_of_tokens() -> None:
    from semansys_auth._redact import Redactor

    redactor = Redactor(["fixed-secret"])
    for i in range(100):
        redactor.add(f"token-{i:03d}")
    assert redactor("fixed-secret token-099 token-000") == "*** *** token-000"
