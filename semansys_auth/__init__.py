"""semansys-auth: drop-in OAuth 2.0 auth for the Semansys API, for requests and httpx.

>>> import requests, semansys_auth
>>> session = requests.Session()
>>> session.auth = semansys_auth.SemansysAuth(
...     client_id="...", client_secret="...", username="you@example.com", password="...")
"""

from ._auth import PRE_PRODUCTION_TOKEN_URL, SemansysAuth
from ._cache import CacheLock, FileTokenCache, MemoryTokenCache, TokenCache
from ._errors import (
    BadTokenRequestError,
    ClientCredentialsError,
    MalformedTokenResponseError,
    SemansysAuthError,
    TokenEndpointUnavailableError,
    UserCredentialsError,
)
from ._token import Token, TokenInfo

__version__ = "0.1.0"

__all__ = [
    "PRE_PRODUCTION_TOKEN_URL",
    "BadTokenRequestError",
    "CacheLock",
    "ClientCredentialsError",
    "FileTokenCache",
    "MalformedTokenResponseError",
    "MemoryTokenCache",
    "SemansysAuth",
    "SemansysAuthError",
    "Token",
    "TokenCache",
    "TokenEndpointUnavailableError",
    "TokenInfo",
    "UserCredentialsError",
    "__version__",
]
