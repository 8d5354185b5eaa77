"""A 401 is read only up to 64 KiB before the request is sent again with a
renewed token: a longer (or endless) body is cut and its connection closed,
not drained. Through every client, streamed and not, against a loopback API
that answers our first token with a 10 MB or an endless 401; the server
measures how much it managed to send."""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any

import aiohttp
import httpx
import httpx2
import pytest
import requests
from wire_servers import Api401Server

from helpers import TIMEOUT, is_async
from semansys_auth import SemansysAuth

BOUND = 64 * 1024
TEN_MB = 10 * 1024 * 1024
# What the kernel buffers on both sides of a loopback connection for a
# client that stopped reading, on top of the 64 KiB read: well under this.
FAR_BELOW = 2 * 1024 * 1024


def make_auth(server: Api401Server) -> SemansysAuth:
    return SemansysAuth(
        client_id="c",
        client_secret="s",
        username="u@example.com",
        password="p",
        token_url=server.url + "/connect/token",
        max_retries=0,
        timeout=5.0,
    )


def fetch(kind: str, auth: Any, url: str, stream: bool) -> tuple[int, Any, int]:
    """(status, the JSON body, how much of the 401 the client kept)."""
    if kind == "requests":
        with requests.get(url, auth=auth, timeout=TIMEOUT, stream=stream) as r:
            return r.status_code, r.json(), _kept(r)
    if kind == "aiohttp":
        return asyncio.run(_aiohttp(auth, url))
    if kind.startswith("niquests"):
        return _niquests(kind, auth, url, stream)
    module: Any = httpx2 if kind.startswith("httpx2") else httpx
    if is_async(kind):
        return asyncio.run(_httpx_async(module, auth, url, stream))
    with module.Client(auth=auth, timeout=TIMEOUT) as client:
        if stream:
            with client.stream("GET", url) as r:
                r.read()
                return r.status_code, r.json(), _kept(r)
        r = client.get(url)
        return r.status_code, r.json(), _kept(r)


def _kept(r: Any) -> int:
    """How much of the 401's body the client kept (httpx's history also holds
    the token endpoint's answers)."""
    (refused,) = [h for h in r.history if h.status_code == 401]
    return len(refused.content)


def _niquests(kind: str, auth: Any, url: str, stream: bool) -> tuple[int, Any, int]:
    import niquests

    if kind == "niquests":
        with niquests.Session() as session, session.get(url, auth=auth, stream=stream) as r:
            return int(r.status_code or 0), r.json(), _kept(r)

    async def go() -> tuple[int, Any, int]:
        async with niquests.AsyncSession() as session:
            r = await session.get(url, auth=auth, stream=stream, timeout=TIMEOUT)
            body = (await r.json()) if stream else r.json()
            # The 401 in the history stays an AsyncResponse: its content is awaited.
            (refused,) = [h for h in r.history if h.status_code == 401]
            return int(r.status_code or 0), body, len(await refused.content)

    return asyncio.run(go())


def _niquests_history(kind: str, auth: Any, url: str) -> list[Any]:
    import niquests

    if kind == "niquests":
        with niquests.Session() as session:
            r = session.get(url, auth=auth, timeout=TIMEOUT)
            assert r.status_code == 200
            return list(r.history)

    async def go() -> list[Any]:
        async with niquests.AsyncSession() as session:
            r = await session.get(url, auth=auth, timeout=TIMEOUT)
            assert r.status_code == 200
            # The 401 stays an AsyncResponse: its content is awaited.
            return [
                types.SimpleNamespace(status_code=h.status_code, content=await h.content)
                for h in r.history
            ]

    return asyncio.run(go())


async def _httpx_async(module: Any, auth: Any, url: str, stream: bool) -> tuple[int, Any, int]:
    async with module.AsyncClient(auth=auth, timeout=TIMEOUT) as client:
        if stream:
            async with client.stream("GET", url) as r:
                await r.aread()
                return r.status_code, r.json(), _kept(r)
        r = await client.get(url)
        return r.status_code, r.json(), _kept(r)


async def _aiohttp(auth: Any, url: str) -> tuple[int, Any, int]:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with (
        aiohttp.ClientSession(middlewares=(auth,), timeout=timeout) as session,
        session.get(url) as r,
    ):
        return r.status, await r.json(), 0  # aiohttp keeps no 401 in its history


@pytest.mark.timeout(40)
@pytest.mark.parametrize("size", [TEN_MB, None], ids=["10MB", "endless"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_a_huge_401_is_cut_and_the_request_sent_again(
    kind: str, size: int | None, stream: bool
) -> None:
    if kind == "aiohttp" and not stream:
        pytest.skip("aiohttp reads a body only when asked: every request streams")
    with Api401Server(size) as server:
        started = time.monotonic()
        status, body, kept = fetch(kind, make_auth(server), server.url + "/api", stream)
        took = time.monotonic() - started
        # The server's side of the 401 ends when the client closes it.
        deadline = time.monotonic() + 5
        while not server.ends_401 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert status == 200
        assert body == {"authorization": "Bearer tok-2"}
        assert server.tokens_issued == 2
        assert server.authorizations == ["Bearer tok-1", "Bearer tok-2"]
        assert took < 5, f"{took:.1f} s"
        assert server.ends_401 == ["closed"]  # not drained, not left hanging
        assert server.sent_401[0] < FAR_BELOW, server.sent_401
        assert kept <= BOUND


@pytest.mark.timeout(40)
def test_a_small_401_is_read_whole(kind: str) -> None:
    with Api401Server(1000) as server:
        status, body, kept = fetch(kind, make_auth(server), server.url + "/api", True)
        assert status == 200
        assert body == {"authorization": "Bearer tok-2"}
        assert server.ends_401 == ["complete"]
        assert server.sent_401 == [1000]
        if kind != "aiohttp":
            assert kept == 1000  # the 401's body, as the client shows it in history


@pytest.mark.timeout(40)
def test_a_compressed_401_is_kept_decoded(kind: str) -> None:
    if kind == "aiohttp":
        pytest.skip("aiohttp keeps no 401 in its history")
    import gzip

    payload = b'{"error": "invalid_token"}'
    with Api401Server(1000) as server:
        server.body_401 = gzip.compress(payload)
        server.headers_401 = "Content-Encoding: gzip\r\n"
        auth = make_auth(server)
        url = server.url + "/api"
        if kind == "requests":
            with requests.get(url, auth=auth, timeout=TIMEOUT, stream=True) as r:
                refused = r.history[0]
                assert r.status_code == 200
        elif kind.startswith("niquests"):
            refused = _niquests_history(kind, auth, url)[0]
        else:
            module: Any = httpx2 if kind.startswith("httpx2") else httpx
            if is_async(kind):

                async def go() -> Any:
                    async with module.AsyncClient(auth=auth, timeout=TIMEOUT) as client:
                        return await client.get(url)

                r = asyncio.run(go())
            else:
                with module.Client(auth=auth, timeout=TIMEOUT) as client:
                    r = client.get(url)
            assert r.status_code == 200
            (refused,) = [h for h in r.history if h.status_code == 401]
        assert refused.status_code == 401
        assert refused.content == payload
