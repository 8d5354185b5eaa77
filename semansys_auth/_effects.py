"""What the token core asks the shell to do: small immutable effects, compared
by value in tests, the way h11's tests compare events.

The core's renewal generator (``TokenCore.renewal``) yields one of these and
receives the result; a failure is thrown back in, for the core to judge. The
drivers (``_drive``) carry them out: :class:`~._wire.EndpointRequest` through
the HTTP adapter, :class:`Sleep` and the renewal lock (:class:`TakeLock`,
:class:`ReleaseLock`) on the caller's thread or event loop, and the rest, which
may block (cache I/O, the user's callback, a 35 ms key derivation), by their
:meth:`Blocking.run`, which async drivers call in a worker thread.

| effect            | result                                    |
|-------------------|-------------------------------------------|
| ``EndpointRequest`` | an ``EndpointResponse``                 |
| ``Sleep``         | None                                      |
| ``Detach``        | None (the rest may run in the background) |
| ``TakeLock``      | a :class:`Lock` outcome                   |
| ``ReleaseLock``   | None                                      |
| ``DeriveKeys``    | (cache key, sealing key)                  |
| ``LoadCache``     | the stored entry or None                  |
| ``SaveCache``     | None                                      |
| ``LockCache``     | whether the cache's lock was taken        |
| ``UnlockCache``   | None                                      |
| ``NotifyToken``   | None                                      |
"""

from __future__ import annotations

import enum

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._token import TokenInfo


class Lock(enum.Enum):
    """The outcome of :class:`TakeLock`."""

    TAKEN = "this caller holds the renewal lock"
    ENDED = "another caller's renewal ended while this one waited: look again"
    BUSY = "another caller is renewing (not waited for, or for longer than the limit)"


class Effect:
    """Base: equal when of the same class with equal fields; never shows a secret
    (no effect holds one, except a cache entry, which is sealed)."""

    __slots__ = ()

    def _fields(self) -> tuple[Any, ...]:
        names: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, name) for name in names)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


class Sleep(Effect):
    """Wait ``seconds`` (``time.sleep`` or ``anyio.sleep``)."""

    __slots__ = ("seconds",)
    seconds: float

    def __init__(self, seconds: float) -> None:
        object.__setattr__(self, "seconds", seconds)


class Detach(Effect):
    """An advisory renewal is about to start: a driver that can renew in the
    background goes on with the rest of the flow there, and gives the caller
    ``token`` (still valid) at once; any other driver carries on in place."""

    __slots__ = ("token",)
    token: Any

    def __init__(self, token: Any) -> None:
        object.__setattr__(self, "token", token)


class TakeLock(Effect):
    """Take the renewal lock of this auth object; if another caller holds it,
    wait at most ``wait`` seconds for that renewal to end (0: do not wait)."""

    __slots__ = ("wait",)
    wait: float

    def __init__(self, wait: float) -> None:
        object.__setattr__(self, "wait", wait)


class ReleaseLock(Effect):
    """Release the renewal lock, waking the callers that wait for it."""

    __slots__ = ()


class Blocking(Effect):
    """An effect that may block: run by :meth:`run` (in a worker thread on an
    event loop), with the shell's cache, callback and lock."""

    __slots__ = ()

    def run(self, shell: Any, holder: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class DeriveKeys(Blocking):
    """Compute the cache key and the sealing key (scrypt: about 35 ms of CPU)."""

    __slots__ = ()

    def run(self, shell: Any, holder: Any) -> tuple[str, bytes]:
        keys: tuple[str, bytes] = shell.endpoint.cache_keys()
        return keys


class LoadCache(Blocking):
    """Read the entry stored under ``key``."""

    __slots__ = ("key",)
    key: str

    def __init__(self, key: str) -> None:
        object.__setattr__(self, "key", key)

    def run(self, shell: Any, holder: Any) -> Any:
        return shell.cache.load(self.key)


class SaveCache(Blocking):
    """Store ``entry`` (sealed) under ``key``."""

    __slots__ = ("entry", "key")
    key: str
    entry: str

    def __init__(self, key: str, entry: str) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "entry", entry)

    def run(self, shell: Any, holder: Any) -> None:
        shell.cache.save(self.key, self.entry)


class LockCache(Blocking):
    """Try once to take the cache's lock for ``key`` (between processes)."""

    __slots__ = ("key",)
    key: str

    def __init__(self, key: str) -> None:
        object.__setattr__(self, "key", key)

    def run(self, shell: Any, holder: Any) -> bool:
        return bool(shell.lock.try_cache(holder, shell.cache, self.key))


class UnlockCache(Blocking):
    """Release the cache's lock taken by :class:`LockCache`."""

    __slots__ = ()

    def run(self, shell: Any, holder: Any) -> None:
        shell.lock.release_cache(holder)


class NotifyToken(Blocking):
    """Call the user's ``on_token`` callback with ``info`` (no secrets)."""

    __slots__ = ("info",)
    info: TokenInfo

    def __init__(self, info: TokenInfo) -> None:
        object.__setattr__(self, "info", info)

    def run(self, shell: Any, holder: Any) -> None:
        shell.on_token(self.info)
