"""The commands that need a token or a cache: ``token``, ``inspect`` and
``cache clear``, with what they share: the credentials (options, environment,
the secrets from a prompt or ``--password-stdin``), the token cache the options
choose, and the session that gets a token.

With a warm token cache, ``token`` imports no HTTP library at all: it drives
the token core itself, and imports requests only when a token request is due.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ._cli_output import (
    EXIT_OK,
    EXIT_TOKEN_ERROR,
    CacheError,
    UsageError,
    fail,
    read_secrets,
    redacted,
    write,
)

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

CREDENTIAL_OPTIONS = ("client_id", "username", "token_url", "scope")
TOKEN_COMMANDS = ("token", "inspect", "cache")


def default_cache_dir() -> Path:
    """``$SEMANSYS_CACHE_DIR``, else the user's cache directory (e.g. ~/.cache/semansys-auth)."""
    configured = os.environ.get("SEMANSYS_CACHE_DIR", "").strip()
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("semansys-auth")) / "tokens"


# -- secrets and configuration -------------------------------------------------------


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
        raise UsageError("nothing entered") from None
    if not value:
        raise UsageError("nothing entered")
    read_secrets.append(value)
    return value


def _password_from_stdin() -> str:
    """The first line of standard input, read with a bound: an endless input
    (``</dev/zero``) is refused once it is longer than a password may be."""
    from ._config import _MAX_TEXT

    stream = sys.stdin
    if stream is None:
        raise UsageError(
            "--password-stdin: standard input is closed: pipe the password in "
            "(printf '%s\\n' \"$PASSWORD\" | semansys-auth token --password-stdin)"
        )
    try:
        # At most the longest password, its line end (\r\n) and one more character.
        line = stream.readline(_MAX_TEXT + 3)
    except UnicodeDecodeError:
        raise UsageError("--password-stdin: standard input is not UTF-8 text") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UsageError(f"--password-stdin: cannot read standard input ({reason})") from None
    password = line.rstrip("\r\n")
    if len(password) > _MAX_TEXT:
        raise UsageError(
            f"--password-stdin: the first line of standard input is longer than {_MAX_TEXT} "
            "characters, the longest password accepted: give the password alone on one line"
        )
    if not password.strip():
        raise UsageError("--password-stdin: standard input holds no password")
    read_secrets.append(password)
    return password


def _credentials(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """The credential options, and the secrets read from standard input or a
    prompt. Every missing setting is named in one message, before any prompt."""
    given: dict[str, Any] = {
        name: getattr(args, name) for name in CREDENTIAL_OPTIONS if getattr(args, name) is not None
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
        raise UsageError(f"missing configuration: set {names}{hint}")
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
        raise UsageError(redacted(str(exc))) from None


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
            raise UsageError(redacted(str(exc))) from None

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
    ``CacheError`` that names the cache, never a credential."""
    clear = getattr(cache, "clear", None)
    if not callable(clear):
        raise CacheError(f"the token cache {_where(cache)} cannot be cleared (it has no clear())")
    try:
        return int(clear(key))
    except Exception as exc:  # OSError, UnsafeCacheError, redis.RedisError and kin
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CacheError(
            f"cannot clear the token cache {_where(cache)} ({type(exc).__name__}: "
            f"{redacted(reason)})"
        ) from None


def _entries(count: int) -> str:
    return f"{count} cache {'entry' if count == 1 else 'entries'}"


# -- the commands ---------------------------------------------------------------------


def cmd_token(args: argparse.Namespace) -> int:
    """``token [--json] [--refresh]``."""
    session = _Session(args)
    cache = session.core.cache
    if args.refresh and cache is not None:
        _clear(cache, session.core.cache_key())
    token = session.token()
    if args.json:
        info = session.core.info()
        write(json.dumps(info.as_dict() if info else {}, indent=2) + "\n")
    else:
        write(token.access_token + "\n")
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    """``cache clear [--all]`` (one action so far)."""
    if args.all:
        given = [name for name in (*CREDENTIAL_OPTIONS, "password_stdin") if getattr(args, name)]
        if given:
            option = "--" + given[0].replace("_", "-")
            raise UsageError(
                f"{option} does not apply to cache clear --all, which removes the entries of "
                "every identity: leave out --all to remove this identity's entries only"
            )
        if args.no_cache:
            raise UsageError("cache clear --all and --no-cache: no cache to clear")
        cache = _chosen_cache(args)
        count = _clear(cache, None)
    else:
        if args.no_cache:
            raise UsageError("cache clear and --no-cache: no cache to clear")
        session = _Session(args)
        cache = session.core.cache
        count = _clear(cache, session.core.cache_key())
    write(f"removed {_entries(count)} from {_where(cache)}\n")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """``inspect [--json]``: the claims of the access token, decoded, not verified."""
    import datetime as dt

    from ._redact import Redactor, shown
    from ._token import jwt_claims

    session = _Session(args)
    claims = jwt_claims(session.token().access_token)
    if claims is None:
        fail(EXIT_TOKEN_ERROR, "the access token is not a JWT: it has no claims to show")
    if args.json:
        write(json.dumps({"verified": False, "claims": claims}, indent=2, sort_keys=True) + "\n")
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
    write("\n".join(lines) + "\n")
    return EXIT_OK
