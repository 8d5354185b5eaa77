"""The ``semansys-auth`` command.

    semansys-auth [-v] token [--json] [credential and cache options]
    semansys-auth [-v] inspect [--json] [credential and cache options]
    semansys-auth [-v] emulator [--port N] [--lifetime SECONDS]
    semansys-auth [-v] demo

Options may come before or after the command. Credentials come from the
``SEMANSYS_*`` environment variables; ``--client-id``, ``--username``,
``--token-url`` and ``--scope`` override them. Secrets are never taken as
arguments (they would show in ``ps`` and shell history): the client secret and
password come from the environment, from a prompt when standard input is a
terminal, or the password from ``--password-stdin``.

With a warm token cache, ``token`` imports no HTTP library at all: it drives
the token core itself, and imports requests only when a token request is due.

Every failure prints one line on stderr, ``semansys-auth: error: ...``, and
exits with a documented code; no traceback and no secret ever reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_UNAVAILABLE = 4
EXIT_TOKEN_ERROR = 5
EXIT_INTERRUPTED = 130

PROG = "semansys-auth"
EXIT_CODES = (
    "exit codes: 0 ok, 1 internal error (a bug: please report it), 2 usage or "
    "configuration, 3 credentials rejected, 4 token endpoint unreachable or "
    "unavailable, 5 other token error"
)
_CREDENTIAL_OPTIONS = ("client_id", "username", "token_url", "scope")
_TOKEN_COMMANDS = ("token", "inspect")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        _fail(EXIT_USAGE, f"{message} (see {PROG} --help)")


def default_cache_dir() -> Path:
    """``$SEMANSYS_CACHE_DIR``, else the user's cache directory (e.g. ~/.cache/semansys-auth)."""
    configured = os.environ.get("SEMANSYS_CACHE_DIR", "").strip()
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("semansys-auth")) / "tokens"


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
        "credentials (token, inspect)",
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
        "token cache (token, inspect)",
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
    inspect = commands.add_parser(
        "inspect",
        help="show the claims of the access token (decoded, not verified)",
        description="Show subject, expiry, scope and issuer of the current access token. "
        "The JWT is decoded without verifying its signature.",
        epilog=EXIT_CODES,
    )
    _add_common(inspect, top=False)
    inspect.add_argument("--json", action="store_true", help="print the claims as JSON")
    emulator = commands.add_parser(
        "emulator",
        help="run the offline Semansys identity emulator in the foreground",
        description="Serve a Semansys-style token endpoint and echo API on 127.0.0.1 until "
        "interrupted, and print the SEMANSYS_* variables that point at it.",
    )
    emulator.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
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


# -- secrets and configuration -------------------------------------------------------


def _read_secret(prompt: str) -> str:
    import getpass

    value = getpass.getpass(prompt)
    if not value:
        raise _UsageError("nothing entered")
    return value


def _secrets(args: argparse.Namespace, env: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    if not (env.get("SEMANSYS_CLIENT_SECRET") or "").strip():
        if not sys.stdin.isatty():
            raise _UsageError("no client secret: set SEMANSYS_CLIENT_SECRET, or run in a terminal")
        found["client_secret"] = _read_secret("Semansys client secret: ")
    if args.password_stdin:
        if sys.stdin.isatty():
            found["password"] = _read_secret("Semansys password: ")
        else:
            line = sys.stdin.readline()
            if not line.strip():
                raise _UsageError("--password-stdin: standard input holds no password")
            found["password"] = line.rstrip("\r\n")
    elif not (env.get("SEMANSYS_PASSWORD") or "").strip():
        if not sys.stdin.isatty():
            raise _UsageError(
                "no password: set SEMANSYS_PASSWORD, pass --password-stdin, or run in a "
                "terminal to be prompted"
            )
        found["password"] = _read_secret("Semansys password: ")
    return found


def _cache(args: argparse.Namespace, env: dict[str, str]) -> object:
    from ._config import cache_from_setting

    if args.no_cache:
        return None
    if args.cache is not None:
        return cache_from_setting(args.cache, "--cache")
    if args.cache_dir is not None:
        return cache_from_setting(args.cache_dir, "--cache-dir")
    configured = (env.get("SEMANSYS_TOKEN_CACHE") or "").strip()
    if configured:
        return cache_from_setting(configured, "SEMANSYS_TOKEN_CACHE")
    from ._file_cache import FileTokenCache

    return FileTokenCache(default_cache_dir())


class _Session:
    """What ``token`` and ``inspect`` use: the core, its lock and the redactor."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ._config import build, env_options

        env = dict(os.environ)
        overrides: dict[str, Any] = {
            name: getattr(args, name)
            for name in _CREDENTIAL_OPTIONS
            if getattr(args, name) is not None
        }
        overrides.update(_secrets(args, env))
        try:
            overrides["token_cache"] = _cache(args, env)
            self.core, self.lock, _ = build(**env_options(env, overrides))
        except (ValueError, TypeError) as exc:  # configuration, checked before any request
            raise _UsageError(_redacted(str(exc))) from None

    def token(self) -> Any:
        from ._drive import cached_blocking, obtain_blocking

        # A warm cache answers without the cache lock (and its import).
        token = cached_blocking(self.core)
        if token is None:
            token = obtain_blocking(self.core, self.lock, _send)
        return token


def _send(request: Any) -> Any:
    from ._requests import post  # requests is imported only when a token request is due

    return post(request)


# -- commands -------------------------------------------------------------------------


def _cmd_token(args: argparse.Namespace) -> int:
    session = _Session(args)
    token = session.token()
    if args.json:
        info = session.core.info()
        print(json.dumps(info.as_dict() if info else {}, indent=2))
    else:
        print(token.access_token)
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    import datetime as dt

    from ._redact import Redactor, shown
    from ._token import jwt_claims

    session = _Session(args)
    claims = jwt_claims(session.token().access_token)
    if claims is None:
        _fail(EXIT_TOKEN_ERROR, "the access token is not a JWT: it has no claims to show")
    if args.json:
        print(json.dumps({"verified": False, "claims": claims}, indent=2, sort_keys=True))
        return EXIT_OK
    plain = Redactor()

    def text(value: object) -> str:
        if isinstance(value, list):
            value = " ".join(map(str, value))
        return shown(str(value), plain, 200)

    def local_time(epoch: float) -> str:
        try:
            return dt.datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        except (OverflowError, OSError, ValueError):
            return f"{epoch!r} (not a date)"

    print("Claims of the access token (decoded, signature NOT verified):")
    rows: list[tuple[str, str]] = []
    for key, label in (("sub", "subject"), ("iss", "issuer"), ("aud", "audience")):
        if key in claims:
            rows.append((label, text(claims[key])))
    for key in ("client_id", "scope"):
        if key in claims:
            rows.append((key, text(claims[key])))
    for key, label in (("iat", "issued at"), ("exp", "expires at")):
        value = claims.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            shown_time = local_time(value)
            if key == "exp":
                left = value - dt.datetime.now().timestamp()
                shown_time += f" (in {left / 60:.0f} min)" if left > 0 else " (expired)"
            rows.append((label, shown_time))
    width = max(len(label) for label, _ in rows) if rows else 0
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    import threading

    from .testing import SemansysEmulator

    emulator = SemansysEmulator(port=args.port, access_token_lifetime=args.lifetime)
    try:
        emulator.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        _fail(
            EXIT_USAGE, f"cannot listen on 127.0.0.1:{args.port} ({reason}): choose another --port"
        )
    try:
        print(f"Semansys emulator on {emulator.base_url} (Ctrl-C to stop)")
        print(f"  token endpoint: {emulator.token_url}")
        print(f"  echo API:       {emulator.api_url}/...")
        print("Point semansys-auth at it (demo credentials, not secrets):")
        for name, value in emulator.env().items():
            print(f"export {name}={value}")
        sys.stdout.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped")
    finally:
        emulator.stop()
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo()


# -- errors ---------------------------------------------------------------------------


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _fail(code: int, message: str) -> NoReturn:
    # One line, whatever the message quotes (an argument may hold a newline).
    message = _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], message)
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (requests wraps urllib3 wraps socket)."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            for arg in exc.args:
                if isinstance(arg, BaseException):
                    inner = arg
                    break
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _unreachable(exc: BaseException, url: str) -> str:
    import errno
    import socket

    cause = _root_cause(exc)
    if isinstance(cause, socket.gaierror):
        reason = "host name not found"
    elif (
        isinstance(cause, ConnectionRefusedError)
        or getattr(cause, "errno", None) == errno.ECONNREFUSED
    ):
        reason = "connection refused"
    elif "timeout" in type(exc).__name__.lower() or isinstance(cause, TimeoutError):
        reason = "no answer in time"
    elif "ssl" in type(exc).__name__.lower() or "ssl" in type(cause).__name__.lower():
        reason = "TLS error: check the certificate (REQUESTS_CA_BUNDLE)"
    else:
        reason = type(cause).__name__
    return (
        f"cannot reach the token endpoint {url} ({reason}): check SEMANSYS_TOKEN_URL or "
        "--token-url, and the network"
    )


def _token_url(args: argparse.Namespace) -> str:
    return str(
        getattr(args, "token_url", None)
        or os.environ.get("SEMANSYS_TOKEN_URL")
        or "https://oidc-pre.semansys.com/connect/token"
    )


def _redacted(text: str) -> str:
    from ._redact import Redactor, shown

    secrets = [os.environ.get("SEMANSYS_CLIENT_SECRET"), os.environ.get("SEMANSYS_PASSWORD")]
    return shown(text, Redactor(secrets), 400)


def _verbose() -> None:
    import logging

    class StderrHandler(logging.Handler):
        """Writes to whatever ``sys.stderr`` is when a record comes."""

        def emit(self, record: logging.LogRecord) -> None:
            print(self.format(record), file=sys.stderr)

    logger = logging.getLogger("semansys_auth")
    if not any(type(h).__name__ == "StderrHandler" for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns (or exits with) a documented exit code."""
    try:
        args = _parser().parse_args(argv)
        if args.command not in _TOKEN_COMMANDS:
            given = [
                name
                for name in (
                    *_CREDENTIAL_OPTIONS,
                    "cache",
                    "cache_dir",
                    "no_cache",
                    "password_stdin",
                )
                if getattr(args, name, None)
            ]
            if given:
                option = "--" + given[0].replace("_", "-")
                raise _UsageError(f"{option} applies to the token and inspect commands only")
        if getattr(args, "verbose", False):
            _verbose()
        command = {
            "token": _cmd_token,
            "inspect": _cmd_inspect,
            "emulator": _cmd_emulator,
            "demo": _cmd_demo,
        }[args.command]
        return _run(command, args)
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, "interrupted")
    except BrokenPipeError:
        # The reader went away (semansys-auth token | head -c 0): nothing to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(EXIT_INTERNAL) from None
    except _UsageError as exc:
        _fail(EXIT_USAGE, str(exc))


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
        _fail(EXIT_REJECTED, str(exc))
    except TokenEndpointUnavailableError as exc:
        _fail(EXIT_UNAVAILABLE, str(exc))
    except SemansysAuthError as exc:
        _fail(EXIT_TOKEN_ERROR, str(exc))
    except (SystemExit, KeyboardInterrupt, BrokenPipeError, _UsageError):
        raise
    except Exception as exc:
        if _is_transport_error(exc):
            _fail(EXIT_UNAVAILABLE, _unreachable(exc, _token_url(args)))
        _fail(
            EXIT_INTERNAL,
            f"unexpected internal error ({type(exc).__name__}: {_redacted(str(exc))}); "
            "please report it",
        )


def _is_transport_error(exc: Exception) -> bool:
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.RequestException):
        return True
    return isinstance(exc, OSError)
