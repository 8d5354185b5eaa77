"""semansys-auth: drop-in OAuth 2.0 auth for the Semansys API, for requests,
httpx, httpx2, aiohttp and niquests.

Names are imported on first use (PEP 562), so that ``import semansys_auth`` and
the ``semansys-auth`` command load only what they need.
"""

from __future__ import annotations

import importlib

from ._version import __version__

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._auth import SemansysAuth
    from ._cache import CacheLock, MemoryTokenCache, TokenCache
    from ._errors import (
        BadTokenRequestError,
        ClientCredentialsError,
        MalformedTokenResponseError,
        SemansysAuthError,
        TokenEndpointUnavailableError,
        UserCredentialsError,
    )
    from ._file_cache import FileTokenCache
    from ._redis_cache import RedisTokenCache
    from ._token import Token, TokenInfo
    from ._token_url import PRE_PRODUCTION_TOKEN_URL

_WHERE = {
    "PRE_PRODUCTION_TOKEN_URL": "._token_url",
    "BadTokenRequestError": "._errors",
    "CacheLock": "._cache",
    "ClientCredentialsError": "._errors",
    "FileTokenCache": "._file_cache",
    "MalformedTokenResponseError": "._errors",
    "MemoryTokenCache": "._cache",
    "RedisTokenCache": "._redis_cache",
    "SemansysAuth": "._auth",
    "SemansysAuthError": "._errors",
    "Token": "._token",
    "TokenCache": "._cache",
    "TokenEndpointUnavailableError": "._errors",
    "TokenInfo": "._token",
    "UserCredentialsError": "._errors",
}

__all__ = [
    "PRE_PRODUCTION_TOKEN_URL",
    "BadTokenRequestError",
    "CacheLock",
    "ClientCredentialsError",
    "FileTokenCache",
    "MalformedTokenResponseError",
    "MemoryTokenCache",
    "RedisTokenCache",
    "SemansysAuth",
    "SemansysAuthError",
    "Token",
    "TokenCache",
    "TokenEndpointUnavailableError",
    "TokenInfo",
    "UserCredentialsError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'semansys_auth' has no attribute {name!r}")
    from ._fork import IMPORTING

    with IMPORTING:  # a fork waits for it: see _fork
        value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
