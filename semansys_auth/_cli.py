"""The ``semansys-auth`` command.

    semansys-auth token [--json] [--no-cache] [--password-stdin]
    semansys-auth inspect [--json] [--no-cache] [--password-stdin]
    semansys-auth emulator [--port N]
    semansys-auth demo

Credentials come from the ``SEMANSYS_*`` environment variables; ``--client-id``,
``--username``, ``--token-url`` and ``--scope`` override them. Secrets are never
taken as arguments (they would show in ``ps`` and shell history): the client
secret and password come from the environment, from a prompt when standard
input is a terminal, or the password from ``--password-stdin``.

Exit codes: 0 success; 2 usage or configuration error; 3 credentials rejected
(client or user); 4 token endpoint unreachable or unavailable; 5 any other
token error (bad request, malformed answer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import platformdirs
import requests

from . import __version__
from ._auth import ENV_PREFIX, SemansysAuth
from ._cache import FileTokenCache
from ._errors import (
    ClientCredentialsError,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from ._token import jwt_claims

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_UNAVAILABLE = 4
EXIT_TOKEN_ERROR = 5

PROG = "semansys-auth"


class _UsageError(Exception):
    pass


def default_cache_dir() -> Path:
    """``$SEMANSYS_CACHE_DIR``, else the user's cache directory (e.g. ~/.cache/semansys-auth)."""
    configured = os.environ.get(ENV_PREFIX + "CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(platformdirs.user_cache_dir("semansys-auth")) / "tokens"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Get and inspect Semansys API tokens; run an offline Semansys emulator.",
        epilog=(
            "exit codes: 0 ok, 2 usage or configuration, 3 credentials rejected, "
            "4 token endpoint unreachable or unavailable, 5 other token error"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_credentials(sub: argparse.ArgumentParser) -> None:
        group = sub.add_argument_group(
            "credentials",
            "default: the SEMANSYS_CLIENT_ID, SEMANSYS_CLIENT_SECRET, SEMANSYS_USERNAME, "
            "SEMANSYS_PASSWORD, SEMANSYS_TOKEN_URL and SEMANSYS_SCOPE environment variables",
        )
        group.add_argument("--client-id", help="overrides SEMANSYS_CLIENT_ID")
        group.add_argument("--username", help="overrides SEMANSYS_USERNAME (an e-mail address)")
        group.add_argument("--token-url", help="overrides SEMANSYS_TOKEN_URL")
        group.add_argument("--scope", help="overrides SEMANSYS_SCOPE (space-separated)")
        group.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
        cache = sub.add_argument_group("token cache")
        cache.add_argument(
            "--no-cache", action="store_true", help="neither read nor write the token cache"
        )
        cache.add_argument(
            "--cache-dir",
            type=Path,
            help="cache directory (default: $SEMANSYS_CACHE_DIR or the user cache directory)",
        )
        sub.add_argument(
            "-v", "--verbose", action="store_true", help="log each step to stderr (no secrets)"
        )

    token = commands.add_parser(
        "token",
        help='print an access token (for curl -H "Authorization: Bearer $(semansys-auth token)")',
        description="Print a valid access token on stdout, and nothing else.",
    )
    with_credentials(token)
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
    )
    with_credentials(inspect)
    inspect.add_argument("--json", action="store_true", help="print the claims as JSON")

    emulator = commands.add_parser(
        "emulator",
        help="run the offline Semansys identity emulator in the foreground",
        description="Serve a Semansys-style token endpoint and echo API on 127.0.0.1 until "
        "interrupted, and print the SEMANSYS_* variables that point at it.",
    )
    emulator.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    emulator.add_argument(
        "--lifetime", type=float, default=3600, help="access token lifetime in seconds"
    )
    commands.add_parser(
        "demo",
        help="walk through the whole flow against an in-process emulator",
        description="Start the emulator and show, with requests, httpx and httpx async: "
        "the first request fetching a token, reuse, server-side expiry, and the 401 "
        "answered by one refresh and one resend.",
    )
    return parser


def _secret(
    name: str, prompt: str, *, from_stdin: bool, env: dict[str, str], overrides: dict[str, Any]
) -> None:
    variable = ENV_PREFIX + name.upper()
    if from_stdin:
        line = sys.stdin.readline()
        if not line.strip():
            raise _UsageError(f"--password-stdin: standard input holds no {name}")
        overrides[name] = line.rstrip("\r\n")
    elif env.get(variable):
        return
    elif sys.stdin.isatty():
        value = getpass.getpass(prompt)
        if not value:
            raise _UsageError(f"no {name} entered")
        overrides[name] = value
    else:
        raise _UsageError(
            f"no {name}: set {variable}"
            + (", pass --password-stdin," if name == "password" else "")
            + " or run in a terminal to be prompted"
        )


def _auth(args: argparse.Namespace) -> SemansysAuth:
    env = dict(os.environ)
    overrides: dict[str, Any] = {}
    for name in ("client_id", "username", "token_url", "scope"):
        value = getattr(args, name)
        if value:
            overrides[name] = value
    _secret(
        "client_secret",
        "Semansys client secret: ",
        from_stdin=False,
        env=env,
        overrides=overrides,
    )
    _secret(
        "password",
        "Semansys password: ",
        from_stdin=args.password_stdin,
        env=env,
        overrides=overrides,
    )
    if not args.no_cache:
        overrides["token_cache"] = FileTokenCache(args.cache_dir or default_cache_dir())
    try:
        return SemansysAuth.from_env(env, **overrides)
    except (ValueError, TypeError) as exc:
        raise _UsageError(str(exc)) from None


def _local_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _cmd_token(args: argparse.Namespace) -> int:
    auth = _auth(args)
    token = auth.get_token()
    if args.json:
        info = auth.token_info
        assert info is not None
        print(json.dumps(info.as_dict(), indent=2))
    else:
        print(token)
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    auth = _auth(args)
    claims = jwt_claims(auth.get_token())
    if claims is None:
        _fail(EXIT_TOKEN_ERROR, "the access token is not a JWT: it has no claims to show")
    if args.json:
        print(json.dumps({"verified": False, "claims": claims}, indent=2, sort_keys=True))
        return EXIT_OK
    print("Claims of the access token (decoded, signature NOT verified):")
    rows: list[tuple[str, str]] = []
    for key, label in (("sub", "subject"), ("iss", "issuer"), ("aud", "audience")):
        if key in claims:
            rows.append((label, str(claims[key])))
    for key in ("client_id", "scope"):
        if key in claims:
            value = claims[key]
            rows.append((key, " ".join(value) if isinstance(value, list) else str(value)))
    for key, label in (("iat", "issued at"), ("exp", "expires at")):
        value = claims.get(key)
        if isinstance(value, (int, float)):
            shown = _local_time(value)
            if key == "exp":
                left = value - dt.datetime.now().timestamp()
                shown += f" (in {left / 60:.0f} min)" if left > 0 else " (expired)"
            rows.append((label, shown))
    width = max(len(label) for label, _ in rows) if rows else 0
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    import threading

    from .testing import SemansysEmulator

    with SemansysEmulator(port=args.port, access_token_lifetime=args.lifetime) as emulator:
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
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo()


def _fail(code: int, message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "verbose", False):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        logger = logging.getLogger("semansys_auth")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    command = {
        "token": _cmd_token,
        "inspect": _cmd_inspect,
        "emulator": _cmd_emulator,
        "demo": _cmd_demo,
    }[args.command]
    try:
        return command(args)
    except _UsageError as exc:
        _fail(EXIT_USAGE, str(exc))
    except (ClientCredentialsError, UserCredentialsError) as exc:
        _fail(EXIT_REJECTED, str(exc))
    except TokenEndpointUnavailableError as exc:
        _fail(EXIT_UNAVAILABLE, str(exc))
    except SemansysAuthError as exc:
        _fail(EXIT_TOKEN_ERROR, str(exc))
    except requests.RequestException as exc:
        # The message of a connection error names host and port only.
        _fail(EXIT_UNAVAILABLE, f"cannot reach the token endpoint: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        _fail(130, "interrupted")
