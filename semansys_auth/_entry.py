"""The stored form of a token cache entry: the token sealed with AES-256-GCM.

Every entry that the auth object hands to a cache is sealed under a key derived
from the credentials and scope (see ``TokenEndpoint.cache_keys``), so a cache
file, a backup of the cache directory or a dump of a shared Redis is useless
without the client secret and password. An entry is ASCII JSON::

    {"format":"semansys-auth/token-cache/3","expires_at":1700000000.5,"sealed":"..."}

``sealed`` is base64url (no padding) of a 12-byte random nonce followed by the
AES-GCM ciphertext and tag of ``Token.to_json()``. Only ``expires_at`` is in the
clear: what a cache needs to let entries expire (Redis TTLs). The associated
data binds it, the format and the cache key to the ciphertext, so an entry
altered in any byte, moved to another key, or written with other credentials
cannot be opened.

``cryptography`` is imported on first use: ``import semansys_auth`` stays light.
"""

from __future__ import annotations

import base64
import json
import math

from ._token import Token

ENTRY_FORMAT = "semansys-auth/token-cache/3"
OLD_ENTRY_FORMAT = "semansys-auth/token-cache/1"
"""The entries of semansys-auth 0.1: the token in clear JSON. Ignored, and
replaced by the next save (they sit under the same cache key)."""

MAX_ENTRY_BYTES = 256 * 1024
NONCE_BYTES = 12
TAG_BYTES = 16

NOT_AN_ENTRY = "not a semansys-auth token cache entry"
OLDER_FORMAT = "an entry of an older format"
CANNOT_DECRYPT = "cannot be decrypted: written with other credentials, or altered"


def _text(entry: object) -> str:
    """The entry as its canonical text, or ValueError (never quoting it)."""
    if isinstance(entry, (bytes, bytearray)):  # Redis gives bytes
        if len(entry) > MAX_ENTRY_BYTES:
            raise ValueError("too large")
        try:
            return bytes(entry).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(NOT_AN_ENTRY) from None
    if not isinstance(entry, str):
        raise ValueError(NOT_AN_ENTRY)
    if len(entry) > MAX_ENTRY_BYTES:
        raise ValueError("too large")
    return entry


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _dump(expires_at: float | None, sealed: str) -> str:
    return json.dumps(
        {"format": ENTRY_FORMAT, "expires_at": expires_at, "sealed": sealed},
        separators=(",", ":"),
    )


def _associated_data(key: str, expires_at: float | None) -> bytes:
    return json.dumps([ENTRY_FORMAT, key, expires_at]).encode()


def _parse(entry: object) -> tuple[float | None, bytes]:
    """(expires_at, nonce + ciphertext + tag) of a well-formed entry.

    Only the canonical form (as :func:`seal` writes it) is accepted, byte for
    byte: no other spacing, key order, number spelling or base64 spelling, so
    that any change to an entry is noticed even where JSON or base64 would read
    two texts alike.
    """
    text = _text(entry)
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(NOT_AN_ENTRY) from None
    except ValueError:
        raise ValueError(NOT_AN_ENTRY) from None
    if not isinstance(data, dict):
        raise ValueError(NOT_AN_ENTRY)
    if data.get("format") == OLD_ENTRY_FORMAT:
        raise ValueError(OLDER_FORMAT)
    expires_at = data.get("expires_at")
    sealed = data.get("sealed")
    if (
        data.get("format") != ENTRY_FORMAT
        or not isinstance(sealed, str)
        or not (expires_at is None or (isinstance(expires_at, float) and math.isfinite(expires_at)))
    ):
        raise ValueError(NOT_AN_ENTRY)
    try:
        raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    except ValueError:  # binascii.Error is a ValueError
        raise ValueError(NOT_AN_ENTRY) from None
    if text != _dump(expires_at, sealed) or _b64(raw) != sealed:
        raise ValueError(NOT_AN_ENTRY)
    return expires_at, raw


def seal(key: str, sealing_key: bytes, token: Token) -> str:
    """The stored form of ``token`` under ``key``: ASCII JSON, the token sealed
    with AES-256-GCM under ``sealing_key`` (32 bytes)."""
    import secrets  # on the first save, not at start-up

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    # A float in the clear (a Token may hold an int): read back as written.
    expires_at = None if token.expires_at is None else float(token.expires_at)
    nonce = secrets.token_bytes(NONCE_BYTES)
    plaintext = json.dumps(token.to_json()).encode()
    sealed = AESGCM(sealing_key).encrypt(nonce, plaintext, _associated_data(key, expires_at))
    return _dump(expires_at, _b64(nonce + sealed))


def unseal(key: str, sealing_key: bytes, entry: object) -> Token:
    """The token in a stored entry (``str``, or ``bytes`` as Redis gives it).

    Raises:
        ValueError: the entry is too large, not an entry, of an older format, or
            cannot be decrypted (other credentials, another key, or altered).
            The message never quotes a value.
    """
    expires_at, raw = _parse(entry)
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise ValueError(CANNOT_DECRYPT)
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        plaintext = AESGCM(sealing_key).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated_data(key, expires_at)
        )
    except InvalidTag:
        raise ValueError(CANNOT_DECRYPT) from None
    try:
        return Token.from_json(json.loads(plaintext))
    except ValueError:  # written by a holder of the key: a bug, not an attack
        raise ValueError("holds an unusable token") from None


def entry_expires_at(entry: object) -> float | None:
    """The expiry written in the clear in an entry (for cache TTLs).

    Raises:
        ValueError: it is not an entry (see :func:`unseal`).
    """
    return _parse(entry)[0]
