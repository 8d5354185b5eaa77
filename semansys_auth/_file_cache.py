"""``FileTokenCache``: tokens shared between the processes of one host, in files.

The rules are those of ``~/.netrc`` and ssh: a token file is used only if it is
a regular file owned by the current user and readable by nobody else; the
directory only if it belongs to the current user (or root) and nobody else can
write to it. Anything else is ignored with a warning that names the path and
the fix. Nothing touches the filesystem until the first load, save or lock.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

from ._entry import MAX_ENTRY_BYTES
from ._log import logger

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._cache import CacheLock

__all__ = ["FileTokenCache", "UnsafeCacheError"]


_HEX = frozenset("0123456789abcdef")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnsafeCacheError(OSError):
    """The cache directory may not be trusted (or used); the message says why
    and how to fix it."""


def _uid() -> int | None:
    geteuid = getattr(os, "geteuid", None)
    return None if geteuid is None else int(geteuid())


class _FileLock:
    """A ``filelock.FileLock`` as a :class:`CacheLock` (filelock imported on first use)."""

    def __init__(self, path: Path) -> None:
        import filelock

        # thread_local=False: async clients acquire and release it from worker
        # threads that need not be the same one.
        self._lock = filelock.FileLock(str(path), mode=0o600, thread_local=False)
        self._timeout_type: type[BaseException] = filelock.Timeout

    def acquire(self, timeout: float) -> bool:
        try:
            self._lock.acquire(timeout=timeout, poll_interval=0.01)
        except self._timeout_type:
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
    lock (``<key>.lock``) that the auth object holds while it renews: N processes
    starting together make one token request. A corrupt, foreign or unsafe file
    is ignored with a warning and replaced by the next save.

    A file holds one entry as the auth object made it: the tokens sealed with
    AES-256-GCM under a key derived from the credentials (only the expiry is in
    clear), so a copy of the file is useless without the credentials.

    Args:
        directory: where the files go; created (mode 0700) on first use. ``~``
            is expanded. Nothing is touched until then.

    Raises:
        TypeError: ``directory`` is not a string or path.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        if not isinstance(directory, (str, os.PathLike)) or isinstance(directory, bytes):
            raise TypeError(
                f"FileTokenCache needs a directory path, got {type(directory).__name__}"
            )
        if not os.fspath(directory):
            raise ValueError("FileTokenCache needs a directory path, got an empty string")
        self.directory = Path(directory).expanduser()
        self._locks: dict[str, _FileLock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self.directory)!r})"

    def path(self, key: str) -> Path:
        """The file that holds ``key``'s token."""
        if not isinstance(key, str) or not key or not _HEX.issuperset(key):
            raise ValueError("cache keys are lowercase hex strings")
        return self.directory / f"{key}.json"

    def _checked_directory(self) -> Path:
        """Create the directory if it is missing, and check that it may be trusted.

        Raises:
            UnsafeCacheError: it is not a directory, belongs to someone else, or
                others may write to it.
            OSError: it cannot be created.
        """
        directory = self.directory
        try:
            info = directory.stat()
        except FileNotFoundError:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = directory.stat()
        fix = "or choose another directory (SEMANSYS_TOKEN_CACHE, --cache)"
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafeCacheError(f"token cache path {directory} is not a directory: {fix}")
        uid = _uid()
        if uid is not None and info.st_uid not in (uid, 0):
            raise UnsafeCacheError(
                f"token cache directory {directory} belongs to another user (uid "
                f"{info.st_uid}): not used; use a directory of your own {fix}"
            )
        mode = stat.S_IMODE(info.st_mode)
        if uid is not None and mode & 0o022:
            raise UnsafeCacheError(
                f"token cache directory {directory} is writable by other users (mode "
                f"{mode:o}): not used; run 'chmod 700 {directory}' {fix}"
            )
        return directory

    def lock(self, key: str) -> CacheLock:
        """The file lock for ``key`` (``<key>.lock`` in the directory)."""
        path = self.path(key)
        with self._guard:
            found = self._locks.get(key)
            if found is None:
                self._checked_directory()
                found = self._locks[key] = _FileLock(path.with_suffix(".lock"))
            return found

    def load(self, key: str) -> str | None:
        """The entry stored for ``key``, or None (missing or unsafe)."""
        path = self.path(key)
        self._checked_directory()
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._ignore(path, f"it cannot be opened ({exc.strerror or exc}); is it a symlink?")
            return None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            problem = self._file_problem(info)
            if problem is not None:
                self._ignore(path, problem)
                return None
            raw = handle.read(MAX_ENTRY_BYTES + 1)
        # Entries are ASCII; any other byte becomes one U+FFFD, and the auth
        # object ignores (and replaces) what it cannot open.
        return raw.decode("ascii", "replace")

    @staticmethod
    def _file_problem(info: os.stat_result) -> str | None:
        if not stat.S_ISREG(info.st_mode):
            return "it is not a regular file"
        uid = _uid()
        if uid is not None and info.st_uid != uid:
            return f"it belongs to another user (uid {info.st_uid})"
        mode = stat.S_IMODE(info.st_mode)
        if uid is not None and mode & 0o077:
            return f"others may read or write it (mode {mode:o})"
        return None

    @staticmethod
    def _ignore(path: Path, why: str) -> None:
        logger.warning(
            "token cache file %s is ignored: %s. It is replaced by the next token; "
            "remove it if that fails",
            path,
            why,
        )

    def save(self, key: str, entry: str) -> None:
        """Store ``entry`` for ``key``: mode 0600, atomically."""
        path = self.path(key)
        directory = self._checked_directory()
        import tempfile

        payload = entry
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=directory)
        try:
            # mkstemp creates the file 0600 already; chmod again in case of an odd umask.
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)  # replaces a planted symlink itself, never its target
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
