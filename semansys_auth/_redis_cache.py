"""``RedisTokenCache``: one token for a fleet of workers on many hosts.

Built on redis-py, with its own lock (``redis.lock.Lock``): no coordination
protocol of our own. What Redis holds:

* ``<prefix>token:<key>``: the cache entry, as the auth object made it: the
  tokens sealed with AES-256-GCM under a key derived from the credentials; only
  the expiry is in clear. No password, no client secret. Its TTL is the
  access token's remaining life plus ``ttl_margin`` (``unknown_ttl`` when the
  lifetime is unknown): nothing stays for ever, and a refresh token
  outlives its access token by the margin at most.
* ``<prefix>lock:<key>``: the renewal lock, a lease of ``lock_lease`` seconds
  that a keep-alive thread extends while the renewal runs (at most
  ``max_lock_hold`` seconds). A holder that dies stops extending it, and the
  fleet goes on when the lease ends.

``key`` is the scrypt-bound hash of the credentials and scope: no user name,
e-mail address or secret appears in a key. A dump of this Redis is useless
without the credentials; still, whoever can write to it can delete or replace
entries (a replaced entry is ignored, and costs one token request).
"""

from __future__ import annotations

import threading
import time

from ._entry import entry_expires_at
from ._log import logger

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._cache import CacheLock

__all__ = ["RedisTokenCache"]


_DEFAULT_TIMEOUT = 2.0


class _RedisLock:
    """A ``redis.lock.Lock`` as a :class:`CacheLock`, kept alive while held."""

    def __init__(self, lock: Any, lease: float, max_hold: float) -> None:
        self._lock = lock
        self._lease = lease
        self._max_hold = max_hold
        self._stop: threading.Event | None = None

    def acquire(self, timeout: float) -> bool:
        if timeout <= 0:
            got = bool(self._lock.acquire(blocking=False))
        else:
            got = bool(self._lock.acquire(blocking=True, blocking_timeout=timeout))
        if got:
            self._keep_alive()
        return got

    def _keep_alive(self) -> None:
        stop = self._stop = threading.Event()
        lock, lease, until = self._lock, self._lease, time.monotonic() + self._max_hold

        def extend() -> None:
            while not stop.wait(lease / 3) and time.monotonic() < until:
                try:
                    lock.extend(lease, replace_ttl=True)
                except Exception as exc:  # lost it, or Redis is gone: the lease ends
                    logger.warning("token cache lock lease not extended: %s", type(exc).__name__)
                    return

        threading.Thread(target=extend, name="semansys-auth-redis-lease", daemon=True).start()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        self._lock.release()


class RedisTokenCache:
    """Tokens shared between processes on any number of hosts, through Redis.

    Args:
        client: your own ``redis.Redis`` (or cluster, or sentinel master)
            client, with its TLS, ACL and timeouts. Give it a
            ``socket_timeout``: every call of the cache waits that long at most.
        prefix: put before every key name.
        lock_lease: seconds the renewal lock lives without being extended.
        max_lock_hold: the longest the lock is kept alive by one holder.
        ttl_margin: seconds a stored token outlives its access token.
        unknown_ttl: seconds a token of unknown lifetime is kept.

    Raises:
        TypeError: ``client`` does not look like a redis-py client.
        ValueError: an option is out of range.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "semansys-auth:",
        lock_lease: float = 15.0,
        max_lock_hold: float = 600.0,
        ttl_margin: float = 300.0,
        unknown_ttl: float = 3600.0,
    ) -> None:
        for method in ("get", "set", "lock"):
            if not callable(getattr(client, method, None)):
                raise TypeError(
                    f"RedisTokenCache needs a redis-py client (redis.Redis), got "
                    f"{type(client).__name__}"
                )
        if not isinstance(prefix, str):
            raise TypeError("prefix must be a string")
        for name, value in (
            ("lock_lease", lock_lease),
            ("max_lock_hold", max_lock_hold),
            ("ttl_margin", ttl_margin),
            ("unknown_ttl", unknown_ttl),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value < 1e9
            ):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.client = client
        self.prefix = prefix
        self._lease = float(lock_lease)
        self._max_hold = float(max_lock_hold)
        self._margin = float(ttl_margin)
        self._unknown_ttl = float(unknown_ttl)
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
        if isinstance(kwargs, dict) and kwargs.get("socket_timeout") is None:
            logger.warning(
                "RedisTokenCache: the Redis client has no socket_timeout, so a stalled Redis "
                "would stall token renewals; create it with socket_timeout=2 (for example)"
            )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "semansys-auth:",
        lock_lease: float = 15.0,
        max_lock_hold: float = 600.0,
        ttl_margin: float = 300.0,
        unknown_ttl: float = 3600.0,
        **redis_options: Any,
    ) -> RedisTokenCache:
        """A cache on a new client for a ``redis://``, ``rediss://`` or ``unix://`` URL.

        Args:
            url: where Redis is; it may hold a user name and password.
            prefix: as for the constructor; likewise ``lock_lease``,
                ``max_lock_hold``, ``ttl_margin`` and ``unknown_ttl``.
            **redis_options: passed to ``redis.Redis.from_url``.
                ``socket_timeout`` and ``socket_connect_timeout`` default to 2
                seconds. Nothing connects until the first call.

        Returns:
            The cache.

        Raises:
            ImportError: redis-py is missing: ``pip install 'semansys-auth[redis]'``.
            ValueError: ``url`` is not a Redis URL (the message does not quote it).
        """
        try:
            import redis
        except ImportError:
            raise ImportError(
                "RedisTokenCache needs redis-py: pip install 'semansys-auth[redis]'"
            ) from None
        redis_options.setdefault("socket_timeout", _DEFAULT_TIMEOUT)
        redis_options.setdefault("socket_connect_timeout", _DEFAULT_TIMEOUT)
        try:
            client = redis.Redis.from_url(url, **redis_options)
        except ValueError as exc:
            # The message may quote the URL, and a URL may hold a password.
            raise ValueError(
                "not a Redis URL: use redis://[[user]:password@]host[:port][/db], rediss://... "
                f"or unix:///path ({type(exc).__name__})"
            ) from None
        return cls(
            client,
            prefix=prefix,
            lock_lease=lock_lease,
            max_lock_hold=max_lock_hold,
            ttl_margin=ttl_margin,
            unknown_ttl=unknown_ttl,
        )

    def __repr__(self) -> str:
        # Not the client: its URL may hold a password.
        return f"RedisTokenCache(prefix={self.prefix!r})"

    def _name(self, kind: str, key: str) -> str:
        if not isinstance(key, str) or not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("cache keys are lowercase hex strings")
        return f"{self.prefix}{kind}:{key}"

    def load(self, key: str) -> str | None:
        """The entry stored under ``key``, or None.

        Raises:
            redis.RedisError: Redis failed or timed out (the auth object warns
                and goes on without the cache).
        """
        raw = self.client.get(self._name("token", key))
        if raw is None:
            return None
        # Entries are ASCII; any other byte becomes one U+FFFD, and the auth
        # object ignores (and replaces) what it cannot open.
        return raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw

    def save(self, key: str, entry: str) -> None:
        """Store ``entry`` under ``key``, with a TTL (see the class).

        Raises:
            ValueError: ``entry`` is not a token cache entry.
            redis.RedisError: Redis failed or timed out.
        """
        expires_at = entry_expires_at(entry)
        if expires_at is None:
            ttl = self._unknown_ttl
        else:
            ttl = max(expires_at - time.time(), 0.0) + self._margin
        self.client.set(self._name("token", key), entry, px=max(int(ttl * 1000), 1))

    def lock(self, key: str) -> CacheLock:
        """The renewal lock for ``key``: a ``redis.lock.Lock`` lease, kept alive
        while held."""
        # thread_local=False: async clients acquire and release from worker
        # threads that need not be the same one.
        lock = self.client.lock(self._name("lock", key), timeout=self._lease, thread_local=False)
        return _RedisLock(lock, self._lease, self._max_hold)
