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
  fleet goes on when the lease ends. A renewal waits one lease at most for a
  lock held by someone else, then goes on without it (with a warning). Our
  leases always have a TTL: a lock key without one is foreign (a crashed tool,
  a hand-made ``SET``) and is removed with a warning.

A value of another type at a token key (a list, a hash) is a miss with a
warning, and the next save replaces it. ``clear()`` removes entries.

``key`` is the scrypt-bound hash of the credentials and scope: no user name,
e-mail address or secret appears in a key. A dump of this Redis is useless
without the credentials; still, whoever can write to it can delete or replace
entries (a replaced entry is ignored, and costs one token request).
"""

from __future__ import annotations

import math
import os
import threading
import time

from ._entry import MAX_ENTRY_BYTES, entry_expires_at
from ._log import logger

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._cache import CacheLock

__all__ = ["RedisTokenCache"]


_DEFAULT_TIMEOUT = 2.0

# Deletes a key only if it has no TTL. Our lock leases always have one, so a lock
# key without one was left by something else (a crashed tool, a hand-made SET)
# and would block every renewal for ever. Checked and deleted in one step, so a
# lease taken meanwhile is never deleted.
_DELETE_IF_NO_TTL = """
if redis.call('pttl', KEYS[1]) == -1 then
    return redis.call('del', KEYS[1])
end
return 0
"""


def _to_seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError
    return value


def _to_count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _to_bool(text: str) -> bool:
    # Only words that redis-py reads the same way ("off" would be True there).
    lowered = text.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValueError


def _to_protocol(text: str) -> int:
    if text not in ("2", "3"):
        raise ValueError
    return int(text)


def _to_text(text: str) -> str:
    return text


# The query options of a Redis URL that from_url accepts, each with a check of its
# value; redis-py would pass any other name to its connection class and fail only
# when it connects (TypeError, AttributeError). rediss:// also takes the ssl_* ones.
_URL_OPTIONS = {
    "db": _to_count,
    "socket_timeout": _to_seconds,
    "socket_connect_timeout": _to_seconds,
    "socket_keepalive": _to_bool,
    "retry_on_timeout": _to_bool,
    "health_check_interval": _to_count,
    "client_name": _to_text,
    "username": _to_text,
    "password": _to_text,
    "protocol": _to_protocol,
}


def _to_file(text: str) -> str:
    if not os.path.isfile(text):
        raise ValueError
    return text


def _to_directory(text: str) -> str:
    if not os.path.isdir(text):
        raise ValueError
    return text


def _to_cert_reqs(text: str) -> str:
    if text not in ("none", "optional", "required"):
        raise ValueError
    return text


_TLS_OPTIONS = {
    "ssl_cert_reqs": _to_cert_reqs,
    "ssl_ca_certs": _to_file,
    "ssl_ca_path": _to_directory,
    "ssl_certfile": _to_file,
    "ssl_keyfile": _to_file,
    "ssl_check_hostname": _to_bool,
}
_WANTED = {
    _to_seconds: "a number of seconds above 0",
    _to_count: "a whole number from 0",
    _to_bool: "true or false",
    _to_protocol: "2 or 3",
    _to_file: "the path of an existing file",
    _to_directory: "the path of an existing directory",
    _to_cert_reqs: "none, optional or required",
}


def _option_name(name: str) -> str:
    """An option's name for a message: quoted only when it is made of lowercase
    letters and underscores, like every option name. Anything else (a password
    put in the query by mistake?) is not shown."""
    if 0 < len(name) <= 40 and all("a" <= c <= "z" or c == "_" for c in name):
        return repr(name)
    return "an option whose name is not lowercase letters and underscores"


def _check_url_options(url: str) -> None:
    """Raise ValueError naming the first query option of ``url`` that is unknown
    or has a bad value (never quoting the URL or a value)."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return  # redis-py refuses it, and from_url says so
    known = dict(_URL_OPTIONS)
    if parts.scheme.lower() == "rediss":
        known.update(_TLS_OPTIONS)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    for name, _ in pairs:
        if name == "ssl_keyfile" and "ssl_certfile" not in dict(pairs):
            raise ValueError("the Redis URL option 'ssl_keyfile' needs 'ssl_certfile' as well")
    for name, value in pairs:
        check = known.get(name)
        if check is None:
            raise ValueError(
                f"the Redis URL has an unsupported option {_option_name(name)}: remove it; "
                f"supported options: {', '.join(sorted(known))}"
            )
        try:
            check(value)
        except ValueError:
            wanted = _WANTED.get(check, "a value")
            raise ValueError(
                f"the Redis URL option {_option_name(name)} has a bad value: give {wanted}"
            ) from None


class _RedisLock:
    """A ``redis.lock.Lock`` as a [CacheLock][semansys_auth.CacheLock], kept alive while held.

    A lock key with no TTL is foreign (our leases always have one): it is
    removed with a warning, so that it cannot block renewals for ever. After a
    fork, the child never releases or extends the parent's lease.
    """

    def __init__(self, client: Any, name: str, lease: float, max_hold: float) -> None:
        self._client = client
        self._name = name
        # thread_local=False: async clients acquire and release from worker
        # threads that need not be the same one.
        self._lock = client.lock(name, timeout=lease, thread_local=False)
        self._lease = lease
        self._max_hold = max_hold
        self._stop: threading.Event | None = None
        self._pid = os.getpid()

    def acquire(self, timeout: float) -> bool:
        if self._pid != os.getpid():
            # Forked: the parent's lease (and its keep-alive thread) is not ours.
            self._lock = self._client.lock(self._name, timeout=self._lease, thread_local=False)
            self._stop = None
            self._pid = os.getpid()
        got = bool(self._lock.acquire(blocking=False))
        if not got and self._remove_foreign_lock():
            got = bool(self._lock.acquire(blocking=False))
        if not got and timeout > 0:
            got = bool(self._lock.acquire(blocking=True, blocking_timeout=timeout))
        if got:
            self._keep_alive()
        return got

    def _remove_foreign_lock(self) -> bool:
        if self._client.pttl(self._name) != -1:
            return False
        removed = bool(self._client.eval(_DELETE_IF_NO_TTL, 1, self._name))
        if removed:
            logger.warning(
                "token cache lock %s in Redis had no expiry, so no renewal of ours held "
                "it: removed",
                self._name,
            )
        return removed

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
        if self._pid != os.getpid():
            return  # the parent's lease: the parent releases it
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

    Attributes:
        client: the redis-py client, as given.
        prefix: put before every key name, as given.
        max_lock_wait: the longest a renewal waits for another process's lock:
            one lease (``lock_lease``). A live holder keeps extending its lease,
            so waiting longer could mean waiting for a stuck holder; after this
            the renewal goes on without the lock.

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
        # Read by the auth object: see "Attributes" above.
        self.max_lock_wait = self._lease
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
        # The constructor's defaults, repeated so that the documented signature
        # shows the values (tests/caches/test_redis_cache.py checks they match).
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

        Query options of the URL: ``db``, ``socket_timeout``,
        ``socket_connect_timeout``, ``socket_keepalive``, ``retry_on_timeout``,
        ``health_check_interval``, ``client_name``, ``username``, ``password``,
        ``protocol``; for ``rediss://`` also ``ssl_cert_reqs``, ``ssl_ca_certs``,
        ``ssl_ca_path``, ``ssl_certfile``, ``ssl_keyfile`` and
        ``ssl_check_hostname``. Any other is refused here rather than failing
        on the first connection.

        Raises:
            ImportError: redis-py is missing: ``pip install 'semansys-auth[redis]'``.
            TypeError: ``url`` is not a string.
            ValueError: ``url`` is not a Redis URL, or one of its query options is
                unknown or has a bad value. The message names the option, and
                never quotes the URL or a value (they may hold a password).
        """
        try:
            import redis
        except ImportError:
            raise ImportError(
                "RedisTokenCache needs redis-py: pip install 'semansys-auth[redis]'"
            ) from None
        redis_options.setdefault("socket_timeout", _DEFAULT_TIMEOUT)
        redis_options.setdefault("socket_connect_timeout", _DEFAULT_TIMEOUT)
        if not isinstance(url, str):
            raise TypeError(f"the Redis URL must be a string, got {type(url).__name__}")
        _check_url_options(url)
        try:
            client = redis.Redis.from_url(url, **redis_options)
        except (ValueError, TypeError) as exc:
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
        name = self._name("token", key)
        try:
            # At most one byte more than an entry may hold, whatever a writer of this
            # Redis stored there (a GET would read hundreds of MB). A missing key
            # reads as empty, as an empty value does: neither is an entry.
            raw = self.client.getrange(name, 0, MAX_ENTRY_BYTES)
        except Exception as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            # Not a string (a list, a hash...): foreign. The next save replaces it.
            logger.warning(
                "token cache entry %s in Redis is ignored: it is not a string value; it is "
                "replaced by the next token",
                name,
            )
            return None
        if not raw:
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
        return _RedisLock(self.client, self._name("lock", key), self._lease, self._max_hold)

    def clear(self, key: str | None = None) -> int:
        """Remove stored tokens: ``key``'s, or (None) every entry under this prefix.

        Entries are found with SCAN (never KEYS, which stalls a busy server), and
        only names of the form ``<prefix>token:<hex key>`` are removed. Lock keys
        are removed only when they have no TTL (foreign: no renewal holds them);
        a held lease is never touched.

        Returns:
            How many token entries were removed.

        Raises:
            ValueError: ``key`` is not a cache key.
            redis.RedisError: Redis failed or timed out.
        """
        if key is not None:
            removed = int(self.client.delete(self._name("token", key)))
            self._delete_if_no_ttl([self._name("lock", key)])
            return removed
        removed = 0
        pattern = _glob_escape(self.prefix)
        for kind in ("token", "lock"):
            start = f"{self.prefix}{kind}:"
            names = [
                name
                for name in self.client.scan_iter(match=f"{pattern}{kind}:*", count=1000)
                if _is_key(_text(name)[len(start) :])
            ]
            if kind == "token":
                for first in range(0, len(names), 500):
                    removed += int(self.client.delete(*names[first : first + 500]))
            else:
                self._delete_if_no_ttl(names)
        return removed

    def _delete_if_no_ttl(self, names: list[Any]) -> None:
        for name in names:
            self.client.eval(_DELETE_IF_NO_TTL, 1, name)


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(name: Any) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def _is_key(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)
