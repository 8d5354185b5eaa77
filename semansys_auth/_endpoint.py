"""RFC 6749 on the wire, without the wire: the token endpoint as a client sees
it (:class:`TokenEndpoint`): the two token requests, the cache keys of its
credentials, and (from :class:`~._answers.AnswerReader`) the classification of
every answer.

Request bodies are built by oauthlib (the protocol core under requests-oauthlib),
imported on first use. The pieces live in modules of their own: the request and
answer objects the adapters exchange with the core in ``_wire``, the token URL
check in ``_token_url``, the reading of answers in ``_answers``, the cache key
and sealing key in ``_cache_key``.
"""

from __future__ import annotations

from ._answers import AnswerReader
from ._cache_key import cache_keys
from ._redact import Redactor, mask_username
from ._token import PASSWORD, REFRESH_TOKEN
from ._wire import EndpointRequest


class TokenEndpoint(AnswerReader):
    """The token endpoint as seen from a client: builds the two token requests
    and turns every answer into a :class:`Token` or a typed error (the reading
    of answers is :class:`~._answers.AnswerReader`'s)."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        scope: str | None,
        timeout: float,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.username = username
        self.scope = scope
        self.timeout = timeout
        self._client_secret = client_secret
        self._password = password
        self.redact = Redactor([client_secret, password])

    def __repr__(self) -> str:
        return (
            f"TokenEndpoint(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"username={mask_username(self.username)!r}, scope={self.scope!r})"
        )

    # -- requests --------------------------------------------------------------

    def password_request(self) -> EndpointRequest:
        # oauthlib's body builder, without a client object (the one its
        # LegacyApplicationClient calls): client_id and client_secret in the body.
        from oauthlib.oauth2.rfc6749.parameters import prepare_token_request

        body = prepare_token_request(
            PASSWORD,
            username=self.username,
            password=self._password,
            scope=self.scope,
            client_id=self.client_id,
            client_secret=self._client_secret,
        )
        return EndpointRequest(self.token_url, body.encode(), PASSWORD, self.timeout)

    def refresh_request(self, refresh_token: str) -> EndpointRequest:
        from oauthlib.oauth2.rfc6749.parameters import prepare_token_request

        # No scope: RFC 6749 section 6 keeps the originally granted scope.
        body = prepare_token_request(
            REFRESH_TOKEN,
            refresh_token=refresh_token,
            client_id=self.client_id,
            client_secret=self._client_secret,
        )
        return EndpointRequest(self.token_url, body.encode(), REFRESH_TOKEN, self.timeout)

    def cache_key(self) -> str:
        """The key under which tokens of these credentials and scope are cached
        (see :meth:`cache_keys`)."""
        return self.cache_keys()[0]

    def cache_keys(self) -> tuple[str, bytes]:
        """The cache key, and the key that seals cache entries, of these
        credentials and scope (see :func:`~._cache_key.cache_keys`)."""
        return cache_keys(
            self.token_url,
            self.client_id,
            self.username,
            self.scope,
            self._client_secret,
            self._password,
        )


__all__ = ["TokenEndpoint"]
