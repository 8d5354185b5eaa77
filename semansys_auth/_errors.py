"""The exception hierarchy: one root, one subclass per thing the user must fix.

Every exception carries ``status_code`` (the token endpoint's HTTP status, or
None), ``error`` (the RFC 6749 error code, or None) and ``error_description``.
Messages are built from redacted text only: no secret or token ever reaches
``str(exc)`` or ``repr(exc)``.

Transport failures (connection refused, timeouts, TLS errors) are *not*
wrapped: they stay ``requests``' or ``httpx``' own exceptions, so the handling
an application already has for them keeps working.
"""

from __future__ import annotations

__all__ = [
    "BadTokenRequestError",
    "ClientCredentialsError",
    "MalformedTokenResponseError",
    "SemansysAuthError",
    "TokenEndpointUnavailableError",
    "UserCredentialsError",
]


class SemansysAuthError(Exception):
    """Root of every error raised by semansys-auth.

    Args:
        message: what went wrong and what to fix (never a secret).
        status_code: the token endpoint's HTTP status.
        error: the RFC 6749 error code of the answer, redacted.
        error_description: the answer's ``error_description``, redacted and cut.
        retry_after: seconds to wait, from ``Retry-After`` or the credentials
            cooldown.

    Attributes:
        message: as given.
        status_code: HTTP status of the token endpoint's answer, or None when
            no answer was involved.
        error: the RFC 6749 error code, or None.
        error_description: the RFC 6749 description, or None.
        retry_after: seconds the server (or the credentials cooldown) asks to
            wait, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.error = error
        self.error_description = error_description
        self.retry_after = retry_after
        super().__init__(message)

    def __str__(self) -> str:
        details = []
        if self.status_code is not None:
            details.append(f"HTTP {self.status_code}")
        if self.error:
            details.append(self.error)
        if self.error_description:
            details.append(repr(self.error_description))
        return f"{self.message} [{', '.join(details)}]" if details else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"error={self.error!r}, error_description={self.error_description!r})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the keyword-only fields when pickled (multiprocessing, celery).
        return (
            _rebuild,
            (
                type(self),
                self.message,
                self.status_code,
                self.error,
                self.error_description,
                self.retry_after,
            ),
        )


def _rebuild(
    cls: type[SemansysAuthError],
    message: str,
    status_code: int | None,
    error: str | None,
    error_description: str | None,
    retry_after: float | None,
) -> SemansysAuthError:
    return cls(
        message,
        status_code=status_code,
        error=error,
        error_description=error_description,
        retry_after=retry_after,
    )


class ClientCredentialsError(SemansysAuthError):
    """The token endpoint rejected ``client_id`` / ``client_secret``.

    Semansys documents HTTP 401 for this; IdentityServer-style servers answer
    400 ``invalid_client``. Fix: check the client id and secret issued by the
    Semansys support desk. Also raised for ``unauthorized_client`` (the client
    may not use the password grant).
    """


class UserCredentialsError(SemansysAuthError):
    """The token endpoint rejected ``username`` / ``password``.

    Semansys documents HTTP 403; RFC 6749 servers answer 400 ``invalid_grant``.
    Not retried: after one rejection, further token requests fail fast with
    this error (``retry_after`` set) until the credentials cooldown has passed,
    so that a misconfigured worker cannot lock the account.
    """


class BadTokenRequestError(SemansysAuthError):
    """The token endpoint refused the request itself (HTTP 400 ``invalid_request``,
    ``invalid_scope``, ``unsupported_grant_type``, a 404 on a wrong ``token_url``...).
    Fix: the ``token_url`` or ``scope`` settings."""


class TokenEndpointUnavailableError(SemansysAuthError):
    """The token endpoint is down or overloaded: 5xx, 429, ``temporarily_unavailable``,
    or an answer that is not JSON (an HTML error page from a proxy). Raised after
    the configured retries. ``retry_after`` holds the server's ``Retry-After``."""


class MalformedTokenResponseError(SemansysAuthError):
    """The token endpoint answered success but the answer is not a usable token
    (no ``access_token``, a non-bearer ``token_type``, a bad ``expires_in``)."""
