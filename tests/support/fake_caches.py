"""Token caches that tests control: one that records what it is given, and
one whose chosen method fails. Both follow the token cache protocol (``load``,
``save``, and for the failing one ``lock``); neither does any I/O."""

from __future__ import annotations

from semansys_auth._core import TokenCore
from semansys_auth._entry import seal, unseal
from semansys_auth._token import Token


class RecordingCache:
    """Stores the entries it is given and records each call; ``put`` and
    ``token`` seal and open an entry with a core's keys."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.calls: list[str] = []

    def load(self, key: str) -> str | None:
        self.calls.append("load")
        return self.entries.get(key)

    def save(self, key: str, entry: str) -> None:
        self.calls.append("save")
        self.entries[key] = entry

    def put(self, core: TokenCore, token: Token) -> None:
        key = core.cache_key()
        self.entries[key] = seal(key, core.sealing_key(), token)

    def token(self, core: TokenCore) -> Token:
        key = core.cache_key()
        return unseal(key, core.sealing_key(), self.entries[key])


class FailingLock:
    """The lock of a :class:`FailingCache`: ``acquire`` or ``release`` raises
    when that is the failing method."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.held = False

    def acquire(self, timeout: float) -> bool:
        if self.failing == "acquire":
            raise OSError("lock on fire")
        self.held = True
        return True

    def release(self) -> None:
        self.held = False
        if self.failing == "release":
            raise OSError("unlock on fire")


class FailingCache:
    """A cache whose one method ``failing`` (load, save, lock, acquire or
    release) raises ``OSError``; the others work."""

    def __init__(self, failing: str) -> None:
        self.failing = failing
        self.tokens: dict[str, str] = {}
        self.the_lock = FailingLock(failing)

    def load(self, key: str) -> str | None:
        if self.failing == "load":
            raise OSError("load on fire")
        return self.tokens.get(key)

    def save(self, key: str, entry: str) -> None:
        if self.failing == "save":
            raise OSError("save on fire")
        self.tokens[key] = entry

    def lock(self, key: str) -> FailingLock:
        if self.failing == "lock":
            raise OSError("lock() on fire")
        return self.the_lock
