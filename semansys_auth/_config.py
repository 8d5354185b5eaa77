"""Options: checked once, at construction, with messages that name the problem
and the fix; read from the ``SEMANSYS_*`` environment; and the pieces every
adapter shares (core, lock, settings). Nothing here touches the network or
the filesystem.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping

from ._answers import SCOPE_TOKEN
from ._core import TokenCore
from ._drive import Shell
from ._endpoint import TokenEndpoint
from ._fork import IMPORTING
from ._locks import RenewalLock
from ._policy import Policy
from ._token import Token, TokenInfo
from ._token_url import PRE_PRODUCTION_TOKEN_URL, check_token_url

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ENV_PREFIX = "SEMANSYS_"
REQUIRED = ("client_id", "client_secret", "username", "password")
OPTIONAL = ("token_url", "scope", "api_version", "token_cache")

_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?\Z")
_MAX_TEXT = 4096


class Settings:
    """What the adapters need besides the core: how to dress a request."""

    __slots__ = ("api_version", "requests_session")

    def __init__(self, api_version: str | None, requests_session: Any) -> None:
        self.api_version = api_version
        self.requests_session = requests_session

    def authorize(self, headers: Any, token: Token) -> None:
        """Put the token (and ``x-api-version``) on a request's headers."""
        headers["Authorization"] = token.authorization
        if self.api_version is not None and "x-api-version" not in headers:
            headers["x-api-version"] = self.api_version


def check_text(name: str, value: object) -> str:
    """A credential or name: a non-blank string of at most 4096 characters that
    can be sent (no NUL, valid Unicode)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} is {'empty' if not value else 'blank'}: set it")
    if len(value) > _MAX_TEXT:
        raise ValueError(f"{name} is longer than {_MAX_TEXT} characters")
    if "\0" in value:
        raise ValueError(f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{name} contains bytes that are not valid text (an environment variable "
            "in another encoding?)"
        ) from None
    return value


def check_scope(scope: object) -> str | None:
    """A scope as one space-separated string; None lets the server choose."""
    if scope is None:
        return None
    if isinstance(scope, str):
        items = scope.split()
    elif isinstance(scope, Iterable) and not isinstance(scope, (bytes, bytearray, Mapping)):
        items = list(scope)
    else:
        raise TypeError(f"scope must be a string or a list of strings, got {type(scope).__name__}")
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"scope entries must be strings, got {type(item).__name__}")
        if not SCOPE_TOKEN.match(item):
            raise ValueError(
                f"scope entries must be non-empty and made of visible ASCII without spaces, "
                f"quotes or backslashes: {item!r}"
            )
    return " ".join(items) or None


def check_number(name: str, value: object, *, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if number < minimum or (strict and number == minimum):
        relation = "greater than" if strict else "at least"
        raise ValueError(f"{name} must be {relation} {minimum:g}, got {value!r}")
    return number


def check_api_version(value: object) -> str | None:
    if value is None:
        return None
    text = check_text("api_version", value)
    if not _HEADER_VALUE.match(text):
        raise ValueError(
            f"api_version must be visible ASCII (it is sent as a header), got {text!r}"
        )
    return text


def check_cache(cache: object) -> object:
    if cache is None:
        return None
    if not (callable(getattr(cache, "load", None)) and callable(getattr(cache, "save", None))):
        raise TypeError(
            "token_cache must have load(key) and save(key, entry) methods, e.g. "
            "FileTokenCache(directory) or MemoryTokenCache()"
        )
    return cache


def cache_wait(timeout: float, cache: object) -> float:
    """How long a renewal waits for another process's cache lock: one token
    request ``timeout``, or the cache's own ``max_lock_wait`` when shorter (a
    Redis lease). Then it goes on without the lock, with a warning."""
    bound = getattr(cache, "max_lock_wait", None)
    if isinstance(bound, (int, float)) and not isinstance(bound, bool) and 0 <= bound < timeout:
        return float(bound)
    return timeout


def build(
    *,
    client_id: object,
    client_secret: object,
    username: object,
    password: object,
    # The defaults of SemansysAuth.__init__, repeated (see the comment there).
    token_url: object = PRE_PRODUCTION_TOKEN_URL,
    scope: object = None,
    leeway: object = 60.0,
    timeout: object = 30.0,
    max_retries: object = 3,
    backoff: object = 0.5,
    max_backoff: object = 8.0,
    retry_after_cap: object = 30.0,
    credentials_cooldown: object = 60.0,
    api_version: object = None,
    token_cache: object = None,
    on_token: object = None,
    requests_session: object = None,
) -> tuple[Shell, Settings]:
    """Check every option and build the core in its shell, and the settings."""
    if (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, int)
        or not 0 <= max_retries <= 100
    ):
        raise ValueError(f"max_retries must be a whole number from 0 to 100, got {max_retries!r}")
    if on_token is not None and not callable(on_token):
        raise TypeError("on_token must be callable: it receives a TokenInfo")
    if requests_session is not None and not callable(getattr(requests_session, "request", None)):
        raise TypeError("requests_session must be a requests.Session")
    seconds = check_number("timeout", timeout, minimum=0, strict=True)
    endpoint = TokenEndpoint(
        token_url=check_token_url(token_url),
        client_id=check_text("client_id", client_id),
        client_secret=check_text("client_secret", client_secret),
        username=check_text("username", username),
        password=check_text("password", password),
        scope=check_scope(scope),
        timeout=seconds,
    )
    policy = Policy(
        leeway=check_number("leeway", leeway, minimum=0),
        max_retries=max_retries,
        backoff=check_number("backoff", backoff, minimum=0),
        max_backoff=check_number("max_backoff", max_backoff, minimum=0),
        retry_after_cap=check_number("retry_after_cap", retry_after_cap, minimum=0),
        credentials_cooldown=check_number("credentials_cooldown", credentials_cooldown, minimum=0),
    )
    callback: Callable[[TokenInfo], object] | None = on_token
    cache = check_cache(token_cache)
    core = TokenCore(
        endpoint,
        policy,
        cache=cache,
        on_token=callback,
        clock=time.time,
        monotonic=time.monotonic,
        jitter=_jitter,
        cache_wait=cache_wait(seconds, cache),
    )
    settings = Settings(
        api_version=check_api_version(api_version),
        requests_session=requests_session,
    )
    return Shell(core, RenewalLock()), settings


def _jitter() -> float:
    if "random" not in sys.modules:  # on the first retry, not at start-up (see _fork)
        with IMPORTING:
            import random
    import random

    return random.random()


def cache_from_setting(value: str, source: str) -> object:
    """A token cache from a setting that is either a directory or a Redis URL."""
    text = value.strip()
    if not text:
        raise ValueError(f"{source} is blank: give a directory or a redis:// URL, or unset it")
    if re.match(r"(?i)(rediss?|unix)://", text):
        from ._redis_cache import RedisTokenCache

        return RedisTokenCache.from_url(text)
    if "://" in text:
        raise ValueError(
            f"{source} must be a directory or a redis://, rediss:// or unix:// URL, got "
            f"a URL of another scheme"
        )
    from ._file_cache import FileTokenCache

    return FileTokenCache(text)


def env_options(environ: Mapping[str, str] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments from the ``SEMANSYS_*`` variables, under ``overrides``.

    Raises:
        ValueError: naming every required variable that is missing or blank.
    """
    env = os.environ if environ is None else environ
    options: dict[str, Any] = {}
    missing = []
    for name in REQUIRED:
        variable = ENV_PREFIX + name.upper()
        if name in overrides:
            continue
        value = env.get(variable)
        if value is None or not value.strip():
            missing.append(variable)
        else:
            options[name] = value
    if missing:
        raise ValueError(f"missing configuration: set {', '.join(missing)}")
    for name in OPTIONAL:
        variable = ENV_PREFIX + name.upper()
        value = env.get(variable)
        if name in overrides or value is None or not value.strip():
            continue
        options[name] = cache_from_setting(value, variable) if name == "token_cache" else value
    options.update(overrides)
    return options
