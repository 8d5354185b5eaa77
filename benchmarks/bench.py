"""Benchmark: per-request cost and behaviour under concurrency, against the peers.

    pip install -e '.[bench]'
    python benchmarks/bench.py            # about three minutes on 2 cores
    python benchmarks/bench.py --quick    # fewer rounds, for a smoke run

Part 1, per-request cost over in-memory transports (httpx.MockTransport, a
requests transport adapter): the time of one request with each auth, divided by
the time with a hand-set static ``Authorization`` header. Every contender runs
in each round, in a shuffled order, with the garbage collector paused, and the
best round counts (the usual way to measure overhead on a noisy machine). The
token is fetched before timing starts.

Part 2, concurrency against a loopback token server that takes 300 ms to answer
(the package's own emulator): token requests caused by 16 threads x 20 requests
and by 200 concurrent asyncio tasks, and the longest event-loop stall during the
async burst (a ticker task that sleeps 1 ms and records its longest gap).
Libraries that cannot fetch the first token on their own (Authlib,
requests-oauthlib) start from an expired token, so the burst is a refresh.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

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


# -- in-memory transports ---------------------------------------------------------


def mock_transport(module: Any) -> Any:
    """An in-memory transport of ``module`` (httpx or httpx2)."""

    def handler(request: Any) -> Any:
        if request.url.path == "/connect/token":
            return module.Response(
                200, content=TOKEN_BODY, headers={"Content-Type": "application/json"}
            )
        return module.Response(200, content=b"ok")

    return module.MockTransport(handler)


class MemoryAdapter(BaseAdapter):
    """A requests transport adapter that answers from memory."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.request = request
        response.url = request.url or ""
        response.connection = self
        if request.url and request.url.endswith("/connect/token"):
            response.status_code = 200
            response._content = TOKEN_BODY
            response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        else:
            response.status_code = 200
            response._content = b"ok"
            response.headers = CaseInsensitiveDict({"Content-Length": "2"})
        response.raw = io.BytesIO(response._content)
        return response

    def close(self) -> None:
        pass


def memory_session() -> requests.Session:
    session = requests.Session()
    session.mount("https://bench.invalid/", MemoryAdapter())
    return session


def authlib_token() -> dict[str, Any]:
    return {
        "access_token": "bench-access-token",
        "token_type": "Bearer",
        "expires_in": 3600,
        "expires_at": int(time.time()) + 3600,
        "refresh_token": "bench-refresh",
    }


# -- part 1: per-request cost -------------------------------------------------------


def requests_contenders() -> dict[str, Callable[[], requests.Session]]:
    def static() -> requests.Session:
        session = memory_session()
        session.headers["Authorization"] = STATIC
        return session

    def ours() -> requests.Session:
        session = memory_session()
        session.auth = SemansysAuth(
            token_url=TOKEN_URL, requests_session=memory_session(), **CREDENTIALS
        )
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

        session = OAuth2Session(
            client=LegacyApplicationClient(CREDENTIALS["client_id"]), token=authlib_token()
        )
        session.mount("https://bench.invalid/", MemoryAdapter())
        return session

    def authlib_() -> requests.Session:
        from authlib.integrations.requests_client import OAuth2Session

        session = OAuth2Session(
            CREDENTIALS["client_id"], CREDENTIALS["client_secret"], token=authlib_token()
        )
        session.mount("https://bench.invalid/", MemoryAdapter())
        return session

    return {
        "static header": static,
        "semansys-auth": ours,
        "requests_auth": requests_auth_,
        "requests-oauthlib": requests_oauthlib_,
        "Authlib": authlib_,
    }


def httpx_auth_for(transport: Any) -> Any:
    """httpx_auth's password-grant auth, fetching its token over ``transport``."""
    import httpx_auth

    httpx_auth.OAuth2.token_cache.clear()  # a process-wide cache
    return httpx_auth.OAuth2ResourceOwnerPasswordCredentials(
        TOKEN_URL,
        CREDENTIALS["username"],
        CREDENTIALS["password"],
        client=httpx.Client(transport=transport),
        client_id=CREDENTIALS["client_id"],
        client_secret=CREDENTIALS["client_secret"],
    )


def httpx_contenders(module: Any) -> dict[str, Callable[[], Any]]:
    transport = mock_transport(module)

    def static() -> Any:
        return module.Client(transport=transport, headers={"Authorization": STATIC})

    def ours() -> Any:
        return module.Client(
            transport=transport, auth=SemansysAuth(token_url=TOKEN_URL, **CREDENTIALS)
        )

    def httpx_auth_() -> httpx.Client:
        return httpx.Client(transport=transport, auth=httpx_auth_for(transport))

    def authlib_() -> Any:
        from authlib.integrations.httpx_client import OAuth2Client

        return OAuth2Client(
            CREDENTIALS["client_id"],
            CREDENTIALS["client_secret"],
            token=authlib_token(),
            transport=transport,
        )

    return _available(module, "Client", static, ours, httpx_auth_, authlib_)


def _available(module: Any, kind: str, static: Any, ours: Any, peer: Any, authlib_: Any) -> Any:
    """httpx_auth works with httpx only; Authlib's clients subclass httpx2's when
    httpx2 is installed, else httpx's."""
    from authlib.integrations import httpx_client

    found = {"static header": static, "semansys-auth": ours}
    if module is httpx:
        found["httpx_auth"] = peer
    authlib_class = (
        httpx_client.OAuth2Client if kind == "Client" else httpx_client.AsyncOAuth2Client
    )
    if issubclass(authlib_class, getattr(module, kind)):
        found["Authlib"] = authlib_
    return found


def async_contenders(module: Any) -> dict[str, Callable[[], Any]]:
    transport = mock_transport(module)

    def static() -> Any:
        return module.AsyncClient(transport=transport, headers={"Authorization": STATIC})

    def ours() -> Any:
        return module.AsyncClient(
            transport=transport, auth=SemansysAuth(token_url=TOKEN_URL, **CREDENTIALS)
        )

    def httpx_auth_() -> Any:
        return httpx.AsyncClient(transport=transport, auth=httpx_auth_for(transport))

    def authlib_() -> Any:
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        return AsyncOAuth2Client(
            CREDENTIALS["client_id"],
            CREDENTIALS["client_secret"],
            token=authlib_token(),
            transport=transport,
        )

    return _available(module, "AsyncClient", static, ours, httpx_auth_, authlib_)


def time_sync(get: Callable[[str], Any], count: int) -> float:
    gc.disable()  # a collection in one contender's round is noise, not its cost
    try:
        started = time.perf_counter()
        for _ in range(count):
            get(API_URL)
        return (time.perf_counter() - started) / count
    finally:
        gc.enable()


async def time_async(client: Any, count: int) -> float:
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in range(count):
            await client.get(API_URL)
        return (time.perf_counter() - started) / count
    finally:
        gc.enable()


_order = random.Random(20261127)


def shuffled(clients: dict[str, Any]) -> list[tuple[str, Any]]:
    """The contenders in a new order each round: no one always runs first."""
    items = list(clients.items())
    _order.shuffle(items)
    return items


def per_request(rounds: int, count: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    import httpx2

    groups = [("requests", requests_contenders())]
    groups += [(m.__name__, httpx_contenders(m)) for m in (httpx, httpx2)]
    for label, contenders in groups:
        clients = {name: make() for name, make in contenders.items()}
        for client in clients.values():
            time_sync(client.get, 200)  # warm up; fetches the token
        best = dict.fromkeys(clients, float("inf"))
        for _ in range(rounds):
            for name, client in shuffled(clients):
                best[name] = min(best[name], time_sync(client.get, count))
        results[label] = best
        for client in clients.values():
            client.close()

    async def run_async(module: Any) -> dict[str, float]:
        clients = {name: make() for name, make in async_contenders(module).items()}
        for client in clients.values():
            await time_async(client, 200)
        best = dict.fromkeys(clients, float("inf"))
        for _ in range(rounds):
            for name, client in shuffled(clients):
                best[name] = min(best[name], await time_async(client, count))
        for client in clients.values():
            await client.aclose()
        return best

    for module in (httpx, httpx2):
        results[module.__name__ + " async"] = asyncio.run(run_async(module))
    return results


# -- part 2: concurrency against a slow loopback token server ---------------------------


def outcome(emulator: SemansysEmulator, failures: int) -> str:
    """Token requests made, and requests that failed (raised or got no 2xx)."""
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


async def task_burst(emulator: SemansysEmulator, client: Any) -> tuple[str, float, float]:
    """(token requests, longest stall while a token request was pending, longest
    stall over the whole burst of 200 requests)."""
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
    replies = await asyncio.gather(
        *(client.get(f"{emulator.api_url}/a{i}") for i in range(200)), return_exceptions=True
    )
    done = True
    await tick
    failures = sum(isinstance(r, BaseException) or r.status_code != 200 for r in replies)
    fetches = [(r.received_at or r.at, r.at) for r in emulator.token_requests()]
    stall = max((end - start for start, end in gaps), default=0.0)
    during_fetch = max(
        (
            end - start
            for start, end in gaps
            if any(start < fetch_end and end > fetch_start for fetch_start, fetch_end in fetches)
        ),
        default=0.0,
    )
    return outcome(emulator, failures), during_fetch, stall


def expired_authlib_token() -> dict[str, Any]:
    token = authlib_token()
    token["expires_at"] = int(time.time()) - 10
    token["expires_in"] = -10
    return token


def concurrency() -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    # requests-oauthlib refuses plain http (the emulator is on loopback) without it.
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    with SemansysEmulator(token_delay=0.3) as emulator:
        credentials = emulator.credentials
        for_peers = {
            "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"],
        }

        def refresh_token_for(emulator: SemansysEmulator) -> dict[str, Any]:
            answer = requests.post(
                emulator.token_url,
                data={"grant_type": "password", **credentials},
                timeout=10,
            ).json()
            answer["expires_at"] = int(time.time()) - 10
            answer["expires_in"] = -10
            return dict(answer)

        # semansys-auth
        auth = emulator.auth()

        def ours_requests() -> Callable[[str], Any]:
            session = requests.Session()
            session.auth = auth
            return lambda url: session.get(url, timeout=30)

        rows["semansys-auth"] = {"threads": thread_burst(emulator, ours_requests)}

        async def ours_async() -> tuple[str, float, float]:
            async with httpx.AsyncClient(auth=emulator.auth(), timeout=30) as client:
                return await task_burst(emulator, client)

        rows["semansys-auth"]["tasks"] = asyncio.run(ours_async())

        async def static_async() -> tuple[str, float, float]:
            token = emulator.auth().get_token()
            headers = {"Authorization": "Bearer " + token}
            async with httpx.AsyncClient(headers=headers, timeout=30) as client:
                return await task_burst(emulator, client)

        rows["static header (no fetch)"] = {"threads": "-", "tasks": asyncio.run(static_async())}

        # httpx_auth / requests_auth
        import httpx_auth
        import requests_auth

        requests_auth.OAuth2.token_cache.clear()
        ra = requests_auth.OAuth2ResourceOwnerPasswordCredentials(
            emulator.token_url, credentials["username"], credentials["password"], **for_peers
        )

        def ra_get() -> Callable[[str], Any]:
            session = requests.Session()
            session.auth = ra
            return lambda url: session.get(url, timeout=30)

        rows["requests_auth"] = {"threads": thread_burst(emulator, ra_get)}

        httpx_auth.OAuth2.token_cache.clear()
        ha = httpx_auth.OAuth2ResourceOwnerPasswordCredentials(
            emulator.token_url, credentials["username"], credentials["password"], **for_peers
        )
        shared = httpx.Client(auth=ha, timeout=30)
        rows["httpx_auth"] = {"threads": thread_burst(emulator, lambda: shared.get)}
        shared.close()
        httpx_auth.OAuth2.token_cache.clear()
        ha = httpx_auth.OAuth2ResourceOwnerPasswordCredentials(
            emulator.token_url, credentials["username"], credentials["password"], **for_peers
        )

        async def httpx_auth_async() -> tuple[str, float, float]:
            async with httpx.AsyncClient(auth=ha, timeout=30) as client:
                return await task_burst(emulator, client)

        rows["httpx_auth"]["tasks"] = asyncio.run(httpx_auth_async())

        # Authlib (starts from an expired token: it cannot fetch the first one itself)
        from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client

        authlib_client = OAuth2Client(
            token_endpoint=emulator.token_url,
            token=refresh_token_for(emulator),
            token_endpoint_auth_method="client_secret_post",
            timeout=30,
            **for_peers,
        )
        rows["Authlib (refresh)"] = {"threads": thread_burst(emulator, lambda: authlib_client.get)}
        authlib_client.close()

        async def authlib_async() -> tuple[str, float, float]:
            async with AsyncOAuth2Client(
                token_endpoint=emulator.token_url,
                token=refresh_token_for(emulator),
                token_endpoint_auth_method="client_secret_post",
                timeout=30,
                **for_peers,
            ) as client:
                return await task_burst(emulator, client)

        rows["Authlib (refresh)"]["tasks"] = asyncio.run(authlib_async())

        # requests-oauthlib (starts from an expired token, auto-refresh on)
        from oauthlib.oauth2 import LegacyApplicationClient
        from requests_oauthlib import OAuth2Session

        session = OAuth2Session(
            client=LegacyApplicationClient(credentials["client_id"]),
            token=refresh_token_for(emulator),
            auto_refresh_url=emulator.token_url,
            auto_refresh_kwargs=for_peers,
            token_updater=lambda token: None,
        )
        rows["requests-oauthlib (refresh)"] = {
            "threads": thread_burst(emulator, lambda: lambda url: session.get(url, timeout=30))
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests")
    args = parser.parse_args()
    rounds, count = (3, 300) if args.quick else (40, 500)

    print(f"Part 1: per-request cost, best of {rounds} rounds x {count} requests")
    results = per_request(rounds, count)
    names = ["semansys-auth", "httpx_auth", "requests_auth", "requests-oauthlib", "Authlib"]
    print(f"{'client':<13} {'static (us)':>12} " + " ".join(f"{n:>17}" for n in names))
    for label, best in results.items():
        base = best["static header"]
        cells = [f"{best[n] / base:>16.3f}x" if n in best else f"{'-':>17}" for n in names]
        print(f"{label:<13} {base * 1e6:>12.1f} " + " ".join(cells))

    print("\nPart 2: a token endpoint that takes 300 ms; token requests made")
    rows = concurrency()
    print(
        f"{'library':<28} {'16 threads x 20':>16} {'200 async tasks':>16} "
        f"{'stall during fetch':>19} {'stall, whole burst':>19}"
    )
    for name, row in rows.items():
        tasks, fetch_stall, burst_stall = row.get("tasks", ("-", None, None))
        shown = [f"{v * 1000:.0f} ms" if v is not None else "-" for v in (fetch_stall, burst_stall)]
        print(f"{name:<28} {row['threads']!s:>16} {tasks!s:>16} {shown[0]:>19} {shown[1]:>19}")


if __name__ == "__main__":
    main()
