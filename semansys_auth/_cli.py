"""The ``semansys-auth`` command: its arguments, and ``main``.

    semansys-auth [-v] token [--json] [--refresh] [credential and cache options]
    semansys-auth [-v] inspect [--json] [credential and cache options]
    semansys-auth [-v] cache clear [--all] [credential and cache options]
    semansys-auth [-v] emulator [--port N] [--lifetime SECONDS]
    semansys-auth [-v] demo

Options may come before or after the command. Credentials come from the
``SEMANSYS_*`` environment variables; ``--client-id``, ``--username``,
``--token-url`` and ``--scope`` override them. Secrets are never taken as
arguments (they would show in ``ps`` and shell history): the client secret and
password come from the environment, from a prompt when standard input is a
terminal, or the password from ``--password-stdin``.

Every failure prints one line on stderr, ``semansys-auth: error: ...``, and
exits with a documented code; no traceback and no secret ever reaches the user.
Standard output carries the command's output and nothing else.

The command is split by job: this module parses the arguments and dispatches;
``_cli_token`` holds ``token``, ``inspect`` and ``cache clear`` with the
credentials and the cache; ``_cli_emulator`` holds ``emulator`` and ``demo``;
``_cli_output`` holds the standard streams, the failures and the exit codes.
Each command's module, and every library it needs, is imported only when that
command runs, so that ``token`` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._cli_output import (
    EXIT_CACHE,
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_REJECTED,
    EXIT_TOKEN_ERROR,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PROG,
    CacheError,
    OutputError,
    UsageError,
    fail,
    is_transport_error,
    log_to_stderr,
    open_standard_descriptors,
    read_secrets,
    redacted,
    silence,
    unreachable,
    write,
)
from ._cli_token import CREDENTIAL_OPTIONS, TOKEN_COMMANDS
from ._version import __version__

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = [
    "EXIT_CACHE",
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "EXIT_REJECTED",
    "EXIT_TOKEN_ERROR",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "main",
]


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(EXIT_USAGE, f"{message} (see {PROG} --help)")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range (0 to 65535)")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 10 * 365 * 86400:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted before and after the command. On the command's own
    parser they default to SUPPRESS, so that they only override when given."""
    default: Any = None if top else argparse.SUPPRESS
    flag: Any = False if top else argparse.SUPPRESS
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=flag,
        help="log each step to stderr (no secrets)",
    )  # fmt: skip
    group = parser.add_argument_group(
        "credentials (token, inspect, cache)",
        "default: the SEMANSYS_CLIENT_ID, SEMANSYS_CLIENT_SECRET, SEMANSYS_USERNAME, "
        "SEMANSYS_PASSWORD, SEMANSYS_TOKEN_URL and SEMANSYS_SCOPE environment variables",
    )
    group.add_argument("--client-id", default=default, help="overrides SEMANSYS_CLIENT_ID")
    group.add_argument(
        "--username", default=default, help="overrides SEMANSYS_USERNAME (an e-mail address)"
    )
    group.add_argument("--token-url", default=default, help="overrides SEMANSYS_TOKEN_URL")
    group.add_argument(
        "--scope", default=default, help="overrides SEMANSYS_SCOPE (space-separated)"
    )
    group.add_argument(
        "--password-stdin", action="store_true", default=flag,
        help="read the password from the first line of standard input (prompts "
        "without echo when standard input is a terminal)",
    )  # fmt: skip
    cache = parser.add_argument_group(
        "token cache (token, inspect, cache)",
        "first of: --no-cache, --cache, --cache-dir, SEMANSYS_TOKEN_CACHE, "
        "SEMANSYS_CACHE_DIR, the user cache directory",
    )
    cache.add_argument(
        "--no-cache", action="store_true", default=flag,
        help="neither read nor write the token cache",
    )  # fmt: skip
    cache.add_argument(
        "--cache", default=default, metavar="DIR_OR_URL",
        help="a cache directory or a redis://, rediss:// or unix:// URL",
    )  # fmt: skip
    cache.add_argument("--cache-dir", default=default, metavar="DIR", help="a cache directory")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Get and inspect Semansys API tokens; run an offline Semansys emulator.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser, top=True)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    token = commands.add_parser(
        "token",
        help='print an access token (for curl -H "Authorization: Bearer $(semansys-auth token)")',
        description="Print a valid access token on stdout, and nothing else.",
        epilog=EXIT_CODES,
    )
    _add_common(token, top=False)
    token.add_argument(
        "--json",
        action="store_true",
        help="print the token's non-secret fields (expiry, scope, type) as JSON instead",
    )
    token.add_argument(
        "--refresh",
        action="store_true",
        help="discard this identity's cached token and fetch a new one (which replaces it)",
    )
    inspect = commands.add_parser(
        "inspect",
        help="show the claims of the access token (decoded, not verified)",
        description="Show subject, expiry, scope and issuer of the current access token. "
        "The JWT is decoded without verifying its signature.",
        epilog=EXIT_CODES,
    )
    _add_common(inspect, top=False)
    inspect.add_argument("--json", action="store_true", help="print the claims as JSON")
    cache = commands.add_parser(
        "cache",
        help="manage the token cache (cache clear)",
        description="Manage the token cache chosen by the cache options.",
        epilog=EXIT_CODES,
    )
    actions = cache.add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    clear = actions.add_parser(
        "clear",
        help="remove this identity's cached tokens (--all: every cached token)",
        description="Remove the cached tokens of this identity (the credentials, token URL "
        "and scope, as for the token command) from the token cache, and print how many were "
        "removed. With --all, remove every token of the cache directory or Redis prefix; "
        "no credentials are needed then. Nothing secret is printed.",
        epilog=EXIT_CODES,
    )
    _add_common(clear, top=False)
    clear.add_argument(
        "--all",
        action="store_true",
        help="remove every entry of the cache directory or Redis prefix, of any identity",
    )
    emulator = commands.add_parser(
        "emulator",
        help="run the offline Semansys identity emulator in the foreground",
        description="Serve a Semansys-style token endpoint and echo API on 127.0.0.1 until "
        "interrupted, and print the SEMANSYS_* variables that point at it, with a token "
        "cache directory of its own (removed when it stops) and API, the echo API's URL.",
    )
    emulator.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="log each request served on stderr: method, path, grant type, status (no secrets)",
    )  # fmt: skip
    emulator.add_argument("--port", type=_port, default=0, help="port (default: a free one)")
    emulator.add_argument(
        "--lifetime", type=_seconds, default=3600.0, help="access token lifetime in seconds"
    )
    demo = commands.add_parser(
        "demo",
        help="walk through the whole flow against an in-process emulator",
        description="Start the emulator and show, with each installed client: the first "
        "request fetching a token, reuse, server-side expiry, and the 401 answered by one "
        "refresh and one resend.",
    )
    demo.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    try:
        return _parser().parse_args(argv)
    except SystemExit as exit:
        if exit.code == 0:
            # --help or --version: argparse wrote it, unflushed; a failure to
            # write it is reported here, not as noise at exit.
            write("")
        raise


def _command(name: str) -> Any:
    """The function of the command ``name``, its module imported now."""
    if name in TOKEN_COMMANDS:
        from ._cli_token import cmd_cache, cmd_inspect, cmd_token

        return {"token": cmd_token, "inspect": cmd_inspect, "cache": cmd_cache}[name]
    from ._cli_emulator import cmd_demo, cmd_emulator

    return {"emulator": cmd_emulator, "demo": cmd_demo}[name]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns (or exits with) a documented exit code."""
    open_standard_descriptors()
    read_secrets.clear()
    try:
        args = _parse(argv)
        if args.command not in TOKEN_COMMANDS:
            given = [
                name
                for name in (
                    *CREDENTIAL_OPTIONS,
                    "cache",
                    "cache_dir",
                    "no_cache",
                    "password_stdin",
                )
                if getattr(args, name, None)
            ]
            if given:
                option = "--" + given[0].replace("_", "-")
                raise UsageError(f"{option} applies to the token, inspect and cache commands only")
        if sys.stdout is None:
            # Found before any prompt, token request or change to the cache.
            raise OutputError("it is closed")
        if getattr(args, "verbose", False):
            log_to_stderr()
        return _run(_command(args.command), args)
    except KeyboardInterrupt:
        fail(EXIT_INTERRUPTED, "interrupted")
    except BrokenPipeError:
        # Output written by other means than write() (the demo): the reader went away.
        silence(sys.stdout)
        fail(EXIT_OUTPUT, "cannot write the output to standard output (the reader closed the pipe)")
    except OutputError as exc:
        fail(EXIT_OUTPUT, f"cannot write the output to standard output ({exc})")
    except CacheError as exc:
        fail(EXIT_CACHE, str(exc))
    except UsageError as exc:
        fail(EXIT_USAGE, str(exc))


def _run(command: Any, args: argparse.Namespace) -> int:
    from ._errors import (
        ClientCredentialsError,
        SemansysAuthError,
        TokenEndpointUnavailableError,
        UserCredentialsError,
    )

    try:
        return int(command(args))
    except (ClientCredentialsError, UserCredentialsError) as exc:
        fail(EXIT_REJECTED, str(exc))
    except TokenEndpointUnavailableError as exc:
        fail(EXIT_UNAVAILABLE, str(exc))
    except SemansysAuthError as exc:
        fail(EXIT_TOKEN_ERROR, str(exc))
    except (SystemExit, KeyboardInterrupt, BrokenPipeError, UsageError, OutputError, CacheError):
        raise
    except Exception as exc:
        if is_transport_error(exc):
            fail(EXIT_UNAVAILABLE, unreachable(exc, args))
        fail(
            EXIT_INTERNAL,
            f"unexpected internal error ({type(exc).__name__}: {redacted(str(exc))}); "
            "please report it",
        )
