"""The ``semansys-auth`` command.

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

With a warm token cache, ``token`` imports no HTTP library at all: it drives
the token core itself, and imports requests only when a token request is due.

Every failure prints one line on stderr, ``semansys-auth: error: ...``, and
exits with a documented code; no traceback and no secret ever reaches the user.

The standard streams: standard output carries the command's output (the
token, the JSON, the claims, the count of removed cache entries) and nothing
else. Errors and ``-v`` log lines go to standard error, or nowhere when it is
closed (Python would send ``print(file=None)`` to standard output, where
``$(semansys-auth token 2>&-)`` would take an error for the token). Output that
cannot be written (standard output closed, a full disk, a reader that went away)
exits with its own code, 6, and one line naming standard output. A closed
standard descriptor is re-opened on /dev/null first, so that no file or socket
the command opens can take its number. Messages quote at most a few hundred
characters of any value, saying how much was cut.
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
EXIT_OUTPUT = 6
EXIT_CACHE = 7
EXIT_INTERRUPTED = 130

PROG = "semansys-auth"
EXIT_CODES = (
    "exit codes: 0 ok, 1 internal error (a bug: please report it), 2 usage or "
    "configuration, 3 credentials rejected, 4 token endpoint unreachable or "
    "unavailable, 5 other token error, 6 could not write the output (standard output "
    "closed, full or gone), 7 token cache unreachable or unusable (cache clear, token "
    "--refresh), 130 interrupted (Ctrl-C)"
)
_CREDENTIAL_OPTIONS = ("client_id", "username", "token_url", "scope")
_TOKEN_COMMANDS = ("token", "inspect", "cache")
_MAX_QUOTE = 200  # the longest run of one value a message shows whole
_MAX_MESSAGE = 900  # the longest message, before the "semansys-auth: error: " prefix


class _UsageError(Exception):
    pass


class _OutputError(Exception):
    """Standard output could not be written; the argument is why."""


class _CacheError(Exception):
    """The token cache could not be reached or changed; the argument says so."""


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

# Secrets read from a prompt or from standard input: kept out of error messages too.
_read_secrets: list[str] = []


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal; a closed one (None) is not."""
    try:
        return stream is not None and bool(stream.isatty())
    except (ValueError, OSError):  # a closed file object
        return False


def _read_secret(prompt: str) -> str:
    import getpass

    try:
        value = getpass.getpass(prompt)
    except EOFError:  # Ctrl-D at the prompt
        raise _UsageError("nothing entered") from None
    if not value:
        raise _UsageError("nothing entered")
    _read_secrets.append(value)
    return value


def _password_from_stdin() -> str:
    """The first line of standard input, read with a bound: an endless input
    (``</dev/zero``) is refused once it is longer than a password may be."""
    from ._config import _MAX_TEXT

    stream = sys.stdin
    if stream is None:
        raise _UsageError(
            "--password-stdin: standard input is closed: pipe the password in "
            "(printf '%s\\n' \"$PASSWORD\" | semansys-auth token --password-stdin)"
        )
    try:
        # At most the longest password, its line end (\r\n) and one more character.
        line = stream.readline(_MAX_TEXT + 3)
    except UnicodeDecodeError:
        raise _UsageError("--password-stdin: standard input is not UTF-8 text") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise _UsageError(f"--password-stdin: cannot read standard input ({reason})") from None
    password = line.rstrip("\r\n")
    if len(password) > _MAX_TEXT:
        raise _UsageError(
            f"--password-stdin: the first line of standard input is longer than {_MAX_TEXT} "
            "characters, the longest password accepted: give the password alone on one line"
        )
    if not password.strip():
        raise _UsageError("--password-stdin: standard input holds no password")
    _read_secrets.append(password)
    return password


def _credentials(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """The credential options, and the secrets read from standard input or a
    prompt. Every missing setting is named in one message, before any prompt."""
    given: dict[str, Any] = {
        name: getattr(args, name) for name in _CREDENTIAL_OPTIONS if getattr(args, name) is not None
    }
    interactive = _is_terminal(sys.stdin)
    missing = []
    if "client_id" not in given and _blank(env.get("SEMANSYS_CLIENT_ID")):
        missing.append("SEMANSYS_CLIENT_ID")
    secret_missing = _blank(env.get("SEMANSYS_CLIENT_SECRET"))
    if secret_missing and not interactive:
        missing.append("SEMANSYS_CLIENT_SECRET")
    if "username" not in given and _blank(env.get("SEMANSYS_USERNAME")):
        missing.append("SEMANSYS_USERNAME")
    password_missing = not args.password_stdin and _blank(env.get("SEMANSYS_PASSWORD"))
    if password_missing and not interactive:
        missing.append("SEMANSYS_PASSWORD")
    if missing:
        names = ", ".join(missing[:-1]) + " and " + missing[-1] if len(missing) > 1 else missing[0]
        hints = []
        options = [
            option
            for option, variable in (
                ("--client-id", "SEMANSYS_CLIENT_ID"),
                ("--username", "SEMANSYS_USERNAME"),
            )
            if variable in missing
        ]
        if options:
            hints.append(f"{' and '.join(options)} may be given instead")
        if "SEMANSYS_PASSWORD" in missing:
            hints.append("--password-stdin reads the password from standard input")
        if "SEMANSYS_CLIENT_SECRET" in missing or "SEMANSYS_PASSWORD" in missing:
            hints.append("in a terminal, the secrets are prompted for")
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise _UsageError(f"missing configuration: set {names}{hint}")
    if secret_missing:
        given["client_secret"] = _read_secret("Semansys client secret: ")
    if args.password_stdin:
        given["password"] = (
            _read_secret("Semansys password: ") if interactive else _password_from_stdin()
        )
    elif password_missing:
        given["password"] = _read_secret("Semansys password: ")
    return given


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


def _chosen_cache(args: argparse.Namespace) -> object:
    """The cache the options name, for ``cache clear --all`` (no credentials)."""
    try:
        return _cache(args, dict(os.environ))
    except (ValueError, TypeError, ImportError) as exc:  # ImportError: the redis extra
        raise _UsageError(_redacted(str(exc))) from None


class _Session:
    """What ``token``, ``inspect`` and ``cache clear`` use: the core in its
    shell, and the redactor."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ._config import build, env_options

        env = dict(os.environ)
        overrides = _credentials(args, env)
        try:
            overrides["token_cache"] = _cache(args, env)
            self.shell, _ = build(**env_options(env, overrides))
            self.core = self.shell.core
        # Configuration, checked before any request (ImportError: the redis extra).
        except (ValueError, TypeError, ImportError) as exc:
            raise _UsageError(_redacted(str(exc))) from None

    def token(self) -> Any:
        from ._drive import cached_blocking, run_blocking

        # A warm cache answers without the cache lock (and its import).
        token = cached_blocking(self.shell)
        if token is None:
            token = run_blocking(self.core.renewal(), self.shell, _send)
        return token


def _send(request: Any) -> Any:
    from ._requests import post  # requests is imported only when a token request is due

    return post(request)


# -- the token cache ------------------------------------------------------------------


def _where(cache: object) -> str:
    """Where a cache keeps its entries, without any credential (a Redis URL may
    hold a password: only host, port, database and prefix are shown)."""
    directory = getattr(cache, "directory", None)
    if directory is not None:
        return str(directory)
    prefix = getattr(cache, "prefix", None)
    if prefix is not None:
        pool = getattr(getattr(cache, "client", None), "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", None)
        place = ""
        if isinstance(kwargs, dict):
            if kwargs.get("path"):
                place = f" at {kwargs['path']}"
            elif kwargs.get("host"):
                place = f" at {kwargs['host']}:{kwargs.get('port', 6379)}"
            if kwargs.get("db") not in (None, 0):
                place += f" database {kwargs['db']}"
        return f"Redis{place} prefix {prefix!r}"
    return type(cache).__name__


def _clear(cache: object, key: str | None) -> int:
    """``cache.clear(key)``: how many entries went. Its failures become a
    ``_CacheError`` that names the cache, never a credential."""
    clear = getattr(cache, "clear", None)
    if not callable(clear):
        raise _CacheError(f"the token cache {_where(cache)} cannot be cleared (it has no clear())")
    try:
        return int(clear(key))
    except Exception as exc:  # OSError, UnsafeCacheError, redis.RedisError and kin
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _CacheError(
            f"cannot clear the token cache {_where(cache)} ({type(exc).__name__}: "
            f"{_redacted(reason)})"
        ) from None


def _entries(count: int) -> str:
    return f"{count} cache {'entry' if count == 1 else 'entries'}"


# -- commands -------------------------------------------------------------------------


def _cmd_token(args: argparse.Namespace) -> int:
    session = _Session(args)
    cache = session.core.cache
    if args.refresh and cache is not None:
        _clear(cache, session.core.cache_key())
    token = session.token()
    if args.json:
        info = session.core.info()
        _write(json.dumps(info.as_dict() if info else {}, indent=2) + "\n")
    else:
        _write(token.access_token + "\n")
    return EXIT_OK


def _cmd_cache(args: argparse.Namespace) -> int:
    # One action so far: clear.
    if args.all:
        given = [name for name in (*_CREDENTIAL_OPTIONS, "password_stdin") if getattr(args, name)]
        if given:
            option = "--" + given[0].replace("_", "-")
            raise _UsageError(
                f"{option} does not apply to cache clear --all, which removes the entries of "
                "every identity: leave out --all to remove this identity's entries only"
            )
        if args.no_cache:
            raise _UsageError("cache clear --all and --no-cache: no cache to clear")
        cache = _chosen_cache(args)
        count = _clear(cache, None)
    else:
        if args.no_cache:
            raise _UsageError("cache clear and --no-cache: no cache to clear")
        session = _Session(args)
        cache = session.core.cache
        count = _clear(cache, session.core.cache_key())
    _write(f"removed {_entries(count)} from {_where(cache)}\n")
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
        _write(json.dumps({"verified": False, "claims": claims}, indent=2, sort_keys=True) + "\n")
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

    lines = ["Claims of the access token (decoded, signature NOT verified):"]
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
    lines.extend(f"  {label:<{width}}  {value}" for label, value in rows)
    _write("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    import shlex
    import shutil
    import signal
    import tempfile
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
        _write(
            f"Semansys emulator on {emulator.base_url} (Ctrl-C to stop)\n"
            f"  token endpoint: {emulator.token_url}\n"
            f"  echo API:       {emulator.api_url}/...\n"
            "Point semansys-auth at it (demo credentials, not secrets; a token cache of its "
            "own, removed when it stops):\n"
            + "".join(f"export {name}={shlex.quote(value)}\n" for name, value in exports.items())
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            _write("stopped\n")
    finally:
        emulator.stop()
        shutil.rmtree(cache, ignore_errors=True)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    # The demo prints as it goes: a failed write is an output error, not an
    # OSError that would be taken for an unreachable token endpoint.
    stdout = sys.stdout
    sys.stdout = _CheckedOutput(stdout)
    try:
        code = run_demo()
    finally:
        sys.stdout = stdout
    _write("")  # flushed here, so that a failure is reported here
    return code


# -- the standard streams -------------------------------------------------------------


def _silence(stream: Any) -> None:
    """Point a failed stream's descriptor at /dev/null, so that the interpreter's
    last flush of what it still buffers succeeds quietly instead of printing
    "Exception ignored ..." at exit."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


class _CheckedOutput:
    """Standard output for code that prints: a failed write or flush raises
    ``_OutputError``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        _write(text, flush=False, stream=self._stream)
        return len(text)

    def flush(self) -> None:
        _write("", stream=self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _write(text: str, *, flush: bool = True, stream: Any = None) -> None:
    """Write the command's output to standard output, flushed here, so that a
    failure is caught here (and not at exit).

    Raises:
        _OutputError: standard output is closed, full or gone.
    """
    if stream is None:
        stream = sys.stdout
    if stream is None:
        raise _OutputError("it is closed")
    try:
        stream.write(text)
        if flush:
            stream.flush()
    except BrokenPipeError:
        _silence(stream)
        raise _OutputError("the reader closed the pipe") from None
    except (OSError, ValueError, UnicodeEncodeError) as exc:
        _silence(stream)
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise _OutputError(reason) from None


def _err(line: str) -> None:
    """One line on standard error, or nowhere when it is closed or broken:
    never on standard output."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError, UnicodeEncodeError):
        _silence(stream)


def _open_standard_descriptors() -> None:
    """Re-open closed descriptors 0, 1 and 2 on /dev/null. Python has set
    ``sys.stdin``, ``sys.stdout`` or ``sys.stderr`` to None for them already;
    this keeps a file or socket opened later from taking their number (and a
    stray write to descriptor 2 from landing in a cache file)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


# -- errors ---------------------------------------------------------------------------


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_LONG_RUN = re.compile(rf"\S{{{_MAX_QUOTE + 1},}}")


def _cut(text: str, head: int, tail: int) -> str:
    """The start and end of ``text``, saying how many characters were cut between."""
    cut = len(text) - head - tail
    return f"{text[:head]}...[{cut} characters cut]...{text[len(text) - tail :]}"


def _bounded(message: str) -> str:
    """One line of at most about ``_MAX_MESSAGE`` characters, whatever the message
    quotes (an argument may hold a newline, or be 120 KB long)."""
    message = _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], message)
    quote_head = _MAX_QUOTE * 3 // 4
    message = _LONG_RUN.sub(lambda m: _cut(m.group(), quote_head, _MAX_QUOTE - quote_head), message)
    if len(message) > _MAX_MESSAGE:
        message = _cut(message, _MAX_MESSAGE * 2 // 3, _MAX_MESSAGE // 4)
    return message


def _fail(code: int, message: str) -> NoReturn:
    secrets = [os.environ.get("SEMANSYS_CLIENT_SECRET"), os.environ.get("SEMANSYS_PASSWORD")]
    for secret in (*secrets, *_read_secrets):
        # Shorter texts are not worth hiding, and would mangle the message.
        if secret and len(secret.strip()) >= 4:
            for form in (secret, repr(secret)[1:-1]):
                message = message.replace(form, "***")
    _err(f"{PROG}: error: {_bounded(message)}")
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
    from ._token_url import PRE_PRODUCTION_TOKEN_URL

    return str(
        getattr(args, "token_url", None)
        or os.environ.get("SEMANSYS_TOKEN_URL")
        or PRE_PRODUCTION_TOKEN_URL
    )


def _redacted(text: str) -> str:
    from ._redact import Redactor, shown

    secrets = [os.environ.get("SEMANSYS_CLIENT_SECRET"), os.environ.get("SEMANSYS_PASSWORD")]
    # Not cut here: _fail cuts, and says how much it cut.
    return shown(text, Redactor([*secrets, *_read_secrets]), sys.maxsize)


def _verbose() -> None:
    import logging

    class StderrHandler(logging.Handler):
        """Writes to whatever ``sys.stderr`` is when a record comes (nowhere when
        it is closed: never to standard output)."""

        def emit(self, record: logging.LogRecord) -> None:
            _err(self.format(record))

    logger = logging.getLogger("semansys_auth")
    if not any(type(h).__name__ == "StderrHandler" for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    try:
        return _parser().parse_args(argv)
    except SystemExit as exit:
        if exit.code == 0:
            # --help or --version: argparse wrote it, unflushed; a failure to
            # write it is reported here, not as noise at exit.
            _write("")
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns (or exits with) a documented exit code."""
    _open_standard_descriptors()
    _read_secrets.clear()
    try:
        args = _parse(argv)
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
                raise _UsageError(f"{option} applies to the token, inspect and cache commands only")
        if sys.stdout is None:
            # Found before any prompt, token request or change to the cache.
            raise _OutputError("it is closed")
        if getattr(args, "verbose", False):
            _verbose()
        command = {
            "token": _cmd_token,
            "inspect": _cmd_inspect,
            "cache": _cmd_cache,
            "emulator": _cmd_emulator,
            "demo": _cmd_demo,
        }[args.command]
        return _run(command, args)
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, "interrupted")
    except BrokenPipeError:
        # Output written by other means than _write (the demo): the reader went away.
        _silence(sys.stdout)
        _fail(
            EXIT_OUTPUT, "cannot write the output to standard output (the reader closed the pipe)"
        )
    except _OutputError as exc:
        _fail(EXIT_OUTPUT, f"cannot write the output to standard output ({exc})")
    except _CacheError as exc:
        _fail(EXIT_CACHE, str(exc))
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
    except (
        SystemExit,
        KeyboardInterrupt,
        BrokenPipeError,
        _UsageError,
        _OutputError,
        _CacheError,
    ):
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
