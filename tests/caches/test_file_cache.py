"""The token cache: protocol, in-memory sharing, and FileTokenCache across real
processes (one token request for N processes starting together)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import send
from semansys_auth import FileTokenCache, MemoryTokenCache, Token
from semansys_auth._entry import seal, unseal
from semansys_auth.testing import SemansysEmulator

SEALING_KEY = bytes(range(32))


def test_file_cache_round_trip_permissions_and_names(tmp_path: Path) -> None:
    cache = FileTokenCache(tmp_path / "tokens")
    token = Token(access_token="AT", refresh_token="RT", expires_at=2e9, obtained_at=1e9, scope="s")
    key = "ab" * 32
    entry = seal(key, SEALING_KEY, token)
    cache.save(key, entry)
    assert cache.load(key) == entry, "stored verbatim"
    assert unseal(key, SEALING_KEY, cache.load(key)) == token
    path = tmp_path / "tokens" / f"{key}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tokens").stat().st_mode) == 0o700
    assert cache.load("cd" * 32) is None
    with pytest.raises(ValueError, match="hex"):
        cache.load("../etc/passwd")


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"format": "other"}', b"[]", b"", b"\xff\xfe{}"]
)
def test_corrupt_or_foreign_file_is_replaced_with_a_warning(
    semansys_emulator: SemansysEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    content: bytes,
) -> None:
    cache = FileTokenCache(tmp_path)
    auth = semansys_emulator.auth(token_cache=cache)
    key = auth._core.cache_key()
    path = tmp_path / f"{key}.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        reply = send("requests", auth, "GET", semansys_emulator.api_url + "/a")
    assert reply.status == 200 and len(semansys_emulator.token_requests()) == 1
    assert caplog.messages == [
        "token cache entry ignored: not a semansys-auth token cache entry; it is replaced by "
        "the next token"
    ]
    replaced = unseal(key, auth._core.sealing_key(), path.read_text())
    assert replaced.authorization == reply.request_headers["authorization"]


def test_world_readable_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = FileTokenCache(tmp_path)
    key = "01" * 32
    cache.save(
        key, seal(key, SEALING_KEY, Token(access_token="AT", expires_at=None, obtained_at=1))
    )
    (tmp_path / f"{key}.json").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert cache.load(key) is None
    assert "others may read or write it (mode 644)" in caplog.text


def test_cache_file_holds_no_client_secret_password_or_email(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    auth = semansys_emulator.auth(token_cache=FileTokenCache(tmp_path))
    send("requests", auth, "GET", semansys_emulator.api_url + "/a")
    files = list(tmp_path.iterdir())
    assert {f.suffix for f in files} == {".json", ".lock"}
    for file in files:
        for forbidden in ("demo@example.com", "demo-client", "demo-client-secret", "demo-password"):
            assert forbidden not in file.name
            assert forbidden not in file.read_text()


def test_two_objects_share_a_memory_cache(semansys_emulator: SemansysEmulator, kind: str) -> None:
    cache = MemoryTokenCache()
    for _ in range(3):
        auth = semansys_emulator.auth(token_cache=cache)
        assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert len(semansys_emulator.token_requests()) == 1


def test_a_new_object_starts_from_the_newest_cached_token(
    semansys_emulator: SemansysEmulator,
) -> None:
    cache = MemoryTokenCache()
    first = semansys_emulator.auth(token_cache=cache)
    send("httpx", first, "GET", semansys_emulator.api_url + "/a")
    semansys_emulator.expire_access_tokens()
    send("httpx", first, "GET", semansys_emulator.api_url + "/a")  # rotates the refresh token
    # A second object (another process, in real life) starts from the cache.
    second = semansys_emulator.auth(token_cache=cache)
    assert send("httpx", second, "GET", semansys_emulator.api_url + "/a").status == 200
    assert [r.grant_type for r in semansys_emulator.token_requests()] == [
        "password",
        "refresh_token",
    ]


class BrokenCache:
    def load(self, key: str) -> Token | None:
        raise OSError("disk on fire")

    def save(self, key: str, token: Token) -> None:
        raise OSError("disk on fire")


def test_broken_cache_warns_and_does_not_break_requests(
    semansys_emulator: SemansysEmulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = semansys_emulator.auth(token_cache=BrokenCache())
    with caplog.at_level(logging.WARNING, logger="semansys_auth"):
        assert send(kind, auth, "GET", semansys_emulator.api_url + "/a").status == 200
    assert (
        "token cache load failed: OSError: disk on fire; going on without the cache for 30 s"
        in caplog.text
    )
    # The cache is left alone after a failure: the save is not even tried.
    assert "save failed" not in caplog.text


WORKER = textwrap.dedent(
    """
    import sys
    from semansys_auth import FileTokenCache, SemansysAuth
    auth = SemansysAuth.from_env(token_cache=FileTokenCache(sys.argv[1]))
    print(auth.get_token())
    """
)


def test_processes_starting_together_make_one_token_request(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    semansys_emulator.token_delay = 0.5
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(semansys_emulator.env())
    # Each process waits for a go file, so that all start their fetch together.
    go = tmp_path / "go"
    script = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\n" + WORKER
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "cache")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        go.touch()
        outputs = [p.communicate(timeout=60) for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert all(p.returncode == 0 for p in processes), outputs
    tokens = {out.strip() for out, _ in outputs}
    assert len(tokens) == 1
    assert len(semansys_emulator.token_requests()) == 1
    core = semansys_emulator.auth()._core
    stored = next((tmp_path / "cache").glob("*.json")).read_text()
    assert unseal(core.cache_key(), core.sealing_key(), stored).access_token == tokens.pop()


def test_a_second_object_on_the_same_files_makes_no_request(
    semansys_emulator: SemansysEmulator, kind: str, tmp_path: Path
) -> None:
    first = semansys_emulator.auth(token_cache=FileTokenCache(tmp_path))
    second = semansys_emulator.auth(token_cache=FileTokenCache(tmp_path))  # as another process
    assert send(kind, first, "GET", semansys_emulator.api_url + "/a").status == 200
    assert send(kind, second, "GET", semansys_emulator.api_url + "/a").status == 200
    assert len(semansys_emulator.token_requests()) == 1


def test_async_objects_sharing_files_make_one_request(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    import asyncio

    import httpx

    semansys_emulator.token_delay = 0.3
    auths = [semansys_emulator.auth(token_cache=FileTokenCache(tmp_path)) for _ in range(4)]

    async def main() -> list[int]:
        clients = [httpx.AsyncClient(auth=auth, timeout=30) for auth in auths]
        try:
            replies = await asyncio.gather(
                *(c.get(f"{semansys_emulator.api_url}/{i}") for i, c in enumerate(clients * 5))
            )
        finally:
            for client in clients:
                await client.aclose()
        return [r.status_code for r in replies]

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [200] * 20
    assert len(semansys_emulator.token_requests()) == 1
