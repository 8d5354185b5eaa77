"""Callers that wait for a renewal share its outcome, a failure too: when the
token endpoint drops the connection, one token request is made, the caller that
made it gets its own library's exception, and the callers that waited for it get
an unavailable endpoint at once, instead of each trying again in turn."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import aiohttp
import pytest
import requests
from wire_servers import _Listener

from semansys_auth import SemansysAuth, TokenEndpointUnavailableError

API = "http://127.0.0.1:9/api"  # never reached: no token is ever obtained


class SlowDropServer(_Listener):
    """Accepts connections, holds each ``delay`` seconds, then closes it
    unanswered; counts them."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.accepted_count = 0
        super().__init__()

    @property
    def token_url(self) -> str:
        return f"{self.url}/connect/token"

    def accepted(self, conn: socket.socket) -> None:
        self.accepted_count += 1
        threading.Timer(self.delay, conn.close).start()


def auth_for(url: str) -> SemansysAuth:
    return SemansysAuth(
        client_id="cid",
        client_secret="s3cret-client",
        username="jane@example.com",
        password="pa55word",
        token_url=url,
        max_retries=0,
        timeout=5,
    )


@pytest.mark.timeout(30)
def test_threads_share_a_dropped_renewal() -> None:
    with SlowDropServer(0.5) as server:
        auth = auth_for(server.token_url)
        errors: list[BaseException] = []
        took: list[float] = []

        def call() -> None:
            started = time.monotonic()
            try:
                requests.get(API, auth=auth, timeout=5)
            except Exception as exc:
                errors.append(exc)
            took.append(time.monotonic() - started)

        threads = [threading.Thread(target=call) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert server.accepted_count == 1, "one token request for the five callers"
    own = [e for e in errors if isinstance(e, requests.ConnectionError)]
    shared = [e for e in errors if isinstance(e, TokenEndpointUnavailableError)]
    assert len(own) == 1 and len(shared) == 4, errors
    assert all("waited for failed" in str(e) for e in shared)
    assert all(isinstance(e.__cause__, requests.ConnectionError) for e in shared)
    assert "pa55word" not in "".join(map(str, errors))
    assert max(took) < 3.0, "nobody waited for a second attempt"


@pytest.mark.timeout(30)
def test_tasks_share_a_dropped_renewal() -> None:
    with SlowDropServer(0.5) as server:
        auth = auth_for(server.token_url)

        async def call(session: aiohttp.ClientSession) -> Any:
            # A POST: aiohttp sends an idempotent request again, middleware and
            # all, after a disconnect (its own retry, not ours).
            try:
                async with session.post(API, data=b"filing") as response:
                    return response.status
            except Exception as exc:
                return exc

        async def main() -> list[Any]:
            async with aiohttp.ClientSession(middlewares=(auth,)) as session:
                return await asyncio.gather(*(call(session) for _ in range(10)))

        started = time.monotonic()
        results = asyncio.run(asyncio.wait_for(main(), 20))
        took = time.monotonic() - started
    assert server.accepted_count == 1
    own = [r for r in results if isinstance(r, aiohttp.ClientError)]
    shared = [r for r in results if isinstance(r, TokenEndpointUnavailableError)]
    assert len(own) == 1 and len(shared) == 9, results
    assert took < 3.0
