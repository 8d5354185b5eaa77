"""The token cache protocol, and the in-memory cache."""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol, runtime_checkable

from ._token import Token

__all__ = ["CacheLock", "MemoryTokenCache", "TokenCache", "decode_entry", "encode_entry"]

ENTRY_FORMAT = "semansys-auth/token-cache/1"
MAX_ENTRY_BYTES = 256 * 1024


def encode_entry(key: str, token: Token) -> str:
    """The stored form of a cache entry (file and Redis caches): JSON that names
    its format and its key, so that a misplaced or foreign entry is refused."""
    return json.dumps({"format": ENTRY_FORMAT, "key": key, "token": token.to_json()})


def decode_entry(key: str, raw: bytes | str) -> Token:
    """The token in a stored entry.

    Raises:
        ValueError: the entry is too large, not JSON, of another format or key,
            or holds an unusable token (the message never quotes a value).
    """
    if len(raw) > MAX_ENTRY_BYTES:
        raise ValueError("too large")
    try:
        data: Any = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(data, dict) or data.get("format") != ENTRY_FORMAT:
        raise ValueError("not a semansys-auth token cache entry")
    if data.get("key") != key:
        raise ValueError("written for another key")
    return Token.from_json(data.get("token"))


@runtime_checkable
class TokenCache(Protocol):
    """Where tokens are kept between fetches, to share them between objects,
    processes or hosts.

    ``key`` is an opaque lowercase hex string: a hash that binds the entry to the
    token URL, client id, username, scope, client secret and password that
    obtained it (the secrets through scrypt). It holds no secret and no e-mail
    address, and an object with other credentials or another scope uses another
    key. ``load`` returns None when nothing usable is stored.

    Any method may raise: the auth object logs a warning, leaves the cache alone
    for 30 seconds, and carries on without it. The methods are blocking; async
    clients call them in a worker thread.

    A cache may also offer ``lock(key) -> CacheLock``; the auth object then holds
    that lock while it renews, so that the processes sharing the cache make one
    token request between them.
    """

    def load(self, key: str) -> Token | None: ...

    def save(self, key: str, token: Token) -> None: ...


class CacheLock(Protocol):
    """A lock shared between processes.

    ``acquire(timeout)`` waits at most ``timeout`` seconds (0: a single try) and
    says whether it got the lock; ``release()`` gives it back.
    """

    def acquire(self, timeout: float) -> bool: ...

    def release(self) -> None: ...


class MemoryTokenCache:
    """Tokens kept in this process only; share one between several auth objects."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> Token | None:
        with self._lock:
            return self._tokens.get(key)

    def save(self, key: str, token: Token) -> None:
        with self._lock:
            self._tokens[key] = token

    def __repr__(self) -> str:
        return f"MemoryTokenCache(<{len(self._tokens)} token(s)>)"
