"""Token caches: the protocol, an in-memory cache and a cross-process file cache."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import filelock

from ._token import Token

__all__ = ["CacheLock", "FileTokenCache", "MemoryTokenCache", "TokenCache"]

logger = logging.getLogger("semansys_auth")

_FORMAT = "semansys-auth/token-cache/1"


@runtime_checkable
class TokenCache(Protocol):
    """Where tokens are kept between fetches.

    ``key`` is an opaque hex string (a SHA-256 of token URL, client id and
    username): it holds no secret and no e-mail address. ``load`` returns None
    when nothing usable is stored. Both may raise: the auth object logs a warning
    and carries on without the cache.

    A cache may also offer ``lock(key) -> CacheLock``; the auth object then holds
    that lock while it fetches, so that processes sharing the cache make one token
    request between them.
    """

    def load(self, key: str) -> Token | None: ...

    def save(self, key: str, token: Token) -> None: ...


class CacheLock(Protocol):
    """A lock shared between processes. ``acquire(timeout=0)`` must not block."""

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


class _FileLock:
    def __init__(self, path: Path) -> None:
        self._lock = filelock.FileLock(str(path), mode=0o600)

    def acquire(self, timeout: float) -> bool:
        try:
            self._lock.acquire(timeout=timeout, poll_interval=0.01)
        except filelock.Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()


class FileTokenCache:
    """Tokens shared between processes through files in one directory.

    One file per key, ``<directory>/<key>.json``: the name is a hash, so it
    reveals neither the client nor the user. Files are created with mode 0600 in
    a 0700 directory and replaced atomically (write to a temporary file, fsync,
    rename), so a reader never sees half a token. ``lock(key)`` returns a file
    lock (``<key>.lock``) that the auth object holds while it fetches: N processes
    starting together make one token request. A corrupt or foreign file is
    ignored with a warning and replaced by the next save.

    The file holds the access and refresh tokens in clear: like ``~/.netrc`` or
    ``~/.aws/credentials``, it is protected by its permissions only.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._locks: dict[str, _FileLock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self.directory)!r})"

    def path(self, key: str) -> Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("cache keys are lowercase hex strings")
        return self.directory / f"{key}.json"

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def lock(self, key: str) -> CacheLock:
        with self._guard:
            found = self._locks.get(key)
            if found is None:
                self._ensure_directory()
                found = self._locks[key] = _FileLock(self.directory / f"{key}.lock")
            return found

    def load(self, key: str) -> Token | None:
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                logger.warning(
                    "token cache file %s is readable by others (mode %o): ignored, "
                    "it will be replaced",
                    path,
                    mode,
                )
                return None
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != _FORMAT:
                raise ValueError("not a semansys-auth token cache file")
            if data.get("key") != key:
                raise ValueError("written for another key")
            return Token.from_json(data.get("token"))
        except (ValueError, OSError) as exc:
            logger.warning(
                "token cache file %s is corrupt or foreign (%s): ignored, it will be replaced",
                path,
                exc,
            )
            return None

    def save(self, key: str, token: Token) -> None:
        path = self.path(key)
        self._ensure_directory()
        payload = json.dumps({"format": _FORMAT, "key": key, "token": token.to_json()})
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.directory)
        try:
            # mkstemp creates the file 0600 already; chmod again in case of an odd umask.
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
