"""The token cache protocol, and the in-memory cache."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from ._fork import reset_after_fork

__all__ = ["CacheLock", "MemoryTokenCache", "TokenCache"]


@runtime_checkable
class TokenCache(Protocol):
    """Where tokens are kept between fetches, to share them between objects,
    processes or hosts.

    ``key`` is an opaque lowercase hex string: a hash that binds the entry to the
    token URL, client id, username, scope, client secret and password that
    obtained it (the secrets through scrypt). It holds no secret and no e-mail
    address, and an object with other credentials or another scope uses another
    key.

    ``entry`` is an ASCII string (JSON) that the auth object made: the token
    sealed with AES-256-GCM under a key derived from the credentials, so that
    what a cache stores is useless without them. Store it verbatim and return
    it from ``load`` (``bytes`` are accepted too); ``load`` returns None when
    nothing is stored. An entry that was altered, truncated or written with
    other credentials is ignored with a warning and replaced by the next token.

    Any method may raise: the auth object logs a warning, leaves the cache alone
    for 30 seconds, and carries on without it. The methods are blocking; async
    clients call them in a worker thread.

    A cache may also offer ``lock(key) -> CacheLock``; the auth object then holds
    that lock while it renews, so that the processes sharing the cache make one
    token request between them.
    """

    def load(self, key: str) -> str | None:
        """The entry stored under ``key``, or None."""
        ...

    def save(self, key: str, entry: str) -> None:
        """Store ``entry`` under ``key``, replacing what was there."""
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
    """Tokens kept in this process only; share one between several auth objects.

    It holds sealed entries, as every cache does."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork

    def load(self, key: str) -> str | None:
        """The entry stored under ``key``, or None."""
        with self._lock:
            return self._tokens.get(key)

    def save(self, key: str, entry: str) -> None:
        """Store ``entry`` under ``key``."""
        with self._lock:
            self._tokens[key] = entry

    def __repr__(self) -> str:
        return f"MemoryTokenCache(<{len(self._tokens)} token(s)>)"
