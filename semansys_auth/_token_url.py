"""The token URL: the default one, and the check that refuses a URL that would
send the password in clear text or elsewhere.

oauthlib refuses non-https URLs at request time unless a process-wide
environment variable is set; we check the URL once, at construction, and allow
plain http on loopback hosts only.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

PRE_PRODUCTION_TOKEN_URL = "https://oidc-pre.semansys.com/connect/token"
"""The Semansys pre-production token endpoint (the default ``token_url``)."""

_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")


def check_token_url(url: object) -> str:
    """Refuse a token URL that would send the password in clear text or elsewhere.

    ``https`` is required, except on loopback hosts (tests, the emulator, a local
    tunnel): ``localhost``, 127.0.0.0/8 and ``::1``.

    A URL with an ``@`` anywhere is refused first, without being quoted: a user
    name and password may hide in it in forms that a parser reads as a host and
    port, a path or a fragment (``https://jane:4433#pass@host/t``), and a later
    message, a log line or the command would then show them. So no message
    quotes a password, whichever check fails.

    Raises:
        TypeError: ``url`` is not a string.
        ValueError: it is not an absolute http(s) URL, holds a user or password,
            or is plain http to a host that is not loopback.
    """
    if not isinstance(url, str):
        raise TypeError(f"token_url must be a string, got {type(url).__name__}")
    example = f"such as {PRE_PRODUCTION_TOKEN_URL!r}"
    if not url.strip():
        raise ValueError(f"token_url is empty: give the token endpoint's URL, {example}")
    if "@" in url:
        raise ValueError(
            "token_url must not contain a user name or password (it has an '@'): the "
            "client credentials go in client_id and client_secret; write an '@' of the "
            "path as %40"
        )
    quoted = repr(url)
    if _CONTROL_OR_SPACE.search(url):
        raise ValueError(f"token_url {quoted} contains spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        raise ValueError(f"token_url {quoted} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValueError(f"token_url must be an absolute http(s) URL, {example}; got {quoted}")
    if parts.scheme == "http" and not is_loopback(hostname):
        raise ValueError(
            f"token_url {quoted} is not https: the password and client secret would travel "
            "in clear text. Use https (plain http is accepted for localhost, 127.0.0.0/8 "
            "and ::1 only)."
        )
    return url


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a host name as ``urlsplit(...).hostname`` gives it: no
    brackets, no port) is this machine."""
    import ipaddress

    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["PRE_PRODUCTION_TOKEN_URL", "check_token_url", "is_loopback"]
