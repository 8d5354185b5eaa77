"""The core's renewal generator, effect by effect: the whole rule from "is a
renewal due" through the renewal lock to the token endpoint, compared as data."""

from __future__ import annotations

from typing import Any

import pytest

from core_parts import Clock, make_core, ok
from semansys_auth import TokenEndpointUnavailableError, UserCredentialsError
from semansys_auth._effects import (
    DeriveKeys,
    Detach,
    LoadCache,
    Lock,
    NotifyToken,
    ReleaseLock,
    SaveCache,
    Sleep,
    TakeLock,
)
from semansys_auth._policy import Due
from semansys_auth._wire import EndpointRequest
from token_parts import answer


def test_effects_are_immutable_values_that_show_no_secret() -> None:
    assert Sleep(1.5) == Sleep(1.5) and Sleep(1.5) != Sleep(2.0) and Sleep(0) != TakeLock(0)
    assert hash(TakeLock(3.0)) == hash(TakeLock(3.0))
    assert {ReleaseLock(), ReleaseLock(), DeriveKeys()} == {ReleaseLock(), DeriveKeys()}
    assert repr(TakeLock(0.0)) == "TakeLock(wait=0.0)"
    assert repr(SaveCache("k", "sealed")) == "SaveCache(entry='sealed', key='k')"
    with pytest.raises(AttributeError, match="immutable"):
        Sleep(1).seconds = 2  # type: ignore[misc]


def test_a_first_token_takes_the_lock_requests_and_releases() -> None:
    infos: list[Any] = []
    core = make_core(Clock(), on_token=infos.append)
    flow = core.renewal()
    assert next(flow) == TakeLock(core.lock_wait)
    request = flow.send(Lock.TAKEN)
    assert isinstance(request, EndpointRequest) and request.grant_type == "password"
    notify = flow.send(ok("at-1"))
    assert isinstance(notify, NotifyToken) and notify.info.grant_type == "password"
    assert flow.send(None) == ReleaseLock()
    with pytest.raises(StopIteration) as done:
        flow.send(None)
    assert done.value.value.access_token == "at-1"


def test_a_fresh_token_is_returned_with_no_effect() -> None:
    core = make_core(Clock())
    first = _first_token(core)
    with pytest.raises(StopIteration) as done:
        next(core.renewal())
    assert done.value.value is first


def _first_token(core: Any, access: str = "at-1") -> Any:
    flow = core.renewal()
    effects = [next(flow), flow.send(Lock.TAKEN)]
    assert effects[0] == TakeLock(core.lock_wait)
    assert flow.send(ok(access)) == ReleaseLock()
    with pytest.raises(StopIteration) as done:
        flow.send(None)
    return done.value.value


def test_a_waiter_goes_on_with_the_token_of_the_renewal_it_waited_for() -> None:
    """No turn at the lock: ENDED, a look at the token, and it is there."""
    core = make_core(Clock())
    waiter = core.renewal()
    assert next(waiter) == TakeLock(core.lock_wait)
    first = _first_token(core)  # the renewal the waiter waited for
    with pytest.raises(StopIteration) as done:
        waiter.send(Lock.ENDED)
    assert done.value.value is first


def test_a_waiter_raises_the_error_of_the_renewal_it_waited_for() -> None:
    core = make_core(Clock())
    waiter = core.renewal()
    assert next(waiter) == TakeLock(core.lock_wait)
    renewer = core.renewal()
    next(renewer)
    renewer.send(Lock.TAKEN)
    assert renewer.send(answer(400, {"error": "invalid_grant"})) == ReleaseLock()
    with pytest.raises(UserCredentialsError) as failed:
        renewer.send(None)
    with pytest.raises(UserCredentialsError) as shared:
        waiter.send(Lock.ENDED)
    assert shared.value is not failed.value, "each caller raises its own exception"
    assert str(shared.value) == str(failed.value)


def test_a_waiter_shares_a_transport_failure_as_an_unavailable_endpoint() -> None:
    """A failure of the renewing caller's HTTP library (which may not be the
    waiter's) reaches the waiters as an unavailable endpoint, caused by it: they
    do not each try again, one after the other."""
    core = make_core(Clock())
    waiter = core.renewal()
    next(waiter)
    renewer = core.renewal()
    next(renewer)
    renewer.send(Lock.TAKEN)
    down = ConnectionError("down")
    assert renewer.throw(down) == ReleaseLock()
    with pytest.raises(ConnectionError):
        renewer.send(None)
    with pytest.raises(TokenEndpointUnavailableError, match="waited for failed") as shared:
        waiter.send(Lock.ENDED)
    assert shared.value.__cause__ is down
    assert "ConnectionError: down" in str(shared.value)


def test_a_waiter_after_a_closed_renewal_renews_itself() -> None:
    """A renewal closed without an outcome (its caller was cancelled, or
    httpx closed the flow on a transport error): the waiter tries itself."""
    core = make_core(Clock())
    waiter = core.renewal()
    next(waiter)
    renewer = core.renewal()
    next(renewer)
    renewer.send(Lock.TAKEN)
    renewer.close()
    assert waiter.send(Lock.ENDED) == TakeLock(core.lock_wait)
    assert isinstance(waiter.send(Lock.TAKEN), EndpointRequest)


def test_an_advisory_failure_is_not_handed_to_anyone() -> None:
    clock = Clock()
    core = make_core(clock)
    _first_token(core)
    clock.now += 3550
    flow = core.renewal()
    next(flow)
    flow.send(None)
    flow.send(Lock.TAKEN)
    flow.throw(ConnectionError("down"))
    assert core._failure is None


def test_a_renewal_that_outlasts_the_wait_limit_is_an_error() -> None:
    core = make_core(Clock())
    flow = core.renewal()
    next(flow)
    with pytest.raises(TokenEndpointUnavailableError, match="gave up waiting"):
        flow.send(Lock.BUSY)


def test_an_advisory_renewal_is_offered_to_the_background_then_tried_without_waiting() -> None:
    clock = Clock()
    core = make_core(clock)
    first = _first_token(core)
    clock.now += 3550
    assert core.due() == (Due.ADVISORY, first)
    flow = core.renewal()
    assert next(flow) == Detach(first)
    assert flow.send(None) == TakeLock(0.0)
    request = flow.send(Lock.TAKEN)
    assert isinstance(request, EndpointRequest) and request.grant_type == "refresh_token"
    assert flow.send(ok("at-2")) == ReleaseLock()
    with pytest.raises(StopIteration) as done:
        flow.send(None)
    assert done.value.value.access_token == "at-2"


def test_an_advisory_renewal_under_way_elsewhere_is_not_tried_again_at_once() -> None:
    clock = Clock()
    core = make_core(clock)
    first = _first_token(core)
    clock.now += 3550
    flow = core.renewal()
    next(flow)
    flow.send(None)
    with pytest.raises(StopIteration) as done:
        flow.send(Lock.BUSY)
    assert done.value.value is first
    assert core.due() == (Due.NOT_DUE, first)
    clock.now += 0.05
    assert core.due() == (Due.ADVISORY, first)


def test_an_advisory_failure_keeps_the_token_and_releases_the_lock() -> None:
    clock = Clock()
    core = make_core(clock)
    first = _first_token(core)
    clock.now += 3550
    flow = core.renewal()
    next(flow)
    flow.send(None)
    flow.send(Lock.TAKEN)
    assert flow.send(answer(503, {})) == ReleaseLock(), "tried once: no Sleep"
    with pytest.raises(StopIteration) as done:
        flow.send(None)
    assert done.value.value is first


def test_a_401_renewal_with_the_cache() -> None:
    """The whole sequence with a cache, compared as data."""
    from fake_caches import RecordingCache

    core = make_core(Clock(), cache=RecordingCache())
    flow = core.renewal()
    assert next(flow) == TakeLock(core.lock_wait)
    assert flow.send(Lock.TAKEN) == DeriveKeys()
    keys = core.endpoint.cache_keys()
    assert flow.send(keys) == LoadCache(keys[0])
    assert isinstance(flow.send(None), EndpointRequest)
    save = flow.send(ok("at-1"))
    assert isinstance(save, SaveCache) and save.key == keys[0] and "at-1" not in save.entry
    assert flow.send(None) == ReleaseLock()
    with pytest.raises(StopIteration):
        flow.send(None)
    refused = core.renewal("Bearer at-1")
    assert next(refused) == TakeLock(core.lock_wait)
    assert refused.send(Lock.TAKEN) == LoadCache(keys[0]), "keys derived once"
