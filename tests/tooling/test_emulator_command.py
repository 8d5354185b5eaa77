"""``semansys-auth emulator``: its exports cover every variable the docs' shell
examples use; with ``-v``, one line on stderr for each request served (method,
path, grant type, status), never a secret; and the emulator's ``on_request``
hook behind it, in process."""

from __future__ import annotations

import base64
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from semansys_auth._cli_emulator import request_line
from semansys_auth.testing import RecordedRequest, SemansysEmulator

COMMAND = [sys.executable, "-m", "semansys_auth"]
PREFIX = "semansys-auth emulator: "


def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The command, and the variables it exported (read up to the last one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    process = subprocess.Popen(
        [*COMMAND, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    exports: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while "API" not in exports and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("export "):
            [assignment] = shlex.split(line[len("export ") :])
            name, _, value = assignment.partition("=")
            exports[name] = value
    assert "API" in exports, "the emulator printed no exports"
    return process, exports


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return out, err


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def raw_request(base_url: str, line: bytes) -> bytes:
    """One request written by hand (a path no HTTP client would send)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


ROOT = Path(__file__).resolve().parents[2]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)[^\n]*\n(.*?)^```", re.M | re.S)
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
ASSIGNED = re.compile(r"(?:^|[\s;&|(])(?:export\s+|local\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.M)


def shell_variables(text: str) -> set[str]:
    """The variables the shell blocks of a markdown text read and do not set."""
    found: set[str] = set()
    for block in SHELL_BLOCK.findall(text):
        found |= set(VARIABLE.findall(block)) - set(ASSIGNED.findall(block))
    return found


@pytest.mark.timeout(60)
def test_the_exports_cover_every_variable_of_the_docs_shell_examples(
    processes: list[subprocess.Popen[str]],
) -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    used = set().union(*(shell_variables(page.read_text(encoding="utf-8")) for page in pages))
    process, exports = start("emulator")
    processes.append(process)
    stop(process)
    assert "API" in used, "the docs' curl example reads $API"
    assert used - set(exports) == set()
    # The scan finds what a block reads, and leaves out what it sets itself.
    sample = '```bash\nstatus=$?\ncurl "${API}/x" -u "$USER_X"; test "$status" = 0\n```\n'
    assert shell_variables(sample) == {"API", "USER_X"}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("flag", [["emulator", "-v"], ["--verbose", "emulator"]])
def test_each_request_is_one_line_without_secrets(
    flag: list[str], processes: list[subprocess.Popen[str]]
) -> None:
    process, env = start(*flag)
    processes.append(process)
    token_url, api = env["SEMANSYS_TOKEN_URL"], env["API"]
    base_url = api.removesuffix("/api")
    client = {
        "client_id": env["SEMANSYS_CLIENT_ID"],
        "client_secret": env["SEMANSYS_CLIENT_SECRET"],
    }
    user = {"username": env["SEMANSYS_USERNAME"], "password": env["SEMANSYS_PASSWORD"]}
    wrong_password = "wrong-password-Xq7Tz"
    confused_grant = "grant-that-is-a-secret-Kp9w"
    query_secret = "query-secret-Vb3n"

    first = requests.post(token_url, data={"grant_type": "password", **client, **user}, timeout=10)
    assert first.status_code == 200
    access, refresh = first.json()["access_token"], first.json()["refresh_token"]
    refreshed = requests.post(
        token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh, **client},
        timeout=10,
    )
    assert refreshed.status_code == 200
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    refused = requests.post(
        token_url,
        data={"grant_type": "password", **user, "password": wrong_password},
        headers={"Authorization": f"Basic {basic}"},
        timeout=10,
    )
    assert refused.status_code == 403
    assert requests.post(
        token_url, data={"grant_type": confused_grant}, timeout=10
    ).status_code == (400)
    assert requests.post(token_url, data={}, timeout=10).status_code == 400
    bearer = {"Authorization": f"Bearer {access}"}
    assert requests.get(f"{api}/reports?q={query_secret}", headers=bearer, timeout=10).ok
    assert requests.put(
        f"{api}/reports/7", headers={"Authorization": "Bearer no"}, timeout=10
    ).status_code == (401)
    assert requests.get(token_url, timeout=10).status_code == 405
    assert requests.get(f"{base_url}/nothing", timeout=10).status_code == 404
    answer = raw_request(base_url, b"GET /api/\x1b[31mred\x1b[0m HTTP/1.1")
    assert answer.startswith(b"HTTP/1.1 401 ")

    out, err = stop(process)
    assert err.splitlines() == [
        f"{PREFIX}POST /connect/token grant_type=password 200",
        f"{PREFIX}POST /connect/token grant_type=refresh_token 200",
        f"{PREFIX}POST /connect/token grant_type=password 403",
        f"{PREFIX}POST /connect/token grant_type=(unsupported) 400",
        f"{PREFIX}POST /connect/token grant_type=(missing) 400",
        f"{PREFIX}GET /api/reports 200",
        f"{PREFIX}PUT /api/reports/7 401",
        f"{PREFIX}GET /connect/token 405",
        f"{PREFIX}GET /nothing 404",
        f"{PREFIX}GET /api/\\x1b[31mred\\x1b[0m 401",
    ]
    assert PREFIX not in out  # standard output carries the exports only
    secrets = [
        client["client_secret"],
        user["password"],
        user["username"],
        wrong_password,
        confused_grant,
        query_secret,
        access,
        refresh,
        refreshed.json()["access_token"],
        refreshed.json()["refresh_token"],
        basic,
    ]
    for secret in secrets:
        assert secret not in err


@pytest.mark.timeout(60)
def test_without_verbose_the_emulator_logs_nothing(
    processes: list[subprocess.Popen[str]],
) -> None:
    process, env = start("emulator")
    processes.append(process)
    assert requests.get(env["API"] + "/x", timeout=10).status_code == 401
    _, err = stop(process)
    assert err == ""


@pytest.mark.timeout(90)
def test_a_stop_right_after_the_exports_is_a_clean_stop(
    processes: list[subprocess.Popen[str]],
) -> None:
    """A script that reads the exports and stops the emulator at once: the
    signal may come before the command waits; it still stops cleanly (exit 0,
    "stopped"), never as an interrupted command (130)."""
    for _ in range(8):
        process, _ = start("emulator")
        processes.append(process)
        out, err = stop(process)
        assert out.endswith("stopped\n") and err == ""


def test_the_help_names_the_verbose_option() -> None:
    result = subprocess.run(
        [*COMMAND, "emulator", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "-v, --verbose" in result.stdout and "no secrets" in result.stdout


# -- the hook, in process ------------------------------------------------------------


def test_the_hook_sees_every_request_and_the_log_keeps_its_own(
    semansys_emulator: SemansysEmulator,
) -> None:
    seen: list[RecordedRequest] = []
    semansys_emulator.on_request = seen.append
    auth = semansys_emulator.auth()
    with requests.Session() as session:
        session.auth = auth
        assert session.get(semansys_emulator.api_url + "/a", timeout=10).status_code == 200
        assert session.get(semansys_emulator.base_url + "/elsewhere", timeout=10).status_code == 404
    assert [(r.kind, r.method, r.path, r.status, r.grant_type) for r in seen] == [
        ("token", "POST", "/connect/token", 200, "password"),
        ("api", "GET", "/api/a", 200, None),
        ("other", "GET", "/elsewhere", 404, None),
    ]
    assert semansys_emulator.requests == seen[:2]  # the same records; no "other" in the log
    semansys_emulator.on_request = None
    assert requests.get(semansys_emulator.base_url + "/more", timeout=10).status_code == 404
    assert len(seen) == 3


def test_a_failing_hook_leaves_the_answers_alone(
    semansys_emulator: SemansysEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def hook(entry: RecordedRequest) -> None:
        calls.append(entry)
        raise RuntimeError("the hook failed")

    semansys_emulator.on_request = hook
    for _ in range(2):
        reply = requests.get(semansys_emulator.api_url + "/a", timeout=10)
        assert reply.status_code == 401 and reply.json() == {"message": "invalid or expired token"}
    assert len(calls) == 2
    # The server thread prints each failure (between two rules of dashes) once
    # the answer went out: wait for both, so that none is printed after the test.
    printed = ""
    deadline = time.monotonic() + 10
    while printed.count("-" * 40) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
        printed += capfd.readouterr().err
    assert printed.count("RuntimeError: the hook failed") == 2, printed


def test_the_hook_is_called_from_concurrent_threads(semansys_emulator: SemansysEmulator) -> None:
    lock = threading.Lock()
    seen: list[str] = []

    def hook(entry: RecordedRequest) -> None:
        with lock:
            seen.append(entry.path)

    semansys_emulator.on_request = hook
    paths = [f"/api/{n}" for n in range(16)]
    threads = [
        threading.Thread(
            target=requests.get, args=(semansys_emulator.base_url + p,), kwargs={"timeout": 10}
        )
        for p in paths
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(seen) == sorted(paths)


# -- the line itself, for any request a client may send -------------------------------


KNOWN = ("password", "refresh_token")
# What the emulator's HTTP server hands over: http.server reads the request line
# as ISO-8859-1, so a path holds any character up to U+00FF but CR and LF.
PATHS = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=3000)
CONTROL = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
    path=PATHS,
    grant=st.none() | st.sampled_from(KNOWN) | st.text(max_size=300),
    status=st.integers(100, 599),
    kind=st.sampled_from(["token", "api", "other"]),
)
def test_a_line_is_one_bounded_line_that_never_quotes_an_unknown_grant(
    method: str, path: str, grant: str | None, status: int, kind: str
) -> None:
    def line_for(grant_type: str | None) -> str:
        entry = RecordedRequest(kind, method, path, status, grant_type=grant_type)  # type: ignore[arg-type]
        return request_line(entry)

    line = line_for(grant)
    assert line.startswith(f"{PREFIX}{method} ") and line.endswith(f" {status}")
    assert not CONTROL & set(line), "control characters are escaped"
    assert len(line) < 1100, "a long path is cut"
    if kind != "token":
        assert line == line_for(None), "only token requests show a grant type"
    elif grant in KNOWN:
        assert line.endswith(f" grant_type={grant} {status}")
    elif grant:
        assert line.endswith(f" grant_type=(unsupported) {status}")
        assert line == line_for("another-unknown-grant"), "the value itself is never shown"
    else:
        assert line.endswith(f" grant_type=(missing) {status}")
