"""The token request and answer as the HTTP adapters exchange them with the
core: :class:`EndpointRequest` (what to POST), :class:`EndpointResponse` (what
came back, bounded), and the helpers the adapters share to read an answer
(:func:`decode_body`, :func:`header`). No HTTP library is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._version import __version__

MAX_ANSWER_BYTES = 1024 * 1024
"""Largest token answer read (after decompression); a longer one is an error and
nothing beyond this is read."""

MAX_401_BODY = 64 * 1024
"""Most of a 401's body read before the request is sent again: a longer (or
endless) body is cut there and its connection closed, not drained."""

USER_AGENT = f"semansys-auth/{__version__}"

_FORM_HEADERS: Mapping[str, str] = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
    # Compressed answers are decoded by us, within MAX_ANSWER_BYTES; asking for
    # none keeps decompression bombs off the usual path.
    "Accept-Encoding": "identity",
    "User-Agent": USER_AGENT,
}


class EndpointRequest:
    """A request to send to the token endpoint: POST ``body`` (a form) to ``url``.

    ``timeout`` bounds the whole exchange, from connect to the last byte read.
    (A plain class, not a dataclass: those cost start-up time.)
    """

    __slots__ = ("body", "grant_type", "headers", "timeout", "url")

    method = "POST"

    def __init__(self, url: str, body: bytes, grant_type: str, timeout: float) -> None:
        self.url = url
        self.body = body
        self.grant_type = grant_type
        self.timeout = timeout
        self.headers = dict(_FORM_HEADERS)

    def __repr__(self) -> str:  # not the body: it holds the password or refresh token
        return f"EndpointRequest({self.method} {self.url}, grant_type={self.grant_type!r})"


class EndpointResponse:
    """What the token endpoint answered.

    ``headers``: any mapping (looked up case-insensitively). ``body``: at most
    :data:`MAX_ANSWER_BYTES`, decoded; ``truncated`` when there was more.
    ``redirected_to``: set when the HTTP client followed a redirect of the token
    request (the answer then comes from elsewhere and is not trusted).
    """

    __slots__ = ("body", "headers", "redirected_to", "status_code", "truncated")

    def __init__(
        self,
        status_code: int,
        headers: Mapping[str, str],
        body: bytes,
        truncated: bool = False,
        redirected_to: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.body = body
        self.truncated = truncated
        self.redirected_to = redirected_to

    def __repr__(self) -> str:
        return f"EndpointResponse({self.status_code}, {len(self.body)} bytes)"


def decode_body(raw: bytes, content_encoding: str | None) -> tuple[bytes, bool]:
    """Undo a gzip or deflate ``Content-Encoding`` within :data:`MAX_ANSWER_BYTES`.

    Written by hand because the HTTP clients decompress without a bound. Returns
    the body and whether it was cut. An unknown or broken encoding leaves the
    bytes as they are: they are then not JSON, and the answer is classified by
    its status.
    """
    import zlib

    encoding = content_encoding.strip().lower() if content_encoding else None
    truncated = len(raw) > MAX_ANSWER_BYTES
    raw = raw[:MAX_ANSWER_BYTES]
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS if raw[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        return raw, truncated  # none, identity, or one we do not know
    decoder = zlib.decompressobj(wbits)
    try:
        body = decoder.decompress(raw, MAX_ANSWER_BYTES + 1)
    except zlib.error:
        return raw, truncated
    return body[:MAX_ANSWER_BYTES], truncated or len(body) > MAX_ANSWER_BYTES


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name in ``headers`` (``name``
    in lower case): the first one, for a mapping with several."""
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value if isinstance(value, str) else None
    return None


__all__ = [
    "MAX_ANSWER_BYTES",
    "USER_AGENT",
    "EndpointRequest",
    "EndpointResponse",
    "decode_body",
    "header",
]
