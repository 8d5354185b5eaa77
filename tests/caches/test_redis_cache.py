"""A fleet of workers shares one token through Redis, with a real
``redis-server`` on loopback (tests/support/redis_server.py)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from helpers import send, wait_until
from redis_server import RedisServer
from semansys_auth import (
    FileTokenCache,
    RedisTokenCache,
    SemansysAuth,
    Token,
    UserCredentialsError,
)
from semansys_auth._entry import seal, unseal
from semansys_auth.testing import SemansysEmulator

SEALING_KEY = bytes(range(32))


def everything(client: redis.Redis) -> dict[str, tuple[bytes, int]]:
    """Every key with its value and its TTL in milliseconds."""
    found = {}
    for name in client.keys("*"):
        value = client.get(name)
        found[name.decode()] = (value or b"", int(client.pttl(name)))
    return found


def test_entries_are_hashed_expire_and_hold_no_secret(
    semansys_emulator: SemansysEmulator, kind: str, redis_server: RedisServer, client: redis.Redis
) -> None:
    cache = RedisTokenCache.from_url(redis_server.url)
    first = semansys_emulator.auth(token_cache=cache)
    second = semansys_emulator.auth(token_cache=RedisTokenCache.from_url(redis_server.url))
    assert send(kind, first, "GET", semansys_emulator.api_url + "/a").status == 200
    assert send(kind, second, "GET", semansys_emulator.api_url + "/a").status == 200
    assert len(semansys_emulator.token_requests()) == 1
    keys = everything(client)
    assert list(keys) == [f"semansys-auth:token:{first._core.cache_key()}"], "the lock is gone"
    value, ttl = keys[next(iter(keys))]
    assert 0 < ttl <= (3600 + 300) * 1000, "no longer than the token plus the margin"
    for secret in ("demo-client-secret", "demo-password", "demo@example.com"):
        assert secret.encode() not in value
        assert secret not in next(iter(keys))
    core = first._core
    assert unseal(core.cache_key(), core.sealing_key(), value).refresh_token


def test_a_token_of_unknown_lifetime_is_kept_an_hour(client: redis.Redis) -> None:
    cache = RedisTokenCache(client, ttl_margin=10, unknown_ttl=120)
    key = "ab" * 32
    unknown = Token(access_token="t", expires_at=None, obtained_at=time.time())
    cache.save(key, seal(key, SEALING_KEY, unknown))
    assert 0 < client.pttl(f"semansys-auth:token:{key}") <= 120_000
    known = Token(access_token="t", expires_at=time.time() + 30, obtained_at=time.time())
    entry = seal(key, SEALING_KEY, known)
    cache.save(key, entry)
    assert 30_000 < client.pttl(f"semansys-auth:token:{key}") <= 40_000
    assert cache.load(key) == entry, "stored verbatim"
    assert unseal(key, SEALING_KEY, cache.load(key)) == known


def test_only_entries_are_saved(client: redis.Redis) -> None:
    """The TTL comes from the entry's expiry in the clear: anything else is refused."""
    cache = RedisTokenCache(client)
    with pytest.raises(ValueError, match="not a semansys-auth token cache entry"):
        cache.save("ab" * 32, "not an entry")
    assert client.keys("*") == []


def test_a_corrupt_or_foreign_entry_is_ignored(
    semansys_emulator: SemansysEmulator, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisTokenCache(client)
    auth = semansys_emulator.auth(token_cache=cache)
    core = auth._core
    name = f"semansys-auth:token:{core.cache_key()}"
    for value in (b"{not json", b'{"format": "other"}', json.dumps({"format": "x"}).encode()):
        client.set(name, value)
        assert cache.load(core.cache_key()) == value.decode(), "given back as it is"
        semansys_emulator.expire_access_tokens()
        with caplog.at_level(logging.WARNING, logger="semansys_auth"):
            reply = send("httpx", auth, "GET", semansys_emulator.api_url + "/a")
        assert reply.status == 200
        stored = unseal(core.cache_key(), core.sealing_key(), client.get(name))
        assert stored.authorization == reply.request_headers["authorization"], "replaced"
    assert caplog.text.count("token cache entry ignored: not a semansys-auth token cache") == 3
    other = "ef" * 32
    cache.save(other, seal(other, core.sealing_key(), Token("t", expires_at=None, obtained_at=1)))
    client.copy(f"semansys-auth:token:{other}", name, replace=True)
    moved = client.get(name)
    semansys_emulator.expire_access_tokens()
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        reply = send("httpx", auth, "GET", semansys_emulator.api_url + "/a")
    assert reply.status == 200 and reply.request_headers["authorization"] != "Bearer t"
    assert "token cache entry ignored: cannot be decrypted" in caplog.text, "another key's entry"
    assert client.get(name) != moved


def test_a_wrong_password_with_a_warm_shared_cache_is_refused(
    semansys_emulator: SemansysEmulator, kind: str, redis_server: RedisServer, client: redis.Redis
) -> None:
    good = semansys_emulator.auth(token_cache=RedisTokenCache.from_url(redis_server.url))
    assert send(kind, good, "GET", semansys_emulator.api_url + "/a").status == 200
    bad = semansys_emulator.auth(
        token_cache=RedisTokenCache.from_url(redis_server.url), password="wrong"
    )
    with pytest.raises(UserCredentialsError):
        send(kind, bad, "GET", semansys_emulator.api_url + "/a")


WORKER = textwrap.dedent(
    """
    import os, sys, time
    import requests
    from semansys_auth import SemansysAuth
    auth = SemansysAuth.from_env()  # SEMANSYS_TOKEN_CACHE: the Redis URL
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    session = requests.Session()
    session.auth = auth
    stop = time.monotonic() + float(sys.argv[2])
    statuses = set()
    while True:
        statuses.add(session.get(sys.argv[3], timeout=10).status_code)
        if time.monotonic() >= stop:
            break
        time.sleep(0.05)
    print(sorted(statuses))
    """
)


def run_workers(
    emulator: SemansysEmulator, redis_url: str, tmp_path: Path, count: int, seconds: float
) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(emulator.env(), SEMANSYS_TOKEN_CACHE=redis_url)
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go), str(seconds), emulator.api_url + "/w"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        time.sleep(0.5)
        go.touch()
        outputs = [p.communicate(timeout=90) for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert all(p.returncode == 0 for p in processes), outputs
    return [out.strip() for out, _ in outputs]


@pytest.mark.timeout(120)
def test_processes_starting_together_make_one_token_request(
    semansys_emulator: SemansysEmulator,
    redis_server: RedisServer,
    client: redis.Redis,
    tmp_path: Path,
) -> None:
    semansys_emulator.token_delay = 0.5
    outputs = run_workers(semansys_emulator, redis_server.url, tmp_path, count=6, seconds=0)
    assert outputs == ["[200]"] * 6
    assert len(semansys_emulator.token_requests()) == 1


@pytest.mark.timeout(120)
def test_rotating_refresh_tokens_are_safe_between_processes(
    semansys_emulator: SemansysEmulator,
    redis_server: RedisServer,
    client: redis.Redis,
    tmp_path: Path,
) -> None:
    """Tokens of 2 s, renewed after 1 s, by whichever process gets there first:
    each renewal is one refresh, and no refresh token is ever refused."""
    semansys_emulator.access_token_lifetime = 2
    outputs = run_workers(semansys_emulator, redis_server.url, tmp_path, count=3, seconds=5)
    assert outputs == ["[200]"] * 3
    grants = [(r.grant_type, r.status) for r in semansys_emulator.token_requests()]
    assert grants[0] == ("password", 200)
    assert set(grants[1:]) == {("refresh_token", 200)}, grants
    assert 3 <= len(grants) <= 8, f"about one renewal a second, shared: {grants}"


HOLDER = textwrap.dedent(
    """
    import sys
    from semansys_auth import RedisTokenCache, SemansysAuth
    cache = RedisTokenCache.from_url(sys.argv[1], lock_lease=1.0)
    SemansysAuth.from_env(token_cache=cache).get_token()
    print("done")
    """
)


@pytest.mark.timeout(120)
def test_a_holder_killed_mid_fetch_frees_the_fleet_when_its_lease_ends(
    semansys_emulator: SemansysEmulator, redis_server: RedisServer, client: redis.Redis
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(semansys_emulator.env())
    semansys_emulator.pause_token_responses()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_server.url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: semansys_emulator.pending_token_requests == 1, timeout=30)
        (lock,) = client.keys("semansys-auth:lock:*")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert 0 < client.pttl(lock) <= 1000, "a lease, which nobody extends any more"
        semansys_emulator.resume_token_responses()
        other = subprocess.run(
            [sys.executable, "-c", HOLDER, redis_server.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.kill()
    assert other.returncode == 0 and other.stdout.strip() == "done", other.stderr
    assert client.keys("semansys-auth:lock:*") == []


def test_redis_stopped_mid_run_is_a_warning_and_the_process_carries_on(
    semansys_emulator: SemansysEmulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    own = RedisServer().start()
    try:
        auth = semansys_emulator.auth(token_cache=RedisTokenCache.from_url(own.url))
        assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
        own.stop()
        semansys_emulator.expire_access_tokens()
        with caplog.at_level(logging.WARNING, logger="semansys_auth"):
            assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
            assert send(kind, auth, "GET", semansys_emulator.api_url + "/b").status == 200
    finally:
        own.close()
    assert "token cache lock failed: ConnectionError" in caplog.text
    assert caplog.text.count("token cache") == 1, "one warning, then the cache is left alone"


@pytest.mark.parametrize(
    ("options", "failure"),
    [
        (("--requirepass", "s3cret-redis"), "AuthenticationError"),
        (("--maxmemory", "1", "--maxmemory-policy", "noeviction"), "OutOfMemoryError"),
    ],
)
def test_redis_refusing_is_a_warning(
    semansys_emulator: SemansysEmulator,
    options: tuple[str, ...],
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    own = RedisServer(*options).start()
    try:
        auth = semansys_emulator.auth(token_cache=RedisTokenCache.from_url(own.url))
        with caplog.at_level(logging.WARNING, logger="semansys_auth"):
            assert send("httpx", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    finally:
        own.close()
    assert "token cache " in caplog.text and failure in caplog.text
    assert "s3cret-redis" not in caplog.text


def test_a_stalled_redis_costs_one_timeout_then_the_cache_rests(
    semansys_emulator: SemansysEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that accepts and never answers: each Redis call is bounded by the
    socket timeout, and after one failure the cache is not asked again for a while."""
    connections: list[socket.socket] = []
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(16)
    stop = threading.Event()

    def accept() -> None:
        black_hole.settimeout(0.05)
        while not stop.is_set():
            try:
                connections.append(black_hole.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        url = f"redis://127.0.0.1:{black_hole.getsockname()[1]}/0"
        cache = RedisTokenCache.from_url(url, socket_timeout=0.3, socket_connect_timeout=0.3)
        auth = semansys_emulator.auth(token_cache=cache)
        with caplog.at_level(logging.WARNING, logger="semansys_auth"):
            for path in ("/a", "/b", "/c"):
                semansys_emulator.expire_access_tokens()
                assert send("requests", auth, "GET", semansys_emulator.api_url + path).status == 200
        assert len(connections) == 1, "asked once, then left alone"
        assert "token cache" in caplog.text and "Timeout" in caplog.text
    finally:
        stop.set()
        thread.join(timeout=5)
        black_hole.close()
        for connection in connections:
            connection.close()


def test_a_client_without_socket_timeout_is_warned_about(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        RedisTokenCache(redis.Redis.from_url(redis_server.url))
    assert "has no socket_timeout" in caplog.text


def test_the_environment_chooses_the_cache(redis_server: RedisServer, tmp_path: Path) -> None:
    base = {
        "SEMANSYS_CLIENT_ID": "c",
        "SEMANSYS_CLIENT_SECRET": "s",
        "SEMANSYS_USERNAME": "u@x",
        "SEMANSYS_PASSWORD": "p",
    }

    def cache_of(value: str, **overrides: Any) -> Any:
        return SemansysAuth.from_env(
            {**base, "SEMANSYS_TOKEN_CACHE": value}, **overrides
        )._core.cache

    assert isinstance(cache_of(redis_server.url), RedisTokenCache)
    assert isinstance(cache_of("rediss://127.0.0.1:1/0"), RedisTokenCache)
    assert isinstance(cache_of("unix:///run/redis.sock"), RedisTokenCache)
    assert isinstance(cache_of(str(tmp_path)), FileTokenCache)
    assert cache_of(redis_server.url, token_cache=None) is None, "a keyword argument wins"
    with pytest.raises(ValueError, match="must be a directory or a redis://"):
        cache_of("ftp://x/y")


def test_from_url_hides_the_password_of_a_bad_url() -> None:
    with pytest.raises(ValueError, match="not a Redis URL") as caught:
        RedisTokenCache.from_url("redis://:hunter2@host:notaport/0")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(RedisTokenCache.from_url("redis://:hunter2@127.0.0.1:1/0"))


def test_the_command_uses_redis_from_the_environment_or_cache_option(
    semansys_emulator: SemansysEmulator,
    redis_server: RedisServer,
    client: redis.Redis,
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(semansys_emulator.env(), SEMANSYS_TOKEN_CACHE=str(tmp_path / "dir"))

    def token(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "semansys_auth", "token", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = token("--cache", redis_server.url)
    assert client.keys("semansys-auth:token:*"), "--cache wins over SEMANSYS_TOKEN_CACHE"
    assert not (tmp_path / "dir").exists()
    env["SEMANSYS_TOKEN_CACHE"] = redis_server.url
    assert token() == first, "the same token, from Redis"
    assert len(semansys_emulator.token_requests()) == 1


def test_from_url_has_the_constructor_defaults() -> None:
    import inspect

    def defaults(function: Any) -> dict[str, object]:
        parameters = inspect.signature(function).parameters.values()
        return {p.name: p.default for p in parameters if p.default is not p.empty}

    assert defaults(RedisTokenCache.from_url) == defaults(RedisTokenCache.__init__)
    assert defaults(RedisTokenCache.__init__)["prefix"] == "semansys-auth:"
