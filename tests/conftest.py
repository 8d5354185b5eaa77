from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from helpers import KINDS
from redis_server import RedisServer

# The ``semansys_emulator`` fixture comes from semansys-auth's own pytest plugin
# (entry point ``pytest11``), exactly as users get it.


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each behaviour test runs through requests, httpx, httpx async, httpx2,
    httpx2 async and aiohttp."""
    return str(request.param)


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Test ids in plain ASCII: a character outside it (or a backslash) is named
    as U+XXXX. pytest would escape it instead, and mutmut, which selects tests
    by id, does not always find an escaped id again (and counts that as a kill)."""
    if isinstance(val, str) and not (val.isascii() and val.isprintable() and "\\" not in val):
        return "".join(
            c if c.isascii() and c.isprintable() and c != "\\" else f"U+{ord(c):04X}" for c in val
        )
    return None


# A real redis-server on loopback, one per test module that asks for it, and a
# client of it whose database starts empty for each test.
@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    connection.flushall()
    try:
        yield connection
    finally:
        connection.close()
