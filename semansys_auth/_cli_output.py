"""The command's standard streams, its failures and their exit codes.

Standard output carries the command's output and nothing else: ``write`` flushes
each piece, so that a failure to write (standard output closed, a full disk, a
reader that went away) is caught where it happens and exits with its own code,
6. Errors and ``-v`` log lines go to standard error through ``err``, or nowhere
when it is closed (Python would send ``print(file=None)`` to standard output,
where ``$(semansys-auth token 2>&-)`` would take an error for the token).

Every failure is one line, ``semansys-auth: error: ...``, made by ``fail``: its
unprintable characters escaped, any long value cut (saying how much), and the
secrets of this run (from the environment, a prompt or standard input) masked.
"""

from __future__ import annotations

import os
import re
import sys

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
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
MAX_QUOTE = 200  # the longest run of one value a message shows whole
_MAX_MESSAGE = 900  # the longest message, before the "semansys-auth: error: " prefix

# Secrets read from a prompt or from standard input: kept out of error messages too.
read_secrets: list[str] = []


class UsageError(Exception):
    """A usage or configuration error; the argument says what and how to fix it."""


class OutputError(Exception):
    """Standard output could not be written; the argument is why."""


class CacheError(Exception):
    """The token cache could not be reached or changed; the argument says so."""


# -- the standard streams -------------------------------------------------------------


def silence(stream: Any) -> None:
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


class CheckedOutput:
    """Standard output for code that prints: a failed write or flush raises
    ``OutputError``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        write(text, flush=False, stream=self._stream)
        return len(text)

    def flush(self) -> None:
        write("", stream=self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def write(text: str, *, flush: bool = True, stream: Any = None) -> None:
    """Write the command's output to standard output, flushed here, so that a
    failure is caught here (and not at exit).

    Raises:
        OutputError: standard output is closed, full or gone.
    """
    if stream is None:
        stream = sys.stdout
    if stream is None:
        raise OutputError("it is closed")
    try:
        stream.write(text)
        if flush:
            stream.flush()
    except BrokenPipeError:
        silence(stream)
        raise OutputError("the reader closed the pipe") from None
    except (OSError, ValueError, UnicodeEncodeError) as exc:
        silence(stream)
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise OutputError(reason) from None


def err(line: str) -> None:
    """One line on standard error, or nowhere when it is closed or broken:
    never on standard output."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError, UnicodeEncodeError):
        silence(stream)


def open_standard_descriptors() -> None:
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


def log_to_stderr() -> None:
    """``-v``: the package's log records, each as one line through ``err``."""
    import logging

    class StderrHandler(logging.Handler):
        """Writes to whatever ``sys.stderr`` is when a record comes (nowhere when
        it is closed: never to standard output)."""

        def emit(self, record: logging.LogRecord) -> None:
            err(self.format(record))

    logger = logging.getLogger("semansys_auth")
    if not any(type(h).__name__ == "StderrHandler" for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


# -- failures -------------------------------------------------------------------------


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_LONG_RUN = re.compile(rf"\S{{{MAX_QUOTE + 1},}}")


def _cut(text: str, head: int, tail: int) -> str:
    """The start and end of ``text``, saying how many characters were cut between."""
    cut = len(text) - head - tail
    return f"{text[:head]}...[{cut} characters cut]...{text[len(text) - tail :]}"


def bounded(message: str) -> str:
    """One line of at most about ``_MAX_MESSAGE`` characters, whatever the message
    quotes (an argument may hold a newline, or be 120 KB long)."""
    message = _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], message)
    quote_head = MAX_QUOTE * 3 // 4
    message = _LONG_RUN.sub(lambda m: _cut(m.group(), quote_head, MAX_QUOTE - quote_head), message)
    if len(message) > _MAX_MESSAGE:
        message = _cut(message, _MAX_MESSAGE * 2 // 3, _MAX_MESSAGE // 4)
    return message


def fail(code: int, message: str) -> NoReturn:
    """Print ``message`` as the one error line (secrets masked) and exit with ``code``."""
    secrets = [os.environ.get("SEMANSYS_CLIENT_SECRET"), os.environ.get("SEMANSYS_PASSWORD")]
    for secret in (*secrets, *read_secrets):
        # Shorter texts are not worth hiding, and would mangle the message.
        if secret and len(secret.strip()) >= 4:
            for form in (secret, repr(secret)[1:-1]):
                message = message.replace(form, "***")
    err(f"{PROG}: error: {bounded(message)}")
    raise SystemExit(code)


def redacted(text: str) -> str:
    """``text`` with the secrets of this run masked (not cut: ``fail`` cuts, and
    says how much it cut)."""
    from ._redact import Redactor, shown

    secrets = [os.environ.get("SEMANSYS_CLIENT_SECRET"), os.environ.get("SEMANSYS_PASSWORD")]
    return shown(text, Redactor([*secrets, *read_secrets]), sys.maxsize)


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


def is_transport_error(exc: Exception) -> bool:
    """Whether ``exc`` is a failure to reach the token endpoint."""
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.RequestException):
        return True
    return isinstance(exc, OSError)


def unreachable(exc: BaseException, args: argparse.Namespace) -> str:
    """The message for a token endpoint that could not be reached."""
    import errno
    import socket

    from ._token_url import PRE_PRODUCTION_TOKEN_URL

    url = (
        getattr(args, "token_url", None)
        or os.environ.get("SEMANSYS_TOKEN_URL")
        or PRE_PRODUCTION_TOKEN_URL
    )
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
