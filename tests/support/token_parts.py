"""Pieces of the token endpoint's conversation, built by hand for the tests
that need no sockets: a JWT with chosen claims, an answer of the token
endpoint, and the form fields of a token request."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

from semansys_auth._wire import EndpointRequest, EndpointResponse


def b64url(part: object) -> str:
    """One JWT segment: ``part`` as JSON (bytes are taken as they are), in
    base64url without padding."""
    raw = part if isinstance(part, bytes) else json.dumps(part).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(claims: object) -> str:
    """An unsigned JWT whose payload is ``claims`` (JSON, or bytes as they are)."""
    return f"{b64url({'alg': 'none'})}.{b64url(claims)}.sig"


def answer(
    status: int, body: Any = None, headers: dict[str, str] | None = None, **more: str
) -> EndpointResponse:
    """A token endpoint's answer: ``body`` as JSON (bytes as they are), with
    ``headers`` (a JSON Content-Type when none are given) plus ``more``."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return EndpointResponse(
        status, {**(headers or {"Content-Type": "application/json"}), **more}, raw
    )


def form(request: EndpointRequest | bytes) -> dict[str, str]:
    """The form fields of a token request (or of its body), one value each."""
    body = request if isinstance(request, bytes) else request.body
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}
