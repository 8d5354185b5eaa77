"""Sealing at rest: what the file and Redis caches hold after real runs
through the emulator is sealed. A cache file, a copy of the cache directory or
a dump of a shared Redis (a real ``redis-server``) holds no token, secret or
password in any common encoding; a changed entry is a miss replaced by the
next token; an object with a wrong password neither reads nor overwrites
another's entry; an entry of semansys-auth 0.1.0 is ignored once and replaced."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import send
from redis_server import RedisServer
from semansys_auth import FileTokenCache, RedisTokenCache, SemansysAuth, UserCredentialsError
from semansys_auth._entry import ENTRY_FORMAT, unseal
from semansys_auth.testing import SemansysEmulator

# -- fixtures and helpers -------------------------------------------------------------------


class Store:
    """One cache (a directory or a Redis), seen from the outside: the raw
    stored entries, and a way to change them."""

    def __init__(self, kind: str, tmp_path: Path, client: redis.Redis | None, url: str) -> None:
        self.kind = kind
        self.directory = tmp_path / "cache"
        self.client = client
        self.url = url

    def cache(self) -> Any:
        if self.kind == "file":
            return FileTokenCache(self.directory)
        return RedisTokenCache.from_url(self.url)

    def setting(self) -> str:
        """The value of SEMANSYS_TOKEN_CACHE for the command."""
        return str(self.directory) if self.kind == "file" else self.url

    def name(self, key: str) -> str:
        return f"semansys-auth:token:{key}"

    def get(self, key: str) -> bytes | None:
        if self.kind == "file":
            path = self.directory / f"{key}.json"
            return path.read_bytes() if path.exists() else None
        assert self.client is not None
        value = self.client.get(self.name(key))
        return None if value is None else bytes(value)

    def put(self, key: str, value: bytes) -> None:
        if self.kind == "file":
            self.directory.mkdir(mode=0o700, exist_ok=True)
            path = self.directory / f"{key}.json"
            path.write_bytes(value)
            path.chmod(0o600)
        else:
            assert self.client is not None
            self.client.set(self.name(key), value)

    def keys(self) -> list[str]:
        if self.kind == "file":
            if not self.directory.exists():
                return []
            return sorted(p.stem for p in self.directory.glob("*.json"))
        assert self.client is not None
        prefix = b"semansys-auth:token:"
        return sorted(n[len(prefix) :].decode() for n in self.client.keys(prefix + b"*"))

    def everything(self) -> list[bytes]:
        """Every byte stored: each file of the directory (entries, locks,
        leftovers) with its name, or each Redis key, value, and a dump."""
        found: list[bytes] = []
        if self.kind == "file":
            for path in sorted(self.directory.rglob("*")):
                found.append(path.name.encode())
                if path.is_file():
                    found.append(path.read_bytes())
            return found
        assert self.client is not None
        for name in self.client.keys("*"):
            found.append(bytes(name))
            if self.client.type(name) == b"string":
                found.append(bytes(self.client.get(name) or b""))
        return found


@pytest.fixture(params=["file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "file":
        return Store("file", tmp_path, None, "")
    server: RedisServer = request.getfixturevalue("redis_server")
    connection: redis.Redis = request.getfixturevalue("client")
    return Store("redis", tmp_path, connection, server.url)


def encodings(secret: str) -> set[bytes]:
    """The forms in which ``secret`` could sit in stored bytes: raw, base64
    (standard and url-safe, padded or not, at each alignment), hex,
    url-encoded, JSON-escaped."""
    raw = secret.encode()
    forms = {
        raw,
        raw.hex().encode(),
        raw.hex().upper().encode(),
        quote(secret, safe="").encode(),
        quote_plus(secret).encode(),
        json.dumps(secret)[1:-1].encode(),
        json.dumps(secret, ensure_ascii=False)[1:-1].encode(),
    }
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw)
        forms |= {whole, whole.rstrip(b"=")}
        # Inside a longer text, the base64 of the secret depends on where it
        # starts: the characters that hold only the secret's bits, per alignment.
        for shift in (1, 2):
            shifted = encode(b"\0" * shift + raw)
            inner = shifted[4 : len(shifted) - 4]
            if len(inner) >= 8:
                forms.add(inner)
    return forms


def assert_nothing_readable(stored: list[bytes], secrets: set[str]) -> None:
    blob = b"\n".join(stored)
    assert blob, "something was stored"
    for secret in secrets:
        for form in encodings(secret):
            assert form not in blob, f"a form of a {len(secret)}-character secret is stored"
        raw = secret.encode()
        for start in range(len(raw) - 7):
            assert raw[start : start + 8] not in blob, "8 characters of a secret are stored"


def tokens_of(auth: SemansysAuth) -> set[str]:
    token = auth._core._current.token if auth._core._current is not None else None
    if token is None:
        return set()
    return {token.access_token} | ({token.refresh_token} if token.refresh_token else set())


def command(
    emulator: SemansysEmulator, store: Store, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(emulator.env(), SEMANSYS_TOKEN_CACHE=store.setting())
    return subprocess.run(
        [sys.executable, "-m", "semansys_auth", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- (1) nothing readable at rest -----------------------------------------------------------


@pytest.mark.timeout(120)
def test_nothing_stored_reveals_a_token_or_a_secret(
    semansys_emulator: SemansysEmulator, store: Store
) -> None:
    """Sync and async clients, a refresh (a rotated refresh token), a second
    scope, and the command: then every stored byte is searched."""
    seen: set[str] = set()
    url = semansys_emulator.api_url + "/a"
    for kind in ("requests", "httpx-async", "aiohttp"):
        auth = semansys_emulator.auth(token_cache=store.cache())
        assert send(kind, auth, "GET", url).status == 200
        seen |= tokens_of(auth)
        semansys_emulator.expire_access_tokens()
        assert send(kind, auth, "GET", url).status == 200  # a refresh, saved again
        seen |= tokens_of(auth)
    scoped = semansys_emulator.auth(token_cache=store.cache(), scope="read")
    assert send("httpx", scoped, "GET", url).status == 200
    seen |= tokens_of(scoped)
    semansys_emulator.expire_access_tokens()
    printed = command(semansys_emulator, store, "token")
    assert printed.returncode == 0, printed.stderr
    seen.add(printed.stdout.strip())
    # What the entries hold now (the command's refresh token among them).
    for each in (semansys_emulator.auth(), semansys_emulator.auth(scope="read")):
        key, sealing_key = each._core.cache_key(), each._core.sealing_key()
        entry = store.get(key)
        assert entry is not None and json.loads(entry)["format"] == ENTRY_FORMAT
        token = unseal(key, sealing_key, entry)
        seen |= {token.access_token, token.refresh_token or ""} - {""}
    assert len(store.keys()) == 2
    assert len({s for s in seen if s.startswith("ey")}) == 5, "five access tokens were issued"
    credentials = semansys_emulator.credentials
    secrets = seen | {credentials["client_secret"], credentials["password"]}
    assert_nothing_readable(store.everything(), secrets)
    for entry in store.everything():
        assert credentials["username"].encode() not in entry, "no identity in the clear"
        assert b'"read"' not in entry and b"obtained_at" not in entry


@pytest.mark.timeout(60)
def test_a_dump_of_redis_reveals_nothing(
    semansys_emulator: SemansysEmulator, redis_server: RedisServer, client: redis.Redis
) -> None:
    """The RDB file a backup would copy, written uncompressed so that the
    search sees every byte."""
    auth = semansys_emulator.auth(token_cache=RedisTokenCache.from_url(redis_server.url))
    assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    seen = tokens_of(auth)
    assert len(seen) == 2
    client.config_set("rdbcompression", "no")
    client.save()
    dump = (redis_server.directory / "dump.rdb").read_bytes()
    entry = client.get(f"semansys-auth:token:{auth._core.cache_key()}")
    assert entry is not None and bytes(entry) in dump, "the dump holds the entry, uncompressed"
    credentials = semansys_emulator.credentials
    assert_nothing_readable([dump], seen | {credentials["client_secret"], credentials["password"]})


def test_the_search_finds_a_token_stored_in_clear() -> None:
    """The search itself bites: each encoding of a secret, and a piece of it."""
    secret = "eyJhbGciOiJIUzI1NiJ9.payload-part.signature_part"
    for form in encodings(secret) | {b"xx" + base64.b64encode(b"abc" + secret.encode())}:
        with pytest.raises(AssertionError):
            assert_nothing_readable([b"prefix " + form + b" suffix"], {secret})
    with pytest.raises(AssertionError, match="8 characters"):
        assert_nothing_readable([b"...payload-p..."], {secret})
    assert_nothing_readable([b"payload"], {secret})


# -- (2) a changed entry is a miss, replaced by the next token -------------------------------


@pytest.mark.timeout(120)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_changed_byte_is_a_miss_and_the_entry_is_replaced(
    semansys_emulator: SemansysEmulator, store: Store, data: st.DataObject
) -> None:
    auth = semansys_emulator.auth(token_cache=store.cache())
    key = auth._core.cache_key()
    if store.get(key) is None:
        assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    entry = store.get(key)
    assert entry is not None
    # Entries differ in length by a few characters: the position is taken modulo it.
    position = data.draw(st.integers(min_value=0, max_value=4095), label="position") % len(entry)
    mask = data.draw(st.integers(min_value=1, max_value=255), label="mask")
    changed = bytearray(entry)
    changed[position] ^= mask
    store.put(key, bytes(changed))
    before = len(semansys_emulator.token_requests())
    fresh = semansys_emulator.auth(token_cache=store.cache())  # as a new process
    reply = send("requests", fresh, "GET", semansys_emulator.api_url + "/a")
    assert reply.status == 200
    assert len(semansys_emulator.token_requests()) == before + 1, "a miss: one token request"
    replaced = store.get(key)
    assert replaced is not None and replaced != bytes(changed)
    token = unseal(key, fresh._core.sealing_key(), replaced)
    assert token.authorization == reply.request_headers["authorization"]


@pytest.mark.timeout(60)
def test_a_changed_entry_is_a_warning_not_a_paused_cache(
    semansys_emulator: SemansysEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FileTokenCache(tmp_path)
    first = semansys_emulator.auth(token_cache=cache)
    assert send("httpx", first, "GET", semansys_emulator.api_url + "/a").status == 200
    path = cache.path(first._core.cache_key())
    entry = bytearray(path.read_bytes())
    # One character of the ciphertext changed to another base64url character: the
    # entry still reads as an entry, and only the decryption can tell.
    at = entry.index(b'"sealed":"') + len(b'"sealed":"') + 20
    entry[at] = ord("B") if entry[at] != ord("B") else ord("C")
    path.write_bytes(bytes(entry))
    second = semansys_emulator.auth(token_cache=FileTokenCache(tmp_path))
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("httpx", second, "GET", semansys_emulator.api_url + "/a").status == 200
    assert [r.message for r in caplog.records] == [
        "token cache entry ignored: cannot be decrypted: written with other credentials, or "
        "altered; it is replaced by the next token"
    ]
    third = semansys_emulator.auth(token_cache=FileTokenCache(tmp_path))
    assert send("httpx", third, "GET", semansys_emulator.api_url + "/a").status == 200
    assert len(semansys_emulator.token_requests()) == 2, "the third found the replacement"
    assert tokens_of(second) == tokens_of(third)


# -- (3) a wrong password neither reads nor overwrites ----------------------------------------


@pytest.mark.timeout(60)
def test_a_wrong_password_neither_reads_nor_overwrites_the_entry(
    semansys_emulator: SemansysEmulator, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    url = semansys_emulator.api_url + "/a"
    good = semansys_emulator.auth(token_cache=store.cache())
    assert send("requests", good, "GET", url).status == 200
    key = good._core.cache_key()
    entry = store.get(key)
    assert entry is not None
    wrong = semansys_emulator.auth(token_cache=store.cache(), password="not-the-password")
    wrong_key = wrong._core.cache_key()
    assert wrong_key != key
    with pytest.raises(UserCredentialsError):
        send("requests", wrong, "GET", url)
    assert store.get(key) == entry, "not overwritten"
    assert store.keys() == [key], "nothing written for the wrong password"
    # Even planted under its own name, the good entry cannot be opened with it.
    store.put(wrong_key, entry)
    again = semansys_emulator.auth(token_cache=store.cache(), password="not-the-password")
    with (
        caplog.at_level(logging.WARNING, logger="semansys_auth"),
        pytest.raises(UserCredentialsError),
    ):
        send("requests", again, "GET", url)
    assert "token cache entry ignored: cannot be decrypted" in caplog.text
    assert store.get(key) == entry
    assert [r.status for r in semansys_emulator.token_requests()] == [200, 403, 403]


# -- (4) an entry of semansys-auth 0.1.0 --------------------------------------------------------


@pytest.mark.timeout(60)
def test_an_entry_of_0_1_0_is_ignored_once_and_replaced(
    semansys_emulator: SemansysEmulator, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    probe = semansys_emulator.auth()
    key = probe._core.cache_key()
    old_token = {
        "access_token": "old-format-access-token",
        "refresh_token": "old-format-refresh-token",
        "expires_at": time.time() + 3600,
        "obtained_at": time.time(),
        "scope": None,
        "token_type": "Bearer",
        "grant_type": "password",
    }
    old = {"format": "semansys-auth/token-cache/1", "key": key, "token": old_token}
    store.put(key, json.dumps(old).encode())
    auth = semansys_emulator.auth(token_cache=store.cache())
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        reply = send("httpx", auth, "GET", semansys_emulator.api_url + "/a")
    assert reply.status == 200
    assert reply.request_headers["authorization"] != "Bearer old-format-access-token"
    assert [r.grant_type for r in semansys_emulator.token_requests()] == ["password"]
    assert [r.message for r in caplog.records] == [
        "token cache entry of an older semansys-auth version ignored; it is replaced by the "
        "next token"
    ]
    replaced = store.get(key)
    assert replaced is not None and json.loads(replaced)["format"] == ENTRY_FORMAT
    caplog.clear()
    later = semansys_emulator.auth(token_cache=store.cache())
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("httpx", later, "GET", semansys_emulator.api_url + "/a").status == 200
    assert caplog.records == [], "ignored once"
    assert len(semansys_emulator.token_requests()) == 1, "the replacement is used"


@pytest.mark.timeout(60)
def test_the_command_replaces_an_entry_of_0_1_0(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    store = Store("file", tmp_path, None, "")
    key = semansys_emulator.auth()._core.cache_key()
    token = {"access_token": "old", "expires_at": 4e9, "obtained_at": 1e9}
    old = {"format": "semansys-auth/token-cache/1", "key": key, "token": token}
    store.put(key, json.dumps(old).encode())
    first = command(semansys_emulator, store, "token")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() not in ("", "old")
    assert "token cache entry of an older semansys-auth version ignored" in first.stderr
    second = command(semansys_emulator, store, "token")
    assert second.returncode == 0 and second.stdout == first.stdout
    assert "ignored" not in second.stderr
    assert len(semansys_emulator.token_requests()) == 1


# -- cost --------------------------------------------------------------------------------------


def test_without_a_cache_cryptography_is_never_imported(
    semansys_emulator: SemansysEmulator,
) -> None:
    """Sealing is for caches: an object without one pays nothing for it."""
    script = (
        "import sys, httpx\n"
        "from semansys_auth import SemansysAuth\n"
        "auth = SemansysAuth.from_env()\n"
        "assert httpx.get(sys.argv[1], auth=auth, timeout=30).status_code == 200\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(semansys_emulator.env())
    done = subprocess.run(
        [sys.executable, "-c", script, semansys_emulator.api_url + "/a"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert len(semansys_emulator.token_requests()) == 1
