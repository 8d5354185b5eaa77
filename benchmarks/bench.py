"""Benchmark: semansys-auth against the floor and against its peers.

    pip install -e '.[bench]'
    python benchmarks/bench.py              # every part, about ten minutes on 2 cores
    python benchmarks/bench.py --quick      # fewer rounds: a smoke run, not for quoting
    python benchmarks/bench.py --part startup --part renewal

Parts:

1. ``cost``: per-request cost. Each client (requests, httpx, httpx2, sync and
   async, aiohttp, niquests sync and async when installed) sends requests to an
   in-memory transport (aiohttp and niquests: a loopback server); each
   contender's time per request is divided by the floor's, a minimal
   hand-written bearer auth for that client, measured in the same round. A
   static ``Authorization`` header (set on the session or client) is shown for
   information.
2. ``concurrency``: token requests made by 16 threads x 20 requests and by 200
   concurrent tasks against a token endpoint that takes 300 ms (the package's
   emulator), and the longest event-loop stall while a token request was
   pending.
3. ``processes``: N processes starting together with one shared token cache
   (a directory; Redis when ``redis-server`` is installed): token requests made.
4. ``renewal``: request latency across a renewal. Tokens live 4 s, the token
   endpoint takes 0.5 s; 8 workers send requests for 3.4 s, across one
   renewal. p50, p99 and max latency, and how many requests waited (took at
   least half the token endpoint's time).
5. ``startup``: whole-process ratios, each run paired with its baseline (A B A
   B ...): ``semansys-auth token`` with a warm cache against
   ``python -c "import requests"``; the package's and the peers' imports
   against ``python -c "import requests, httpx"``. Byte code is compiled first,
   as after an install.
6. ``burst``: 5,000 requests started at once on one event loop, cold (a new
   ``SemansysAuth``: the first request fetches the token, the others wait for
   it) and warm (the token held), over the floor in interleaved pairs: httpx's
   ``AsyncClient`` on its ``MockTransport``, aiohttp on an in-memory connector.
   The bursts do no I/O, so the process's CPU time is their cost; wall time is
   shown too, but on a shared machine it also measures the neighbours. About a
   minute (``--quick``: about 25 s).

Statistics are written here rather than taken from pyperf: pyperf runs each
benchmark in its own worker processes, one after the other, while a ratio to
the floor on a shared, noisy machine is best taken within one round, with every
contender in the round in a shuffled order; cells show the median ratio over
rounds and, in brackets, the interquartile range. The shuffle seed is random per
run and printed (``--seed`` repeats an order).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import gc
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

import semansys_auth
from semansys_auth import SemansysAuth
from semansys_auth.testing import SemansysEmulator

TOKEN_URL = "https://bench.invalid/connect/token"
API_URL = "https://bench.invalid/api/reports"
CREDENTIALS = {
    "client_id": "bench-client",
    "client_secret": "bench-secret",
    "username": "bench@example.com",
    "password": "bench-password",
}
TOKEN_BODY = json.dumps(
    {
        "access_token": "bench-access-token",
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": "bench-refresh",
    }
).encode()
STATIC = "Bearer bench-access-token"
FLOOR = "floor"
INFO = "static header"
COLD = "cold"
WARM = "warm"

ORDER = random.Random()


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    if len(values) < 4:
        middle = statistics.median(values)
        return min(values), middle, max(values)
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


def cell(values: list[float]) -> str:
    low, middle, high = quartiles(values)
    return f"{middle:.3f} ({low:.3f}-{high:.3f})"


# -- part 1: per-request cost ------------------------------------------------------------


class MemoryAdapter(BaseAdapter):
    """A requests transport adapter that answers from memory."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.request = request
        response.url = request.url or ""
        response.connection = self
        response.status_code = 200
        if request.url and request.url.endswith("/connect/token"):
            response._content = TOKEN_BODY
            response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        else:
            response._content = b"ok"
            response.headers = CaseInsensitiveDict({"Content-Length": "2"})
        response.raw = io.BytesIO(response._content)
        return response

    def close(self) -> None:
        pass


def memory_session(session: requests.Session | None = None) -> requests.Session:
    session = session or requests.Session()
    session.mount("https://bench.invalid/", MemoryAdapter())
    return session


def mock_transport(module: Any) -> Any:
    def handler(request: Any) -> Any:
        if request.url.path == "/connect/token":
            return module.Response(
                200, content=TOKEN_BODY, headers={"Content-Type": "application/json"}
            )
        return module.Response(200, content=b"ok")

    return module.MockTransport(handler)


def authlib_token() -> dict[str, Any]:
    return {
        "access_token": "bench-access-token",
        "token_type": "Bearer",
        "expires_in": 3600,
        "expires_at": int(time.time()) + 3600,
        "refresh_token": "bench-refresh",
    }


def ours(**options: Any) -> SemansysAuth:
    return SemansysAuth(token_url=TOKEN_URL, **CREDENTIALS, **options)


def requests_contenders() -> dict[str, Callable[[], requests.Session]]:
    """Every contender on a requests.Session with the same in-memory adapter."""

    def floor() -> requests.Session:
        def bearer(r: requests.PreparedRequest) -> requests.PreparedRequest:
            r.headers["Authorization"] = STATIC
            return r

        session = memory_session()
        session.auth = bearer
        return session

    def static() -> requests.Session:
        session = memory_session()
        session.headers["Authorization"] = STATIC
        return session

    def semansys() -> requests.Session:
        session = memory_session()
        session.auth = ours(requests_session=memory_session())
        return session

    def requests_auth_() -> requests.Session:
        import requests_auth

        requests_auth.OAuth2.token_cache.clear()
        session = memory_session()
        session.auth = requests_auth.OAuth2ResourceOwnerPasswordCredentials(
            TOKEN_URL,
            CREDENTIALS["username"],
            CREDENTIALS["password"],
            session=memory_session(),
            client_id=CREDENTIALS["client_id"],
            client_secret=CREDENTIALS["client_secret"],
        )
        return session

    def requests_oauthlib_() -> requests.Session:
        from oauthlib.oauth2 import LegacyApplicationClient
        from requests_oauthlib import OAuth2Session

        return memory_session(
            OAuth2Session(
                client=LegacyApplicationClient(CREDENTIALS["client_id"]), token=authlib_token()
            )
        )

    def authlib_() -> requests.Session:
        from authlib.integrations.requests_client import OAuth2Session

        return memory_session(
            OAuth2Session(
                CREDENTIALS["client_id"], CREDENTIALS["client_secret"], token=authlib_token()
            )
        )

    return {
        FLOOR: floor,
        INFO: static,
        "semansys-auth": semansys,
        "requests_auth": requests_auth_,
        "requests-oauthlib": requests_oauthlib_,
        "Authlib": authlib_,
    }


def floor_auth(module: Any) -> Any:
    class Bearer(module.Auth):  # type: ignore[misc, name-defined]
        def auth_flow(self, request: Any) -> Iterator[Any]:
            request.headers["Authorization"] = STATIC
            yield request

    return Bearer()


def httpx_contenders(module: Any, kind: str) -> dict[str, Callable[[], Any]]:
    """``kind``: "Client" or "AsyncClient"; every contender on the same transport."""
    transport = mock_transport(module)
    client_class = getattr(module, kind)

    def floor() -> Any:
        return client_class(transport=transport, auth=floor_auth(module))

    def static() -> Any:
        return client_class(transport=transport, headers={"Authorization": STATIC})

    def semansys() -> Any:
        return client_class(transport=transport, auth=ours())

    found: dict[str, Callable[[], Any]] = {FLOOR: floor, INFO: static, "semansys-auth": semansys}
    if module is httpx:

        def httpx_auth_() -> Any:
            import httpx_auth

            httpx_auth.OAuth2.token_cache.clear()  # a process-wide cache
            auth = httpx_auth.OAuth2ResourceOwnerPasswordCredentials(
                TOKEN_URL,
                CREDENTIALS["username"],
                CREDENTIALS["password"],
                client=httpx.Client(transport=transport),
                client_id=CREDENTIALS["client_id"],
                client_secret=CREDENTIALS["client_secret"],
            )
            return client_class(transport=transport, auth=auth)

        found["httpx_auth"] = httpx_auth_
    from authlib.integrations import httpx_client

    authlib_class = getattr(
        httpx_client, "OAuth2Client" if kind == "Client" else "AsyncOAuth2Client"
    )
    if issubclass(authlib_class, client_class):  # Authlib follows httpx2 when installed

        def authlib_() -> Any:
            return authlib_class(
                CREDENTIALS["client_id"],
                CREDENTIALS["client_secret"],
                token=authlib_token(),
                transport=transport,
            )

        found["Authlib"] = authlib_
    return found


def time_calls(call: Callable[[], Any], count: int) -> float:
    gc.disable()  # a collection in one contender's turn is noise, not its cost
    try:
        started = time.perf_counter()
        for _ in range(count):
            call()
        return (time.perf_counter() - started) / count
    finally:
        gc.enable()


async def time_async_calls(call: Callable[[], Any], count: int) -> float:
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in range(count):
            await call()
        return (time.perf_counter() - started) / count
    finally:
        gc.enable()


def ratios(times: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each contender's time over the floor's, round by round."""
    floor = times[FLOOR]
    return {
        name: [t / f for t, f in zip(values, floor, strict=True)] for name, values in times.items()
    }


def sync_rounds(
    clients: dict[str, Any], rounds: int, count: int, url: str = API_URL
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in clients}
    for client in clients.values():
        time_calls(lambda client=client: client.get(url), 100)  # warm up, fetch the token
    for _ in range(rounds):
        order = list(clients.items())
        ORDER.shuffle(order)
        for name, client in order:
            times[name].append(time_calls(lambda client=client: client.get(url), count))
    return times


async def async_rounds(
    clients: dict[str, Any], rounds: int, count: int, url: str
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in clients}

    def getter(client: Any) -> Callable[[], Any]:
        if hasattr(client, "aclose") or type(client).__module__.startswith("niquests"):
            return lambda: client.get(url)  # httpx, niquests

        async def get() -> None:  # aiohttp
            async with client.get(url) as response:
                await response.read()

        return get

    for client in clients.values():
        await time_async_calls(getter(client), 100)
    for _ in range(rounds):
        order = list(clients.items())
        ORDER.shuffle(order)
        for name, client in order:
            times[name].append(await time_async_calls(getter(client), count))
    return times


@contextmanager
def loopback_api() -> Iterator[str]:
    """A minimal keep-alive HTTP server for aiohttp, which has no in-memory transport."""
    from aiohttp import web

    async def reports(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def token(request: web.Request) -> web.Response:
        return web.Response(body=TOKEN_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/reports", reports)
    app.router.add_post("/connect/token", token)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def part_cost(rounds: int, count: int) -> None:
    import httpx2

    print(f"\nPart 1: per-request cost over the floor; median (interquartile range) of {rounds} "
          f"rounds x {count} requests")  # fmt: skip
    columns = [INFO, "semansys-auth", "httpx_auth", "requests_auth", "requests-oauthlib", "Authlib"]
    print(f"{'client':<13} {'floor (us)':>10} " + " ".join(f"{c:>21}" for c in columns))

    def report(label: str, times: dict[str, list[float]]) -> None:
        shown = ratios(times)
        floor_us = statistics.median(times[FLOOR]) * 1e6
        cells = [f"{cell(shown[c]):>21}" if c in shown else f"{'-':>21}" for c in columns]
        print(f"{label:<13} {floor_us:>10.1f} " + " ".join(cells), flush=True)

    clients = {name: make() for name, make in requests_contenders().items()}
    report("requests", sync_rounds(clients, rounds, count))
    for module in (httpx, httpx2):
        clients = {name: make() for name, make in httpx_contenders(module, "Client").items()}
        report(module.__name__, sync_rounds(clients, rounds, count))
        for client in clients.values():
            client.close()

        async def run_async(module: Any = module) -> dict[str, list[float]]:
            made = {n: make() for n, make in httpx_contenders(module, "AsyncClient").items()}
            try:
                return await async_rounds(made, rounds, count, API_URL)
            finally:
                for client in made.values():
                    await client.aclose()

        report(module.__name__ + " async", asyncio.run(run_async()))

    import aiohttp

    with loopback_api() as base:

        async def run_aiohttp() -> dict[str, list[float]]:
            async def floor_mw(request: Any, handler: Any) -> Any:
                request.headers["Authorization"] = STATIC
                return await handler(request)

            semansys = SemansysAuth(token_url=base + "/connect/token", **CREDENTIALS)
            made = {
                FLOOR: aiohttp.ClientSession(middlewares=(floor_mw,)),
                INFO: aiohttp.ClientSession(headers={"Authorization": STATIC}),
                "semansys-auth": aiohttp.ClientSession(middlewares=(semansys,)),
            }
            try:
                return await async_rounds(made, rounds, max(count // 5, 20), base + "/api/reports")
            finally:
                for session in made.values():
                    await session.close()

        report("aiohttp", asyncio.run(run_aiohttp()))

    part_cost_niquests(rounds, count, report)


def part_cost_niquests(rounds: int, count: int, report: Callable[..., None]) -> None:
    """niquests, sync and async, over the loopback server (the token requests of
    its adapter go through a private session, which a mounted adapter would not serve)."""
    try:
        import niquests
    except ImportError:
        print(f"{'niquests':<13} not installed (pip install 'semansys-auth[niquests]')")
        return

    def bearer(r: Any) -> Any:
        r.headers["Authorization"] = STATIC
        return r

    def dressed(session: Any, base: str) -> dict[str, Any]:
        made = {FLOOR: session(), INFO: session(), "semansys-auth": session()}
        made[FLOOR].auth = bearer
        made[INFO].headers["Authorization"] = STATIC
        made["semansys-auth"].auth = SemansysAuth(token_url=base + "/connect/token", **CREDENTIALS)
        return made

    with loopback_api() as base:
        url, few = base + "/api/reports", max(count // 5, 20)
        made = dressed(niquests.Session, base)
        report("niquests", sync_rounds(made, rounds, few, url))
        for session in made.values():
            session.close()

        async def run_async() -> dict[str, list[float]]:
            made = dressed(niquests.AsyncSession, base)
            try:
                return await async_rounds(made, rounds, few, url)
            finally:
                for session in made.values():
                    await session.close()

        report("niquests async", asyncio.run(run_async()))


# -- part 2: concurrency against a slow loopback token server -----------------------------------


def outcome(emulator: SemansysEmulator, failures: int) -> str:
    made = str(len(emulator.token_requests()))
    return f"{made} ({failures} failed)" if failures else made


def thread_burst(emulator: SemansysEmulator, make_get: Callable[[], Callable[[str], Any]]) -> str:
    emulator.clear_log()
    barrier = threading.Barrier(16, timeout=30)

    def work(i: int) -> int:
        get = make_get()
        barrier.wait()
        failed = 0
        for j in range(20):
            try:
                failed += get(f"{emulator.api_url}/t{i}-{j}").status_code != 200
            except Exception:
                failed += 1
        return failed

    with ThreadPoolExecutor(16) as pool:
        failures = sum(pool.map(work, range(16), timeout=120))
    return outcome(emulator, failures)


async def task_burst(emulator: SemansysEmulator, get: Callable[[str], Any]) -> tuple[str, float]:
    """(token requests, longest loop stall while a token request was pending)."""
    emulator.clear_log()
    gaps: list[tuple[float, float]] = []
    done = False

    async def ticker() -> None:
        last = time.time()
        while not done:
            await asyncio.sleep(0.001)
            now = time.time()
            gaps.append((last, now))
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    statuses = await asyncio.gather(
        *(get(f"{emulator.api_url}/a{i}") for i in range(200)), return_exceptions=True
    )
    done = True
    await tick
    failures = sum(isinstance(s, BaseException) or s != 200 for s in statuses)
    fetches = [(r.received_at or r.at, r.at) for r in emulator.token_requests()]
    during_fetch = max(
        (
            end - start
            for start, end in gaps
            if any(start < fetch_end and end > fetch_start for fetch_start, fetch_end in fetches)
        ),
        default=0.0,
    )
    return outcome(emulator, failures), during_fetch


def httpx_getter(client: Any) -> Callable[[str], Any]:
    async def get(url: str) -> int:
        return int((await client.get(url)).status_code)

    return get


def expired_for(emulator: SemansysEmulator) -> dict[str, Any]:
    """A password-grant answer with its access token marked expired: for the
    peers that cannot fetch the first token on their own (a refresh burst)."""
    answer = requests.post(
        emulator.token_url, data={"grant_type": "password", **emulator.credentials}, timeout=10
    ).json()
    answer["expires_at"] = int(time.time()) - 10
    answer["expires_in"] = -10
    return dict(answer)


def part_concurrency() -> None:
    import aiohttp
    import httpx_auth
    import requests_auth
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client
    from oauthlib.oauth2 import LegacyApplicationClient
    from requests_oauthlib import OAuth2Session

    print("\nPart 2: a token endpoint that takes 300 ms; token requests made, and the")
    print("longest event-loop stall while a token request was pending")
    header = ("library", "requests threads", "httpx threads", "httpx tasks", "httpx stall",
              "aiohttp tasks", "aiohttp stall")  # fmt: skip
    print(f"{header[0]:<28}" + "".join(f"{h:>17}" for h in header[1:]))
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # requests-oauthlib on loopback http
    with SemansysEmulator(token_delay=0.3) as emulator:
        credentials = emulator.credentials
        secret = {
            "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"],
        }
        rows: dict[str, dict[str, str]] = {}

        def session_per_thread(auth: Any) -> Callable[[], Callable[[str], Any]]:
            def make() -> Callable[[str], Any]:
                session = requests.Session()
                session.auth = auth
                return lambda url: session.get(url, timeout=30)

            return make

        def shared_client(client: Any) -> Callable[[], Callable[[str], Any]]:
            return lambda: client.get

        def tasks(row: dict[str, str], client: str, burst: Callable[[], Any]) -> None:
            made, stall = asyncio.run(burst())
            row[client + " tasks"], row[client + " stall"] = made, f"{stall * 1000:.0f} ms"

        # semansys-auth: one object per column
        row = rows.setdefault("semansys-auth", {})
        row["requests threads"] = thread_burst(emulator, session_per_thread(emulator.auth()))
        with httpx.Client(auth=emulator.auth(), timeout=30) as client:
            row["httpx threads"] = thread_burst(emulator, shared_client(client))

        async def ours_httpx() -> tuple[str, float]:
            async with httpx.AsyncClient(auth=emulator.auth(), timeout=30) as client:
                return await task_burst(emulator, httpx_getter(client))

        tasks(row, "httpx", ours_httpx)

        async def ours_aiohttp() -> tuple[str, float]:
            async with aiohttp.ClientSession(middlewares=(emulator.auth(),)) as session:

                async def get(url: str) -> int:
                    async with session.get(url) as response:
                        return response.status

                return await task_burst(emulator, get)

        tasks(row, "aiohttp", ours_aiohttp)

        # requests_auth and httpx_auth
        requests_auth.OAuth2.token_cache.clear()
        ra = requests_auth.OAuth2ResourceOwnerPasswordCredentials(
            emulator.token_url, credentials["username"], credentials["password"], **secret
        )
        rows["requests_auth"] = {"requests threads": thread_burst(emulator, session_per_thread(ra))}

        def new_httpx_auth() -> Any:
            httpx_auth.OAuth2.token_cache.clear()
            return httpx_auth.OAuth2ResourceOwnerPasswordCredentials(
                emulator.token_url, credentials["username"], credentials["password"], **secret
            )

        row = rows.setdefault("httpx_auth", {})
        with httpx.Client(auth=new_httpx_auth(), timeout=30) as client:
            row["httpx threads"] = thread_burst(emulator, shared_client(client))

        async def httpx_auth_tasks() -> tuple[str, float]:
            async with httpx.AsyncClient(auth=new_httpx_auth(), timeout=30) as client:
                return await task_burst(emulator, httpx_getter(client))

        tasks(row, "httpx", httpx_auth_tasks)

        # Authlib and requests-oauthlib start from an expired token: a refresh burst
        row = rows.setdefault("Authlib (refresh)", {})
        with OAuth2Client(
            token_endpoint=emulator.token_url,
            token=expired_for(emulator),
            token_endpoint_auth_method="client_secret_post",
            timeout=30,
            **secret,
        ) as client:
            row["httpx threads"] = thread_burst(emulator, shared_client(client))

        async def authlib_tasks() -> tuple[str, float]:
            async with AsyncOAuth2Client(
                token_endpoint=emulator.token_url,
                token=expired_for(emulator),
                token_endpoint_auth_method="client_secret_post",
                timeout=30,
                **secret,
            ) as client:
                return await task_burst(emulator, httpx_getter(client))

        tasks(row, "httpx", authlib_tasks)

        def oauthlib_session() -> Callable[[str], Any]:
            session = OAuth2Session(
                client=LegacyApplicationClient(credentials["client_id"]),
                token=expired_for(emulator),
                auto_refresh_url=emulator.token_url,
                auto_refresh_kwargs=secret,
                token_updater=lambda token: None,
            )
            return lambda url: session.get(url, timeout=30)

        # requests-oauthlib keeps its token on the session: one session, shared.
        shared = oauthlib_session()
        rows["requests-oauthlib (refresh)"] = {
            "requests threads": thread_burst(emulator, lambda: shared)
        }
    for name, row in rows.items():
        print(f"{name:<28}" + "".join(f"{row.get(h, '-'):>17}" for h in header[1:]), flush=True)


# -- part 3: processes sharing a cache ------------------------------------------------

WORKER = textwrap.dedent(
    """
    import os, sys, time
    from semansys_auth import SemansysAuth
    auth = SemansysAuth.from_env()  # SEMANSYS_TOKEN_CACHE: a directory or a Redis URL
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.005)
    auth.get_token()
    """
)


def processes_on(cache: str | None, emulator: SemansysEmulator, count: int) -> int:
    emulator.clear_log()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(emulator.env())
    if cache is not None:
        env["SEMANSYS_TOKEN_CACHE"] = cache
    with tempfile.TemporaryDirectory() as scratch:
        go = Path(scratch) / "go"
        workers = [
            subprocess.Popen([sys.executable, "-c", WORKER, str(go)], env=env) for _ in range(count)
        ]
        time.sleep(1.5)  # every interpreter up and waiting
        go.touch()
        for worker in workers:
            worker.wait(timeout=120)
    return len(emulator.token_requests())


@contextmanager
def redis_server() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def part_processes(count: int) -> None:
    print(f"\nPart 3: {count} processes starting together, sharing a token cache; a token "
          "endpoint that takes 300 ms; token requests made")  # fmt: skip
    with SemansysEmulator(token_delay=0.3) as emulator, tempfile.TemporaryDirectory() as directory:
        print(f"{'file cache (one host)':<28}{processes_on(directory, emulator, count):>8}")
        with redis_server() as url:
            if url is None:
                print(f"{'Redis cache':<28}{'-':>8}  (redis-server is not installed)")
            else:
                print(f"{'Redis cache':<28}{processes_on(url, emulator, count):>8}")
        print(f"{'no shared cache':<28}{processes_on(None, emulator, count):>8}")


# -- part 4: latency across a renewal ------------------------------------------------

LIFETIME = 4
DELAY = 0.5
RUN = 3.4
WORKERS = 8


def latency_row(records: list[tuple[float, bool]], emulator: SemansysEmulator) -> str:
    took = sorted(t for t, _ in records)
    failed = sum(1 for _, ok in records if not ok)
    p50 = statistics.median(took)
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    waited = sum(1 for t in took if t >= DELAY / 2)
    renewals = len(emulator.token_requests()) - 1
    return (
        f"{p50 * 1000:>8.1f} {p99 * 1000:>8.1f} {took[-1] * 1000:>8.1f} {waited:>8} "
        f"{renewals:>9} {failed:>7} {len(took):>9}"
    )


def threads_for(call: Callable[[int], bool]) -> list[tuple[float, bool]]:
    stop = time.monotonic() + RUN

    def worker(i: int) -> list[tuple[float, bool]]:
        records = []
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                ok = call(i)
            except Exception:
                ok = False
            records.append((time.monotonic() - started, ok))
            time.sleep(0.005)
        return records

    with ThreadPoolExecutor(WORKERS) as pool:
        return [r for rs in pool.map(worker, range(WORKERS)) for r in rs]


async def tasks_for(call: Callable[[], Any]) -> list[tuple[float, bool]]:
    stop = time.monotonic() + RUN

    async def worker() -> list[tuple[float, bool]]:
        records = []
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                ok = await call()
            except Exception:
                ok = False
            records.append((time.monotonic() - started, ok))
            await asyncio.sleep(0.005)
        return records

    results = await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return [r for rs in results for r in rs]


def part_renewal() -> None:
    import aiohttp
    import httpx_auth
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client

    print(f"\nPart 4: latency across a renewal; tokens of {LIFETIME} s, a token endpoint that "
          f"takes {DELAY} s, {WORKERS} workers for {RUN} s")  # fmt: skip
    print(f"{'library, client':<36} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'waited':>8} "
          f"{'renewals':>9} {'failed':>7} {'requests':>9}")  # fmt: skip
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

    def run(label: str, make: Callable[[SemansysEmulator], list[tuple[float, bool]]]) -> None:
        with SemansysEmulator(access_token_lifetime=LIFETIME) as emulator:
            records = make(emulator)
            time.sleep(DELAY + 0.2)  # let a background renewal finish before counting
            print(f"{label:<36} {latency_row(records, emulator)}", flush=True)

    def first_token(emulator: SemansysEmulator, auth: SemansysAuth) -> SemansysAuth:
        auth.get_token()
        emulator.token_delay = DELAY
        return auth

    def ours_requests(emulator: SemansysEmulator) -> list[tuple[float, bool]]:
        auth = first_token(emulator, emulator.auth())
        sessions = [requests.Session() for _ in range(WORKERS)]
        for session in sessions:
            session.auth = auth
        url = emulator.api_url + "/r"
        return threads_for(lambda i: sessions[i].get(url, timeout=10).status_code == 200)

    def httpx_tasks(emulator: SemansysEmulator, auth: Any) -> list[tuple[float, bool]]:
        async def main() -> list[tuple[float, bool]]:
            async with httpx.AsyncClient(auth=auth, timeout=10) as client:

                async def call() -> bool:
                    return (await client.get(emulator.api_url + "/r")).status_code == 200

                return await tasks_for(call)

        return asyncio.run(main())

    def ours_httpx_tasks(emulator: SemansysEmulator) -> list[tuple[float, bool]]:
        return httpx_tasks(emulator, first_token(emulator, emulator.auth()))

    def ours_aiohttp(emulator: SemansysEmulator) -> list[tuple[float, bool]]:
        auth = first_token(emulator, emulator.auth())

        async def main() -> list[tuple[float, bool]]:
            async with aiohttp.ClientSession(middlewares=(auth,)) as session:

                async def call() -> bool:
                    async with session.get(emulator.api_url + "/r") as response:
                        return response.status == 200

                return await tasks_for(call)

        return asyncio.run(main())

    def httpx_auth_tasks(emulator: SemansysEmulator) -> list[tuple[float, bool]]:
        httpx_auth.OAuth2.token_cache.clear()
        credentials = emulator.credentials
        auth = httpx_auth.OAuth2ResourceOwnerPasswordCredentials(
            emulator.token_url,
            credentials["username"],
            credentials["password"],
            client_id=credentials["client_id"],
            client_secret=credentials["client_secret"],
            early_expiry=LIFETIME / 2,
        )
        httpx.get(emulator.api_url + "/warm", auth=auth, timeout=10)
        emulator.token_delay = DELAY
        return httpx_tasks(emulator, auth)

    def authlib_start(emulator: SemansysEmulator) -> dict[str, Any]:
        """A token for Authlib's client to start with (it has no password grant
        flow of its own), then the slow token endpoint that renewals will meet."""
        token: dict[str, Any] = requests.post(
            emulator.token_url,
            data={"grant_type": "password", **emulator.credentials},
            timeout=10,
        ).json()
        token["expires_at"] = int(time.time()) + LIFETIME
        emulator.token_delay = DELAY
        return token

    def authlib_tasks(emulator: SemansysEmulator) -> list[tuple[float, bool]]:
        credentials = emulator.credentials
        token = authlib_start(emulator)

        async def main() -> list[tuple[float, bool]]:
            async with AsyncOAuth2Client(
                credentials["client_id"],
                credentials["client_secret"],
                token=token,
                token_endpoint=emulator.token_url,
                token_endpoint_auth_method="client_secret_post",
                leeway=LIFETIME / 2,
                timeout=10,
            ) as client:

                async def call() -> bool:
                    return (await client.get(emulator.api_url + "/r")).status_code == 200

                return await tasks_for(call)

        return asyncio.run(main())

    def authlib_threads(emulator: SemansysEmulator) -> list[tuple[float, bool]]:
        credentials = emulator.credentials
        token = authlib_start(emulator)
        with OAuth2Client(
            credentials["client_id"],
            credentials["client_secret"],
            token=token,
            token_endpoint=emulator.token_url,
            token_endpoint_auth_method="client_secret_post",
            leeway=LIFETIME / 2,
            timeout=10,
        ) as client:
            return threads_for(lambda i: client.get(emulator.api_url + "/r").status_code == 200)

    run("semansys-auth, requests threads", ours_requests)
    run("semansys-auth, httpx tasks", ours_httpx_tasks)
    run("semansys-auth, aiohttp tasks", ours_aiohttp)
    run("httpx_auth, httpx tasks", httpx_auth_tasks)
    run("Authlib, httpx tasks", authlib_tasks)
    run("Authlib, httpx threads (shared)", authlib_threads)


# -- part 5: start-up -----------------------------------------------------------------


def paired(a: list[str], b: list[str], pairs: int, env: dict[str, str]) -> list[float]:
    """Wall-time ratios a/b, each a run of ``a`` next to a run of ``b`` (in a
    shuffled order), after a warm-up of each."""

    def once(command: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started

    once(a), once(b)
    found = []
    for _ in range(pairs):
        if ORDER.random() < 0.5:
            ta, tb = once(a), once(b)
        else:
            tb, ta = once(b), once(a)
        found.append(ta / tb)
    return found


def part_startup(pairs: int) -> None:
    print(f"\nPart 5: start-up, whole processes; median (interquartile range) of {pairs} paired "
          "ratios")  # fmt: skip
    compileall.compile_dir(str(Path(semansys_auth.__file__).parent), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    python = [sys.executable, "-c"]
    script = shutil.which("semansys-auth", path=str(Path(sys.executable).parent))
    with SemansysEmulator() as emulator, tempfile.TemporaryDirectory() as cache:
        env_cli = {**env, **emulator.env(), "SEMANSYS_TOKEN_CACHE": cache}
        assert script is not None
        subprocess.run([script, "token"], env=env_cli, stdout=subprocess.DEVNULL, check=True)
        both = "import requests, httpx"
        rows = [
            ("semansys-auth token (warm cache)", [script, "token"], "import requests", env_cli),
            ("import semansys_auth", [*python, "import semansys_auth"], both, env),
            (
                "from semansys_auth import SemansysAuth",
                [*python, "from semansys_auth import SemansysAuth"],
                both,
                env,
            ),
            ("import httpx_auth", [*python, "import httpx_auth"], both, env),
            ("import requests_auth", [*python, "import requests_auth"], both, env),
            ("import requests_oauthlib", [*python, "import requests_oauthlib"], both, env),
            (
                "from authlib...httpx_client import OAuth2Client",
                [*python, "from authlib.integrations.httpx_client import OAuth2Client"],
                both,
                env,
            ),
        ]
        print(f"{'command':<48} {'against':<28} {'ratio':>24}")
        for label, command, baseline, run_env in rows:
            found = paired(command, [*python, baseline], pairs, run_env)
            print(f"{label:<48} {baseline:<28} {cell(found):>24}", flush=True)


# -- part 6: a burst of concurrent requests on one event loop -------------------------

BURST = 5000
Get = Callable[[], Awaitable[int]]  # one request, its status
Opener = Callable[[Any], AbstractAsyncContextManager[Get]]  # a client with this auth


async def timed_burst(get: Get, count: int) -> tuple[float, float]:
    """(CPU seconds of the process, wall seconds) for ``count`` requests started
    at once with ``asyncio.gather``."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        statuses = await asyncio.gather(*(get() for _ in range(count)))
        took = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        gc.enable()
    failed = sum(status != 200 for status in statuses)
    if failed:
        raise RuntimeError(f"{failed} of {count} requests of a burst did not answer 200")
    return took


class Tally:
    """Token requests that reached the in-memory server."""

    def __init__(self) -> None:
        self.count = 0

    def answer(self, path: str) -> tuple[bytes, str]:
        """(body, content type) for a request to ``path``."""
        if path.endswith("/connect/token"):
            self.count += 1
            return TOKEN_BODY, "application/json"
        return b"ok", "text/plain"


def httpx_opener(tally: Tally) -> Opener:
    def handler(request: httpx.Request) -> httpx.Response:
        body, kind = tally.answer(request.url.path)
        return httpx.Response(200, content=body, headers={"Content-Type": kind})

    transport = httpx.MockTransport(handler)

    @asynccontextmanager
    async def opener(auth: Any) -> AsyncIterator[Get]:
        async with httpx.AsyncClient(transport=transport, auth=auth) as client:

            async def get() -> int:
                return (await client.get(API_URL)).status_code

            yield get

    return opener


class Unavailable(Exception):
    """A client that cannot be measured in memory."""


def aiohttp_opener(tally: Tally) -> Opener:
    """aiohttp over a connector whose connections are in memory: each answers a
    complete request with a canned response. It overrides aiohttp's private
    ``BaseConnector._create_connection`` and uses its ``ResponseHandler``: the
    row is left out, saying why, when a release no longer has them."""
    import aiohttp

    try:
        from aiohttp.client_proto import ResponseHandler
    except ImportError as error:
        raise Unavailable(f"aiohttp has no ResponseHandler: {error}") from None
    if not hasattr(aiohttp.BaseConnector, "_create_connection"):
        raise Unavailable("aiohttp's BaseConnector has no _create_connection")

    class MemoryTransport(asyncio.Transport):
        def __init__(self, protocol: Any, loop: asyncio.AbstractEventLoop) -> None:
            super().__init__()
            self.protocol, self.loop, self.pending, self.closing = protocol, loop, b"", False

        def write(self, data: Any) -> None:
            self.pending += bytes(data)
            while b"\r\n\r\n" in self.pending:
                head, _, rest = self.pending.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                fields = dict(line.lower().split(":", 1) for line in lines[1:])
                length = int(fields.get("content-length", "0"))
                if len(rest) < length:
                    return
                self.pending = rest[length:]
                body, kind = tally.answer(lines[0].split(" ")[1])
                answer = (
                    f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                self.loop.call_soon(self.protocol.data_received, answer)

        def writelines(self, chunks: Any) -> None:
            for chunk in chunks:
                self.write(chunk)

        def is_closing(self) -> bool:
            return self.closing

        def close(self) -> None:
            if not self.closing:
                self.closing = True
                self.loop.call_soon(self.protocol.connection_lost, None)

        def abort(self) -> None:
            self.close()

        def get_write_buffer_size(self) -> int:
            return 0

    class MemoryConnector(aiohttp.BaseConnector):
        async def _create_connection(self, *args: Any) -> Any:
            protocol = ResponseHandler(self._loop)
            protocol.connection_made(MemoryTransport(protocol, self._loop))
            return protocol

    @asynccontextmanager
    async def opener(auth: Any) -> AsyncIterator[Get]:
        connector = MemoryConnector(limit=0)  # no pool limit, as httpx's MockTransport
        async with aiohttp.ClientSession(connector=connector, middlewares=(auth,)) as session:

            async def get() -> int:
                async with session.get(API_URL) as response:
                    await response.read()
                    return response.status

            yield get

    return opener


async def aiohttp_floor(request: Any, handler: Any) -> Any:
    request.headers["Authorization"] = STATIC
    return await handler(request)


async def burst_pairs(
    opener: Opener, tally: Tally, floor: Any, rounds: int, count: int
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, int]]:
    """Each round runs two pairs, floor and cold, floor and warm, each pair in a
    shuffled order: ((CPU time, wall time) over the floor's, pair by pair; the
    largest number of token requests one burst made)."""
    warm = ours()
    auths: dict[str, Callable[[], Any]] = {
        FLOOR: lambda: floor,
        COLD: ours,  # a new object per burst: its first request fetches the token
        WARM: lambda: warm,  # one object, which holds its token after the warm-up
    }
    found: dict[str, list[tuple[float, float]]] = {COLD: [], WARM: []}
    most = {name: 0 for name in auths}

    async def run(name: str) -> tuple[float, float]:
        async with opener(auths[name]()) as get:
            before = tally.count
            took = await timed_burst(get, count)
        most[name] = max(most[name], tally.count - before)
        return took

    for name in auths:  # warm up: imports, the heap grown to a burst, warm's token
        await run(name)
    most = {name: 0 for name in auths}  # counted from here on
    for _ in range(rounds):
        for name in ORDER.sample(list(found), 2):
            if ORDER.random() < 0.5:
                ours_took, floor_took = await run(name), await run(FLOOR)
            else:
                floor_took, ours_took = await run(FLOOR), await run(name)
            found[name].append((ours_took[0] / floor_took[0], ours_took[1] / floor_took[1]))
    return found, most


def part_burst(rounds: int, count: int) -> None:
    print(f"\nPart 6: {count} requests started at once on one event loop (asyncio.gather), "
          "in memory; the burst's cost over the floor's, median (interquartile range) of "
          f"{rounds} interleaved pairs.\nCold: a new SemansysAuth, whose first request "
          "fetches the token through the same client; warm: one SemansysAuth holding its "
          "token")  # fmt: skip
    print(f"{'client':<15} {'auth':<6} {'CPU time':>21} {'wall time':>21} "
          f"{'token requests':>15}")  # fmt: skip
    clients: list[tuple[str, Callable[[Tally], Opener], Any]] = [
        ("httpx async", httpx_opener, floor_auth(httpx)),
        ("aiohttp", aiohttp_opener, aiohttp_floor),
    ]
    for client, make_opener, floor in clients:
        tally = Tally()
        try:
            opener = make_opener(tally)
        except Unavailable as error:
            print(f"{client:<15} not measured: {error}")
            continue
        found, most = asyncio.run(burst_pairs(opener, tally, floor, rounds, count))
        for name in (COLD, WARM):
            cpu = cell([pair[0] for pair in found[name]])
            wall = cell([pair[1] for pair in found[name]])
            print(f"{client:<15} {name:<6} {cpu:>21} {wall:>21} {most[name]:>15}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run")
    parts = ["cost", "concurrency", "processes", "renewal", "startup", "burst"]
    parser.add_argument("--part", action="append", choices=parts, help="run only these parts")
    parser.add_argument("--seed", type=int, help="the shuffle seed (default: a random one)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    ORDER.seed(seed)
    print(f"semansys-auth {semansys_auth.__version__}, Python {sys.version.split()[0]}, "
          f"seed {seed} (--seed {seed} repeats the order)")  # fmt: skip
    chosen = args.part or parts
    rounds, count, pairs = (4, 200, 6) if args.quick else (30, 500, 30)
    bursts = 2 if args.quick else 6
    if "cost" in chosen:
        part_cost(rounds, count)
    if "concurrency" in chosen:
        part_concurrency()
    if "processes" in chosen:
        part_processes(8)
    if "renewal" in chosen:
        part_renewal()
    if "startup" in chosen:
        part_startup(pairs)
    if "burst" in chosen:
        part_burst(bursts, BURST)


if __name__ == "__main__":
    main()
