"""The token cache protocol, and the in-memory cache."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from ._fork import reset_after_fork
from ._token import Token

__all__ = ["CacheLock", "MemoryTokenCache", "TokenCache"]


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

    def load(self, key: str) -> Token | None:
        """The token stored under ``key``, or None."""
        ...

    def save(self, key: str, token: Token) -> None:
        """Store ``token`` under ``key``, replacing what was there."""
        ...


class CacheLock(Protocol):
    """A lock shared between processes.

    ``acquire(timeout)`` waits at most ``timeout`` seconds (0: a single try) and
    says whether it got the lock; ``release()`` gives it back.
    """

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds; whether it was taken."""
        ...

    def release(self) -> None:
        """Give the lock back."""
        ...


class MemoryTokenCache:
    """Tokens kept in this process only; share one between several auth objects."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork

    def load(self, key: str) -> Token | None:
        """The token stored under ``key``, or None."""
        with self._lock:
            return self._tokens.get(key)

    def save(self, key: str, token: Token) -> None:
        """Store ``token`` under ``key``."""
        with self._lock:
            self._tokens[key] = token

    def __repr__(self) -> str:
        return f"MemoryTokenCache(<{len(self._tokens)} token(s)>)"
