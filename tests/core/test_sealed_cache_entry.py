"""Sealing at rest: the sealed cache entry (``semansys_auth._entry``).

AES-256-GCM through ``cryptography``; these tests check how it is used: what
is in the clear, what the associated data binds, the nonce, and that every
change of a stored entry is refused with a reason that quotes nothing."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semansys_auth._entry import (
    CANNOT_DECRYPT,
    ENTRY_FORMAT,
    MAX_ENTRY_BYTES,
    NOT_AN_ENTRY,
    OLDER_FORMAT,
    entry_expires_at,
    seal,
    unseal,
)
from semansys_auth._token import Token

KEY = "ab" * 32
SEALING_KEY = bytes(range(32))
REASONS = {CANNOT_DECRYPT, NOT_AN_ENTRY, OLDER_FORMAT, "too large"}

TOKEN = Token(
    access_token="eyJhbGciOi.access-token-value.sig",
    refresh_token="refresh-token-value-0123456789",
    expires_at=1_700_003_600.25,
    obtained_at=1_700_000_000.5,
    scope="read write",
)


def reseal_clear(entry: str, **changes: object) -> str:
    """``entry`` with fields of its clear part changed, written canonically
    (as a forger would: the same spelling, another value)."""
    data = json.loads(entry)
    data.update(changes)
    return json.dumps(data, separators=(",", ":"))


def sealed_bytes(entry: str) -> bytes:
    text = json.loads(entry)["sealed"]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def refused(entry: object, key: str = KEY, sealing_key: bytes = SEALING_KEY) -> str:
    with pytest.raises(ValueError, match=r"^[a-z]") as caught:
        unseal(key, sealing_key, entry)
    return str(caught.value)


# -- the round trip and the clear part ------------------------------------------------------


def test_a_sealed_token_opens_to_the_same_token() -> None:
    entry = seal(KEY, SEALING_KEY, TOKEN)
    assert unseal(KEY, SEALING_KEY, entry) == TOKEN
    assert unseal(KEY, SEALING_KEY, entry.encode()) == TOKEN, "bytes, as Redis gives them"


def test_only_the_format_and_the_expiry_are_in_the_clear() -> None:
    entry = seal(KEY, SEALING_KEY, TOKEN)
    assert entry.isascii()
    data = json.loads(entry)
    assert list(data) == ["format", "expires_at", "sealed"]
    assert data["format"] == ENTRY_FORMAT == "semansys-auth/token-cache/3"
    assert data["expires_at"] == TOKEN.expires_at
    assert set(data["sealed"]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    ), "base64url without padding"
    for part in ("access-token-value", "refresh-token-value", "read write", "1700000000.5", KEY):
        assert part not in entry
    # nonce + ciphertext (as long as the token's JSON) + 16-byte tag
    assert len(sealed_bytes(entry)) == 12 + len(json.dumps(TOKEN.to_json())) + 16
    assert entry_expires_at(entry) == TOKEN.expires_at


def test_an_int_expiry_is_written_as_a_float() -> None:
    token = Token(access_token="at", expires_at=1_700_003_600, obtained_at=1_700_000_000)
    entry = seal(KEY, SEALING_KEY, token)
    assert '"expires_at":1700003600.0,' in entry
    assert unseal(KEY, SEALING_KEY, entry) == token.replace(expires_at=1_700_003_600.0)
    assert entry_expires_at(entry) == 1_700_003_600.0


def test_an_unknown_expiry_is_null() -> None:
    token = TOKEN.replace(expires_at=None)
    entry = seal(KEY, SEALING_KEY, token)
    assert json.loads(entry)["expires_at"] is None
    assert entry_expires_at(entry) is None
    assert unseal(KEY, SEALING_KEY, entry) == token


def test_each_seal_has_its_own_nonce() -> None:
    entries = {seal(KEY, SEALING_KEY, TOKEN) for _ in range(50)}
    assert len(entries) == 50
    nonces = {sealed_bytes(entry)[:12] for entry in entries}
    assert len(nonces) == 50


# -- what the associated data binds -----------------------------------------------------------


def test_the_expiry_in_the_clear_cannot_be_changed() -> None:
    entry = seal(KEY, SEALING_KEY, TOKEN)
    for expires_at in (TOKEN.expires_at + 86400 * 365, 1.0, None):  # type: ignore[operator]
        forged = reseal_clear(entry, expires_at=expires_at)
        assert entry_expires_at(forged) == expires_at, "well-formed: only the seal tells"
        assert refused(forged) == CANNOT_DECRYPT


def test_an_entry_under_another_key_cannot_be_opened() -> None:
    entry = seal(KEY, SEALING_KEY, TOKEN)
    assert refused(entry, key="cd" * 32) == CANNOT_DECRYPT


def test_another_sealing_key_cannot_open_it() -> None:
    entry = seal(KEY, SEALING_KEY, TOKEN)
    assert refused(entry, sealing_key=bytes(32)) == CANNOT_DECRYPT
    assert refused(entry, sealing_key=SEALING_KEY[:-1] + b"\x00") == CANNOT_DECRYPT


def test_the_format_is_bound_too() -> None:
    """A future format that kept this layout could not be opened as this one."""
    entry = seal(KEY, SEALING_KEY, TOKEN)
    assert refused(reseal_clear(entry, format="semansys-auth/token-cache/4")) == NOT_AN_ENTRY


# -- every change of a stored entry is refused ---------------------------------------------------


@pytest.mark.timeout(60)
def test_every_single_byte_change_is_refused() -> None:
    """Every position of one entry, with several masks: never opened, never an
    exception other than ValueError, never a reason that quotes the entry."""
    entry = seal(KEY, SEALING_KEY, TOKEN).encode()
    for position in range(len(entry)):
        for mask in (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF):
            changed = bytearray(entry)
            changed[position] ^= mask
            assert refused(bytes(changed)) in REASONS, (position, mask)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_a_changed_byte_is_refused_whatever_the_token(position: int, mask: int) -> None:
    token = TOKEN.replace(expires_at=None) if position % 2 else TOKEN
    entry = bytearray(seal(KEY, SEALING_KEY, token).encode())
    entry[position % len(entry)] ^= mask
    assert refused(bytes(entry)) in REASONS


def test_every_truncation_is_refused() -> None:
    entry = seal(KEY, SEALING_KEY, TOKEN)
    for end in range(len(entry)):
        assert refused(entry[:end]) in REASONS


@pytest.mark.parametrize(
    "respell",
    [
        lambda e: json.dumps(json.loads(e)),  # spaces after separators
        lambda e: json.dumps(json.loads(e), separators=(",", ":"), sort_keys=True),
        lambda e: e + "\n",
        lambda e: " " + e,
        lambda e: e.replace('"format"', '"\\u0066ormat"'),
        lambda e: reseal_clear(e, sealed=json.loads(e)["sealed"] + "="),
        lambda e: reseal_clear(e, extra=1),
        lambda e: reseal_clear(e, expires_at=int(TOKEN.expires_at or 0)),
        lambda e: e.replace(".25,", ".250,"),
    ],
    ids=[
        "spaces", "sorted", "newline", "leading-space", "escaped-name", "padding",
        "extra-field", "int-expiry", "other-spelling",
    ],
)  # fmt: skip
def test_only_the_canonical_spelling_is_read(respell: object) -> None:
    """JSON and base64 read many spellings alike; an entry is read only as
    seal() writes it, so that no change goes unnoticed."""
    entry = seal(KEY, SEALING_KEY, TOKEN)
    other = respell(entry)  # type: ignore[operator]
    assert other != entry
    assert refused(other) == NOT_AN_ENTRY
    with pytest.raises(ValueError, match=NOT_AN_ENTRY):
        entry_expires_at(other)


def test_the_last_base64_character_is_read_strictly() -> None:
    """Base64 decoders ignore the unused low bits of the last character: a
    changed one is refused all the same."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tried = 0
    for length in range(1, 4):  # one of three lengths leaves unused bits, two in fact
        entry = seal(KEY, SEALING_KEY, TOKEN.replace(access_token="a" * length))
        text = json.loads(entry)["sealed"]
        if len(text) % 4 == 0:
            continue
        tried += 1
        sloppy = alphabet[alphabet.index(text[-1]) | 1]  # the lowest bit is never used
        decoded = base64.urlsafe_b64decode(text[:-1] + sloppy + "=" * (-len(text) % 4))
        assert decoded == sealed_bytes(entry), "the same bytes, spelled otherwise"
        assert refused(reseal_clear(entry, sealed=text[:-1] + sloppy)) == NOT_AN_ENTRY
    assert tried == 2


# -- other stored things -----------------------------------------------------------------------


def test_an_entry_of_semansys_auth_0_1_is_of_an_older_format() -> None:
    old = json.dumps(
        {"format": "semansys-auth/token-cache/1", "key": KEY, "token": TOKEN.to_json()}
    )
    assert refused(old) == OLDER_FORMAT
    assert refused(old.encode()) == OLDER_FORMAT
    with pytest.raises(ValueError, match=OLDER_FORMAT):
        entry_expires_at(old)


@pytest.mark.parametrize(
    "stored",
    [
        "", "null", "[]", "{}", "1", "nope", '{"format": null}', b"\xff\xfe",
        "é".encode(), "{" * 100_000, '{"format":"semansys-auth/token-cache/3"}',
        '{"format":"semansys-auth/token-cache/3","expires_at":NaN,"sealed":"AAAA"}',
        '{"format":"semansys-auth/token-cache/3","expires_at":Infinity,"sealed":"AAAA"}',
        '{"format":"semansys-auth/token-cache/3","expires_at":"1","sealed":"AAAA"}',
        '{"format":"semansys-auth/token-cache/3","expires_at":true,"sealed":"AAAA"}',
        '{"format":"semansys-auth/token-cache/3","expires_at":null,"sealed":1}',
        '{"format":"semansys-auth/token-cache/3","expires_at":null,"sealed":"A"}',
        '{"format":"semansys-auth/token-cache/3","expires_at":null,"sealed":"A+/="}',
        None, 42, ["x"], {"format": ENTRY_FORMAT},
    ],
    ids=repr,
)  # fmt: skip
def test_what_is_not_an_entry(stored: object) -> None:
    assert refused(stored) == NOT_AN_ENTRY
    with pytest.raises(ValueError, match=NOT_AN_ENTRY):
        entry_expires_at(stored)


def test_a_well_formed_entry_too_short_to_hold_a_seal_cannot_be_opened() -> None:
    short = '{"format":"semansys-auth/token-cache/3","expires_at":null,"sealed":"AAAA"}'
    assert entry_expires_at(short) is None
    assert refused(short) == CANNOT_DECRYPT


@pytest.mark.parametrize("kind", [str, bytes])
def test_a_too_large_entry_is_refused_before_it_is_read(kind: type) -> None:
    big = " " * (MAX_ENTRY_BYTES + 1)
    stored = big if kind is str else big.encode()
    assert refused(stored) == "too large"
    at_limit = (" " * MAX_ENTRY_BYTES) if kind is str else (b" " * MAX_ENTRY_BYTES)
    assert refused(at_limit) == NOT_AN_ENTRY


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_stored_text_is_refused_with_a_fixed_reason(stored: str | bytes) -> None:
    assert refused(stored) in REASONS


B64TOKEN = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/")


@settings(max_examples=100, deadline=None)
@given(
    access=st.text(alphabet=B64TOKEN, min_size=1, max_size=200),
    expires_at=st.one_of(st.none(), st.floats(min_value=0, max_value=1e12)),
    refresh=st.one_of(
        st.none(), st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                           min_size=1, max_size=200),
    ),
)  # fmt: skip
def test_any_token_round_trips(access: str, expires_at: float | None, refresh: str | None) -> None:
    token = Token(
        access_token=access, refresh_token=refresh, expires_at=expires_at, obtained_at=1.0
    )
    entry = seal(KEY, SEALING_KEY, token)
    assert unseal(KEY, SEALING_KEY, entry) == token
    assert entry_expires_at(entry) == expires_at
    assert refused(entry, key="0" * 64) == CANNOT_DECRYPT
