"""Managing the token cache from the command line (``token
--refresh``, ``cache clear``, ``cache clear --all``), and the emulator's exports
that point at a cache of their own; real subprocesses against the emulator, with
a file cache directory and a real ``redis-server``."""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli_runs import COMMAND, environment, run
from redis_server import RedisServer
from semansys_auth.testing import SemansysEmulator

SECRETS = (SemansysEmulator.CLIENT_SECRET, SemansysEmulator.PASSWORD)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer("--requirepass", "redis-pass-word").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    url = f"redis://:redis-pass-word@127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(url, socket_timeout=2)
    client.flushall()
    client.close()
    return url


def redis_keys(url: str) -> list[str]:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return sorted(name.decode() for name in client.keys("*"))
    finally:
        client.close()


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.json")) if directory.exists() else []


def clean(result: subprocess.CompletedProcess[str], *tokens: str) -> None:
    """Nothing secret on either stream: no client secret, password or token,
    and no Redis password."""
    for value in (*SECRETS, *tokens, "redis-pass-word"):
        assert value not in result.stdout and value not in result.stderr
    assert "Traceback" not in result.stderr


def one_line(stream: str) -> str:
    lines = stream.splitlines()
    assert len(lines) == 1, stream
    return lines[0]


class Setup:
    """One way of naming a file cache: the argument list to add, the
    environment, and the directory it names."""

    def __init__(self, how: str, emulator: SemansysEmulator, tmp_path: Path) -> None:
        self.directory = tmp_path / f"cache-{how}"
        self.args: list[str] = []
        self.env = environment(emulator, tmp_path / "not-this-one")
        if how == "--cache":
            self.args = ["--cache", str(self.directory)]
        elif how == "--cache-dir":
            self.args = ["--cache-dir", str(self.directory)]
        elif how == "SEMANSYS_TOKEN_CACHE":
            self.env["SEMANSYS_TOKEN_CACHE"] = str(self.directory)
        elif how == "SEMANSYS_CACHE_DIR":
            self.env["SEMANSYS_CACHE_DIR"] = str(self.directory)
        else:  # the user's cache directory, as platformdirs finds it
            del self.env["SEMANSYS_CACHE_DIR"]
            self.env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
            self.directory = tmp_path / "xdg" / "semansys-auth" / "tokens"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([*args, *self.args], self.env)


WAYS = ["--cache", "--cache-dir", "SEMANSYS_TOKEN_CACHE", "SEMANSYS_CACHE_DIR", "default"]


# -- token --refresh -------------------------------------------------------------------------


@pytest.mark.parametrize("how", WAYS)
def test_refresh_replaces_the_cached_token(
    semansys_emulator: SemansysEmulator, tmp_path: Path, how: str
) -> None:
    setup = Setup(how, semansys_emulator, tmp_path)
    first = setup.run("token")
    assert first.returncode == 0, first.stderr
    assert setup.run("token").stdout == first.stdout  # from the cache
    assert len(semansys_emulator.token_requests()) == 1
    assert len(entries(setup.directory)) == 1
    refreshed = setup.run("token", "--refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout != first.stdout and refreshed.stderr == ""
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+\n", refreshed.stdout)
    grants = [r.grant_type for r in semansys_emulator.token_requests()]
    assert grants == ["password", "password"]
    # The new token replaced the entry: the next run prints it, without a request.
    assert setup.run("token").stdout == refreshed.stdout
    assert len(semansys_emulator.token_requests()) == 2
    assert len(entries(setup.directory)) == 1
    assert not (tmp_path / "not-this-one").exists()


def test_refresh_without_a_cache_just_fetches(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = environment(semansys_emulator, tmp_path / "cache")
    tokens = {run(["token", "--refresh", "--no-cache"], env).stdout for _ in range(2)}
    assert len(tokens) == 2 and len(semansys_emulator.token_requests()) == 2
    assert not (tmp_path / "cache").exists()


def test_refresh_with_the_json_output(semansys_emulator: SemansysEmulator, tmp_path: Path) -> None:
    env = environment(semansys_emulator, tmp_path)
    first = run(["token"], env).stdout.strip()
    result = run(["token", "--refresh", "--json"], env)
    assert result.returncode == 0 and '"has_refresh_token": true' in result.stdout
    clean(result, first)
    assert len(semansys_emulator.token_requests()) == 2


# -- cache clear -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", WAYS)
def test_cache_clear_removes_this_identity_only(
    semansys_emulator: SemansysEmulator, tmp_path: Path, how: str
) -> None:
    setup = Setup(how, semansys_emulator, tmp_path)
    mine = setup.run("token").stdout.strip()
    other = setup.run("token", "--scope", "read").stdout.strip()  # another identity: another key
    assert mine and other and mine != other
    assert len(entries(setup.directory)) == 2
    cleared = setup.run("cache", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout == f"removed 1 cache entry from {setup.directory}\n"
    assert cleared.stderr == ""
    clean(cleared, mine, other)
    assert len(entries(setup.directory)) == 1
    # The other identity's token is still cached; this one's is fetched anew.
    assert setup.run("token", "--scope", "read").stdout.strip() == other
    assert len(semansys_emulator.token_requests()) == 2
    assert setup.run("token").stdout.strip() != mine
    assert len(semansys_emulator.token_requests()) == 3
    again = setup.run("cache", "clear", "--scope", "nothing-cached")
    assert again.stdout == f"removed 0 cache entries from {setup.directory}\n"


@pytest.mark.parametrize("how", WAYS)
def test_cache_clear_all_removes_every_entry_without_credentials(
    semansys_emulator: SemansysEmulator, tmp_path: Path, how: str
) -> None:
    setup = Setup(how, semansys_emulator, tmp_path)
    tokens = [setup.run("token", "--scope", scope).stdout.strip() for scope in ("read", "write")]
    tokens.append(setup.run("token").stdout.strip())
    assert len(entries(setup.directory)) == 3
    stranger = setup.directory / "notes.txt"  # not the cache's: left alone
    stranger.write_text("mine")
    for name in semansys_emulator.env():
        del setup.env[name]  # no credentials at all
    cleared = setup.run("cache", "clear", "--all")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout == f"removed 3 cache entries from {setup.directory}\n"
    clean(cleared, *tokens)
    assert entries(setup.directory) == [] and stranger.read_text() == "mine"
    assert len(semansys_emulator.token_requests()) == 3  # no credentials were used


def test_options_before_the_command_name_the_cache_too(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = environment(semansys_emulator, tmp_path / "default")
    directory = tmp_path / "given"
    assert run(["--cache", str(directory), "token"], env).returncode == 0
    result = run(["--cache", str(directory), "-v", "cache", "clear"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"removed 1 cache entry from {directory}\n"
    assert entries(directory) == []


def test_a_missing_cache_directory_holds_nothing(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = environment(semansys_emulator, tmp_path / "never-made")
    for args in (["cache", "clear"], ["cache", "clear", "--all"]):
        result = run(args, env)
        assert result.stdout == f"removed 0 cache entries from {tmp_path / 'never-made'}\n"
    assert not (tmp_path / "never-made").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["cache"], "the following arguments are required: ACTION"),
        (["cache", "clear", "--no-cache"], "cache clear and --no-cache: no cache to clear"),
        (["cache", "clear", "--all", "--no-cache"], "no cache to clear"),
        (["cache", "clear", "--all", "--client-id", "x"], "--client-id does not apply to cache"),
        (["cache", "clear", "--all", "--scope", "read"], "--scope does not apply to cache clear"),
        (["cache", "clear", "--refresh"], "unrecognized arguments: --refresh"),
        (["inspect", "--refresh"], "unrecognized arguments: --refresh"),
        (["cache", "clear", "--cache", "ftp://x/y"], "must be a directory or a redis://"),
        (["cache", "clear", "--all", "--cache", " "], "--cache is blank"),
        (["demo", "--all"], "unrecognized arguments: --all"),
    ],
)
def test_cache_usage_errors_exit_2_with_one_line(
    semansys_emulator: SemansysEmulator, tmp_path: Path, args: list[str], words: str
) -> None:
    result = run(args, environment(semansys_emulator, tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    line = one_line(result.stderr)
    assert line.startswith("semansys-auth: error: ") and words in line
    assert semansys_emulator.token_requests() == []


def test_cache_clear_needs_the_identity(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir(mode=0o700)
    planted = tmp_path / "cache" / ("ab" * 32 + ".json")
    planted.write_text("{}")
    result = run(["cache", "clear"], environment(None, tmp_path / "cache"))
    assert result.returncode == 2
    assert "missing configuration: set SEMANSYS_CLIENT_ID" in one_line(result.stderr)
    assert planted.exists()


def test_an_untrusted_cache_directory_exits_7(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    planted = directory / ("ab" * 32 + ".json")
    planted.write_text("{}")
    env = environment(semansys_emulator, directory)
    for args in (["cache", "clear", "--all"], ["cache", "clear"], ["token", "--refresh"]):
        result = run(args, env)
        assert result.returncode == 7, (args, result.stderr)
        line = one_line(result.stderr)
        assert line.startswith(f"semansys-auth: error: cannot clear the token cache {directory} (")
        assert "writable by other users" in line
        clean(result)
    assert planted.exists() and stat.S_IMODE(directory.stat().st_mode) == 0o777
    assert semansys_emulator.token_requests() == []  # --refresh stopped before fetching


# -- with Redis ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["--cache", "SEMANSYS_TOKEN_CACHE"])
def test_refresh_and_clear_with_redis(
    semansys_emulator: SemansysEmulator,
    tmp_path: Path,
    redis_server: RedisServer,
    redis_url: str,
    how: str,
) -> None:
    env = environment(semansys_emulator, tmp_path / "file-cache")
    extra: list[str] = []
    if how == "--cache":
        extra = ["--cache", redis_url]
    else:
        env["SEMANSYS_TOKEN_CACHE"] = redis_url

    def go(*args: str) -> subprocess.CompletedProcess[str]:
        result = run([*args, *extra], env)
        assert result.returncode == 0, result.stderr
        return result

    first = go("token").stdout.strip()
    other = go("token", "--scope", "read").stdout.strip()
    tokens = [k for k in redis_keys(redis_url) if k.startswith("semansys-auth:token:")]
    assert len(tokens) == 2
    refreshed = go("token", "--refresh")
    assert refreshed.stdout.strip() not in ("", first) and refreshed.stderr == ""
    assert go("token").stdout == refreshed.stdout
    assert len(semansys_emulator.token_requests()) == 3
    where = f"Redis at 127.0.0.1:{redis_server.port} prefix 'semansys-auth:'"
    cleared = go("cache", "clear")
    assert cleared.stdout == f"removed 1 cache entry from {where}\n"
    clean(cleared, first, other, refreshed.stdout.strip())
    left = [k for k in redis_keys(redis_url) if k.startswith("semansys-auth:token:")]
    assert len(left) == 1 and left[0] in tokens  # the other identity's
    assert go("token", "--scope", "read").stdout.strip() == other
    everything = go("cache", "clear", "--all")
    assert everything.stdout == f"removed 1 cache entry from {where}\n"
    clean(everything, first, other)
    assert not [k for k in redis_keys(redis_url) if k.startswith("semansys-auth:token:")]
    assert not (tmp_path / "file-cache").exists()


def test_clear_all_in_redis_keeps_other_prefixes_and_keys(
    semansys_emulator: SemansysEmulator, tmp_path: Path, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        client.set("someone-else:token:" + "ab" * 32, b"x")
        client.set("semansys-auth:notes", b"x")
        env = environment(semansys_emulator, tmp_path)
        assert run(["token", "--cache", redis_url], env).returncode == 0
        result = run(["cache", "clear", "--all", "--cache", redis_url], env)
        assert result.returncode == 0 and result.stdout.startswith("removed 1 cache entry from")
        assert redis_keys(redis_url) == ["semansys-auth:notes", "someone-else:token:" + "ab" * 32]
    finally:
        client.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args", [["cache", "clear", "--all"], ["cache", "clear"], ["token", "--refresh"]]
)
def test_unreachable_redis_exits_7(
    semansys_emulator: SemansysEmulator, tmp_path: Path, args: list[str]
) -> None:
    url = "redis://:redis-pass-word@127.0.0.1:9/0"
    result = run([*args, "--cache", url], environment(semansys_emulator, tmp_path))
    assert result.returncode == 7 and result.stdout == ""
    line = one_line(result.stderr)
    assert line.startswith(
        "semansys-auth: error: cannot clear the token cache Redis at 127.0.0.1:9 prefix "
        "'semansys-auth:' (ConnectionError: "
    )
    clean(result)
    assert semansys_emulator.token_requests() == []


def test_wrong_redis_password_exits_7(
    semansys_emulator: SemansysEmulator, tmp_path: Path, redis_server: RedisServer
) -> None:
    url = f"redis://:not-the-redis-pass@127.0.0.1:{redis_server.port}/0"
    result = run(
        ["cache", "clear", "--all", "--cache", url], environment(semansys_emulator, tmp_path)
    )
    assert result.returncode == 7
    assert "AuthenticationError" in one_line(result.stderr)
    assert "not-the-redis-pass" not in result.stderr


# -- the emulator's exports --------------------------------------------------------------


def start_emulator(env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """``semansys-auth emulator``, and its lines up to the last export."""
    process = subprocess.Popen(
        [*COMMAND, "emulator"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("export API="):
            break
    return process, lines


def exported(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        if line.startswith("export "):
            [assignment] = shlex.split(line[len("export ") :])
            name, _, value = assignment.partition("=")
            found[name] = value
    return found


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_emulator_exports_a_cache_of_its_own(tmp_path: Path, stop: signal.Signals) -> None:
    real_cache = tmp_path / "real-cache"
    real_cache.mkdir(mode=0o700)
    real_entry = real_cache / ("cd" * 32 + ".json")
    real_entry.write_text("{}")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    base.update(
        SEMANSYS_CACHE_DIR=str(real_cache),
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        TMPDIR=str(tmp_path),
    )
    process, lines = start_emulator(base)
    try:
        exports = exported(lines)
        assert set(exports) == {
            "SEMANSYS_TOKEN_URL", "SEMANSYS_CLIENT_ID", "SEMANSYS_CLIENT_SECRET",
            "SEMANSYS_USERNAME", "SEMANSYS_PASSWORD", "SEMANSYS_TOKEN_CACHE", "API",
        }  # fmt: skip
        cache = Path(exports["SEMANSYS_TOKEN_CACHE"])
        run_directory = cache.parent
        assert run_directory.name.startswith("semansys-auth-emulator-")
        assert run_directory.parent == tmp_path  # a fresh temporary directory
        assert stat.S_IMODE(run_directory.stat().st_mode) == 0o700
        assert exports["API"] == exports["SEMANSYS_TOKEN_URL"].replace("/connect/token", "/api")
        # Follow the exports in a shell, as the docs do, and use every command.
        script = "".join(line for line in lines if line.startswith("export ")) + (
            "semansys-auth token >/dev/null && semansys-auth token --scope read >/dev/null && "
            "curl_like=$(semansys-auth token) && semansys-auth cache clear --all"
        )
        env = {**base, "PATH": os.path.dirname(sys.executable) + os.pathsep + base["PATH"]}
        result = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"removed 2 cache entries from {cache}\n"
        assert real_entry.read_text() == "{}"  # the real cache is untouched
        assert entries(cache) == []
        import requests

        token = run(["token"], {**base, **exports}).stdout.strip()
        reply = requests.get(
            exports["API"] + "/reports", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert reply.status_code == 200
        assert entries(cache) != []
        process.send_signal(stop)
        out, errors = process.communicate(timeout=30)
        assert process.returncode == 0, errors
        assert "stopped" in out and errors == ""
        assert not run_directory.exists()  # removed when it stopped
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.timeout(60)
def test_each_emulator_run_has_its_own_cache(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    base["TMPDIR"] = str(tmp_path)
    first, first_lines = start_emulator(base)
    second, second_lines = start_emulator(base)
    try:
        a = Path(exported(first_lines)["SEMANSYS_TOKEN_CACHE"])
        b = Path(exported(second_lines)["SEMANSYS_TOKEN_CACHE"])
        assert a != b and a.parent.is_dir() and b.parent.is_dir()
        for process in (first, second):
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)
            assert process.returncode == 0
        assert list(tmp_path.iterdir()) == []  # both removed
    finally:
        for process in (first, second):
            process.kill()
            process.communicate(timeout=10)
