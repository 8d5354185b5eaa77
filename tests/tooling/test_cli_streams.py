"""The command's standard streams, each closed, full or gone,
with real subprocesses against the emulator.

Standard output carries the output and nothing else; errors and ``-v`` lines go
to standard error or nowhere; an output that cannot be written exits 6 with one
line naming standard output; standard input is read with a bound."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

import cli_runs
from cli_runs import COMMAND, run
from semansys_auth import _cli
from semansys_auth.testing import SemansysEmulator

# The documented codes, read from the epilog itself: "... N words, M words ...".
DOCUMENTED = {int(code) for code in re.findall(r"(?:: |, )(\d+) ", _cli.EXIT_CODES)}
EXIT_CONSTANTS = {
    name: value
    for name, value in vars(_cli).items()
    if name.startswith("EXIT_") and name != "EXIT_CODES"
}


def environment(emulator: SemansysEmulator | None, cache: Path, **extra: str) -> dict[str, str]:
    """As ``cli_runs.environment``, but with standard output buffered as a user's is: with
    PYTHONUNBUFFERED set, a failed write would fail at once, never at exit."""
    env = cli_runs.environment(emulator, cache, **extra)
    env.pop("PYTHONUNBUFFERED", None)
    return env


def shell(
    script: str, env: dict[str, str], *args: str, **options: object
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash, with "$@" the command and ``args``: bash closes or
    redirects the streams exactly as a user's shell would."""
    return subprocess.run(
        ["bash", "-c", script, "bash", *COMMAND, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        **options,  # type: ignore[call-overload]
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("semansys-auth: error: "), stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    return lines[0]


# -- 1. a closed stderr: errors and log lines go nowhere, never to stdout -------------------------


def test_closed_stderr_leaves_only_the_token_on_stdout(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = environment(semansys_emulator, tmp_path)
    result = shell('exec "$@" 2>&-', env, "token", "--no-cache", "-v")
    assert result.returncode == 0
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.count(".") == 2
    assert "DEBUG" not in result.stdout and "token request" not in result.stdout
    # As a user captures it: the variable holds the token, and it works.
    captured = shell('token=$("$@" 2>&-) && printf %s "$token"', env, "token", "--no-cache", "-v")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", captured.stdout)
    import requests

    reply = requests.get(
        semansys_emulator.api_url + "/x",
        headers={"Authorization": f"Bearer {captured.stdout}"},
        timeout=10,
    )
    assert reply.status_code == 200


def test_closed_stderr_keeps_warnings_off_stdout(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    """A warning (here: a cache directory others may write to) goes nowhere."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = environment(semansys_emulator, tmp_path, SEMANSYS_TOKEN_CACHE=str(shared))
    warned = shell('exec "$@"', env, "token")
    assert "writable by other users" in warned.stderr  # there is a warning to lose
    result = shell('exec "$@" 2>&-', env, "token")
    assert result.returncode == 0
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+\n", result.stdout)


@pytest.mark.timeout(60)
def test_closed_descriptors_are_reopened_on_dev_null(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    """While the command waits for its token, descriptors 0 and 2 (closed by
    the shell) are /dev/null: no socket or cache file took their number."""
    semansys_emulator.pause_token_responses()
    process = subprocess.Popen(
        ["bash", "-c", 'exec "$@" <&- 2>&-', "bash", *COMMAND, "token"],
        env=environment(semansys_emulator, tmp_path),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not semansys_emulator.pending_token_requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert semansys_emulator.pending_token_requests == 1
        for fd in (0, 2):
            assert os.readlink(f"/proc/{process.pid}/fd/{fd}") == "/dev/null"
        semansys_emulator.resume_token_responses()
        out, _ = process.communicate(timeout=30)
    finally:
        semansys_emulator.resume_token_responses()
        process.kill()
        process.wait(timeout=10)
    assert process.returncode == 0 and out.count(".") == 2


@pytest.mark.parametrize(
    ("setting", "code"),
    [
        ({"SEMANSYS_PASSWORD": "wrong-pass-word"}, 3),  # rejected
        ({"SEMANSYS_TOKEN_URL": "http://127.0.0.1:9/connect/token"}, 4),  # unreachable
        ({"SEMANSYS_CLIENT_ID": ""}, 2),  # usage
    ],
)
def test_closed_stderr_keeps_errors_off_stdout(
    semansys_emulator: SemansysEmulator, tmp_path: Path, setting: dict[str, str], code: int
) -> None:
    env = environment(semansys_emulator, tmp_path, **setting)
    for script in ('exec "$@" 2>&-', 'exec "$@" 2>/dev/full'):
        result = shell(script, env, "token", "--no-cache", "-v")
        assert result.returncode == code, script
        assert result.stdout == "", script
        assert result.stderr == ""


def test_stderr_whose_reader_left_is_quiet_and_keeps_the_code(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [*COMMAND, "token", "--no-cache", "-v"],
            env=environment(semansys_emulator, tmp_path, SEMANSYS_PASSWORD="wrong-pass-word"),
            stdout=subprocess.PIPE,
            stderr=write,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert result.returncode == 3 and result.stdout == ""


# -- 2. output that cannot be written: exit 6, one line naming standard output ------------------


@pytest.mark.parametrize(
    "args",
    [
        ["token"],
        ["token", "--json"],
        ["inspect"],
        ["inspect", "--json"],
        ["--version"],
        ["--help"],
        ["demo"],
    ],
)
def test_output_to_a_full_disk_exits_6_with_one_line(
    semansys_emulator: SemansysEmulator, tmp_path: Path, args: list[str]
) -> None:
    result = shell('exec "$@" >/dev/full', environment(semansys_emulator, tmp_path), *args)
    assert result.returncode == _cli.EXIT_OUTPUT == 6
    line = one_error_line(result.stderr)
    assert line == (
        "semansys-auth: error: cannot write the output to standard output (No space left on device)"
    )
    assert "token endpoint" not in result.stderr


def test_closed_stdout_exits_6_before_any_token_request(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    result = shell('exec "$@" >&-', environment(semansys_emulator, tmp_path), "token", "--no-cache")
    assert result.returncode == 6
    assert one_error_line(result.stderr) == (
        "semansys-auth: error: cannot write the output to standard output (it is closed)"
    )
    assert semansys_emulator.token_requests() == []


@pytest.mark.parametrize("args", [["token"], ["token", "--json"], ["inspect"], ["demo"]])
def test_broken_pipe_exits_6_with_one_line(
    semansys_emulator: SemansysEmulator, tmp_path: Path, args: list[str]
) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        result = subprocess.run(
            [*COMMAND, *args],
            env=environment(semansys_emulator, tmp_path),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert result.returncode == 6
    assert one_error_line(result.stderr) == (
        "semansys-auth: error: cannot write the output to standard output "
        "(the reader closed the pipe)"
    )
    if args == ["demo"]:  # it runs an emulator of its own
        return
    # The token was fetched and cached all the same: the next run prints it.
    assert len(semansys_emulator.token_requests()) == 1
    again = run(["token"], environment(semansys_emulator, tmp_path))
    assert again.returncode == 0 and len(semansys_emulator.token_requests()) == 1


def test_a_reader_that_leaves_while_the_command_runs(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    """``semansys-auth token | true``, with the reader surely gone first."""
    semansys_emulator.token_delay = 0.5
    result = shell('"$@" | (exec 0<&-; sleep 2)', environment(semansys_emulator, tmp_path), "token")
    assert result.returncode == 0  # the pipeline's status is the reader's
    assert one_error_line(result.stderr).endswith("(the reader closed the pipe)")
    status = shell(
        '"$@" | (exec 0<&-; sleep 2); exit "${PIPESTATUS[0]}"',
        environment(semansys_emulator, tmp_path),
        "token",
        "--no-cache",
    )
    assert status.returncode == 6


# -- 3. standard input: closed, endless, too long, not text --------------------------------------


def without_password(emulator: SemansysEmulator, tmp_path: Path) -> dict[str, str]:
    env = environment(emulator, tmp_path)
    del env["SEMANSYS_PASSWORD"]
    return env


def test_password_stdin_with_stdin_closed_is_a_usage_error(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = without_password(semansys_emulator, tmp_path)
    result = shell('exec "$@" <&-', env, "token", "--no-cache", "--password-stdin")
    assert result.returncode == 2 and result.stdout == ""
    line = one_error_line(result.stderr)
    assert "--password-stdin: standard input is closed" in line
    # Without --password-stdin, a closed stdin is no terminal: the variable is named.
    plain = shell('exec "$@" <&-', env, "token", "--no-cache")
    assert plain.returncode == 2
    assert "set SEMANSYS_PASSWORD" in one_error_line(plain.stderr)
    assert semansys_emulator.token_requests() == []


MEMORY_CAP_KIB = 400_000  # far more than the command needs; an unbounded read hits it


def run_bounded(
    args: list[str], env: dict[str, str], stdin: int, seconds: float
) -> tuple[int, str, float]:
    """Run the command under a memory cap (``ulimit -v``: reading without bound
    ends in a MemoryError, an internal error, exit 1); kill it after ``seconds``.
    Returns its exit code, its stderr and the time it took."""
    started = time.monotonic()
    process = subprocess.Popen(
        ["bash", "-c", f'ulimit -v {MEMORY_CAP_KIB} && exec "$@"', "bash", *COMMAND, *args],
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    timer = threading.Timer(seconds, process.kill)
    timer.start()
    try:
        _, errors = process.communicate()
    finally:
        timer.cancel()
    return process.returncode, errors.decode(), time.monotonic() - started


@pytest.mark.timeout(60)
def test_endless_stdin_is_refused_in_bounded_time_and_memory(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    with open("/dev/zero", "rb") as zero:
        code, errors, seconds = run_bounded(
            ["token", "--no-cache", "--password-stdin"],
            without_password(semansys_emulator, tmp_path),
            zero.fileno(),
            seconds=20,
        )
    assert code == 2, errors
    assert seconds < 10
    line = one_error_line(errors)
    assert "longer than 4096 characters" in line
    assert semansys_emulator.token_requests() == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("newline", [False, True])
def test_a_10_mb_line_on_stdin_is_refused_in_bounded_time_and_memory(
    semansys_emulator: SemansysEmulator, tmp_path: Path, newline: bool
) -> None:
    read, write = os.pipe()
    data = b"p" * 10_000_000 + (b"\n" if newline else b"")

    sent = [0]

    def feed() -> None:
        try:
            while sent[0] < len(data):  # each write blocks until the command reads, or left
                sent[0] += os.write(write, data[sent[0] :])
        except BrokenPipeError:
            pass
        finally:
            os.close(write)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        code, errors, seconds = run_bounded(
            ["token", "--no-cache", "--password-stdin"],
            without_password(semansys_emulator, tmp_path),
            read,
            seconds=20,
        )
    finally:
        os.close(read)
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert code == 2 and seconds < 10, errors
    assert "longer than 4096 characters" in one_error_line(errors)
    # What the command took: a few kilobytes and the pipe's buffer, not the 10 MB.
    assert sent[0] < 1_000_000, sent[0]


@pytest.mark.parametrize(("length", "code"), [(4096, 3), (4097, 2)])
def test_the_longest_password_on_stdin_is_sent(
    semansys_emulator: SemansysEmulator, tmp_path: Path, length: int, code: int
) -> None:
    """4096 characters reach the token endpoint (which refuses them: 3); one more is
    refused before any request (2)."""
    env = without_password(semansys_emulator, tmp_path)
    result = run(["token", "--no-cache", "--password-stdin"], env, stdin="p" * length + "\r\n")
    assert result.returncode == code, result.stderr
    assert len(semansys_emulator.token_requests()) == (1 if code == 3 else 0)
    one_error_line(result.stderr)


def test_stdin_that_is_not_text_is_a_usage_error(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = {**without_password(semansys_emulator, tmp_path), "PYTHONIOENCODING": "utf-8:strict"}
    result = subprocess.run(
        [*COMMAND, "token", "--no-cache", "--password-stdin"],
        env=env,
        input=b"\xff\xfe\n",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "standard input is not UTF-8 text" in one_error_line(result.stderr.decode())


# -- 4. long values are cut in messages --------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["token", "x" * 120_000],  # an unrecognized argument, quoted by argparse
        ["emulator", "--port", "7" * 120_000],  # quoted by the port check
        ["token", "--scope", "\\" * 120_000],  # quoted by the scope check
        ["token", " ".join(["word"] * 24_000)],  # short words (Linux takes 128 KiB at most)
        ["token", "\n" * 120_000],  # escaped, then cut
    ],
    ids=["one-word", "port", "scope", "many-words", "newlines"],
)
def test_a_120_kb_argument_is_cut_in_the_message(
    semansys_emulator: SemansysEmulator, tmp_path: Path, args: list[str]
) -> None:
    result = run(args, environment(semansys_emulator, tmp_path))
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert len(line) < 1024
    cut = re.search(r"\.\.\.\[(\d+) characters cut\]\.\.\.", line)
    assert cut is not None and int(cut.group(1)) > 100_000, line


# -- 5. every exit code is documented --------------------------------------------------------


def test_every_exit_code_is_in_the_table() -> None:
    assert set(EXIT_CONSTANTS) >= {"EXIT_OUTPUT", "EXIT_CACHE", "EXIT_INTERRUPTED"}
    assert set(EXIT_CONSTANTS.values()) == DOCUMENTED
    assert len(set(EXIT_CONSTANTS.values())) == len(EXIT_CONSTANTS)  # no code used twice


@pytest.mark.parametrize("args", [["--help"], ["token", "--help"], ["cache", "clear", "--help"]])
def test_help_shows_the_table(tmp_path: Path, args: list[str]) -> None:
    result = run(args, environment(None, tmp_path))
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "130 interrupted" in text and "6 could not write the output" in text
    for value in EXIT_CONSTANTS.values():
        assert re.search(rf"[:,] {value} \w", text), value


@pytest.mark.timeout(60)
def test_ctrl_c_exits_130_with_one_line(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    semansys_emulator.pause_token_responses()
    process = subprocess.Popen(
        [*COMMAND, "token", "--no-cache"],
        env=environment(semansys_emulator, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not semansys_emulator.pending_token_requests and time.monotonic() < deadline:
            time.sleep(0.05)  # until the command waits for its token
        assert semansys_emulator.pending_token_requests == 1
        process.send_signal(signal.SIGINT)
        out, errors = process.communicate(timeout=20)
    finally:
        semansys_emulator.resume_token_responses()
        process.kill()
        process.wait(timeout=10)
    assert process.returncode == _cli.EXIT_INTERRUPTED == 130
    assert out == ""
    assert one_error_line(errors) == "semansys-auth: error: interrupted"
    assert 130 in DOCUMENTED


# -- 6. every missing variable at once ---------------------------------------------------------


ID, SECRET, USER, PASSWORD = (
    "SEMANSYS_CLIENT_ID", "SEMANSYS_CLIENT_SECRET", "SEMANSYS_USERNAME", "SEMANSYS_PASSWORD"
)  # fmt: skip


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({}, [ID, SECRET, USER, PASSWORD]),
        ({ID: "c", USER: "u@x"}, [SECRET, PASSWORD]),
        ({SECRET: "s-s-s-s", PASSWORD: "p-p-p-p"}, [ID, USER]),
        ({ID: "c", PASSWORD: "p-p-p-p"}, [SECRET, USER]),
        ({ID: "  ", SECRET: "s-s-s-s", USER: "u@x"}, [ID, PASSWORD]),
    ],
)  # fmt: skip
def test_every_missing_variable_is_named_at_once(
    tmp_path: Path, present: dict[str, str], missing: list[str]
) -> None:
    result = run(["token"], environment(None, tmp_path, **present))
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    named = re.findall(r"SEMANSYS_[A-Z_]+", line.partition("(")[0])
    assert named == missing  # all of them, in the documented order, and only them
    assert ("--password-stdin" in line) == ("SEMANSYS_PASSWORD" in missing)
    for secret in present.values():
        if len(secret) >= 4:
            assert secret not in result.stderr


def test_a_missing_variable_is_named_before_any_prompt(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    """On a terminal the secrets would be prompted for: a missing client id is
    reported first, without asking for a password that could not be used."""
    env = environment(semansys_emulator, tmp_path)
    del env["SEMANSYS_PASSWORD"], env["SEMANSYS_CLIENT_ID"]
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a threaded process; the child execs at once.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid, fd = pty.fork()
    if pid == 0:  # child: the command, with the pty as its terminal
        os.execve(sys.executable, [*COMMAND, "token", "--no-cache"], env)
    output = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    text = output.decode()
    assert "password:" not in text.lower() and "secret:" not in text.lower()
    assert "set SEMANSYS_CLIENT_ID (--client-id may be given instead)" in text
    assert semansys_emulator.token_requests() == []


def test_from_env_and_the_command_name_the_same_variables(tmp_path: Path) -> None:
    from semansys_auth import SemansysAuth

    with pytest.raises(ValueError, match="missing configuration") as caught:
        SemansysAuth.from_env({})
    result = run(["token"], environment(None, tmp_path))
    expected = re.findall(r"SEMANSYS_[A-Z_]+", str(caught.value))
    assert (
        re.findall(r"SEMANSYS_[A-Z_]+", one_error_line(result.stderr).partition("(")[0]) == expected
    )


# -- 4. any input: one short line, no secret, a documented code --------------------------------

WORDS = [
    "token", "inspect", "cache", "clear", "--all", "--refresh", "--json", "-v", "--no-cache",
    "--cache", "--cache-dir", "--client-id", "--username", "--token-url", "--scope",
    "--password-stdin", "--bogus", "--port", "--lifetime", "", " ", "x",
    "redis://127.0.0.1:9/0", "unix:///nonexistent/redis.sock", "ftp://x", "/dev/null",
    "http://127.0.0.1:9/t", "https://", "-1", "99999", "nan", "read write", "a\\b",
]  # fmt: skip
FLAGS = ["-v", "--json", "--no-cache", "--refresh", "--password-stdin", "--all", "--bogus"]
VALUED = ["--cache", "--cache-dir", "--client-id", "--username", "--token-url", "--scope", "--port"]
PUBLIC = [
    "SEMANSYS_CLIENT_ID", "SEMANSYS_USERNAME", "SEMANSYS_TOKEN_URL", "SEMANSYS_SCOPE",
    "SEMANSYS_TOKEN_CACHE", "SEMANSYS_API_VERSION",
]  # fmt: skip


def safe_path(value: str) -> bool:
    """Free text may land in --cache or SEMANSYS_TOKEN_CACHE, and cache clear --all
    empties what it names: keep it inside the test's directory."""
    text = value.strip()
    return not text.startswith(("/", "~")) and ".." not in text and "\\" not in text


def can_be_set(value: str) -> bool:
    """Whether an environment variable can hold ``value`` (no NUL; encodable)."""
    try:
        return b"\0" not in os.fsencode(value)
    except UnicodeEncodeError:
        return False


@pytest.mark.timeout(300)
def test_every_error_is_one_short_line_without_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random argument lists, environments and standard input (long values
    included), in process: a documented exit code; on failure one line on
    stderr, under 1 KB, and nothing on stdout; never a traceback or a secret."""
    import contextlib
    import io
    import logging
    from unittest import mock

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    monkeypatch.chdir(tmp_path)  # relative cache paths land here
    logger = logging.getLogger("semansys_auth")
    handlers, level = list(logger.handlers), logger.level
    long_values = st.builds(
        lambda unit, count: unit * count,
        st.sampled_from(["x", "a b ", "\\", "\n", "\u00e9", "\udcff", "-", "7", "%", "\t"]),
        st.integers(150, 130_000),
    )
    with SemansysEmulator() as emulator:
        values = st.one_of(
            st.sampled_from([*WORDS, emulator.token_url, emulator.client_id, emulator.username]),
            st.text(max_size=12).filter(safe_path),
            long_values,
        )
        secrets = st.one_of(
            st.just("good"),
            st.text(alphabet="BCDFGHJKLMNPQRSTVWXZ", min_size=8, max_size=30).map(
                lambda s: "Qz" + s
            ),
            st.builds(lambda n: "Qz" + "Y" * n, st.integers(4000, 6000)),
        )

        commands = st.sampled_from(
            [["token"], ["token", "--json"], ["token", "--refresh"], ["inspect"], [],
             ["cache", "clear"], ["cache", "clear", "--all"], ["demo", "--bogus"]]
        )  # fmt: skip
        option = st.one_of(
            st.sampled_from(FLAGS).map(lambda flag: [flag]),
            st.tuples(st.sampled_from(VALUED), values).map(list),
            st.sampled_from(FLAGS).map(lambda flag: [flag]),
            st.tuples(st.sampled_from(VALUED), values).map(list),
            values.map(lambda value: [value]),  # a stray word
        )
        argv_lists = st.tuples(commands, st.lists(option, max_size=3)).map(
            lambda parts: parts[0] + [word for words in parts[1] for word in words]
        )

        @settings(
            max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "150")),
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            argv=argv_lists,
            env=st.dictionaries(st.sampled_from(PUBLIC), values.filter(can_be_set), max_size=4),
            start_from_good=st.sampled_from([True, True, True, False]),
            client_secret=secrets,
            password=secrets,
            stdin=st.one_of(secrets, st.sampled_from(["", "\n"])),
        )
        def one(
            argv: list[str],
            env: dict[str, str],
            start_from_good: bool,
            client_secret: str,
            password: str,
            stdin: str,
        ) -> None:
            secret_values = {
                "SEMANSYS_CLIENT_SECRET": emulator.client_secret
                if client_secret == "good"
                else client_secret,
                "SEMANSYS_PASSWORD": emulator.password if password == "good" else password,
            }
            typed = emulator.password if stdin == "good" else stdin
            environ = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
            if start_from_good:
                environ.update(emulator.env())
            environ.update(env)
            environ.update(secret_values)
            # Never the user's own cache directory: cache clear --all would empty it.
            environ["SEMANSYS_CACHE_DIR"] = str(tmp_path / "default-cache")
            if "SEMANSYS_TOKEN_CACHE" in environ and not safe_path(environ["SEMANSYS_TOKEN_CACHE"]):
                del environ["SEMANSYS_TOKEN_CACHE"]
            out, err = io.StringIO(), io.StringIO()
            with (
                mock.patch.dict(os.environ, environ, clear=True),
                mock.patch("sys.stdin", io.StringIO(typed + "\n")),
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
            ):
                try:
                    code = _cli.main(argv)
                except SystemExit as exit:
                    code = exit.code if isinstance(exit.code, int) else -1
            stdout, stderr = out.getvalue(), err.getvalue()
            assert code in DOCUMENTED, (code, stderr[:2000])
            assert "Traceback" not in stderr + stdout
            errors = [
                line for line in stderr.splitlines() if line.startswith("semansys-auth: error: ")
            ]
            if code == 0:
                assert errors == []
            else:
                assert stdout == ""
                assert len(errors) == 1 and stderr.endswith(errors[0] + "\n"), stderr[-2000:]
                assert len(errors[0]) < 1024, errors[0][:2000]
            for secret in (*secret_values.values(), typed):
                if len(secret) >= 8:
                    assert secret not in stdout and secret not in stderr

        try:
            one()
        finally:
            logger.handlers[:] = handlers
            logger.setLevel(level)


def test_a_non_ascii_client_id_is_rejected_not_a_crash(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    """Found by the property test: the emulator compared non-ASCII text with
    hmac.compare_digest, which refuses it, and hung up (exit 4, "cannot reach")."""
    env = environment(semansys_emulator, tmp_path, SEMANSYS_CLIENT_ID="\x80-cl\u00efent")
    result = run(["token", "--no-cache"], env)
    assert result.returncode == 3, result.stderr
    assert "client credentials" in one_error_line(result.stderr)
