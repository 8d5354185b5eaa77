"""Keeping secrets out of messages and logs.

Every string that comes from outside (a token endpoint's answer, an exception's
text) passes through :func:`shown` before it reaches a message or a log line:
secrets are removed first, then control characters, and only then is the text
cut, so that a secret straddling the cut cannot survive in part.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

__all__ = ["Redactor", "mask_username", "shown"]

MASK = "***"
_PARTIAL = 4  # a text that starts or ends with this much of a secret has it masked


def _variants(secret: str) -> set[str]:
    """The forms a secret takes when a server echoes it back: as is, form- or
    URL-encoded (an echoed request body), JSON-escaped, HTML-escaped, or
    mis-decoded."""
    import html
    import json
    from urllib.parse import quote, quote_plus

    forms = {secret, html.escape(secret), json.dumps(secret)[1:-1]}
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    try:
        forms.update((quote_plus(secret), quote(secret, safe="")))
        # Echoed in a header as UTF-8 and read back as Latin-1 (http.client, httpx).
        forms.add(secret.encode("utf-8").decode("latin-1"))
    except UnicodeEncodeError:  # a lone surrogate (an environment in another encoding)
        pass
    return {form for form in forms if form}


class Redactor:
    """Removes known secrets, JWTs, bearer credentials and ``name=value`` pairs
    of secret-looking names from text.

    The escaped forms of the secrets are worked out on the first redaction, not
    when secrets are given: most processes never redact anything.
    """

    # Secret-looking ``name<separator>value`` pairs, and what is left alone.
    #
    # A value follows ``=`` (``password=hunter2``, ``password = x``), a quote
    # (``"password": "x"``, ``TOKEN: 'x'``, ``secret="x"``) or a colon with no
    # space after it (``access_token:eyJ...``, ``"refresh_token":"x"``): it is
    # masked, whatever it looks like. After a colon and white space, without a
    # quote, the next word is masked too (``password: hunter2``), unless it is
    # prose: a plain lower-case word (ASCII letters only, ending the word or
    # followed by sentence punctuation), as in "must not contain a user name or
    # password: the client credentials go in...". The same holds after
    # ``Bearer``/``Basic``: "sent as a bearer token" is prose; a credential
    # (anything with a digit, a capital, ``-._~+/=``) is masked. A secret that is
    # a plain lower-case word shown after ": " is thus not caught by the
    # patterns: the known secrets (given to the Redactor) are masked anyway.
    _PROSE = re.compile(r"[a-z]+[.;:!?)]*")
    _JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
    _SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+([A-Za-z0-9\-._~+/]+=*)([.;:!?)]*)")
    _PAIR = re.compile(
        r"""(?x)
        ((?i:access_token|refresh_token|id_token|client_secret|password|secret|token)
         ["']?\s*)
        ([:=]\s*)
        (["']?)
        ([^"'&\s,}]+)
        """
    )

    @classmethod
    def _scheme(cls, match: re.Match[str]) -> str:
        scheme, credential, tail = match.groups()
        if cls._PROSE.fullmatch(credential + tail):
            return match.group()
        return f"{scheme} {MASK}{tail}"

    @classmethod
    def _pair(cls, match: re.Match[str]) -> str:
        name, separator, quote, value = match.groups()
        if separator[0] == ":" and len(separator) > 1 and not quote and cls._PROSE.fullmatch(value):
            return match.group()
        return f"{name}{separator}{quote}{MASK}"

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._fixed = tuple(secret for secret in secrets if secret)
        # Tokens come and go: keep the recent ones only, so that a process that
        # runs for months does not accumulate every token it ever held.
        self._recent: deque[str] = deque(maxlen=16)
        self._ordered: tuple[str, ...] | None = None

    def _forms(self) -> tuple[str, ...]:
        ordered = self._ordered
        if ordered is None:
            every: set[str] = set()
            for secret in (*self._fixed, *self._recent):
                every |= _variants(secret)
            # Longest first, so that a secret that contains another is removed whole.
            ordered = self._ordered = tuple(sorted(every, key=lambda s: (-len(s), s)))
        return ordered

    def add(self, *secrets: str | None) -> None:
        """Also redact these (new tokens); ``None`` and empty strings are ignored."""
        for secret in secrets:
            if secret and secret not in self._recent:
                self._recent.append(secret)
                self._ordered = None

    def __call__(self, text: str) -> str:
        forms = self._forms()
        for secret in forms:
            if secret in text:
                text = text.replace(secret, MASK)
        text = self._cut_ends(text, forms)
        text = self._JWT.sub("<jwt>", text)
        text = self._SCHEME.sub(self._scheme, text)
        return self._PAIR.sub(self._pair, text)

    @staticmethod
    def _cut_ends(text: str, forms: tuple[str, ...]) -> str:
        """Mask the part of a secret that a text starts or ends with: a body cut
        short (by the server, or at our size bound) may end in the middle of one.
        A whole secret is gone already; any shorter part of one, down to
        ``_PARTIAL`` characters, is masked, even when it is the whole text."""
        for secret in forms:
            for size in range(min(len(secret) - 1, len(text)), _PARTIAL - 1, -1):
                if text.endswith(secret[:size]):
                    text = text[:-size] + MASK
                    break
            for size in range(min(len(secret) - 1, len(text)), _PARTIAL - 1, -1):
                if text.startswith(secret[-size:]):
                    text = MASK + text[size:]
                    break
        return text


_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def shown(value: object, redact: Redactor, limit: int) -> str:
    """``value`` as text that is safe to show: redacted, on one line, without
    control or bidirectional characters, at most ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    # The whole text is redacted before anything is cut: a secret (or a JWT)
    # straddling a cut would otherwise survive in part. Callers bound the size.
    text = redact(text)
    text = " ".join(_CONTROL.sub(" ", text).split())
    # Once more: turning control characters and runs of white space into one
    # space can assemble a secret that holds a space ("pass\tword" shows as
    # "pass word").
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mask_username(username: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``: enough to tell accounts apart."""
    local, at, domain = username.partition("@")
    return f"{local[:1]}{MASK}{at}{domain}"
