"""What the emulator records of each request it answers: never a secret."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["RecordedRequest"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator answered. Secrets are never recorded (no password,
    client secret, token, form value other than the grant type, or header other
    than `x-api-version`); the user name is masked.

    The request log ([requests][semansys_auth.testing.SemansysEmulator.requests])
    keeps the `"token"` and `"api"` ones; the
    [on_request][semansys_auth.testing.SemansysEmulator.on_request] hook gets
    every one.
    """

    kind: Literal["token", "api", "other"]
    """`"token"`: a POST to the token endpoint; `"api"`: a request to the echo API
    (`/api` and below); `"other"`: any other path, or another method on the token
    endpoint (answered 404 or 405, and not kept in the request log)."""
    method: str
    """The HTTP method, e.g. `"POST"`."""
    path: str
    """The path, without the query string (which may carry anything)."""
    status: int
    """The HTTP status of the answer."""
    grant_type: str | None = None
    """The `grant_type` form field of a token request, as sent (None if absent)."""
    client_id: str | None = None
    """The client id of a token request (from the form or HTTP Basic), if any."""
    username: str | None = None
    """The user name of a password grant, masked: `j***@example.com`."""
    api_version: str | None = None
    """The `x-api-version` header of an API request, if any."""
    at: float = field(default_factory=time.time)
    """When the answer was sent (epoch seconds)."""
    received_at: float | None = None
    """When the request arrived (epoch seconds)."""
