"""How the token core uses a token cache: the keys, the cache's lock between
processes, sealed entries in and out, and the pause after a failure. Part of
the core (no I/O: it yields effects, ``_effects``); the decisions about which
cached token to take stay in ``_core``."""

from __future__ import annotations

from collections.abc import Callable, Generator

from ._effects import DeriveKeys, LoadCache, LockCache, SaveCache, Sleep, UnlockCache
from ._entry import OLDER_FORMAT, seal, unseal
from ._log import logger
from ._redact import shown
from ._token import Token

CACHE_PAUSE = 30.0
"""After a cache failure, the cache is left alone this long (one warning per pause)."""

CACHE_POLL_FIRST = 0.001
CACHE_POLL_MAX = 0.1
"""Waiting for another process's cache lock: tries, with growing sleeps between."""

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._endpoint import TokenEndpoint

    Keys = tuple[str, bytes]


class CacheUse:
    """One core's use of its cache (``cache`` None: no cache)."""

    # The last entry that could not be opened (one warning per entry); a class
    # default, set per object when an entry is first ignored.
    _ignored_entry: object = None

    # No reference to the core: a cycle through the cache would leave its
    # connections to the garbage collector (unclosed sockets).
    def __init__(
        self,
        endpoint: TokenEndpoint,
        cache: Any,
        *,
        monotonic: Callable[[], float],
        wait: float,
    ) -> None:
        self.endpoint = endpoint
        self.cache = cache
        self.monotonic = monotonic
        self.wait = wait  # for another process's cache lock; then renewed without it
        self.lockable = callable(getattr(cache, "lock", None))
        self.keys: Keys | None = None  # (cache key, sealing key), derived once
        self.paused_until = -float("inf")

    def active(self) -> bool:
        """A cache is in use, and not resting after a failure."""
        return self.cache is not None and self.monotonic() >= self.paused_until

    def derived(self) -> Keys:
        """The keys, derived here if no effect did yet (blocking: 35 ms of CPU)."""
        if self.keys is None:
            self.keys = self.endpoint.cache_keys()  # the same result in any thread
        return self.keys

    def derive(self) -> Generator[Any, Any, Keys | None]:
        """The cache key and sealing key, derived once (an effect: async drivers
        run it in a worker thread); None when no cache is in use."""
        if not self.active():
            return None
        if self.keys is None:
            try:
                self.keys = yield DeriveKeys()
            except Exception as exc:
                self.failed("key", exc)
                return None
        return self.keys

    def lock(self, key: str, *, wait: bool) -> Generator[Any, Any, bool | None]:
        """Take the cache's lock: True; busy (not waited for, or not within
        ``wait`` seconds): False; it failed, or the cache has none: None. Tries,
        and sleeps a growing moment between tries (as the file and Redis locks
        poll themselves)."""
        if not self.lockable:
            return None
        deadline = self.monotonic() + self.wait
        delay = CACHE_POLL_FIRST
        while True:
            try:
                got = bool((yield LockCache(key)))
            except Exception as exc:
                self.failed("lock", exc)
                return None
            if got or not wait:
                return got
            if self.monotonic() >= deadline:
                logger.warning(
                    "token cache lock not obtained within %.0f s: renewing without it", self.wait
                )
                return False
            yield Sleep(delay)
            delay = min(delay * 2, CACHE_POLL_MAX)

    def unlock(self) -> Generator[Any, Any, None]:
        try:
            yield UnlockCache()
        except Exception as exc:
            self.failed("unlock", exc)

    def load(self, keys: Keys) -> Generator[Any, Any, Token | None]:
        """The stored token, or None: nothing stored, the cache failed, or the
        entry cannot be opened (a miss, not a failure: the cache stays in use,
        and the next token replaces the entry)."""
        key, sealing_key = keys
        try:
            entry = yield LoadCache(key)
            if entry is not None and not isinstance(entry, (str, bytes)):
                raise TypeError(f"it returned a {type(entry).__name__}, not the entry it was given")
        except Exception as exc:
            self.failed("load", exc)
            return None
        if entry is None:
            return None
        try:
            return unseal(key, sealing_key, entry)
        except ValueError as exc:
            self._ignored(str(exc), entry)
            return None

    def save(self, keys: Keys, token: Token) -> Generator[Any, Any, None]:
        """Save ``token``, sealed (unless the cache rests)."""
        if not self.active():
            return
        key, sealing_key = keys
        try:
            yield SaveCache(key, seal(key, sealing_key, token))
        except Exception as exc:
            self.failed("save", exc)

    def failed(self, what: str, exc: BaseException) -> None:
        """A cache call failed: warn (once per pause) and leave the cache alone for
        ``CACHE_PAUSE`` seconds, so that each request does not pay for it."""
        now = self.monotonic()
        if now >= self.paused_until:
            logger.warning(
                "token cache %s failed: %s; going on without the cache for %.0f s",
                what,
                shown(f"{type(exc).__name__}: {exc}", self.endpoint.redact, 300),
                CACHE_PAUSE,
            )
        self.paused_until = now + CACHE_PAUSE

    def _ignored(self, reason: str, entry: str | bytes) -> None:
        """One warning per entry that cannot be opened, never quoting it."""
        if entry == self._ignored_entry:
            return
        self._ignored_entry = entry
        if reason == OLDER_FORMAT:
            logger.warning(
                "token cache entry of an older semansys-auth version ignored; it is "
                "replaced by the next token"
            )
        else:
            logger.warning(
                "token cache entry ignored: %s; it is replaced by the next token", reason
            )
