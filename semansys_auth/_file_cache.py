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
import re
import stat
import threading
import time
from pathlib import Path

from ._entry import MAX_ENTRY_BYTES
from ._fork import reset_after_fork
from ._log import logger

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._cache import CacheLock

__all__ = ["FileTokenCache", "UnsafeCacheError"]


_HEX = frozenset("0123456789abcdef")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW
# What clear() may remove: entries, their lock files, and the temporary files of
# an interrupted save. Nothing else in the directory is touched.
_ENTRY = re.compile(r"[0-9a-f]{32,128}\.json")
_LOCK = re.compile(r"[0-9a-f]{32,128}\.lock")
_TEMPORARY = re.compile(r"\.[0-9a-f]{32,128}\..+\.tmp", re.DOTALL)
_FIX = "choose another cache directory"


class UnsafeCacheError(OSError):
    """The cache directory may not be trusted (or used); the message says why
    and how to fix it."""


def _uid() -> int | None:
    geteuid = getattr(os, "geteuid", None)
    return None if geteuid is None else int(geteuid())


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _make_private_directory(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each with mode 0700.

    ``mkdir(mode=0o700)`` is not enough: the umask masks the mode, and
    ``parents=True`` gives the parents the umask's mode. So each directory this
    creates is chmod-ed afterwards, through a descriptor opened without following
    links (never a path someone swapped in between). The umask is process-wide:
    changing it here would race with other threads.
    """
    missing = []
    current = directory
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # made by someone else meanwhile: the trust checks judge it
        if hasattr(os, "fchmod"):
            fd = os.open(path, _DIRECTORY_FLAGS)
            try:
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)


def _unlink(path: Path) -> bool:
    """Remove ``path`` (a link itself, never its target); whether it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _unlink_lock_if_free(path: Path) -> None:
    """Remove a lock file unless someone holds it.

    The file is removed while this holds its lock, so no holder can lose it;
    filelock notices an unlinked lock file after taking it, and tries again.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        _unlink(path)  # foreign (a link, a FIFO...): nobody holds it through us
        return
    try:
        import fcntl
    except ImportError:  # Windows: a held lock file cannot be removed there anyway
        with contextlib.suppress(OSError):
            path.unlink()
        return
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # held: left alone
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.lstat(path), os.fstat(fd)):
                path.unlink()
    finally:
        os.close(fd)  # also releases the lock


class _FileLock:
    """A ``filelock.FileLock`` as a [CacheLock][semansys_auth.CacheLock] (filelock
    imported on first use).

    Before each acquire the directory is checked (and re-created 0700 if it was
    removed: filelock would re-create it with the umask's mode), and a lock path
    that is not a regular file (a FIFO, a socket, a link, a directory) is a
    warning: the renewal goes on without the lock rather than fail or wait.
    """

    def __init__(self, cache: FileTokenCache, path: Path) -> None:
        self._cache = cache
        self._path = path
        self._pid = -1
        self._lock: Any = None
        self._turn = threading.Lock()
        self._held = False

    def _filelock(self) -> Any:
        # One filelock object per process: filelock refuses one made before a fork.
        if self._lock is None or self._pid != os.getpid():
            import filelock

            # thread_local=False: async clients acquire and release it from worker
            # threads that need not be the same one. That also makes it re-entrant
            # across threads, so self._turn gives it to one holder of this process
            # at a time (two auth objects sharing this cache).
            self._lock = filelock.FileLock(str(self._path), mode=0o600, thread_local=False)
            self._pid = os.getpid()
            self._turn = threading.Lock()
            self._held = False
        return self._lock

    def acquire(self, timeout: float) -> bool:
        import filelock

        lock = self._filelock()
        turn = self._turn
        started = time.monotonic()
        if not (turn.acquire(timeout=timeout) if timeout > 0 else turn.acquire(blocking=False)):
            return False
        try:
            self._cache._checked_directory()
            try:
                info = os.lstat(self._path)
            except FileNotFoundError:
                pass
            else:
                if not stat.S_ISREG(info.st_mode):
                    logger.warning(
                        "token cache lock file %s is %s, not a file this cache made: renewing "
                        "without the lock; remove it",
                        self._path,
                        _kind(info.st_mode),
                    )
                    self._held = False
                    return True
            left = max(timeout - (time.monotonic() - started), 0.0)
            try:
                lock.acquire(timeout=left, poll_interval=0.01)
            except filelock.Timeout:
                turn.release()
                return False
        except BaseException:
            turn.release()
            raise
        self._held = True
        return True

    def release(self) -> None:
        if self._pid != os.getpid():
            return  # taken before a fork: the parent releases it
        try:
            if self._held:
                self._held = False
                self._lock.release()
        finally:
            self._turn.release()


class FileTokenCache:
    """Tokens shared between processes through files in one directory.

    One file per key, ``<directory>/<key>.json``: the name is a hash, so it
    reveals neither the client nor the user. Files are created with mode 0600 in
    a 0700 directory and replaced atomically (write to a temporary file, fsync,
    rename), so a reader never sees half a token. ``lock(key)`` returns a file
    lock (``<key>.lock``) that the auth object holds while it renews: N processes
    starting together make one token request, also processes forked from one
    parent. A corrupt, foreign or unsafe file (garbage, a FIFO, a socket, a
    link, a device) is ignored with a warning, never waited on, and replaced by
    the next save; a lock path that is not a regular file is a warning and the
    renewal goes on without the lock. The directories the cache creates (the
    missing parents too) are 0700 whatever the umask, also when the directory
    is removed while the process runs. ``clear()`` removes entries.

    A file holds one entry as the auth object made it: the tokens sealed with
    AES-256-GCM under a key derived from the credentials (only the expiry is in
    clear), so a copy of the file is useless without the credentials.

    Args:
        directory: where the files go; created (mode 0700) on first use. ``~``
            is expanded. Nothing is touched until then.

    Attributes:
        directory: the directory of the files, ``~`` expanded (a ``Path``).

    Raises:
        TypeError: ``directory`` is not a string or path.
        ValueError: ``directory`` is empty.
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
        reset_after_fork(self)

    def __repr__(self) -> str:
        return f"FileTokenCache({str(self.directory)!r})"

    def _after_fork(self) -> None:
        # filelock objects refuse to work in a forked child ("inherited across fork"),
        # and a guard held by another thread at the fork would stay held forever.
        self._locks = {}
        self._guard = threading.Lock()

    def path(self, key: str) -> Path:
        """The file that holds ``key``'s token."""
        if not isinstance(key, str) or not key or not _HEX.issuperset(key):
            raise ValueError("cache keys are lowercase hex strings")
        return self.directory / f"{key}.json"

    def _checked_directory(self) -> Path:
        """Create the directory (mode 0700) if it is missing, and check that it may
        be trusted.

        Raises:
            UnsafeCacheError: it is not a directory, belongs to someone else, or
                others may write to it.
            OSError: it cannot be created.
        """
        directory = self.directory
        try:
            info = directory.stat()
        except FileNotFoundError:
            _make_private_directory(directory)
            info = directory.stat()
        self._check_trusted(directory, info)
        return directory

    @staticmethod
    def _check_trusted(directory: Path, info: os.stat_result) -> None:
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafeCacheError(
                f"the token cache path {directory} is not a directory; remove it or {_FIX}"
            )
        uid = _uid()
        if uid is not None and info.st_uid not in (uid, 0):
            raise UnsafeCacheError(
                f"the token cache directory {directory} belongs to another user (uid "
                f"{info.st_uid}), so it is not used; {_FIX}, one of your own"
            )
        mode = stat.S_IMODE(info.st_mode)
        if uid is not None and mode & 0o022:
            raise UnsafeCacheError(
                f"the token cache directory {directory} is writable by other users (mode "
                f"{mode:o}), so it is not used; run 'chmod 700 {directory}' or {_FIX}"
            )

    def lock(self, key: str) -> CacheLock:
        """The file lock for ``key`` (``<key>.lock`` in the directory)."""
        path = self.path(key)
        with self._guard:
            found = self._locks.get(key)
            if found is None:
                self._checked_directory()
                found = self._locks[key] = _FileLock(self, path.with_suffix(".lock"))
            return found

    def load(self, key: str) -> str | None:
        """The entry stored for ``key``, or None (missing or unsafe)."""
        path = self.path(key)
        self._checked_directory()
        fd = self._open_entry(path)
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            problem = self._file_problem(info)
            if problem is not None:
                self._ignore(path, problem)
                return None
            if hasattr(os, "set_blocking"):
                os.set_blocking(handle.fileno(), True)  # a regular file: read it plainly
            raw = handle.read(MAX_ENTRY_BYTES + 1)
        # Entries are ASCII; any other byte becomes one U+FFFD, and the auth
        # object ignores (and replaces) what it cannot open.
        return raw.decode("ascii", "replace")

    def _open_entry(self, path: Path) -> int | None:
        """A descriptor on the entry file, or None (missing, or foreign: warned).

        A path that is not a regular file is not even opened (a device may act
        on open); the open itself follows no link and never waits (a FIFO swapped
        in after the lstat), and the caller checks what it opened with fstat."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            self._ignore(path, f"it is {_kind(info.st_mode)}")
            return None
        try:
            return os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._ignore(path, f"it cannot be opened ({exc.strerror or exc})")
            return None

    @staticmethod
    def _file_problem(info: os.stat_result) -> str | None:
        if not stat.S_ISREG(info.st_mode):
            return f"it is {_kind(info.st_mode)}"
        uid = _uid()
        if uid is not None and info.st_uid != uid:
            return f"it belongs to another user (uid {info.st_uid})"
        mode = stat.S_IMODE(info.st_mode)
        if uid is not None and mode & 0o077:
            return f"others may read or write it (mode {mode:o})"
        return None

    @staticmethod
    def _ignore(path: Path, why: str) -> None:
        if why.startswith("it is a directory"):
            fix = "remove it: a directory is not replaced"
        else:
            fix = "it is replaced by the next token; remove it if that fails"
        logger.warning("token cache file %s is ignored: %s; %s", path, why, fix)

    def save(self, key: str, entry: str) -> None:
        """Store ``entry`` for ``key``: mode 0600, atomically."""
        path = self.path(key)
        directory = self._checked_directory()
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=directory)
        try:
            # The file object owns the descriptor from here: closed on every path.
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                # mkstemp creates the file 0600 already; chmod again in case of an odd umask.
                if hasattr(os, "fchmod"):
                    os.fchmod(handle.fileno(), 0o600)
                handle.write(entry)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)  # replaces a planted symlink itself, never its target
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def clear(self, key: str | None = None) -> int:
        """Remove stored tokens: ``key``'s, or (None) every entry of this directory.

        Removes the entry files (``<key>.json``), their lock files unless someone
        holds them, and the temporary files of interrupted saves; never any other
        file. A missing directory holds nothing (it is not created).

        Returns:
            How many token entries were removed.

        Raises:
            ValueError: ``key`` is not a cache key.
            UnsafeCacheError: the directory fails the trust checks (not a
                directory, another user's, writable by others).
            OSError: a file could not be removed.
        """
        if key is not None:
            self.path(key)  # checks the key
        directory = self.directory
        try:
            info = directory.stat()
        except FileNotFoundError:
            return 0
        self._check_trusted(directory, info)
        removed = 0
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries]
        for name in names:
            if key is not None and not (
                name in (f"{key}.json", f"{key}.lock") or name.startswith(f".{key}.")
            ):
                continue
            path = directory / name
            try:
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    continue  # not a file this cache made: left alone
            except FileNotFoundError:
                continue
            if _ENTRY.fullmatch(name):
                removed += _unlink(path)
            elif _TEMPORARY.fullmatch(name):
                _unlink(path)
            elif _LOCK.fullmatch(name):
                _unlink_lock_if_free(path)
        return removed
