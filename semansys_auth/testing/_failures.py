"""The failures a test asks the emulator's token endpoint for
(``SemansysEmulator.fail_next``), and the answers they make: an HTML page as a
proxy sends, raw bytes, RFC 6749 JSON or empty JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass

_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>{status} {reason}</title>"
    "<style>body{{font-family:sans-serif}}</style></head>"
    "<body><h1>{status} {reason}</h1><p>The upstream server did not answer in time.</p>"
    "<hr><address>emulated proxy</address></body></html>"
)


@dataclass(frozen=True)
class Failure:
    """One failed token answer, as ``fail_next`` describes it."""

    status: int
    html: bool
    error: str | None
    retry_after: str | None
    body: bytes | None

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The status, headers and body of this failure."""
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        if self.body is not None:
            headers["Content-Type"] = "application/octet-stream"
            return self.status, headers, self.body
        if self.html:
            headers["Content-Type"] = "text/html; charset=utf-8"
            page = _HTML_PAGE.format(status=self.status, reason=_reason(self.status))
            return self.status, headers, page.encode()
        headers.update({"Content-Type": "application/json", "Cache-Control": "no-store"})
        payload = {"error": self.error} if self.error else {}
        return self.status, headers, json.dumps(payload).encode()


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
