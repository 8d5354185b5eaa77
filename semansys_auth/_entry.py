"""The stored form of a token cache entry, shared by the file and Redis caches."""

from __future__ import annotations

import json

from ._token import Token

ENTRY_FORMAT = "semansys-auth/token-cache/1"
MAX_ENTRY_BYTES = 256 * 1024


def encode_entry(key: str, token: Token) -> str:
    """The stored form of a cache entry (file and Redis caches): JSON that names
    its format and its key, so that a misplaced or foreign entry is refused."""
    return json.dumps({"format": ENTRY_FORMAT, "key": key, "token": token.to_json()})


def decode_entry(key: str, raw: bytes | str) -> Token:
    """The token in a stored entry.

    Raises:
        ValueError: the entry is too large, not JSON, of another format or key,
            or holds an unusable token (the message never quotes a value).
    """
    if len(raw) > MAX_ENTRY_BYTES:
        raise ValueError("too large")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(data, dict) or data.get("format") != ENTRY_FORMAT:
        raise ValueError("not a semansys-auth token cache entry")
    if data.get("key") != key:
        raise ValueError("written for another key")
    return Token.from_json(data.get("token"))
