"""Nothing stays held. A token cache that fails in any method (load,
save, lock, acquire, release) is a warning, the request goes on without it,
and afterwards the same object still serves requests from other threads and
from the same thread."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fake_caches import FailingCache, FailingLock
from helpers import send
from semansys_auth import FileTokenCache, Token
from semansys_auth._core import TokenCore
from semansys_auth._entry import seal
from semansys_auth.testing import SemansysEmulator

METHODS = ["load", "save", "lock", "acquire", "release"]


def from_other_threads(kind: str, emulator: SemansysEmulator, auth: object) -> list[int]:
    def one(i: int) -> int:
        return send(kind, auth, "GET", f"{emulator.api_url}/thread{i}").status

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(4), timeout=30))


@pytest.mark.parametrize("failing", METHODS)
def test_a_failing_cache_method_is_a_warning_and_nothing_stays_held(
    semansys_emulator: SemansysEmulator,
    kind: str,
    failing: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = FailingCache(failing)
    auth = semansys_emulator.auth(token_cache=cache)
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send(kind, auth, "GET", semansys_emulator.api_url + "/first").status == 200
    verb = {"acquire": "lock", "release": "unlock"}.get(failing, failing)
    assert f"token cache {verb} failed: OSError:" in caplog.text
    assert not cache.the_lock.held or failing == "release"
    # Still serving: a renewal on this thread (no misleading event-loop error)...
    semansys_emulator.expire_access_tokens()
    assert send(kind, auth, "GET", semansys_emulator.api_url + "/again").status == 200
    # ... and on other threads, where a leaked lock would hang.
    semansys_emulator.expire_access_tokens()
    assert from_other_threads("requests", semansys_emulator, auth) == [200] * 4


def test_after_a_failure_the_cache_is_left_alone_for_a_while(
    semansys_emulator: SemansysEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    class CountingCache(FailingCache):
        def load(self, key: str) -> str | None:
            calls.append("load")
            return super().load(key)

    auth = semansys_emulator.auth(token_cache=CountingCache("load"))
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        for _ in range(3):
            semansys_emulator.expire_access_tokens()
            assert send("httpx", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert calls == ["load"], "one failing call, then a pause"
    assert caplog.text.count("token cache load failed") == 1


# -- the file cache: unusable, unsafe or planted paths --------------------------------


def test_construction_never_touches_the_filesystem(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    directory = tmp_path / "not" / "yet"
    semansys_emulator.auth(token_cache=FileTokenCache(directory))
    assert not (tmp_path / "not").exists()


@pytest.mark.parametrize("problem", ["a file", "writable by others", "another owner"])
def test_an_unusable_directory_is_a_warning_and_the_request_goes_on(
    semansys_emulator: SemansysEmulator,
    kind: str,
    tmp_path: Path,
    problem: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = tmp_path / "tokens"
    if problem == "a file":
        directory.write_text("not a directory")
        expected = "is not a directory"
    else:
        directory.mkdir(mode=0o700)
        if problem == "writable by others":
            directory.chmod(0o777)
            expected = "writable by other users (mode 777), so it is not used; run 'chmod 700"
        else:
            if os.geteuid() != 0:
                pytest.skip("giving a directory to another user needs root")
            os.chown(directory, 65534, 65534)
            expected = "belongs to another user (uid 65534)"
    auth = semansys_emulator.auth(token_cache=FileTokenCache(directory))
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert expected in caplog.text and str(directory) in caplog.text
    if directory.is_dir():
        assert list(directory.iterdir()) == [], "nothing written to an untrusted directory"


def put_token(cache: FileTokenCache, core: TokenCore) -> Path:
    """A planted token file that ``core`` could open: ignored for where it is."""
    key = core.cache_key()
    token = Token(access_token="planted", expires_at=4e9, obtained_at=1e9)
    cache.save(key, seal(key, core.sealing_key(), token))
    return cache.path(key)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_token_file_of_another_user_is_ignored(
    semansys_emulator: SemansysEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FileTokenCache(tmp_path)
    auth = semansys_emulator.auth(token_cache=cache)
    path = put_token(cache, auth._core)
    os.chown(path, 65534, 65534)
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        reply = send("requests", auth, "GET", semansys_emulator.api_url + "/a")
    assert reply.status == 200 and reply.request_headers["authorization"] != "Bearer planted"
    assert f"token cache file {path} is ignored: it belongs to another user" in caplog.text
    assert path.stat().st_uid == os.geteuid(), "replaced by our own token"


def test_a_symlink_planted_at_the_token_file_is_not_followed(
    semansys_emulator: SemansysEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FileTokenCache(tmp_path / "tokens")
    auth = semansys_emulator.auth(token_cache=cache)
    elsewhere = tmp_path / "elsewhere.json"
    put_token(FileTokenCache(tmp_path / "other"), auth._core).rename(elsewhere)
    (tmp_path / "tokens").mkdir(mode=0o700)
    cache.path(auth._core.cache_key()).symlink_to(elsewhere)
    before = elsewhere.read_bytes()
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        reply = send("httpx", auth, "GET", semansys_emulator.api_url + "/a")
    assert reply.status == 200 and reply.request_headers["authorization"] != "Bearer planted"
    assert "is ignored: it is a symbolic link; it is replaced by the next token" in caplog.text
    assert elsewhere.read_bytes() == before, "the symlink's target was not written"
    assert not cache.path(auth._core.cache_key()).is_symlink(), "the link itself was replaced"


def test_a_symlink_planted_at_the_lock_file_is_a_warning(
    semansys_emulator: SemansysEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FileTokenCache(tmp_path / "tokens")
    auth = semansys_emulator.auth(token_cache=cache)
    (tmp_path / "tokens").mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    cache.path(auth._core.cache_key()).with_suffix(".lock").symlink_to(victim)
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200
        assert from_other_threads("requests", semansys_emulator, auth) == [200] * 4
    assert "is a symbolic link, not a file this cache made: renewing without the lock" in (
        caplog.text
    )
    assert victim.read_text() == "keep me"


def test_another_thread_is_served_while_a_cache_lock_is_stuck(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    """A lock that blocks in acquire() holds up only its own renewal's waiters,
    within the wait limit; nothing is left held when it finally fails."""
    release = threading.Event()

    class StuckLock(FailingLock):
        def acquire(self, timeout: float) -> bool:
            release.wait(min(timeout, 1.0))
            raise OSError("stuck, then failed")

    class StuckCache(FailingCache):
        def lock(self, key: str) -> FailingLock:
            return StuckLock("none")

    auth = semansys_emulator.auth(token_cache=StuckCache("none"))
    assert send("requests", auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert from_other_threads("requests", semansys_emulator, auth) == [200] * 4
