"""Fork safety: a child of ``os.fork()`` (gunicorn ``--preload``,
Celery, ``multiprocessing`` with the fork start method) must never wait for a
lock held by a thread that does not exist there, nor believe that a renewal runs
in such a thread. Real forks, a real emulator; every child runs under SIGALRM
and the parent kills it if it outlives its bound."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
from forking import InFlight, fork, request, wait_for_pending_token_request

from semansys_auth import MemoryTokenCache, SemansysAuth
from semansys_auth.testing import SemansysEmulator

pytestmark = pytest.mark.skipif(
    not hasattr(__import__("os"), "fork"), reason="no os.fork on this platform"
)

CHILD_LIMIT = 5.0  # a child that needs a token gets one within this, or is killed
KINDS = ["requests", "httpx", "httpx-async"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_a_fork_during_the_first_request_leaves_the_child_able_to_fetch(
    semansys_emulator: SemansysEmulator, kind: str
) -> None:
    """Another thread is waiting for the first token (the lock is held) when the
    process forks: the child fetches its own token at once."""
    emulator = semansys_emulator
    emulator.token_delay = 3.0
    auth = emulator.auth()
    flight = InFlight(kind, auth, emulator.api_url + "/parent")
    wait_for_pending_token_request(emulator)
    emulator.token_delay = 0.0  # the parent's request still takes its 3 s

    def child() -> tuple[int, float]:
        started = time.monotonic()
        status = request(kind, auth, emulator.api_url + "/child")
        return status, time.monotonic() - started

    status, took = fork(child, limit=CHILD_LIMIT)
    assert status == 200
    assert took < 2.0  # not the parent's 3 s, nor the fetch budget
    assert flight.join() == 200
    assert len(emulator.token_requests()) == 2  # the parent's and the child's


def _hold(lock: Any, entered: threading.Event, leave: threading.Event) -> None:
    with lock:
        entered.set()
        leave.wait(30)


def _adapters_guard(auth: Any, cache: MemoryTokenCache) -> Any:
    return auth._adapters_guard


def _renewal_lock_state(auth: Any, cache: MemoryTokenCache) -> Any:
    return auth._shell.lock._state


def _background_guard(auth: Any, cache: MemoryTokenCache) -> Any:
    return auth._shell._guard


def _memory_cache_lock(auth: Any, cache: MemoryTokenCache) -> Any:
    return cache._lock


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "which",
    [_adapters_guard, _renewal_lock_state, _background_guard, _memory_cache_lock],
    ids=["adapters", "renewal-state", "background-guard", "memory-cache"],
)
def test_a_fork_while_another_thread_is_inside_a_guarded_step_leaves_the_child_free(
    semansys_emulator: SemansysEmulator, which: Callable[[Any, MemoryTokenCache], Any]
) -> None:
    """Each short lock of the package, held by another thread at the moment of
    the fork (choosing an adapter, the renewal lock's own state, starting a
    background renewal, the cache): the child makes a first request, sync and async."""
    cache = MemoryTokenCache()
    auth = semansys_emulator.auth(token_cache=cache)
    entered, leave = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(which(auth, cache), entered, leave))
    holder.start()
    try:
        assert entered.wait(10)

        def child() -> list[int]:
            url = semansys_emulator.api_url + "/child"
            return [request("requests", auth, url), request("httpx-async", auth, url)]

        assert fork(child, limit=CHILD_LIMIT) == [200, 200]
    finally:
        leave.set()
        holder.join(10)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("starting", [False, True], ids=["under-way", "and-another-starting"])
def test_a_child_does_not_wait_for_the_parents_background_renewal(
    semansys_emulator: SemansysEmulator, starting: bool
) -> None:
    """requests renews early in a background thread. A fork while that thread
    waits for the token endpoint (and, with ``starting``, while another thread
    is starting a renewal thread): the child renews in its own thread."""
    emulator = semansys_emulator
    emulator.access_token_lifetime = 8  # renewed from 4 s on, sent until 7.2 s
    auth = emulator.auth()
    with requests.Session() as session:
        session.auth = auth
        assert session.get(emulator.api_url + "/first", timeout=10).status_code == 200
        first = auth.token_info
        assert first is not None
        time.sleep(max(first.obtained_at + 4.2 - time.time(), 0))
        emulator.token_delay = 4.0
        # The current token is still sent; the renewal starts in the background.
        assert session.get(emulator.api_url + "/renew", timeout=10).status_code == 200
        wait_for_pending_token_request(emulator)
        emulator.token_delay = 0.0
    entered, leave = threading.Event(), threading.Event()
    if starting:
        threading.Thread(target=_hold, args=(auth._shell._guard, entered, leave)).start()
        assert entered.wait(10)

    def child() -> float:
        with requests.Session() as session:
            session.auth = auth
            deadline = time.monotonic() + 2.5
            while True:
                assert session.get(emulator.api_url + "/child", timeout=5).status_code == 200
                info = auth.token_info
                assert info is not None
                if info.obtained_at > first.obtained_at:
                    return info.obtained_at
                assert time.monotonic() < deadline, "the child never renewed the token"
                time.sleep(0.05)

    try:
        assert fork(child, limit=CHILD_LIMIT) > first.obtained_at
    finally:
        leave.set()


@pytest.mark.timeout(60)
def test_a_child_running_the_parents_event_loop_does_not_inherit_its_loop_lock(
    semansys_emulator: SemansysEmulator,
) -> None:
    """A program that keeps one event loop and runs it now and then
    (``run_until_complete``) forks while a task of that loop waits for a token.
    The child runs the same loop object: its own fetch must not queue behind the
    parent's task (which, in the child, is a copy waiting on the parent's
    socket)."""
    emulator = semansys_emulator
    emulator.token_delay = 6.0
    auth = emulator.auth()
    loop = asyncio.new_event_loop()
    try:

        async def get(path: str) -> int:
            async with httpx.AsyncClient(auth=auth, timeout=30) as client:
                return (await client.get(emulator.api_url + path)).status_code

        parent_task = loop.create_task(get("/parent"))

        async def until_pending() -> None:
            while emulator.pending_token_requests < 1:
                await asyncio.sleep(0.005)

        loop.run_until_complete(asyncio.wait_for(until_pending(), 10))
        emulator.token_delay = 0.0

        def child() -> int:
            return loop.run_until_complete(asyncio.wait_for(get("/child"), CHILD_LIMIT))

        assert fork(child, limit=CHILD_LIMIT + 1) == 200
        assert loop.run_until_complete(asyncio.wait_for(parent_task, 30)) == 200
    finally:
        loop.close()


# -- multiprocessing with the fork start method -------------------------------------------

_SHARED: dict[str, Any] = {}  # what the workers inherit


def _worker(i: int) -> tuple[int, int, float | None]:
    auth: SemansysAuth = _SHARED["auth"]
    url = f"{_SHARED['api']}/worker{i}"
    sync = request("requests", auth, url)
    asynchronous = request("httpx-async", auth, url)
    info = auth.token_info
    return sync, asynchronous, None if info is None else info.obtained_at


def _pool_map(count: int) -> list[tuple[int, int, float | None]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the point
        pool = multiprocessing.get_context("fork").Pool(count)
    try:
        return pool.map_async(_worker, range(count)).get(timeout=20)
    finally:
        pool.terminate()
        pool.join()


@pytest.mark.timeout(60)
def test_fork_workers_after_the_parent_fetched_reuse_its_token(
    semansys_emulator: SemansysEmulator,
) -> None:
    auth = semansys_emulator.auth()
    assert request("httpx", auth, semansys_emulator.api_url + "/parent") == 200
    info = auth.token_info
    assert info is not None
    _SHARED.update(auth=auth, api=semansys_emulator.api_url)
    try:
        results = _pool_map(3)
    finally:
        _SHARED.clear()
    assert results == [(200, 200, info.obtained_at)] * 3
    assert len(semansys_emulator.token_requests()) == 1


@pytest.mark.timeout(60)
def test_fork_workers_started_during_the_first_request_fetch_their_own(
    semansys_emulator: SemansysEmulator,
) -> None:
    emulator = semansys_emulator
    emulator.token_delay = 4.0
    auth = emulator.auth()
    flight = InFlight("requests", auth, emulator.api_url + "/parent")
    wait_for_pending_token_request(emulator)
    emulator.token_delay = 0.0
    _SHARED.update(auth=auth, api=emulator.api_url)
    started = time.monotonic()
    try:
        results = _pool_map(3)
    finally:
        _SHARED.clear()
    assert time.monotonic() - started < 4.0  # none waited for the parent's request
    assert [r[:2] for r in results] == [(200, 200)] * 3
    assert all(r[2] is not None for r in results)
    assert flight.join() == 200


# -- imports on first use --------------------------------------------------------------------

_FORK_DURING_IMPORT = """
import importlib.abc, os, signal, sys, threading, time, warnings
import requests
from semansys_auth.testing import SemansysEmulator

PARENT = os.getpid()

class SlowImport(importlib.abc.MetaPathFinder):
    # Widens the window: the parent's first import of the requests adapter takes 1.5 s.
    def find_spec(self, name, path, target=None):
        if name == "semansys_auth._requests" and os.getpid() == PARENT:
            time.sleep(1.5)
        return None

sys.meta_path.insert(0, SlowImport())
with SemansysEmulator() as emulator:
    auth = emulator.auth()
    first = threading.Thread(
        target=requests.get, args=(emulator.api_url + "/parent",), kwargs={"auth": auth}
    )
    first.start()
    time.sleep(0.5)
    assert "semansys_auth._requests" not in sys.modules, "the import is not under way"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        signal.alarm(5)
        reply = requests.get(emulator.api_url + "/child", auth=auth, timeout=5)
        os._exit(0 if reply.status_code == 200 else 3)
    _, status = os.waitpid(pid, 0)
    first.join(10)
    print("hung" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}")
"""


@pytest.mark.timeout(60)
def test_a_fork_while_another_thread_imports_on_first_use_waits_for_the_import() -> None:
    """Python keeps a lock per module while importing it; a fork in the middle
    would leave it held in the child, whose first import of that module would
    wait forever. The package's imports on first use make a fork wait."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _FORK_DURING_IMPORT],
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exit 0", result.stdout + result.stderr


_FORK_DURING_IMPORT_BEFORE_LOGGING = """
import importlib.abc, os, signal, sys, threading, time, warnings
from semansys_auth import SemansysAuth  # first, before anything imports logging
assert "requests" not in sys.modules

auth = SemansysAuth(client_id="c", client_secret="s", username="u@example.com",
                    password="p", token_url="http://127.0.0.1:9/token")

class SlowImport(importlib.abc.MetaPathFinder):
    # Widens the window: a module that the requests adapter's import needs,
    # and that logs (so its import needs logging's module lock), is slow.
    def find_spec(self, name, path, target=None):
        if name == "urllib3.exceptions":
            time.sleep(0.5)
        return None

sys.meta_path.insert(0, SlowImport())
importing = threading.Thread(target=auth._requests_adapter)  # the first requests use
importing.start()
time.sleep(0.2)
started = time.monotonic()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    pid = os.fork()
if pid == 0:
    signal.alarm(5)
    import requests  # the child's first use of what the parent was importing
    os._exit(0)
waited = time.monotonic() - started
_, status = os.waitpid(pid, 0)
importing.join(10)
print("hung" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}")
print("fork waited %.1f s" % waited)
"""


@pytest.mark.timeout(60)
def test_a_fork_waits_for_an_import_that_needs_loggings_lock() -> None:
    """At-fork hooks run newest first, and logging's takes logging's lock: when
    the application imported semansys_auth before logging, the package's hook
    must still come after logging's, or a fork would hold logging's lock while
    waiting for an import that needs it (a stall of ``IMPORT_WAIT``, then a
    child that hangs on that import)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _FORK_DURING_IMPORT_BEFORE_LOGGING],
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert result.stdout.splitlines()[0] == "exit 0", result.stdout + result.stderr
    waited = float(lines[-2])
    assert waited < 5.0, "the fork stalled for IMPORT_WAIT: a deadlock with logging's lock"
