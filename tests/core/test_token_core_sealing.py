"""At rest: the token core seals what it saves and opens what it
loads; an entry that cannot be opened is a miss, never a cache failure. And
the key derivation: one scrypt gives the cache key and the sealing key.

In-process and fast: part of the mutation-testing selection (pyproject
[tool.mutmut])."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from test_token_answers import URL, endpoint

from core_parts import Clock, Shell, make_core, ok, requests_of, run, sealed
from fake_caches import RecordingCache
from semansys_auth._core import TokenCore
from semansys_auth._effects import DeriveKeys, LoadCache, SaveCache
from semansys_auth._entry import MAX_ENTRY_BYTES, seal, unseal
from semansys_auth._token import Token
from semansys_auth._wire import EndpointRequest

ACCESS = "access-token-of-the-sealing-tests"
REFRESH = "refresh-token-of-the-sealing-tests"
CANNOT = (
    "token cache entry ignored: cannot be decrypted: written with other credentials, or "
    "altered; it is replaced by the next token"
)


class FreeLock:
    def acquire(self, timeout: float) -> bool:
        return True

    def release(self) -> None:
        pass


class LockableCache(RecordingCache):
    def lock(self, key: str) -> FreeLock:
        return FreeLock()


def flipped(entry: str, position: int) -> str:
    """``entry`` with one character changed, to another base64url character that
    differs in its high bits (always data bits, even in the last character)."""
    swap = "A" if entry[position] != "A" else "g"
    return entry[:position] + swap + entry[position + 1 :]


def fresh(clock: Clock, access: str = ACCESS) -> Token:
    return Token(
        access_token=access, refresh_token=REFRESH, expires_at=clock.now + 3600,
        obtained_at=clock.now,
    )  # fmt: skip


# -- what is saved ---------------------------------------------------------------------------


def test_a_new_token_is_saved_sealed_with_only_its_expiry_in_clear() -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    held, _ = run(core.renew(), [ok(ACCESS, refresh=REFRESH)])
    entry = cache.entries[core.cache_key()]
    assert isinstance(entry, str) and entry.isascii()
    stored = json.loads(entry)
    assert stored["format"] == "semansys-auth/token-cache/3"
    assert stored["expires_at"] == held.expires_at == clock.now + 3600
    assert set(stored) == {"format", "expires_at", "sealed"}
    for secret in (ACCESS, REFRESH, "s3cret-client", "pa55word", "jane"):
        assert secret not in entry
    assert unseal(core.cache_key(), core.sealing_key(), entry) == held


def test_the_key_derivation_and_the_cache_calls_are_effects() -> None:
    """Async drivers run blocking effects in a worker thread: the 35 ms scrypt
    and the cache calls must happen there, not in the generator."""
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    derived: list[int] = []
    derive = core.endpoint.cache_keys

    def counted() -> tuple[str, bytes]:
        derived.append(1)
        return derive()

    core.endpoint.cache_keys = counted  # type: ignore[method-assign]
    shell = Shell(core)
    flow = core.renew()
    first = flow.send(None)
    assert first == DeriveKeys() and derived == [] and cache.calls == []
    keys = first.run(shell, None)
    assert derived == [1]
    load = flow.send(keys)
    assert load == LoadCache(keys[0]) and cache.calls == []
    assert load.run(shell, None) is None
    assert cache.calls == ["load"]
    request = flow.send(None)
    assert isinstance(request, EndpointRequest)
    save = flow.send(ok(ACCESS))
    assert isinstance(save, SaveCache) and save.key == keys[0]
    assert cache.calls == ["load"], "nothing saved before the effect is carried out"
    assert save.run(shell, None) is None
    assert cache.calls == ["load", "save"] and derived == [1]
    with pytest.raises(StopIteration) as done:
        flow.send(None)
    assert cache.token(core) == done.value.value


def test_a_token_of_unknown_expiry_is_saved_with_a_null_expiry() -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    held, _ = run(core.renew(), [ok(ACCESS, expires_in=None)])
    assert held.expires_at is None
    assert json.loads(cache.entries[core.cache_key()])["expires_at"] is None
    assert cache.token(core) == held


# -- what is loaded ----------------------------------------------------------------------------


def test_a_sealed_entry_is_opened_and_taken() -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    cache.put(core, fresh(clock))
    held, steps = run(core.renew(), [])
    assert held == fresh(clock) and requests_of(steps) == []
    assert cache.calls == ["load"]


def test_an_entry_given_back_as_bytes_is_opened() -> None:
    """Redis clients give bytes back."""

    class BytesCache(RecordingCache):
        def load(self, key: str) -> Any:
            entry = super().load(key)
            return None if entry is None else entry.encode()

    clock = Clock()
    cache = BytesCache()
    core = make_core(clock, cache=cache)
    cache.put(core, fresh(clock))
    held, steps = run(core.renew(), [])
    assert held == fresh(clock) and requests_of(steps) == []


@pytest.mark.parametrize("odd", [fresh(Clock()), {"entry": "x"}, 42, ["x"]], ids=repr)
def test_a_cache_that_gives_back_something_else_has_failed(
    odd: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache written for the old protocol (it returns Token objects) is a
    failing cache: a warning, and a pause, as any other failure."""

    class Odd(LockableCache):
        def load(self, key: str) -> Any:
            self.calls.append("load")
            return odd

    cache = Odd()
    core = make_core(Clock(), cache=cache)
    with caplog.at_level("WARNING", logger="semansys_auth"):
        held, steps = run(core.renew(), [ok(ACCESS)])
    assert held.access_token == ACCESS and len(requests_of(steps)) == 1
    assert caplog.messages == [
        f"token cache load failed: TypeError: it returned a {type(odd).__name__}, not the "
        "entry it was given; going on without the cache for 30 s"
    ]
    assert cache.calls == ["load"], "paused: not saved"
    assert not core.cache_use.active(), "paused"


# -- an entry that cannot be opened is a miss, not a failure ------------------------------------


def test_an_altered_entry_is_a_miss_replaced_by_the_next_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    cache = LockableCache()
    core = make_core(clock, cache=cache)
    cache.put(core, fresh(clock, "the-cached-token"))
    key = core.cache_key()
    entry = cache.entries[key]
    cache.entries[key] = flipped(entry, entry.index('"sealed":"') + 30)
    with caplog.at_level("WARNING", logger="semansys_auth"):
        held, steps = run(core.renew(), [ok(ACCESS, refresh=REFRESH)])
    assert caplog.messages == [CANNOT]
    assert held.access_token == ACCESS and len(requests_of(steps)) == 1
    assert form_grant(requests_of(steps)[0]) == "password"
    assert cache.calls == ["load", "save"], "the cache stays in use: the entry is replaced"
    assert cache.token(core) == held
    assert core.cache_use.active(), "not paused"
    held_again, steps = run(core.renew(held.authorization), [ok("access-2")])
    assert cache.calls == ["load", "save", "load", "save"]
    assert cache.token(core) == held_again


def form_grant(request: EndpointRequest) -> str:
    from urllib.parse import parse_qs

    return parse_qs(request.body.decode())["grant_type"][0]


def test_an_entry_of_other_credentials_is_a_miss() -> None:
    """Written by an object with another password, and copied under our key:
    it cannot be opened, and it is replaced."""
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    other_key, other_sealing_key = endpoint(password="other", scope=None).cache_keys()
    assert endpoint(scope=None).cache_keys() == (core.cache_key(), core.sealing_key())
    assert other_key != core.cache_key() and other_sealing_key != core.sealing_key()
    foreign = seal(core.cache_key(), other_sealing_key, fresh(clock, "foreign-token"))
    cache.entries[core.cache_key()] = foreign
    held, steps = run(core.renew(), [ok(ACCESS)])
    assert held.access_token == ACCESS and len(requests_of(steps)) == 1
    assert cache.token(core) == held


def test_an_entry_moved_from_another_key_is_a_miss() -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    moved = seal("0" * 64, core.sealing_key(), fresh(clock, "moved-token"))
    cache.entries[core.cache_key()] = moved
    held, steps = run(core.renew(), [ok(ACCESS)])
    assert held.access_token == ACCESS and len(requests_of(steps)) == 1


def old_entry(key: str, clock: Clock) -> str:
    """An entry as semansys-auth 0.1.0 wrote it: the token in clear."""
    return json.dumps(
        {"format": "semansys-auth/token-cache/1", "key": key, "token": fresh(clock).to_json()}
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            old_entry,
            "token cache entry of an older semansys-auth version ignored; it is replaced by "
            "the next token",
        ),
        (
            lambda key, clock: '{"format": "something else"}',
            "token cache entry ignored: not a semansys-auth token cache entry; it is "
            "replaced by the next token",
        ),
        (
            lambda key, clock: "",
            "token cache entry ignored: not a semansys-auth token cache entry; it is "
            "replaced by the next token",
        ),
        (
            lambda key, clock: " " * (MAX_ENTRY_BYTES + 1),
            "token cache entry ignored: too large; it is replaced by the next token",
        ),
    ],
    ids=["0.1.0", "foreign", "empty", "too-large"],
)
def test_each_unusable_entry_is_a_miss_with_its_warning(
    make: Any, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    cache.entries[core.cache_key()] = make(core.cache_key(), clock)
    with caplog.at_level("WARNING", logger="semansys_auth"):
        held, steps = run(core.renew(), [ok(ACCESS)])
    assert caplog.messages == [message]
    assert held.access_token == ACCESS and len(requests_of(steps)) == 1
    assert cache.calls == ["load", "save"] and cache.token(core) == held


def test_the_warning_names_no_secret_and_quotes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    cache.entries[core.cache_key()] = old_entry(core.cache_key(), clock)
    with caplog.at_level("DEBUG", logger="semansys_auth"):
        run(core.renew(), [ok(ACCESS)])
    text = caplog.text
    for secret in (ACCESS, REFRESH, "s3cret-client", "pa55word", core.cache_key()):
        assert secret not in text


def test_one_warning_per_unusable_entry(caplog: pytest.LogCaptureFixture) -> None:
    """The lock-free look and the renewal that follows read the same entry:
    one warning. Another unusable entry is warned of again."""
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    key = core.cache_key()
    cache.put(core, fresh(clock))
    good = cache.entries[key]
    cache.entries[key] = flipped(good, len(good) - 3)
    with caplog.at_level("WARNING", logger="semansys_auth"):
        assert run(core.cached(), [])[0] is None
        assert run(core.cached(), [])[0] is None
        assert caplog.messages == [CANNOT]
        cache.entries[key] = flipped(good, len(good) - 4)
        assert run(core.cached(), [])[0] is None
        assert caplog.messages == [CANNOT, CANNOT]
        cache.entries[key] = ""
        assert run(core.cached(), [])[0] is None
    assert len(caplog.messages) == 3
    cache.entries[key] = good
    assert run(core.cached(), [])[0] == fresh(clock), "a good entry is taken again"


def test_an_unusable_expired_entry_gives_no_refresh_token() -> None:
    """An entry that cannot be opened gives nothing, not even a refresh token:
    the password grant runs."""
    clock = Clock()
    cache = RecordingCache()
    core = make_core(clock, cache=cache)
    cache.entries[core.cache_key()] = sealed(make_core(clock, scope="other"), fresh(clock))
    _, steps = run(core.renew(), [ok(ACCESS)])
    assert [form_grant(r) for r in requests_of(steps)] == ["password"]


# -- the keys ------------------------------------------------------------------------------------


def test_the_sealing_key_is_hkdf_expand_of_the_scrypt_output() -> None:
    """Written out from the design: scrypt of the secrets, salted with the hash
    of the identity; the cache key hashes identity and scrypt output (as in
    0.1.0); the sealing key is HKDF-Expand (RFC 5869) of the scrypt output, as
    cryptography computes it."""
    identity = json.dumps(
        ["semansys-auth/cache-key/2", URL, "cid", "jane@example.com", "read write"]
    ).encode()
    binding = hashlib.scrypt(
        json.dumps(["s3cret-client", "pa55word"]).encode(),
        salt=hashlib.sha256(identity).digest(),
        n=2**14,
        r=8,
        p=1,
        dklen=32,
    )
    expected_seal = HKDFExpand(
        algorithm=SHA256(), length=32, info=b"semansys-auth/cache-entry/3"
    ).derive(binding)
    key, sealing_key = endpoint().cache_keys()
    assert key == hashlib.sha256(identity + binding).hexdigest() == endpoint().cache_key()
    assert sealing_key == expected_seal and len(sealing_key) == 32


def test_the_sealing_key_is_stable_across_releases() -> None:
    """A change of this value makes every stored entry unreadable: a change of
    the entry format (and of the version string in its label)."""
    assert endpoint().cache_keys() == (
        "8d6a76f8e5d045d42b3ab584703b0631787a387fe2d069838f1ad1b31d4430f8",
        bytes.fromhex("8fb05f06c013b01e2864b826cec54560d3aae379d8eea6cfad4728c34ab46e5b"),
    )


def test_the_sealing_key_binds_every_credential() -> None:
    keys = {
        endpoint(**change).cache_keys()[1]
        for change in (
            {},
            {"password": "other"},
            {"client_secret": "other"},
            {"client_id": "other"},
            {"username": "other@example.com"},
            {"scope": None},
            {"token_url": URL + "/"},
        )
    }
    assert len(keys) == 7


def test_a_core_without_a_cache_derives_no_key() -> None:
    core = make_core(Clock())
    run(core.renew(), [ok(ACCESS)])
    assert core.cache_use.keys is None


def test_the_core_gives_the_endpoints_keys() -> None:
    core: TokenCore = make_core(Clock())
    assert (core.cache_key(), core.sealing_key()) == core.endpoint.cache_keys()
