"""The cache key and the sealing key of one set of credentials and scope.

Both come from one scrypt of the client secret and password, salted with the
token URL, client id, username and scope (see :func:`cache_keys`).
"""

from __future__ import annotations

import hashlib
import json

SEALING_KEY_INFO = b"semansys-auth/cache-entry/3"
"""The HKDF ``info`` of the key that seals cache entries (see :func:`cache_keys`)."""


def cache_keys(
    token_url: str,
    client_id: str,
    username: str,
    scope: str | None,
    client_secret: str,
    password: str,
) -> tuple[str, bytes]:
    """The cache key, and the key that seals cache entries, of these
    credentials and scope.

    The cache key binds each cache entry to everything that obtained it:
    token URL, client id, username, scope, and (through scrypt, a
    deliberately slow salted KDF, about 35 ms) the client secret and
    password. An object with a wrong password or another scope finds
    nothing, and the key is no cheap offline test of the password. Hex, with
    no e-mail address in it.

    The sealing key (32 bytes, for AES-256-GCM) comes from the same scrypt
    output, so both cost one scrypt: a cache entry can be opened only with
    the credentials that wrote it.
    """
    # hmac is imported here: it is needed only where a cache is used.
    import hmac

    identity = json.dumps(
        ["semansys-auth/cache-key/2", token_url, client_id, username, scope]
    ).encode()
    secrets = json.dumps([client_secret, password]).encode()
    binding = hashlib.scrypt(
        secrets,
        salt=hashlib.sha256(identity).digest(),
        n=2**14,
        r=8,
        p=1,  # 16 MiB of memory: within OpenSSL's default maxmem of 32 MiB
        dklen=32,
    )
    # HKDF-Expand (RFC 5869, section 2.3) for a single 32-byte block, with
    # the scrypt output as the pseudorandom key: T(1) = HMAC(PRK, info | 0x01).
    # Written with the standard library's hmac rather than cryptography's
    # HKDFExpand so that the command's warm start does not import
    # cryptography's KDF modules (tests check it equals HKDFExpand).
    sealing_key = hmac.new(binding, SEALING_KEY_INFO + b"\x01", hashlib.sha256).digest()
    return hashlib.sha256(identity + binding).hexdigest(), sealing_key


__all__ = ["SEALING_KEY_INFO", "cache_keys"]
