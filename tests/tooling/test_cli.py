"""The ``semansys-auth`` command, run as a real subprocess against the emulator."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from cli_runs import COMMAND, environment, run
from semansys_auth.testing import SemansysEmulator


def test_console_script_is_installed() -> None:
    script = shutil.which("semansys-auth", path=os.path.dirname(sys.executable))
    assert script is not None
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("semansys-auth ")


def test_token_prints_only_the_token(semansys_emulator: SemansysEmulator, tmp_path: Path) -> None:
    result = run(["token"], environment(semansys_emulator, tmp_path))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.count(".") == 2
    assert result.stderr == ""
    # The token works against the API, as curl would send it.
    import requests

    reply = requests.get(
        semansys_emulator.api_url + "/x", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert reply.status_code == 200


def test_token_is_cached_between_runs(semansys_emulator: SemansysEmulator, tmp_path: Path) -> None:
    env = environment(semansys_emulator, tmp_path)
    first = run(["token"], env).stdout
    second = run(["token"], env).stdout
    assert first == second
    assert len(semansys_emulator.token_requests()) == 1
    third = run(["token", "--no-cache"], env).stdout
    assert third != first
    assert len(semansys_emulator.token_requests()) == 2


def test_json_shows_non_secret_fields(semansys_emulator: SemansysEmulator, tmp_path: Path) -> None:
    result = run(["token", "--json", "--no-cache"], environment(semansys_emulator, tmp_path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["token_type"] == "Bearer" and data["scope"] == "read write"
    assert data["expires_in"] == 3600 and data["has_refresh_token"] is True
    assert "eyJ" not in result.stdout and "access_token" not in result.stdout


def test_inspect_shows_claims_unverified(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    result = run(["inspect"], environment(semansys_emulator, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "NOT verified" in result.stdout
    assert "demo@example.com" in result.stdout and "expires at" in result.stdout
    assert "eyJ" not in result.stdout
    as_json = json.loads(
        run(["inspect", "--json"], environment(semansys_emulator, tmp_path)).stdout
    )
    assert as_json["verified"] is False and as_json["claims"]["scope"] == "read write"


@pytest.mark.parametrize(
    ("setting", "code", "words"),
    [
        ({"SEMANSYS_PASSWORD": "wrong-pass-word"}, 3, ["user credentials", "HTTP 403"]),
        ({"SEMANSYS_CLIENT_SECRET": "wrong-cli-secret"}, 3, ["client credentials", "HTTP 401"]),
        (
            {"SEMANSYS_TOKEN_URL": "http://127.0.0.1:9/connect/token"},
            4,
            [
                "cannot reach the token endpoint http://127.0.0.1:9/connect/token "
                "(connection refused): check SEMANSYS_TOKEN_URL"
            ],
        ),
        ({"SEMANSYS_TOKEN_URL": "http://example.com/token"}, 2, ["is not https"]),
    ],
)
def test_errors_exit_with_one_line_and_no_secret(
    semansys_emulator: SemansysEmulator,
    tmp_path: Path,
    setting: dict[str, str],
    code: int,
    words: list[str],
) -> None:
    semansys_emulator.dialect = "semansys"
    result = run(["token", "--no-cache"], environment(semansys_emulator, tmp_path, **setting))
    assert result.returncode == code
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semansys-auth: error: ")
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.stderr
    for secret in (*setting.values(), "demo-client-secret", "demo-password"):
        if "://" not in secret:
            assert secret not in result.stderr


def test_oauth_error_code_is_named(semansys_emulator: SemansysEmulator, tmp_path: Path) -> None:
    semansys_emulator.dialect = "identityserver"
    env = environment(semansys_emulator, tmp_path, SEMANSYS_PASSWORD="nope")
    result = run(["token", "--no-cache"], env)
    assert result.returncode == 3 and "invalid_grant" in result.stderr


def test_unavailable_endpoint_exit_code(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    semansys_emulator.fail_next(10, status=502, html=True)
    result = run(["token", "--no-cache"], environment(semansys_emulator, tmp_path), stdin="")
    assert result.returncode == 4 and "HTTP 502" in result.stderr


def test_missing_configuration_names_the_variable(tmp_path: Path) -> None:
    env = environment(None, tmp_path, SEMANSYS_CLIENT_SECRET="x", SEMANSYS_PASSWORD="y")
    result = run(["token"], env)
    assert result.returncode == 2
    assert "SEMANSYS_CLIENT_ID" in result.stderr and "SEMANSYS_USERNAME" in result.stderr


def test_usage_error_exit_code(tmp_path: Path) -> None:
    assert run(["token", "--bogus"], environment(None, tmp_path)).returncode == 2
    assert run([], environment(None, tmp_path)).returncode == 2


def test_password_from_stdin(semansys_emulator: SemansysEmulator, tmp_path: Path) -> None:
    env = environment(semansys_emulator, tmp_path)
    del env["SEMANSYS_PASSWORD"]
    refused = run(["token", "--no-cache"], env)
    assert refused.returncode == 2 and "--password-stdin" in refused.stderr
    result = run(["token", "--no-cache", "--password-stdin"], env, stdin="demo-password\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(".") == 2


def test_password_prompt_on_a_terminal(semansys_emulator: SemansysEmulator, tmp_path: Path) -> None:
    env = environment(semansys_emulator, tmp_path)
    del env["SEMANSYS_PASSWORD"]
    text, code = run_on_terminal(["token", "--no-cache"], env)
    assert code == 0, text
    assert "demo-password" not in text  # not echoed
    assert any(line.strip().count(".") == 2 for line in text.splitlines())


def test_verbose_logs_steps_without_secrets(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    result = run(["token", "--no-cache", "-v"], environment(semansys_emulator, tmp_path))
    assert result.returncode == 0
    assert "token request: grant_type=password" in result.stderr
    token = result.stdout.strip()
    for secret in (token, "demo-client-secret", "demo-password"):
        assert secret not in result.stderr


# -- no traceback, on any input ----------------------------------------------------------------

ARGS = [
    "token", "inspect", "--json", "-v", "--verbose", "--no-cache", "--cache", "--cache-dir",
    "--client-id", "--username", "--token-url", "--scope", "--password-stdin", "--version",
    "--help", "-h", "--bogus", "", " ", "x", "redis://127.0.0.1:9", "unix:///nope",
    "ftp://x", "/dev/null", "\udcff", "http://127.0.0.1:9/t", "--port", "-1", "99999",
]  # fmt: skip
ENV_VALUES = [
    "", " ", "x", "demo-client", "demo@example.com", "demo-password", "demo-client-secret",
    "\udcff", "http://127.0.0.1:9/t", "https://", "read write", "a\tb", "'\"",
    "redis://127.0.0.1:9/0", "x" * 5000,
]  # fmt: skip
VARIABLES = [
    "SEMANSYS_CLIENT_ID", "SEMANSYS_CLIENT_SECRET", "SEMANSYS_USERNAME", "SEMANSYS_PASSWORD",
    "SEMANSYS_TOKEN_URL", "SEMANSYS_SCOPE", "SEMANSYS_TOKEN_CACHE", "SEMANSYS_CACHE_DIR",
    "SEMANSYS_API_VERSION",
]  # fmt: skip


@pytest.mark.timeout(600)
def test_no_input_makes_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random arguments, environments and standard input, in process: every run
    ends with a documented exit code, and a failure is one line on stderr."""
    # Relative cache paths among the random values land here, not in the checkout.
    monkeypatch.chdir(tmp_path)
    import contextlib
    import io
    from unittest import mock

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from semansys_auth._cli import main

    with SemansysEmulator() as emulator:
        good = {**emulator.env(), "SEMANSYS_TOKEN_CACHE": str(tmp_path / "cache")}
        env_values = st.sampled_from([*ENV_VALUES, emulator.token_url, str(tmp_path)])

        @settings(
            max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "150")),
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            argv=st.lists(st.one_of(st.sampled_from(ARGS), st.text(max_size=8)), max_size=6),
            env=st.dictionaries(st.sampled_from(VARIABLES), env_values, max_size=5),
            start_from_good=st.booleans(),
            stdin=st.sampled_from(["", "\n", "demo-password\n", "\udcff\n"]),
        )
        def one(argv: list[str], env: dict[str, str], start_from_good: bool, stdin: str) -> None:
            environ = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
            environ.update({**good, **env} if start_from_good else env)
            out, err = io.StringIO(), io.StringIO()
            with (
                mock.patch.dict(os.environ, environ, clear=True),
                mock.patch("sys.stdin", io.StringIO(stdin)),
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
            ):
                try:
                    code = main(argv)
                except SystemExit as exit:
                    code = exit.code if isinstance(exit.code, int) else 2
            assert code in (0, 2, 3, 4, 5), (code, err.getvalue())
            errors = err.getvalue()
            assert "Traceback" not in errors
            if code != 0:
                last = errors.strip().splitlines()[-1] if errors.strip() else ""
                assert last.startswith("semansys-auth: error: ") or "usage:" in out.getvalue()
            shown_fields = {environ.get(name) for name in VARIABLES[:1] + VARIABLES[2:]}
            secrets = {environ.get("SEMANSYS_CLIENT_SECRET"), environ.get("SEMANSYS_PASSWORD")}
            secrets.add(stdin.strip())
            for secret in secrets - shown_fields:
                if secret and len(secret) >= 4 and secret.strip():
                    assert secret not in errors and secret not in out.getvalue()

        one()


def test_options_work_before_and_after_the_command(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = environment(semansys_emulator, tmp_path)
    before = run(["-v", "--no-cache", "token"], env)
    after = run(["token", "-v", "--no-cache"], env)
    for result in (before, after):
        assert result.returncode == 0, result.stderr
        assert "token request: grant_type=password" in result.stderr
    assert len(semansys_emulator.token_requests()) == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["emulator", "--port", "99999"], "port 99999 is out of range"),
        (["emulator", "--port", "x"], "not a port number"),
        (["emulator", "--lifetime", "-5"], "must be a positive number of seconds"),
        (["emulator", "--lifetime", "nan"], "must be a positive number of seconds"),
        (["token", "--client-id", "   "], "client_id is blank"),
        (["token", "--scope", "a\\b"], "scope entries must be"),
        (["token", "--cache", "ftp://x/y"], "must be a directory or a redis://"),
        (
            ["--no-cache", "demo"],
            "--no-cache applies to the token, inspect and cache commands only",
        ),
        (["demo", "--no-cache"], "unrecognized arguments: --no-cache"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(
    semansys_emulator: SemansysEmulator, tmp_path: Path, args: list[str], words: str
) -> None:
    result = run(args, environment(semansys_emulator, tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semansys-auth: error: ")
    assert words in lines[0]


def test_emulator_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run(["emulator", "--port", str(port)], environment(None, tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"semansys-auth: error: cannot listen on 127.0.0.1:{port} (Address already in use): "
        "choose another --port"
    )


def test_an_api_url_given_as_token_url_is_called_a_wrong_url(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = environment(
        semansys_emulator, tmp_path, SEMANSYS_TOKEN_URL=semansys_emulator.api_url + "/token"
    )
    result = run(["token", "--no-cache"], env)
    assert result.returncode == 5
    assert "answered like an API, not like a token endpoint" in result.stderr
    assert "the URL may be wrong; check token_url" in result.stderr


def test_closed_standard_output_is_not_a_traceback(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [*COMMAND, "token", "--no-cache"],
            env=environment(semansys_emulator, tmp_path),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr
    assert result.returncode == 6  # could not write the output (see test_cli_streams.py)


def test_password_stdin_on_a_terminal_prompts_without_echo(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = environment(semansys_emulator, tmp_path)
    del env["SEMANSYS_PASSWORD"]
    output, code = run_on_terminal(["token", "--no-cache", "--password-stdin"], env)
    assert code == 0, output
    assert "Semansys password:" in output
    assert "demo-password" not in output


def run_on_terminal(
    args: list[str], env: dict[str, str], answer: bytes = b"demo-password\n"
) -> tuple[str, int]:
    """Run the command with a pty as its terminal; answer the password prompt
    (``b"\x04"``: Ctrl-D)."""
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a threaded process; the child execs at once.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid, fd = pty.fork()
    if pid == 0:  # child: the command, with the pty as its terminal
        os.execve(sys.executable, [*COMMAND, *args], env)
    output = b""
    deadline = time.monotonic() + 30
    answered = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break  # the child closed the terminal
            if not chunk:
                break
            output += chunk
            if not answered and b"password:" in output.lower():
                os.write(fd, answer)
                answered = True
    finally:
        _, status = os.waitpid(pid, 0)
    assert answered, output
    return output.decode(), os.waitstatus_to_exitcode(status)


@pytest.mark.timeout(60)
def test_ctrl_d_at_the_password_prompt_is_a_usage_error(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = environment(semansys_emulator, tmp_path)
    del env["SEMANSYS_PASSWORD"]
    output, code = run_on_terminal(["token", "--no-cache"], env, answer=b"\x04")
    assert code == 2, output
    assert "semansys-auth: error: nothing entered" in output
    assert "internal error" not in output


_WITHOUT_REDIS = (
    "import sys; sys.modules['redis'] = None; "
    "from semansys_auth._cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    "args",
    [["token", "--cache", "redis://:hunter22@127.0.0.1:1/0"], ["cache", "clear", "--all"]],
)
def test_a_redis_cache_without_the_redis_extra_is_a_usage_error(
    semansys_emulator: SemansysEmulator, tmp_path: Path, args: list[str]
) -> None:
    env = environment(semansys_emulator, tmp_path)
    env["SEMANSYS_TOKEN_CACHE"] = "redis://:hunter22@127.0.0.1:1/0"
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_REDIS, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install 'semansys-auth[redis]'" in result.stderr
    assert "hunter22" not in result.stderr + result.stdout
    assert len(result.stderr.splitlines()) == 1
