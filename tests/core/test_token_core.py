"""The sans-I/O token core, driven by hand: no sockets, a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from core_parts import URL, Clock, Shell, make_core, ok, requests_of, run, sealed
from fake_caches import RecordingCache
from semansys_auth import (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from semansys_auth._effects import (
    Blocking,
    Sleep,
)
from semansys_auth._policy import Due
from semansys_auth._token import Token, jwt_claims
from semansys_auth._wire import EndpointRequest, EndpointResponse
from token_parts import answer, form, jwt


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

    clock = Clock()
    core = make_core(clock, leeway=0.0)
    run(core.renew(), [ok(expires_in=100)])
    clock.now += 94.9
    assert core.usable() is not None
    clock.now += 0.2
    assert core.usable() is None
    assert core.due()[0] is Due.MANDATORY


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
        (answer(403, b""), UserCredentialsError, None),
        (answer(400, {"error": "invalid_scope"}), BadTokenRequestError, "invalid_scope"),
        (answer(200, b"<html>login page</html>"), MalformedTokenResponseError, None),
        (answer(502, b"<html>"), TokenEndpointUnavailableError, None),
    ],
)
def test_the_endpoint_error_reaches_the_caller_of_renew(
    response: EndpointResponse, error_type: type[Exception], code: str | None
) -> None:
    """What each answer means is tested in test_token_answers.py; here, that the
    core raises it as it is, with its status and code."""
    core = make_core(Clock(), max_retries=0)
    with pytest.raises(error_type) as caught:
        run(core.renew(), [response])
    assert type(caught.value) is error_type
    assert caught.value.status_code == response.status_code  # type: ignore[attr-defined]
    assert caught.value.error == code  # type: ignore[attr-defined]


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


def test_cache_gives_a_newer_token_but_not_an_older_one_after_a_401() -> None:
    from semansys_auth import MemoryTokenCache

    clock = Clock()
    cache = MemoryTokenCache()
    core = make_core(clock, cache=cache)
    old = Token(access_token="at-0", expires_at=clock.now + 3600, obtained_at=clock.now - 10)
    first, _ = run(core.renew(), [ok("at-1")])  # saved to the cache
    cache.save(core.cache_key(), sealed(core, old))  # an older token, written by a slow process
    held, steps = run(core.renew(first.authorization), [ok("at-2")])
    requests = [s for s in steps if isinstance(s, EndpointRequest)]
    assert held.authorization == "Bearer at-2" and len(requests) == 1, "the older one not taken"
    newer = Token(access_token="at-3", expires_at=clock.now + 3600, obtained_at=clock.now + 1)
    cache.save(core.cache_key(), sealed(core, newer))  # another process renewed meanwhile
    held, steps = run(core.renew(held.authorization), [])
    assert held.authorization == "Bearer at-3"
    assert not any(isinstance(s, EndpointRequest) for s in steps)


# -- when a token may be sent, and who renews it -------------------------------------------


def test_the_schedule_of_a_token() -> None:
    """Renewal at the leeway before expiry (at most half the lifetime), and a
    safety margin of min(5 s, a tenth of the lifetime) in which it is not sent."""

    for lifetime, renew_after, valid_for in ((3600, 3540, 3595), (100, 50, 95), (4, 2, 3.6)):
        clock = Clock()
        core = make_core(clock)
        run(core.renew(), [ok(expires_in=lifetime)])
        start = clock.now
        clock.now = start + renew_after - 0.001
        assert core.usable() is not None and core.due()[0] is Due.NOT_DUE
        clock.now = start + renew_after
        assert core.usable() is None and core.due()[0] is Due.ADVISORY
        clock.now = start + valid_for - 0.001
        assert core.due()[0] is Due.ADVISORY
        clock.now = start + valid_for
        assert core.due() == (Due.MANDATORY, None)


def test_a_token_of_no_lifetime_is_never_renewed_early() -> None:

    clock = Clock()
    core = make_core(clock)
    first, _ = run(core.renew(), [ok(expires_in=0)])
    clock.now += 10**9
    assert core.usable() is first and core.due() == (Due.NOT_DUE, first)


def test_what_a_caller_without_a_fresh_token_must_do() -> None:

    clock = Clock()
    core = make_core(clock)
    assert core.due() == (Due.MANDATORY, None)
    first, _ = run(core.renew(), [ok("at-1")])
    assert core.due() == (Due.NOT_DUE, first)
    assert core.due(refused="Bearer at-1") == (Due.MANDATORY, None)
    second, _ = run(core.renew("Bearer at-1"), [ok("at-2")])
    assert core.due(refused="Bearer at-1") == (Due.NOT_DUE, second), "a 401 to an old token"


def test_a_renewal_that_finds_a_fresh_token_sends_nothing() -> None:
    clock = Clock()
    core = make_core(clock)
    first, _ = run(core.renew(), [ok("at-1")])
    again, steps = run(core.renew(), [])
    assert again is first and steps == []
    clock.now += 3540  # exactly the renewal time: renewed now
    renewed, steps = run(core.renew(), [ok("at-2")])
    assert renewed.access_token == "at-2" and len(requests_of(steps)) == 1


def test_an_early_renewal_is_one_try_and_a_failure_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:

    clock = Clock()
    core = make_core(clock, max_retries=3)
    first, _ = run(core.renew(), [ok("at-1")])
    clock.now += 3550  # renewal due; 45 s of validity left
    with caplog.at_level("WARNING", logger="semansys_auth"):
        kept, steps = run(core.renew(advisory=True), [answer(503, {})])
    assert kept is first and len(requests_of(steps)) == 1, "no retries in an early renewal"
    assert not any(isinstance(step, Sleep) for step in steps)
    assert caplog.messages == [
        "early token renewal failed (TokenEndpointUnavailableError: The token endpoint "
        f"{URL} is unavailable (HTTP 503) [HTTP 503]); the current token stays in use for "
        "45 s more, next try in 1 s"
    ]
    # Tried again after 1 s, then 2, 4, ...: not on every request.
    assert core.due() == (Due.NOT_DUE, first)
    clock.now += 0.999
    assert core.due() == (Due.NOT_DUE, first)
    clock.now += 0.001
    assert core.due() == (Due.ADVISORY, first)
    run(core.renew(advisory=True), [ConnectionError("refused")])
    assert "ConnectionError: refused" in caplog.messages[-1]
    assert caplog.messages[-1].endswith("next try in 2 s")
    clock.now += 2
    run(core.renew(advisory=True), [answer(503, {})])
    assert caplog.messages[-1].endswith("next try in 4 s")
    # A success resets the backoff.
    clock.now += 4
    renewed, _ = run(core.renew(advisory=True), [ok("at-2")])
    assert renewed.access_token == "at-2"
    clock.now += 3550
    run(core.renew(advisory=True), [answer(503, {})])
    assert caplog.messages[-1].endswith("next try in 1 s")


def test_the_early_renewal_backoff_stops_at_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    core = make_core(clock, leeway=10**5)
    run(core.renew(), [ok(expires_in=10**6)])
    clock.now += 10**6 - 90000  # a renewal window of almost a day
    with caplog.at_level("WARNING", logger="semansys_auth"):
        for _ in range(8):
            run(core.renew(advisory=True), [answer(503, {})])
            clock.now += 61
    assert [m.rsplit(" ", 2)[-2] for m in caplog.messages] == [
        "1", "2", "4", "8", "16", "32", "60", "60"
    ]  # fmt: skip


def test_an_early_renewal_raises_once_no_valid_token_is_left() -> None:
    clock = Clock()
    core = make_core(clock)
    run(core.renew(), [ok(expires_in=100)])
    clock.now += 94  # in the window, and valid until 95

    class Late:
        """A failing answer that arrives after the token stopped being valid."""

    def late_failure() -> EndpointResponse:
        clock.now += 2
        return answer(503, {})

    flow = core.renew(advisory=True)
    request = next(flow)
    assert isinstance(request, EndpointRequest)
    with pytest.raises(TokenEndpointUnavailableError):
        flow.send(late_failure())


def test_an_expired_token_makes_a_renewal_required() -> None:
    clock = Clock()
    core = make_core(clock, max_retries=1)
    run(core.renew(), [ok(expires_in=100)])
    clock.now += 96
    with pytest.raises(TokenEndpointUnavailableError):
        run(core.renew(advisory=True), [answer(503, {}), answer(503, {})])


def test_a_transport_failure_of_a_required_renewal_reaches_the_caller() -> None:
    core = make_core(Clock())
    with pytest.raises(ConnectionError, match="refused"):
        run(core.renew(), [ConnectionError("refused")])


def test_an_adapter_must_answer_with_a_response() -> None:
    flow = make_core(Clock()).renew()
    next(flow)
    with pytest.raises(TypeError, match=r"^the adapter must send back an EndpointResponse$"):
        flow.send("not a response")


# -- retries and the cooldown ------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    core = make_core(Clock(), max_retries=5, backoff=1.0, max_backoff=4.0)
    core._jitter = lambda: 0.0  # the bottom of the jitter: half the base
    _, steps = run(core.renew(), [answer(503, {})] * 5 + [ok()])
    assert [s.seconds for s in steps if isinstance(s, Sleep)] == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_retry_after_up_to_the_cap_is_honoured() -> None:
    core = make_core(Clock(), retry_after_cap=5.0)
    _, steps = run(core.renew(), [answer(429, {}, {"Retry-After": "5"}), ok()])
    assert [s.seconds for s in steps if isinstance(s, Sleep)] == [5.0]
    slow_down = answer(429, {}, {"Retry-After": "6"})
    with pytest.raises(TokenEndpointUnavailableError) as caught:
        run(make_core(Clock(), retry_after_cap=5.0).renew(), [slow_down])
    assert caught.value.retry_after == 6.0


def test_without_retries_an_unavailable_endpoint_fails_at_once() -> None:
    with pytest.raises(TokenEndpointUnavailableError):
        run(make_core(Clock(), max_retries=0).renew(), [answer(503, {})])


def test_a_refused_refresh_falls_back_to_the_password_grant_with_its_own_retries() -> None:
    clock = Clock()
    core = make_core(clock, max_retries=2)
    run(core.renew(), [ok()])
    clock.now += 4000
    held, steps = run(
        core.renew(),
        [
            answer(503, {}),
            answer(400, {"error": "invalid_grant"}),
            answer(503, {}),
            answer(503, {}),
            ok("at-2"),
        ],
    )
    grants = [form(r)["grant_type"] for r in requests_of(steps)]
    assert grants == ["refresh_token", "refresh_token", "password", "password", "password"]
    assert held.access_token == "at-2"


def test_the_fallback_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    core = make_core(clock)
    run(core.renew(), [ok()])
    clock.now += 4000
    with caplog.at_level("WARNING", logger="semansys_auth"):
        run(core.renew(), [answer(401, {}), ok("at-2")])
        clock.now += 4000
        run(core.renew(), [answer(400, {"error": "invalid_grant"}), ok("at-3")])
    assert caplog.messages == [
        "refresh token refused (HTTP 401, no error code): falling back to the password grant",
        "refresh token refused (HTTP 400, invalid_grant): falling back to the password grant",
    ]


def test_the_cooldown_error_keeps_the_fields_of_the_rejection() -> None:
    clock = Clock()
    core = make_core(clock, credentials_cooldown=60.0)
    rejection = answer(400, {"error": "invalid_client", "error_description": "unknown client"})
    with pytest.raises(ClientCredentialsError):
        run(core.renew(), [rejection])
    clock.now += 15.5
    with pytest.raises(ClientCredentialsError) as caught:
        run(core.renew(), [])
    error = caught.value
    assert (error.status_code, error.error, error.error_description) == (
        400,
        "invalid_client",
        "unknown client",
    )
    assert error.retry_after == pytest.approx(44.5)
    assert error.message.endswith(
        "; not retried for another 45 s (credentials cooldown, so that the account is not locked)"
    )
    clock.now += 44.5  # the cooldown is over, to the microsecond: asked again
    answers = [rejection]
    with pytest.raises(ClientCredentialsError):
        run(core.renew(), answers)
    assert answers == [], "a request was sent"


def test_a_bad_request_starts_no_cooldown() -> None:
    core = make_core(Clock())
    with pytest.raises(BadTokenRequestError):
        run(core.renew(), [answer(400, {"error": "invalid_scope"})])
    held, _ = run(core.renew(), [ok()])
    assert held.access_token == "at-1"


def test_during_a_cooldown_a_valid_token_is_kept_quietly() -> None:

    clock = Clock()
    core = make_core(clock, credentials_cooldown=600.0)
    first, _ = run(core.renew(), [ok()])
    clock.now += 3550
    rejections = [answer(400, {"error": "invalid_grant"})] * 2  # the refresh, then the password
    kept, _ = run(core.renew(advisory=True), rejections)
    assert kept is first
    assert core.due() == (Due.NOT_DUE, first), "no early renewal during the cooldown"
    again, steps = run(core.renew(advisory=True), [])
    assert again is first and steps == []
    clock.now += 2  # past the early-renewal backoff, still in the cooldown, still valid
    assert core.due() == (Due.NOT_DUE, first)


def test_a_new_token_ends_the_cooldown() -> None:
    clock = Clock()
    core = make_core(clock, credentials_cooldown=60.0)
    with pytest.raises(UserCredentialsError):
        run(core.renew(), [answer(400, {"error": "invalid_grant"})])
    clock.now += 61
    run(core.renew(), [ok("at-1")])
    clock.now += 4000
    with pytest.raises(UserCredentialsError):  # the refresh refused, then the password
        run(core.renew(), [answer(400, {"error": "invalid_grant"})] * 2)
    clock.now += 1
    with pytest.raises(UserCredentialsError, match="not retried for another 59 s"):
        run(core.renew(), [])


# -- the cache --------------------------------------------------------------------------------


def test_a_new_token_is_saved_under_the_key() -> None:
    cache = RecordingCache()
    core = make_core(Clock(), cache=cache)
    held, _ = run(core.renew(), [ok("at-1")])
    assert cache.calls == ["load", "save"]
    assert list(cache.entries) == [core.cache_key()] and cache.token(core) == held


def test_a_fresh_cached_token_is_taken_without_a_request() -> None:
    clock = Clock()
    cache = RecordingCache()
    infos: list[Any] = []
    core = make_core(clock, cache=cache, on_token=infos.append)
    cached = Token(access_token="from-cache", expires_at=clock.now + 3600, obtained_at=clock.now)
    cache.put(core, cached)
    held, steps = run(core.renew(), [])
    assert held == cached and requests_of(steps) == []
    assert cache.calls == ["load"], "a token from the cache is not saved back"
    assert infos == [cached.info(from_cache=True)]
    assert core.info() == cached.info(from_cache=True)


def test_a_cached_token_due_for_renewal_is_not_taken() -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    due = Token(access_token="due", expires_at=clock.now + 60, obtained_at=clock.now - 3540)
    cache.put(core, due)
    held, steps = run(core.renew(), [ok("at-1")])
    assert held.access_token == "at-1" and len(requests_of(steps)) == 1


def test_the_next_day_a_fresh_process_uses_the_cached_refresh_token() -> None:
    """The cron job case: the cached access token has expired, its refresh token
    has not; a new process refreshes instead of sending the password."""
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    yesterday = Token(
        access_token="old", expires_at=clock.now - 80000, obtained_at=clock.now - 83600,
        refresh_token="rt-yesterday",
    )  # fmt: skip
    cache.put(core, yesterday)
    held, steps = run(core.renew(), [ok("at-today", refresh="rt-today")])
    (request,) = requests_of(steps)
    assert form(request)["grant_type"] == "refresh_token"
    assert form(request)["refresh_token"] == "rt-yesterday"
    assert cache.token(core) == held and held.refresh_token == "rt-today"


def test_a_newer_refresh_token_written_by_another_process_is_used() -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    run(core.renew(), [ok("at-1", refresh="rt-1")])
    clock.now += 3600  # expired
    rotated = Token(
        access_token="at-other", expires_at=clock.now - 1, obtained_at=clock.now - 100,
        refresh_token="rt-rotated",
    )  # fmt: skip
    cache.put(core, rotated)  # newer than ours, spent, with a newer refresh token
    _, steps = run(core.renew(), [ok("at-2")])
    assert form(requests_of(steps)[0])["refresh_token"] == "rt-rotated"


def test_a_cached_token_no_newer_than_ours_is_ignored() -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    run(core.renew(), [ok("at-1", refresh="rt-1")])
    old = Token(
        access_token="at-0", expires_at=clock.now - 1, obtained_at=clock.now - 100,
        refresh_token="rt-0",
    )  # fmt: skip
    cache.put(core, old)
    clock.now += 3600
    _, steps = run(core.renew(), [ok("at-2")])
    assert form(requests_of(steps)[0])["refresh_token"] == "rt-1"


def test_a_cache_that_fails_is_left_alone_for_thirty_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()

    class Failing(RecordingCache):
        def load(self, key: str) -> str | None:
            self.calls.append("load")
            raise OSError("disk on fire")

    cache = Failing()
    core = make_core(clock, cache=cache)
    with caplog.at_level("WARNING", logger="semansys_auth"):
        first, _ = run(core.renew(), [ok("at-1")])
        clock.now += 29.9
        second, _ = run(core.renew(first.authorization), [ok("at-2")])
        core.cache_use.failed("save", OSError("again"))
    assert cache.calls == ["load"], "no save, no second load: the cache rests"
    assert caplog.messages == [
        "token cache load failed: OSError: disk on fire; going on without the cache for 30 s"
    ], "one warning per pause"
    clock.now += 30.0  # exactly 30 s after the last failure: tried, and warned of, again
    with caplog.at_level("WARNING", logger="semansys_auth"):
        run(core.renew(second.authorization), [ok("at-3")])
    assert cache.calls == ["load", "load"]
    assert len(caplog.messages) == 2


def test_a_cache_that_returns_something_else_is_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Odd(RecordingCache):
        def load(self, key: str) -> Any:
            return {"access_token": "x"}

    core = make_core(Clock(), cache=Odd())
    with caplog.at_level("WARNING", logger="semansys_auth"):
        held, _ = run(core.renew(), [ok()])
    assert held.access_token == "at-1"
    assert caplog.messages == [
        "token cache load failed: TypeError: it returned a dict, not the entry it was given; "
        "going on without the cache for 30 s"
    ]


def test_a_failing_save_and_callback_are_warnings(caplog: pytest.LogCaptureFixture) -> None:
    class NoSave(RecordingCache):
        def save(self, key: str, entry: str) -> None:
            raise OSError("read-only")

    def explode(info: Any) -> None:
        raise RuntimeError("metrics down pa55word")

    core = make_core(Clock(), cache=NoSave(), on_token=explode)
    with caplog.at_level("WARNING", logger="semansys_auth"):
        held, _ = run(core.renew(), [ok()])
    assert held.access_token == "at-1"
    assert caplog.messages == [
        "token cache save failed: OSError: read-only; going on without the cache for 30 s",
        "on_token callback raised RuntimeError: metrics down ***; ignored",
    ]


def test_the_callback_hears_of_every_new_token() -> None:
    clock = Clock()
    infos: list[Any] = []
    core = make_core(clock, on_token=infos.append)
    first, _ = run(core.renew(), [ok("at-1")])
    clock.now += 4000
    second, _ = run(core.renew(), [ok("at-2")])
    assert infos == [first.info(), second.info()]
    assert [info.grant_type for info in infos] == ["password", "refresh_token"]


class LockLog:
    """A cache lock that records what is done with it."""

    def __init__(self, log: list[str], free: bool = True) -> None:
        self.log = log
        self.free = free

    def acquire(self, timeout: float) -> bool:
        self.log.append(f"acquire({timeout:g})")
        return self.free

    def release(self) -> None:
        self.log.append("release")


def test_the_cache_lock_is_held_around_the_cache_and_the_token_request() -> None:
    log: list[str] = []

    class Lockable(RecordingCache):
        def lock(self, key: str) -> LockLog:
            log.append(f"lock({key == core.cache_key()})")
            return LockLog(log)

        def load(self, key: str) -> str | None:
            log.append("load")
            return super().load(key)

        def save(self, key: str, entry: str) -> None:
            log.append("save")
            super().save(key, entry)

    core = make_core(Clock(), cache=Lockable())
    _, steps = run(core.renew(), [ok()])
    assert log == ["lock(True)", "acquire(0)", "load", "save", "release"]
    kinds = [type(step).__name__ for step in steps]
    assert kinds == [
        "DeriveKeys", "LockCache", "LoadCache", "EndpointRequest", "SaveCache", "UnlockCache",
    ]  # fmt: skip
    plain = make_core(Clock(), cache=RecordingCache())
    _, steps = run(plain.renew(), [ok()])
    assert [type(step).__name__ for step in steps] == [
        "DeriveKeys", "LoadCache", "EndpointRequest", "SaveCache",
    ]  # fmt: skip
    _, steps = run(make_core(Clock()).renew(), [ok()])
    assert [type(step).__name__ for step in steps] == ["EndpointRequest"]


def test_a_busy_cache_lock_is_tried_until_the_cache_wait_then_renewed_without(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log: list[str] = []

    class Busy(RecordingCache):
        def lock(self, key: str) -> LockLog:
            return LockLog(log, free=False)

    core = make_core(clock, cache=Busy(), cache_wait=0.05)
    flow = core.renew()
    sleeps: list[float] = []
    step = next(flow)
    shell = Shell(core)
    while not isinstance(step, EndpointRequest):
        if isinstance(step, Sleep):
            sleeps.append(step.seconds)
            clock.now += step.seconds
        step = flow.send(step.run(shell, None) if isinstance(step, Blocking) else None)
    assert sleeps == [0.001, 0.002, 0.004, 0.008, 0.016, 0.032]
    assert log == ["acquire(0)"] * 7
    assert caplog.messages == ["token cache lock not obtained within 0 s: renewing without it"]


def test_a_busy_cache_lock_ends_an_advisory_renewal_for_a_moment() -> None:
    clock = Clock()
    log: list[str] = []
    free = [True]

    class Busy(RecordingCache):
        def lock(self, key: str) -> LockLog:
            return LockLog(log, free=free[0])

    core = make_core(clock, cache=Busy())
    first, _ = run(core.renew(), [ok()])
    free[0] = False
    clock.now += 3550
    kept, _ = run(core.renew(advisory=True), [])
    assert kept is first and log == ["acquire(0)", "release", "acquire(0)"]
    assert core.due() == (Due.NOT_DUE, first), "another process renews: not tried again at once"
    clock.now += 0.05
    assert core.due() == (Due.ADVISORY, first)


def test_a_cache_lock_that_fails_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    class Unlockable(RecordingCache):
        def lock(self, key: str) -> Any:
            raise OSError("no lock today")

    core = make_core(Clock(), cache=Unlockable())
    with caplog.at_level("WARNING", logger="semansys_auth"):
        held, steps = run(core.renew(), [ok()])
    assert held.access_token == "at-1"
    assert [type(step).__name__ for step in steps] == [
        "DeriveKeys", "LockCache", "EndpointRequest",
    ]  # fmt: skip
    assert caplog.messages == [
        "token cache lock failed: OSError: no lock today; going on without the cache for 30 s"
    ]


# -- 401 -------------------------------------------------------------------------------------


def test_which_401_calls_for_a_resend() -> None:
    clock = Clock()
    core = make_core(clock)
    run(core.renew(), [ok("at-1")])
    what = "GET /api/x"
    assert core.refused(401, lambda: ("Bearer at-1", True, what)) == "Bearer at-1"
    assert core.refused(403, lambda: ("Bearer at-1", True, what)) is None
    assert core.refused(200, lambda: ("Bearer at-1", True, what)) is None
    assert core.refused(401, lambda: ("Bearer other", True, what)) is None
    assert core.refused(401, lambda: (None, True, what)) is None
    assert core.refused(401, lambda: ("Bearer at-1", False, what)) is None
    run(core.renew("Bearer at-1"), [ok("at-2")])
    ours = core.refused(401, lambda: ("Bearer at-1", True, what))
    assert ours == "Bearer at-1", "an earlier token of ours"


def test_only_the_last_eight_tokens_are_ours() -> None:
    clock = Clock()
    core = make_core(clock)
    for i in range(9):
        run(core.renew(f"Bearer at-{i - 1}"), [ok(f"at-{i}")])
    assert core.refused(401, lambda: ("Bearer at-1", True, "GET /")) == "Bearer at-1"
    assert core.refused(401, lambda: ("Bearer at-0", True, "GET /")) is None


# -- what the core shows -------------------------------------------------------------------------


def test_new_tokens_are_taught_to_the_redactor() -> None:
    core = make_core(Clock())
    run(core.renew(), [ok("opaque-access-7", refresh="opaque-refresh-7")])
    assert core.endpoint.redact("a opaque-access-7 b opaque-refresh-7") == "a *** b ***"


def test_describe_and_info() -> None:
    core = make_core(Clock(), scope="read")
    assert core.info() is None
    assert core.describe() == (
        f"token_url='{URL}', client_id='cid', username='j***@example.com', scope='read'"
    )
    held, _ = run(core.renew(), [ok()])
    assert core.info() == held.info()


def test_the_renewal_budget_covers_every_attempt_and_wait() -> None:
    from semansys_auth._core import Policy

    policy = Policy(
        leeway=60, max_retries=3, backoff=0.5, max_backoff=8, retry_after_cap=30,
        credentials_cooldown=60,
    )  # fmt: skip
    assert policy.renewal_budget(30) == 30 * 4 * 2 + 3 * 30
    policy.max_backoff = 50
    assert policy.renewal_budget(10) == 10 * 4 * 2 + 3 * 50


# -- the edges, to the microsecond (found by mutation testing) -----------------------------------


def test_renew_is_required_unless_told_otherwise() -> None:
    """Called without ``required``, a renewal in the early window still retries."""
    clock = Clock()
    core = make_core(clock, max_retries=2)
    first, _ = run(core.renew(), [ok()])
    clock.now += 3550
    kept, steps = run(core.renew(), [answer(503, {})] * 3)
    assert kept is first and len(requests_of(steps)) == 3


def test_at_the_end_of_validity_an_early_renewal_becomes_required() -> None:
    clock = Clock()
    core = make_core(clock, max_retries=2)
    run(core.renew(), [ok(expires_in=100)])
    clock.now += 95  # valid until exactly here
    answers: list[EndpointResponse | Exception] = [answer(503, {})] * 3
    with pytest.raises(TokenEndpointUnavailableError):
        run(core.renew(advisory=True), answers)
    assert answers == [], "retried as a required renewal"


def test_an_early_renewal_that_fails_exactly_at_the_end_of_validity_raises() -> None:
    clock = Clock()
    core = make_core(clock)
    run(core.renew(), [ok(expires_in=100)])
    clock.now += 94
    flow = core.renew(advisory=True)
    assert isinstance(next(flow), EndpointRequest)
    clock.now += 1  # the answer comes at exactly the end of validity
    with pytest.raises(TokenEndpointUnavailableError):
        flow.send(answer(503, {}))


def test_retry_delays_have_random_jitter_by_default() -> None:
    clock = Clock()
    core = make_core(clock, jitter=None, max_retries=3, backoff=1.0)
    _, steps = run(core.renew(), [answer(503, {})] * 3 + [ok()])
    delays = [step.seconds for step in steps if isinstance(step, Sleep)]
    assert len(delays) == 3
    for delay, base in zip(delays, (1.0, 2.0, 4.0), strict=True):
        assert base / 2 <= delay <= base


def test_a_half_second_token_is_reused_for_a_quarter_second() -> None:
    clock = Clock()
    core = make_core(clock)
    held, _ = run(core.renew(), [ok(expires_in=0.5)])
    clock.now += 0.2
    assert core.usable() is held
    clock.now += 0.1
    assert core.usable() is None


def test_a_cached_token_as_old_as_ours_is_not_taken() -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    ours, _ = run(core.renew(), [ok("at-1")])
    clock.now += 3550  # renewal due
    twin = Token(access_token="at-twin", expires_at=clock.now + 7200, obtained_at=ours.obtained_at)
    cache.put(core, twin)
    renewed, steps = run(core.renew(), [ok("at-2")])
    assert renewed.access_token == "at-2" and len(requests_of(steps)) == 1


def test_after_a_401_the_cache_does_not_give_the_refused_token_back() -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    refused, _ = run(core.renew(), [ok("at-1")])
    assert cache.token(core) == refused
    renewed, steps = run(core.renew(refused.authorization), [ok("at-2")])
    assert renewed.access_token == "at-2" and len(requests_of(steps)) == 1


def test_an_exception_in_a_message_is_cut_at_300_characters() -> None:
    core = make_core(Clock())
    shown = core.redacted(RuntimeError("pa55word " + "x" * 1000))
    assert len(shown) == 300 and shown.startswith("RuntimeError: *** xxx") and shown[-1] == "…"


def test_the_debug_log_says_how_long_a_token_has_left(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    cache.put(core, Token(access_token="no-expiry", expires_at=None, obtained_at=1))
    with caplog.at_level("DEBUG", logger="semansys_auth"):
        run(core.renew(), [])
    assert "token taken from the cache (expiry unknown)" in caplog.messages
    other = make_core(clock)
    run(other.renew(), [ok()])
    clock.now += 3550
    with caplog.at_level("DEBUG", logger="semansys_auth"):
        run(other.renew(advisory=True), [ok("at-2")])
    assert "token expires in 50 s: renewing it early" in caplog.messages


def test_a_lock_free_look_at_the_cache() -> None:
    """``cached()``: a fresh cached token, or None; never a token request."""
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    nothing, steps = run(core.cached(), [])
    assert nothing is None and [type(step).__name__ for step in steps] == [
        "DeriveKeys",
        "LoadCache",
    ]
    fresh = Token(access_token="from-cache", expires_at=clock.now + 3600, obtained_at=clock.now)
    cache.put(core, fresh)
    held, steps = run(core.cached(), [])
    assert held == fresh and requests_of(steps) == [] and core.usable() is held
    clock.now += 3540  # due for renewal: not taken
    core = make_core(clock, cache=cache)
    assert run(core.cached(), [])[0] is None
