"""Early renewals that nobody waits for.

While the token in use is still valid, one caller renews it and every other
caller goes on sending it: at most one request per renewal waits for the token
endpoint (none with requests, which renews in a background thread). Past
expiry (minus a safety margin) everyone waits: an expired token is never sent.
A failed early renewal is a warning, tried again later; the error reaches
callers only when no valid token is left.

A request "waited" when it took at least half the token endpoint's delay: the
API answers in milliseconds, the token endpoint in ``DELAY`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests
import trio

from helpers import wait_until
from semansys_auth import TokenEndpointUnavailableError
from semansys_auth.testing import SemansysEmulator

LIFETIME = 4.0  # renewed after 2 s (half the lifetime), sent until 3.6 s
DELAY = 0.8  # the token endpoint's think time
RUN = 3.2  # seconds of traffic: one renewal, ending before the first token expires
WORKERS = 8

Record = tuple[float, int]  # (seconds the request took, status)


def timed(call: Any) -> Record:
    started = time.monotonic()
    status = call()
    return time.monotonic() - started, status


def loop_threads(work: Any) -> list[Record]:
    """WORKERS threads sending requests for RUN seconds."""
    stop = time.monotonic() + RUN

    def worker(i: int) -> list[Record]:
        records = []
        while time.monotonic() < stop:
            records.append(timed(lambda: work(i)))
            time.sleep(0.01)
        return records

    with ThreadPoolExecutor(WORKERS) as pool:
        return [r for records in pool.map(worker, range(WORKERS), timeout=60) for r in records]


async def loop_tasks(get: Any) -> list[Record]:
    """WORKERS asyncio tasks sending requests for RUN seconds."""
    stop = time.monotonic() + RUN

    async def worker(i: int) -> list[Record]:
        records = []
        while time.monotonic() < stop:
            started = time.monotonic()
            status = await get(i)
            records.append((time.monotonic() - started, status))
            await asyncio.sleep(0.01)
        return records

    results = await asyncio.gather(*(worker(i) for i in range(WORKERS)))
    return [r for records in results for r in records]


def run_kind(kind: str, emulator: SemansysEmulator, auth: Any) -> list[Record]:
    url = emulator.api_url + "/reports"
    if kind == "requests":
        sessions = [requests.Session() for _ in range(WORKERS)]
        for session in sessions:
            session.auth = auth
        return loop_threads(lambda i: sessions[i].get(url, timeout=10).status_code)
    if kind.startswith("niquests"):
        return run_niquests(kind, url, auth)
    module: Any = httpx2 if kind.startswith("httpx2") else httpx
    if kind in ("httpx", "httpx2"):
        with module.Client(auth=auth, timeout=10) as client:
            return loop_threads(lambda i: client.get(url).status_code)
    if kind == "aiohttp":

        async def main_aiohttp() -> list[Record]:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(middlewares=(auth,), timeout=timeout) as session:

                async def get(i: int) -> int:
                    async with session.get(url) as response:
                        return response.status

                return await loop_tasks(get)

        return asyncio.run(asyncio.wait_for(main_aiohttp(), 60))

    async def main_httpx() -> list[Record]:
        async with module.AsyncClient(auth=auth, timeout=10) as client:

            async def get(i: int) -> int:
                return int((await client.get(url)).status_code)

            return await loop_tasks(get)

    return asyncio.run(asyncio.wait_for(main_httpx(), 60))


def run_niquests(kind: str, url: str, auth: Any) -> list[Record]:
    import niquests

    if kind == "niquests":
        sessions = [niquests.Session() for _ in range(WORKERS)]
        try:
            for session in sessions:
                session.auth = auth
            return loop_threads(lambda i: int(sessions[i].get(url, timeout=10).status_code or 0))
        finally:
            for session in sessions:
                session.close()

    async def main() -> list[Record]:
        async with niquests.AsyncSession() as session:
            session.auth = auth

            async def get(i: int) -> int:
                return int((await session.get(url, timeout=10)).status_code or 0)

            return await loop_tasks(get)

    return asyncio.run(asyncio.wait_for(main(), 60))


@pytest.fixture
def slow_emulator(semansys_emulator: SemansysEmulator) -> SemansysEmulator:
    semansys_emulator.access_token_lifetime = LIFETIME
    return semansys_emulator


@pytest.mark.timeout(120)
def test_at_most_one_request_per_renewal_waits(slow_emulator: SemansysEmulator, kind: str) -> None:
    auth = slow_emulator.auth()
    auth.get_token()  # the first token, before the clock of the run starts
    slow_emulator.token_delay = DELAY
    records = run_kind(kind, slow_emulator, auth)
    wait_until(lambda: len(slow_emulator.token_requests()) == 2)  # requests: in the background
    assert [r.grant_type for r in slow_emulator.token_requests()] == ["password", "refresh_token"]
    assert {status for _, status in records} == {200}
    waited = [took for took, _ in records if took >= DELAY / 2]
    background = kind in ("requests", "niquests")
    assert len(waited) <= (0 if background else 1), (len(records), waited)
    assert len(records) > 4 * WORKERS, "traffic went on during the renewal"


@pytest.mark.timeout(120)
def test_trio_tasks_do_not_wait_for_a_renewal(slow_emulator: SemansysEmulator) -> None:
    auth = slow_emulator.auth()
    auth.get_token()
    slow_emulator.token_delay = DELAY
    records: list[Record] = []

    async def main() -> None:
        stop = trio.current_time() + RUN
        async with httpx.AsyncClient(auth=auth, timeout=10) as client:

            async def worker() -> None:
                while trio.current_time() < stop:
                    started = time.monotonic()
                    status = (await client.get(slow_emulator.api_url + "/t")).status_code
                    records.append((time.monotonic() - started, status))
                    await trio.sleep(0.01)

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for _ in range(WORKERS):
                        nursery.start_soon(worker)

    trio.run(main)
    assert len(slow_emulator.token_requests()) == 2
    assert len([took for took, _ in records if took >= DELAY / 2]) <= 1


def test_an_expired_token_is_never_sent(slow_emulator: SemansysEmulator, kind: str) -> None:
    """With no early renewal and the token endpoint slow, a request made in the
    token's last moments waits for the new token instead of sending the old one."""
    auth = slow_emulator.auth(leeway=0)  # no early renewal: every caller waits
    assert run_once(kind, slow_emulator, auth) == 200
    time.sleep(LIFETIME - 0.3)  # past the safety margin (0.4 s), before expiry
    slow_emulator.token_delay = 1.0
    assert run_once(kind, slow_emulator, auth) == 200
    _, second = slow_emulator.token_requests()
    api = [r for r in slow_emulator.requests if r.kind == "api"]
    assert [r.status for r in api] == [200, 200]
    assert api[1].received_at is not None and api[1].received_at >= second.at, (
        "the request went out with the new token, after the renewal"
    )


def run_once(kind: str, emulator: SemansysEmulator, auth: Any) -> int:
    from helpers import send

    return send(kind, auth, "GET", emulator.api_url + "/once").status


def test_a_failed_early_renewal_is_a_warning_until_no_valid_token_is_left(
    slow_emulator: SemansysEmulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = slow_emulator.auth(backoff=0.01)
    assert run_once(kind, slow_emulator, auth) == 200
    slow_emulator.fail_next(1000, status=503)
    time.sleep(LIFETIME / 2 + 0.1)  # in the renewal window
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert run_once(kind, slow_emulator, auth) == 200  # the current token
        wait_until(lambda: "early token renewal failed" in caplog.text)
        assert run_once(kind, slow_emulator, auth) == 200  # not retried at once: backoff
    early = len(slow_emulator.token_requests())
    assert early == 2, "one failed early renewal, then a pause"
    info = auth.token_info
    assert info is not None and info.expires_at is not None
    time.sleep(max(info.expires_at - time.time(), 0) + 0.05)  # no valid token left
    with pytest.raises(TokenEndpointUnavailableError):
        run_once(kind, slow_emulator, auth)
    assert "TokenEndpointUnavailableError" in caplog.text


WORKER = textwrap.dedent(
    """
    import sys, time, requests
    from semansys_auth import FileTokenCache, SemansysAuth
    auth = SemansysAuth.from_env(token_cache=FileTokenCache(sys.argv[1]))
    session = requests.Session()
    session.auth = auth
    url = sys.argv[2]
    # One request first, uncounted: imports, the cache key and the cache read
    # belong to start-up, not to a renewal (on a loaded machine they are slow).
    assert session.get(url, timeout=10).status_code == 200
    open(sys.argv[3] + ".ready." + str(__import__("os").getpid()), "w").close()
    while not __import__("os").path.exists(sys.argv[3]):
        time.sleep(0.01)
    stop = time.monotonic() + float(sys.argv[4])
    slow = 0
    while time.monotonic() < stop:
        started = time.monotonic()
        assert session.get(url, timeout=10).status_code == 200
        slow += time.monotonic() - started >= float(sys.argv[5])
        time.sleep(0.01)
    print(slow)
    """
)


@pytest.mark.timeout(120)
def test_processes_sharing_a_cache_make_one_request_per_renewal(
    slow_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(slow_emulator.env())
    cache = tmp_path / "cache"
    first = slow_emulator.auth(token_cache=__import__("semansys_auth").FileTokenCache(cache))
    first.get_token()  # a warm cache: every process starts from this token
    slow_emulator.token_delay = DELAY
    go = tmp_path / "go"
    args = [str(cache), slow_emulator.api_url + "/p", str(go), str(RUN), str(DELAY / 2)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        deadline = time.monotonic() + 60  # each has imported and sent one request
        while len(list(tmp_path.glob("go.ready.*"))) < len(processes):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in processes), "a worker died"
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=60) for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert all(p.returncode == 0 for p in processes), outputs
    assert [int(out) for out, _ in outputs] == [0, 0, 0], "nobody waited: requests renews aside"
    assert [r.grant_type for r in slow_emulator.token_requests()] == ["password", "refresh_token"]
