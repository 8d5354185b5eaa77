"""The token core driven by hand, for the tests of the core and of the shell:
two fake clocks, a core with test options, a fake shell, and a driver that
answers the core's effects from a list."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from semansys_auth._core import TokenCore
from semansys_auth._effects import Blocking, Detach, Lock, ReleaseLock, Sleep, TakeLock
from semansys_auth._endpoint import TokenEndpoint
from semansys_auth._entry import seal
from semansys_auth._policy import Policy
from semansys_auth._token import Token
from semansys_auth._wire import EndpointRequest, EndpointResponse
from token_parts import answer

URL = "https://id.example/connect/token"


class Clock:
    """The core's two clocks. ``now`` is the wall clock (epoch seconds); moving
    it moves the monotonic clock too, which counts from another origin, as a
    real one does (so that a mix-up of the two is seen). :meth:`step` moves the
    wall clock alone: NTP, or a machine that slept while the monotonic clock
    stood still."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.stepped = 0.0

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - self.stepped - 990_000.0

    def step(self, seconds: float) -> None:
        self.now += seconds
        self.stepped += seconds


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
    options.setdefault("jitter", lambda: 1.0)
    return TokenCore(endpoint, Policy(**policy), clock=clock, monotonic=clock.monotonic, **options)


class Shell:
    """What the drivers carry effects out with, for one core, in this thread:
    its cache and callback, and a renewal lock that is always free."""

    def __init__(self, core: TokenCore) -> None:
        self.endpoint = core.endpoint
        self.cache = core.cache
        self.on_token = core.on_token
        self.lock = self
        self.cache_lock: Any = None

    def try_cache(self, holder: object, cache: Any, key: str) -> bool:
        lock = cache.lock(key)
        got = bool(lock.acquire(0))
        if got:
            self.cache_lock = lock
        return got

    def release_cache(self, holder: object) -> None:
        lock, self.cache_lock = self.cache_lock, None
        if lock is not None:
            lock.release()


def ok(
    access: str = "at-1", expires_in: Any = 3600, refresh: str | None = "rt-1"
) -> EndpointResponse:
    body: dict[str, Any] = {"access_token": access, "token_type": "bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    if refresh:
        body["refresh_token"] = refresh
    return answer(200, body)


def sealed(core: TokenCore, token: Token) -> str:
    """``token`` as the core stores it: sealed under its keys."""
    return seal(core.cache_key(), core.sealing_key(), token)


def run(
    flow: Generator[Any, Any, Any], answers: list[EndpointResponse | Exception]
) -> tuple[Any, list[Any]]:
    """Drive the core as a driver would: answer its token requests from
    ``answers`` (an exception is thrown in, as a transport failure is), carry
    out its other effects (throwing in what they raise: the renewal lock is
    always free); record what it yielded."""
    # The core whose generator this is (under mutmut, the generator of its
    # trampoline, which holds the arguments as ``args``).
    frame = flow.gi_frame.f_locals
    shell = Shell(frame["self"] if "self" in frame else frame["args"][0])
    yielded: list[Any] = []
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.throw(error) if error is not None else flow.send(result)
        except StopIteration as done:
            return done.value, yielded
        yielded.append(step)
        result, error = None, None
        if isinstance(step, EndpointRequest):
            reply = answers.pop(0)
            if isinstance(reply, Exception):
                error = reply
            else:
                result = reply
        elif isinstance(step, Blocking):
            try:
                result = step.run(shell, None)
            except Exception as exc:
                error = exc
        elif isinstance(step, TakeLock):
            result = Lock.TAKEN
        else:
            assert isinstance(step, (Sleep, Detach, ReleaseLock)), step


def requests_of(steps: list[Any]) -> list[EndpointRequest]:
    return [step for step in steps if isinstance(step, EndpointRequest)]
