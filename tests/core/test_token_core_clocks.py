"""The wall clock, in the token core with two fake clocks: every
decision inside the process runs on the monotonic clock; the wall clock only
exchanges expiry times with caches and servers. A wall clock set back (NTP, a
VM's clock) never makes an expired token look valid; a wall clock that jumps
ahead while the monotonic one stood still (the machine slept) ends the token
too. (Every client, with the core's wall clock stepped for real:
test_clock_steps.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from core_parts import Clock, make_core, ok, requests_of, run
from semansys_auth import MemoryTokenCache, Token, UserCredentialsError
from semansys_auth._policy import Due
from token_parts import answer

HOUR = 3600.0

# A token of 3600 s adopted at the start: renewal due after 3540 s, sent until 3595 s.
RENEW_AFTER = 3540.0
VALID_FOR = 3595.0


def set_wall(clock: Clock, value: float) -> None:
    """Set the wall clock alone, exactly."""
    clock.stepped += value - clock.now
    clock.now = value


def adopted(clock: Clock, **options: Any) -> tuple[Any, Token, float]:
    core = make_core(clock, **options)
    token, _ = run(core.renew(), [ok("at-1")])
    return core, token, clock.now


def test_a_wall_clock_set_back_does_not_extend_the_token() -> None:
    clock = Clock()
    core, token, start = adopted(clock)
    clock.step(-HOUR)  # the wall clock now says the token has 2 hours left
    clock.now += RENEW_AFTER - 0.001
    assert core.usable() is token and core.due() == (Due.NOT_DUE, token)
    clock.now = start - HOUR + RENEW_AFTER  # the monotonic renewal time, exactly
    assert core.usable() is None and core.due() == (Due.ADVISORY, token)
    clock.now = start - HOUR + VALID_FOR - 0.001
    assert core.due() == (Due.ADVISORY, token)
    clock.now = start - HOUR + VALID_FOR  # the monotonic end, exactly
    assert core.usable() is None and core.due() == (Due.MANDATORY, None)
    clock.step(-10 * HOUR)  # however far back it goes
    assert core.due() == (Due.MANDATORY, None)


def test_a_wall_clock_that_jumps_ahead_ends_the_token_though_the_monotonic_clock_did_not_move() -> (
    None
):
    """A laptop or VM that slept: Linux's monotonic clock stood still, the wall
    clock (set right on resume) says how much time passed."""
    clock = Clock()
    core, token, start = adopted(clock)
    set_wall(clock, start + RENEW_AFTER - 0.001)
    assert core.usable() is token and core.due() == (Due.NOT_DUE, token)
    set_wall(clock, start + RENEW_AFTER)
    assert core.usable() is None and core.due() == (Due.ADVISORY, token)
    set_wall(clock, start + VALID_FOR - 0.001)
    assert core.due() == (Due.ADVISORY, token)
    set_wall(clock, start + VALID_FOR)
    assert core.due() == (Due.MANDATORY, None)


def test_a_renewal_rechecks_with_both_clocks() -> None:
    clock = Clock()
    core, token, _start = adopted(clock)
    clock.step(-HOUR)
    clock.now += RENEW_AFTER - 1
    again, steps = run(core.renew(), [])
    assert again is token and steps == [], "fresh by both clocks: nothing sent"
    clock.now += 1  # due by the monotonic clock only
    renewed, steps = run(core.renew(), [ok("at-2")])
    assert renewed.access_token == "at-2" and len(requests_of(steps)) == 1
    # And due by the wall clock only:
    set_wall(clock, clock.now + 100 * HOUR)
    third, steps = run(core.renew(), [ok("at-3")])
    assert third.access_token == "at-3" and len(requests_of(steps)) == 1


def test_an_early_renewal_keeps_the_token_until_its_monotonic_end() -> None:
    clock = Clock()
    core, token, _start = adopted(clock)
    clock.step(-HOUR)
    clock.now += RENEW_AFTER + 10  # due; 45 s left by the monotonic clock
    kept, _ = run(core.renew(advisory=True), [answer(503, {})])
    assert kept is token
    assert core.due() == (Due.NOT_DUE, token), "the next try waits 1 s"
    clock.step(-HOUR)  # the monotonic wait is not lengthened by the wall clock
    clock.now += 1
    assert core.due() == (Due.ADVISORY, token)


@pytest.mark.parametrize("late", ["monotonic", "wall"])
def test_a_failure_after_the_token_ended_by_either_clock_is_raised(late: str) -> None:
    clock = Clock()
    core, _token, start = adopted(clock)
    clock.now += RENEW_AFTER + 10
    flow = core.renew(advisory=True)
    assert next(flow).grant_type == "refresh_token"
    if late == "monotonic":
        clock.step(-HOUR)
        clock.now += VALID_FOR - RENEW_AFTER - 10  # the monotonic end, exactly
    else:
        set_wall(clock, start + VALID_FOR)
    with pytest.raises(Exception, match="unavailable"):
        flow.send(answer(503, {}))


def test_the_early_renewal_warning_counts_monotonic_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    core, _token, _start = adopted(clock)
    clock.step(-HOUR)
    clock.now += RENEW_AFTER + 10
    with caplog.at_level("WARNING", logger="semansys_auth"):
        run(core.renew(advisory=True), [answer(503, {})])
    assert "the current token stays in use for 45 s more, next try in 1 s" in caplog.messages[-1]


def test_the_credentials_cooldown_runs_on_the_monotonic_clock() -> None:
    clock = Clock()
    core = make_core(clock, credentials_cooldown=60.0)
    with pytest.raises(UserCredentialsError):
        run(core.renew(), [answer(403, {"error": "invalid_grant"})])
    clock.step(10 * HOUR)  # the wall clock jumps a day ahead: still cooling down
    with pytest.raises(UserCredentialsError, match="another 60 s") as caught:
        run(core.renew(), [])
    assert caught.value.retry_after == 60.0
    clock.step(-20 * HOUR)
    clock.now += 59.5
    with pytest.raises(UserCredentialsError, match="another 1 s"):
        run(core.renew(), [])
    clock.now += 0.5
    token, steps = run(core.renew(), [ok("at-1")])
    assert token.access_token == "at-1" and len(requests_of(steps)) == 1


class CountingCache(MemoryTokenCache):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def load(self, key: str) -> Token | None:
        self.loads += 1
        return super().load(key)


def test_the_cache_pause_runs_on_the_monotonic_clock() -> None:
    clock = Clock()
    cache = CountingCache()
    core = make_core(clock, cache=cache)
    core.cache_use.failed("load", OSError("disk gone"))  # the cache is left alone for 30 s
    clock.step(10 * HOUR)  # a wall-clock jump ends nothing
    assert run(core.cached(), []) == (None, []) and cache.loads == 0
    clock.step(-20 * HOUR)
    clock.now += 29.5
    run(core.cached(), [])
    assert cache.loads == 0
    clock.now += 0.5
    run(core.cached(), [])
    assert cache.loads == 1


def test_a_cached_token_is_judged_by_the_wall_clock_then_kept_by_the_monotonic_one() -> None:
    """Cache entries carry wall-clock times (other processes wrote them); once
    adopted, the token's end no longer moves with the wall clock."""
    clock = Clock()
    cache = MemoryTokenCache()
    writer = make_core(clock, cache=cache)
    run(writer.renew(), [ok("at-1")])
    start = clock.now
    clock.now += 100
    reader = make_core(clock, cache=cache)
    token, steps = run(reader.renew(), [])
    assert token.access_token == "at-1" and requests_of(steps) == []
    assert reader.info() is not None and reader.info().obtained_at == start  # wall, as stored
    clock.step(-HOUR)
    clock.now = start - HOUR + VALID_FOR - 0.5
    assert reader.due() == (Due.ADVISORY, token)
    clock.now = start - HOUR + VALID_FOR
    assert reader.due() == (Due.MANDATORY, None)
