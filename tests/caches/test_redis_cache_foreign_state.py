"""Foreign state in Redis (a lock key with no TTL, a value of another
type at the token key), the bounded wait for a lease held by someone else, the
query options of a Redis URL, and ``RedisTokenCache.clear()``; with a real
``redis-server`` on loopback."""

from __future__ import annotations

import logging
import time
from urllib.parse import quote, urlencode

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import send
from redis_server import RedisServer
from semansys_auth import RedisTokenCache, Token
from semansys_auth._config import cache_wait
from semansys_auth._entry import seal
from semansys_auth._redis_cache import _TLS_OPTIONS, _URL_OPTIONS
from semansys_auth.testing import SemansysEmulator

KEY = "ab" * 32
OTHER = "ef" * 32


# -- a lock key nobody holds ------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", ["string", "list"])
def test_a_lock_key_without_ttl_is_removed_and_the_renewal_goes_on(
    semansys_emulator: SemansysEmulator,
    redis_server: RedisServer,
    client: redis.Redis,
    value: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = semansys_emulator.auth(token_cache=RedisTokenCache.from_url(redis_server.url))
    lock = f"semansys-auth:lock:{auth._core.cache_key()}"
    if value == "string":
        client.set(lock, "left by a crashed tool")  # no expiry
    else:
        client.rpush(lock, "x")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert time.monotonic() - started < 3
    assert len(semansys_emulator.token_requests()) == 1
    assert f"token cache lock {lock} in Redis had no expiry" in caplog.text
    assert "failed" not in caplog.text
    assert client.exists(lock) == 0, "released after the renewal"
    assert client.exists(f"semansys-auth:token:{auth._core.cache_key()}") == 1


def test_a_lease_with_a_ttl_is_never_removed(client: redis.Redis) -> None:
    cache = RedisTokenCache(client)
    client.set(f"semansys-auth:lock:{KEY}", "someone", px=5000)
    assert cache.lock(KEY).acquire(0) is False
    assert client.get(f"semansys-auth:lock:{KEY}") == b"someone"
    assert cache.clear(KEY) == 0
    assert client.get(f"semansys-auth:lock:{KEY}") == b"someone"


@pytest.mark.timeout(30)
def test_a_lease_held_by_someone_else_is_waited_for_one_lease_at_most(
    semansys_emulator: SemansysEmulator,
    redis_server: RedisServer,
    client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = RedisTokenCache.from_url(redis_server.url, lock_lease=1.5)
    auth = semansys_emulator.auth(token_cache=cache, timeout=20)
    client.set(f"semansys-auth:lock:{auth._core.cache_key()}", "a stuck holder", px=60_000)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    waited = time.monotonic() - started
    assert 1.2 <= waited < 5, waited
    assert "token cache lock not obtained within 2 s: renewing without it" in caplog.text
    assert len(semansys_emulator.token_requests()) == 1


def test_the_wait_for_a_cache_lock_is_one_timeout_or_the_caches_bound() -> None:
    class Bounded:
        def __init__(self, bound: object) -> None:
            self.max_lock_wait = bound

    assert cache_wait(30.0, None) == 30.0
    assert cache_wait(30.0, Bounded(15.0)) == 15.0
    assert cache_wait(10.0, Bounded(15.0)) == 10.0
    for nonsense in ("15", True, None, -1, float("nan")):
        assert cache_wait(30.0, Bounded(nonsense)) == 30.0
    assert RedisTokenCache(redis.Redis(socket_timeout=1), lock_lease=7).max_lock_wait == 7.0


# -- a value of another type at the token key -------------------------------------------


@pytest.mark.parametrize("kind", ["list", "hash", "set"])
def test_a_token_key_of_another_type_is_a_miss_and_replaced(
    semansys_emulator: SemansysEmulator,
    redis_server: RedisServer,
    client: redis.Redis,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = semansys_emulator.auth(token_cache=RedisTokenCache.from_url(redis_server.url))
    name = f"semansys-auth:token:{auth._core.cache_key()}"
    {"list": lambda: client.rpush(name, "x"), "hash": lambda: client.hset(name, "a", "b")}.get(
        kind, lambda: client.sadd(name, "x")
    )()
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert f"token cache entry {name} in Redis is ignored: it is not a string value" in (
        caplog.text
    )
    assert "failed" not in caplog.text, "not a cache failure: the cache is not paused"
    assert client.type(name) == b"string", "replaced by our entry"
    second = semansys_emulator.auth(token_cache=RedisTokenCache.from_url(redis_server.url))
    assert send("requests", second, "GET", semansys_emulator.api_url + "/b").status == 200
    assert len(semansys_emulator.token_requests()) == 1, "the next object took it from Redis"


# -- the options of a Redis URL ----------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("bogus=1", "'bogus'"),
        ("socket_timeout=abc", "'socket_timeout'"),
        ("socket_timeout=-1", "'socket_timeout'"),
        ("db=x", "'db'"),
        ("retry=1", "'retry'"),
        ("connection_class=x", "'connection_class'"),
        ("ssl_cert_reqs=none", "'ssl_cert_reqs'"),  # only for rediss://
        ("decode_responses=1", "'decode_responses'"),
        ("protocol=9", "'protocol'"),
        ("socket_keepalive=off", "'socket_keepalive'"),  # redis-py would read it as true
        ("db=", "'db'"),
        ("hunter2", "an option whose name is not lowercase letters and underscores"),
        ("Secret-Pass=1", "an option whose name is not lowercase letters and underscores"),
    ],
)
def test_an_unexpected_url_option_is_a_value_error_naming_it(query: str, named: str) -> None:
    hunter = "pass-word" if query in ("hunter2", "Secret-Pass=1") else "hunter2"
    with pytest.raises(ValueError, match="the Redis URL") as caught:
        RedisTokenCache.from_url(f"redis://user:{hunter}@127.0.0.1:1/0?{query}")
    message = str(caught.value)
    assert named in message
    assert hunter not in message and "127.0.0.1" not in message
    assert "hunter2" not in message and "Secret-Pass" not in message


def test_tls_options_are_accepted_for_rediss(redis_server: RedisServer) -> None:
    cache = RedisTokenCache.from_url("rediss://127.0.0.1:1/0?ssl_cert_reqs=required")
    assert repr(cache) == "RedisTokenCache(prefix='semansys-auth:')"


def test_known_url_options_reach_the_client(redis_server: RedisServer) -> None:
    cache = RedisTokenCache.from_url(
        f"{redis_server.url}?db=3&socket_timeout=0.5&client_name=worker&retry_on_timeout=yes"
        "&socket_keepalive=no"
    )
    kwargs = cache.client.connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["socket_timeout"], kwargs["client_name"]) == (3, 0.5, "worker")
    assert (kwargs["retry_on_timeout"], kwargs["socket_keepalive"]) == (True, False)
    assert cache.load(KEY) is None
    cache.client.close()


NAMES = sorted({*_URL_OPTIONS, *_TLS_OPTIONS, "bogus", "retry", "timeout", "decode_responses"})


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    scheme=st.sampled_from(["redis", "rediss", "unix"]),
    password=st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).map(
        lambda text: "pw-" + text
    ),
    options=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(NAMES), st.text(max_size=12)),
            st.one_of(
                st.sampled_from(["0", "1", "2", "3", "0.5", "-1", "nan", "inf", "yes", "none"]),
                st.text(max_size=12),
            ),
        ),
        max_size=4,
    ),
)
def test_any_url_query_gives_a_value_error_or_a_cache_that_works(
    redis_server: RedisServer, scheme: str, password: str, options: list[tuple[str, str]]
) -> None:
    where = f"127.0.0.1:{redis_server.port}" if scheme != "unix" else "/nonexistent.sock"
    url = f"{scheme}://:{quote(password, safe='')}@{where}/0?{urlencode(options)}"
    message = ""
    try:
        cache = RedisTokenCache.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    except ValueError as exc:
        message = str(exc)
    if message:
        assert password not in message and quote(password, safe="") not in message
        assert "the Redis URL" in message or "not a Redis URL" in message
        return
    try:
        cache.load(KEY)  # what the auth object does; a RedisError becomes a warning
    except redis.RedisError as exc:
        message = str(exc)
    finally:
        cache.client.close()
    assert password not in message


# -- clear() -----------------------------------------------------------------------------


def put(cache: RedisTokenCache, key: str) -> None:
    token = Token(access_token="AT", expires_at=time.time() + 600, obtained_at=1.0)
    cache.save(key, seal(key, bytes(32), token))


def test_clear_one_key(client: redis.Redis) -> None:
    cache = RedisTokenCache(client)
    put(cache, KEY)
    put(cache, OTHER)
    client.set(f"semansys-auth:lock:{KEY}", "foreign")  # no TTL: nobody holds it
    assert cache.clear(KEY) == 1
    assert cache.load(KEY) is None and cache.load(OTHER) is not None
    assert client.exists(f"semansys-auth:lock:{KEY}") == 0
    assert cache.clear(KEY) == 0
    with pytest.raises(ValueError, match="hex"):
        cache.clear("*")


def test_clear_all_removes_only_this_prefixs_entries(client: redis.Redis) -> None:
    cache = RedisTokenCache(client, prefix="app[1]*:")
    keys = [f"{i:064x}" for i in range(1200)]  # several SCAN pages
    for key in keys:
        put(cache, key)
    client.set(f"app[1]*:lock:{KEY}", "foreign")
    client.set(f"app[1]*:lock:{OTHER}", "held", px=60_000)
    survivors = {
        b"app[1]*:token:NOT-HEX": b"x",
        b"app[1]*:other:" + KEY.encode(): b"x",
        b"appX1]*:token:" + KEY.encode(): b"x",  # what an unescaped pattern would match
        b"semansys-auth:token:" + KEY.encode(): b"x",
        b"unrelated": b"x",
    }
    for name, value in survivors.items():
        client.set(name, value)
    assert cache.clear() == 1200
    assert set(client.keys("*")) == {*survivors, f"app[1]*:lock:{OTHER}".encode()}
    assert cache.clear() == 0


def test_clear_uses_scan_not_keys(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_keys(*args: object, **kwargs: object) -> None:
        raise AssertionError("KEYS blocks a busy server")

    monkeypatch.setattr(client, "keys", no_keys)
    cache = RedisTokenCache(client)
    put(cache, KEY)
    assert cache.clear() == 1


def test_a_huge_value_at_the_token_key_is_read_only_up_to_an_entrys_size(
    client: redis.Redis, semansys_emulator: SemansysEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Whoever can write to the Redis cannot make every worker read megabytes:
    one byte more than an entry may hold is read, and the entry is a miss that
    the next token replaces."""
    from semansys_auth._entry import MAX_ENTRY_BYTES

    cache = RedisTokenCache(client)
    client.set(f"semansys-auth:token:{KEY}", b"x" * (8 * 1024 * 1024))
    loaded = cache.load(KEY)
    assert loaded is not None and len(loaded) == MAX_ENTRY_BYTES + 1
    auth = semansys_emulator.auth(token_cache=cache)
    name = f"semansys-auth:token:{auth._core.cache_key()}"
    client.set(name, b"x" * (8 * 1024 * 1024))
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert "token cache entry ignored: too large" in caplog.text
    assert len(semansys_emulator.token_requests()) == 1
    assert client.strlen(name) < MAX_ENTRY_BYTES, "replaced by the new entry"


def test_an_empty_value_at_the_token_key_is_a_miss(client: redis.Redis) -> None:
    client.set(f"semansys-auth:token:{KEY}", b"")
    assert RedisTokenCache(client).load(KEY) is None
