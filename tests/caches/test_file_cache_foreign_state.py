"""Foreign state in a FileTokenCache directory is a warning, never a
wait or a crash (real FIFOs, sockets, links, directories, devices); directories
the cache creates are 0700 whatever the umask, also when re-created; a lock held
by someone else is waited for one token-request timeout at most; the trust
messages name the path, the problem and the fix; ``clear()``."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import send
from semansys_auth import FileTokenCache, Token
from semansys_auth._entry import seal
from semansys_auth._file_cache import UnsafeCacheError
from semansys_auth.testing import SemansysEmulator

KEY = "ab" * 32
# An entry as the auth object hands it to the cache (sealed; the cache stores it verbatim).
TOKEN = seal(
    "ab" * 32,
    bytes(32),
    Token(access_token="AT", refresh_token="RT", expires_at=4e9, obtained_at=1e9),
)


def make_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def make_socket(path: Path) -> None:
    # AF_UNIX paths are short: bind in a short directory, then move it in place.
    short = Path(tempfile.mkdtemp(prefix="s", dir="/tmp"))
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(short / "s"))
        os.rename(short / "s", path)  # the socket file stays after close
    finally:
        shutil.rmtree(short)


def make_symlink(path: Path) -> None:
    target = path.parent.parent / "target"
    target.write_text("keep me")
    path.symlink_to(target)


def make_dangling_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere")


def make_directory(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_text("x")


def make_device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null


FOREIGN: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (make_fifo, "a FIFO (named pipe)"),
    "socket": (make_socket, "a socket"),
    "symlink": (make_symlink, "a symbolic link"),
    "dangling symlink": (make_dangling_symlink, "a symbolic link"),
    "directory": (make_directory, "a directory"),
    "device": (make_device, "a device"),
}


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.mkdir(mode=0o700)
    return path


@pytest.mark.timeout(10)
@pytest.mark.parametrize("what", sorted(FOREIGN))
def test_foreign_file_at_the_entry_path_is_a_warning_not_a_wait(
    directory: Path, what: str, caplog: pytest.LogCaptureFixture
) -> None:
    make, words = FOREIGN[what]
    cache = FileTokenCache(directory)
    path = cache.path(KEY)
    make(path)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert cache.load(KEY) is None
    assert time.monotonic() - started < 2, "not waited on"
    assert f"token cache file {path} is ignored: it is {words}; " in caplog.text
    if what == "directory":
        assert "remove it: a directory is not replaced" in caplog.text
        with pytest.raises(IsADirectoryError):
            cache.save(KEY, TOKEN)
        assert (path / "inside").read_text() == "x", "nothing of it was removed"
    else:
        cache.save(KEY, TOKEN)
        assert stat.S_ISREG(os.lstat(path).st_mode), "replaced by a regular file"
        assert cache.load(KEY) == TOKEN
    if what == "symlink":
        assert (directory.parent / "target").read_text() == "keep me"


@pytest.mark.timeout(10)
def test_a_fifo_swapped_in_after_the_type_check_is_not_waited_on(
    directory: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The open itself never waits: a FIFO that appears between lstat and open
    is caught by fstat after a non-blocking open."""
    cache = FileTokenCache(directory)
    path = cache.path(KEY)
    cache.save(KEY, TOKEN)
    real_lstat = os.lstat

    def lstat_then_swap(target: object, *args: object, **kwargs: object) -> os.stat_result:
        info = real_lstat(target, *args, **kwargs)  # type: ignore[arg-type]
        if str(target) == str(path) and stat.S_ISREG(info.st_mode):
            os.unlink(path)
            os.mkfifo(path, 0o600)
        return info

    monkeypatch.setattr(os, "lstat", lstat_then_swap)
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert cache.load(KEY) is None
    assert "is ignored: it is a FIFO (named pipe)" in caplog.text


@pytest.mark.timeout(30)
@pytest.mark.parametrize("what", ["fifo", "socket", "symlink", "directory"])
def test_foreign_file_at_the_lock_path_is_a_warning_and_the_renewal_goes_on(
    semansys_emulator: SemansysEmulator,
    directory: Path,
    what: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make, words = FOREIGN[what]
    cache = FileTokenCache(directory)
    auth = semansys_emulator.auth(token_cache=cache)
    lock_path = cache.path(auth._core.cache_key()).with_suffix(".lock")
    make(lock_path)
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert (
        f"token cache lock file {lock_path} is {words}, not a file this cache made: "
        "renewing without the lock; remove it"
    ) in caplog.text
    assert "failed" not in caplog.text, "the cache is not paused: the entry was saved"
    second = semansys_emulator.auth(token_cache=FileTokenCache(directory))
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("requests", second, "GET", semansys_emulator.api_url + "/b").status == 200
    assert len(semansys_emulator.token_requests()) == 1, "the saved token was shared"


UMASK_SCRIPT = textwrap.dedent(
    """
    import os, shutil, stat, sys
    from pathlib import Path
    from semansys_auth._entry import seal
    from semansys_auth import FileTokenCache, Token
    os.umask(int(sys.argv[2], 8))
    base = Path(sys.argv[1])
    root = base / "a"
    cache = FileTokenCache(root / "b" / "tokens")
    key = "cd" * 32
    token = seal(key, bytes(32), Token(access_token="AT", expires_at=4e9, obtained_at=1e9))

    def modes():
        return [oct(stat.S_IMODE(p.stat().st_mode)) for p in
                (root, root / "b", root / "b" / "tokens")]

    def entry_mode():
        return oct(stat.S_IMODE(cache.path(key).stat().st_mode))

    cache.save(key, token)
    print("first", modes(), entry_mode())
    shutil.rmtree(root / "b" / "tokens")
    assert cache.load(key) is None
    print("load", modes())
    shutil.rmtree(root)
    lock = cache.lock(key)
    assert lock.acquire(1)
    lock.release()
    print("lock", modes(), oct(stat.S_IMODE(cache.path(key).with_suffix(".lock").stat().st_mode)))
    shutil.rmtree(root / "b")
    cache.save(key, token)
    print("save", modes(), entry_mode())
    """
)


@pytest.mark.parametrize("umask", ["0", "022", "077"])
def test_directories_are_0700_whatever_the_umask_also_when_recreated(
    tmp_path: Path, umask: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", UMASK_SCRIPT, str(tmp_path), umask],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    private = "['0o700', '0o700', '0o700']"
    assert result.stdout.splitlines() == [
        f"first {private} 0o600",
        f"load {private}",
        f"lock {private} 0o600",
        f"save {private} 0o600",
    ]


@pytest.mark.timeout(30)
def test_a_lock_held_by_another_process_is_waited_for_one_timeout_at_most(
    semansys_emulator: SemansysEmulator, directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FileTokenCache(directory)
    auth = semansys_emulator.auth(token_cache=cache, timeout=2)
    lock_path = cache.path(auth._core.cache_key()).with_suffix(".lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
            str(lock_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="semansys_auth"):
                reply = send("requests", auth, "GET", semansys_emulator.api_url + "/a")
            waited = time.monotonic() - started
        finally:
            holder.kill()
    assert reply.status == 200
    assert 1.5 <= waited < 6, waited
    assert "token cache lock not obtained within 2 s: renewing without it" in caplog.text
    assert len(semansys_emulator.token_requests()) == 1


# -- the trust messages ---------------------------------------------------------------


def unsafe_message(cache: FileTokenCache) -> str:
    with pytest.raises(UnsafeCacheError) as caught:
        cache.load(KEY)
    with pytest.raises(UnsafeCacheError) as again:
        cache.clear()
    assert str(again.value) == str(caught.value)
    return str(caught.value)


def test_a_file_as_the_cache_path_gets_a_clean_message(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("x")
    assert unsafe_message(FileTokenCache(path)) == (
        f"the token cache path {path} is not a directory; remove it or choose another "
        "cache directory"
    )


def test_a_directory_writable_by_others_gets_a_clean_message(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.mkdir()
    path.chmod(0o777)
    assert unsafe_message(FileTokenCache(path)) == (
        f"the token cache directory {path} is writable by other users (mode 777), so it is "
        f"not used; run 'chmod 700 {path}' or choose another cache directory"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_directory_of_another_user_gets_a_clean_message(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)
    assert unsafe_message(FileTokenCache(path)) == (
        f"the token cache directory {path} belongs to another user (uid 65534), so it is "
        "not used; choose another cache directory, one of your own"
    )


def test_trust_messages_name_no_setting_and_read_as_sentences(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o757)
    for name in ("file", "open"):
        message = unsafe_message(FileTokenCache(tmp_path / name))
        assert "SEMANSYS_TOKEN_CACHE" not in message and "--cache" not in message
        assert re.fullmatch(
            r"the token cache (path|directory) \S+ [^:;]+; [^:;]+ cache directory", message
        ), message


# -- clear() ----------------------------------------------------------------------------


OTHER = "ef" * 32


@pytest.fixture
def filled(directory: Path) -> FileTokenCache:
    cache = FileTokenCache(directory)
    for key in (KEY, OTHER):
        cache.save(key, TOKEN)
        lock = cache.lock(key)
        assert lock.acquire(1)
        lock.release()
    (directory / f".{KEY}.x1y2z3.tmp").write_text("half")
    for name in ("notes.txt", "ab.json", "AB" * 32 + ".json", "x" + KEY + ".json", KEY + ".jsonx"):
        (directory / name).write_text("not ours")
    (directory / f"{'12' * 32}.json").mkdir()
    return cache


def names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


NOT_OURS = {
    "notes.txt",
    "ab.json",
    "AB" * 32 + ".json",
    "x" + KEY + ".json",
    KEY + ".jsonx",
    f"{'12' * 32}.json",
}


def test_clear_one_key_removes_its_entry_lock_and_leftovers_only(
    filled: FileTokenCache, directory: Path
) -> None:
    assert filled.clear(KEY) == 1
    assert names(directory) == NOT_OURS | {f"{OTHER}.json", f"{OTHER}.lock"}
    assert filled.load(OTHER) == TOKEN
    assert filled.clear(KEY) == 0, "nothing left to remove"
    with pytest.raises(ValueError, match="hex"):
        filled.clear("../x")


def test_clear_all_removes_every_entry_and_nothing_else(
    filled: FileTokenCache, directory: Path
) -> None:
    assert filled.clear() == 2
    assert names(directory) == NOT_OURS
    for name in NOT_OURS - {f"{'12' * 32}.json"}:
        assert (directory / name).read_text() == "not ours"
    assert filled.clear() == 0


def test_clear_removes_a_foreign_fifo_or_link_at_an_entry_path(directory: Path) -> None:
    cache = FileTokenCache(directory)
    os.mkfifo(cache.path(KEY), 0o600)
    target = directory.parent / "target"
    target.write_text("keep me")
    cache.path(OTHER).symlink_to(target)
    cache.path(OTHER).with_suffix(".lock").symlink_to(target)
    assert cache.clear() == 2
    assert names(directory) == set()
    assert target.read_text() == "keep me"


@pytest.mark.timeout(30)
def test_clear_never_removes_a_lock_someone_holds(filled: FileTokenCache, directory: Path) -> None:
    lock_path = filled.path(KEY).with_suffix(".lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
            str(lock_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            assert filled.clear() == 2
            assert lock_path.exists(), "held: left alone"
            assert not filled.path(OTHER).with_suffix(".lock").exists(), "free: removed"
        finally:
            holder.kill()
    assert filled.clear() == 0
    assert not lock_path.exists(), "removed once free"


def test_clear_of_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    cache = FileTokenCache(tmp_path / "missing" / "tokens")
    assert cache.clear() == 0
    assert cache.clear(KEY) == 0
    assert not (tmp_path / "missing").exists()


def test_clear_then_a_request_makes_a_new_token(
    semansys_emulator: SemansysEmulator, directory: Path
) -> None:
    cache = FileTokenCache(directory)
    first = semansys_emulator.auth(token_cache=cache)
    assert send("requests", first, "GET", semansys_emulator.api_url + "/a").status == 200
    assert cache.clear(first._core.cache_key()) == 1
    second = semansys_emulator.auth(token_cache=FileTokenCache(directory))
    assert send("requests", second, "GET", semansys_emulator.api_url + "/b").status == 200
    assert len(semansys_emulator.token_requests()) == 2, "the cleared token was not reused"


@pytest.mark.timeout(60)
def test_two_objects_sharing_one_cache_object_take_turns_and_leave_the_lock_free(
    semansys_emulator: SemansysEmulator, directory: Path
) -> None:
    """filelock objects are re-entrant across threads: two auth objects of one
    process sharing one FileTokenCache must still take turns."""
    semansys_emulator.token_delay = 0.3
    cache = FileTokenCache(directory)
    auths = [semansys_emulator.auth(token_cache=cache) for _ in range(2)]
    barrier = threading.Barrier(2)

    def one(auth: object) -> int:
        barrier.wait(timeout=10)
        return send("requests", auth, "GET", semansys_emulator.api_url + "/a").status

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(one, auths, timeout=30)) == [200, 200]
    assert len(semansys_emulator.token_requests()) == 1
    other = FileTokenCache(directory).lock(auths[0]._core.cache_key())  # as another process
    assert other.acquire(0.5), "nothing is left held"
    other.release()


def test_a_save_that_fails_leaves_no_descriptor_open(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem that refuses chmod (vfat, CIFS): the save fails, and neither
    its temporary file nor its descriptor stays behind."""
    cache = FileTokenCache(directory)
    cache.save(KEY, TOKEN)  # the directory exists: only the save's own descriptors count

    def refuse(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refuse)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(PermissionError):
            cache.save(KEY, TOKEN)
    assert len(os.listdir("/proc/self/fd")) == before
    assert sorted(p.name for p in directory.iterdir()) == [f"{KEY}.json"]
