"""The commands that run the offline emulator: ``emulator`` (in the foreground,
printing the variables that point at it, and with ``-v`` one line on standard
error for each request it serves) and ``demo``.
"""

from __future__ import annotations

import os
import sys

from ._cli_output import EXIT_OK, EXIT_USAGE, PROG, CheckedOutput, bounded, err, fail, write

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from .testing import RecordedRequest

# The grant types the emulator knows; any other value a client sends is not
# quoted (a confused client could send a secret there).
_GRANT_TYPES = ("password", "refresh_token")


def request_line(entry: RecordedRequest) -> str:
    """The ``-v`` line for one request: method, path (the query string is never
    recorded), the grant type of a token request, and the status. The user name,
    client id, form values, headers and tokens are never shown."""
    line = f"{entry.method} {entry.path}"
    if entry.kind == "token":
        grant = entry.grant_type
        shown = grant if grant in _GRANT_TYPES else "(unsupported)" if grant else "(missing)"
        line += f" grant_type={shown}"
    return f"{PROG} emulator: {bounded(line)} {entry.status}"


def _request_logger() -> Callable[[RecordedRequest], None]:
    """An ``on_request`` hook that logs each request as one line on standard
    error; the emulator's threads serve concurrently, so the lines are written
    one at a time."""
    import threading

    lock = threading.Lock()

    def log(entry: RecordedRequest) -> None:
        line = request_line(entry)
        with lock:
            err(line)

    return log


def cmd_emulator(args: argparse.Namespace) -> int:
    """``emulator [--port N] [--lifetime SECONDS] [-v]``, until interrupted."""
    import shlex
    import shutil
    import signal
    import tempfile
    import threading

    from .testing import SemansysEmulator

    emulator = SemansysEmulator(
        port=args.port,
        access_token_lifetime=args.lifetime,
        on_request=_request_logger() if getattr(args, "verbose", False) else None,
    )
    try:
        emulator.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        fail(
            EXIT_USAGE, f"cannot listen on 127.0.0.1:{args.port} ({reason}): choose another --port"
        )

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # A token cache of this run's own, so that following the exports can never
    # touch (or, with cache clear --all, empty) a real cache; removed at the end,
    # also when the emulator is stopped by SIGTERM or a closed terminal.
    cache = tempfile.mkdtemp(prefix="semansys-auth-emulator-")
    try:
        for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if signum is not None:
                signal.signal(signum, stop)
        exports = {
            **emulator.env(),
            "SEMANSYS_TOKEN_CACHE": os.path.join(cache, "tokens"),
            "API": emulator.api_url,
        }
        # A stop that comes as soon as the exports are out (a script that read
        # them) is a stop like any other, not an interrupted command.
        try:
            write(
                f"Semansys emulator on {emulator.base_url} (Ctrl-C to stop)\n"
                f"  token endpoint: {emulator.token_url}\n"
                f"  echo API:       {emulator.api_url}/...\n"
                "Point semansys-auth at it (demo credentials, not secrets; a token cache of "
                "its own, removed when it stops):\n"
                + "".join(f"export {n}={shlex.quote(v)}\n" for n, v in exports.items())
            )
            threading.Event().wait()
        except KeyboardInterrupt:
            write("stopped\n")
    finally:
        emulator.stop()
        shutil.rmtree(cache, ignore_errors=True)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: the whole flow against an in-process emulator."""
    from ._demo import run_demo

    # The demo prints as it goes: a failed write is an output error, not an
    # OSError that would be taken for an unreachable token endpoint.
    stdout = sys.stdout
    sys.stdout = CheckedOutput(stdout)
    try:
        code = run_demo()
    finally:
        sys.stdout = stdout
    write("")  # flushed here, so that a failure is reported here
    return code
