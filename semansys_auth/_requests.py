"""requests: the auth hook and a response hook that resends once after a 401.

Shaped like requests' own ``HTTPDigestAuth``: ``authorize`` (the auth object's
``__call__``) puts the token on the request and registers ``handle_401`` as a
response hook, which renews the token and resends the request through
``r.connection`` after rewinding its body. Early renewals run in a background
thread: no request waits for them.

Token requests go through ``requests_session`` (by default a private
``requests.Session`` per fetch, which honours ``HTTPS_PROXY``,
``REQUESTS_CA_BUNDLE`` and the other environment settings), never follow
redirects, and read at most ``MAX_ANSWER_BYTES`` within ``timeout``. They never
carry the session's auth (which may be this very object), and every transport
failure while they are read is a ``requests.RequestException``.

Before a resend, at most ``MAX_401_BODY`` bytes of the 401 are read; the
connection of a longer body is closed rather than drained.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from requests.cookies import extract_cookies_to_jar
from requests.utils import rewind_body

from . import _body, _wire
from ._config import Settings
from ._drive import Shell, run_blocking
from ._token import Token
from ._wire import EndpointRequest, EndpointResponse, decode_body, header


def post(request: EndpointRequest, session: requests.Session | None = None) -> EndpointResponse:
    """Send a token request with requests; bounded in size and time.

    The connect and every read wait at most the time left, and the body is read
    until ``request.timeout`` has passed since the start, no longer.
    """
    deadline = time.monotonic() + request.timeout
    if session is None:
        # A token is fetched about once an hour: a private session per fetch
        # keeps no idle connection open in between, and re-reads the proxy and
        # CA-bundle environment variables each time.
        with requests.Session() as private:
            return _post(private, request, deadline)
    return _post(session, request, deadline)


def _post(session: requests.Session, request: EndpointRequest, deadline: float) -> EndpointResponse:
    # Straight to the transport adapter, as Session.send would, minus its redirect
    # handling: even with allow_redirects=False, Session.send reads the whole body
    # of a 3xx answer (to find the next request), with no bound on its size.
    #
    # The session's auth never applies: the token request carries the client
    # credentials in its body and nothing else. (A session whose auth is this
    # very SemansysAuth would otherwise fetch a token to fetch a token; any other
    # auth, such as HTTPBasicAuth, would send its credentials to the identity
    # server.) An auth given on the Request takes the place of the session's and
    # of ~/.netrc's in prepare_request: give one that adds nothing. An
    # Authorization header set in session.headers is dropped too. Adapters,
    # proxies, certificates, cookies and other headers of the session still apply.
    prepared = session.prepare_request(
        requests.Request(
            request.method,
            request.url,
            data=request.body,
            headers=dict(request.headers),
            auth=_no_auth,
        )
    )
    prepared.headers.pop("Authorization", None)
    settings = session.merge_environment_settings(prepared.url, {}, True, None, None)
    response = session.get_adapter(prepared.url or request.url).send(
        prepared,
        stream=True,
        timeout=(request.timeout, request.timeout),
        verify=True if settings["verify"] is None else settings["verify"],
        cert=settings["cert"],
        proxies=settings["proxies"],
    )
    with response:
        try:
            raw, truncated = _read(response, request, deadline)
        except requests.RequestException:
            raise
        except Exception as exc:
            error = _requests_error(exc, prepared, response)
            if error is None:
                raise
            raise error from exc
        body, cut = decode_body(raw, header(response.headers, "content-encoding"))
        return EndpointResponse(response.status_code, response.headers, body, truncated or cut)


def _no_auth(prepared: requests.PreparedRequest) -> requests.PreparedRequest:
    return prepared


def _requests_error(
    exc: Exception, prepared: requests.PreparedRequest, response: requests.Response
) -> requests.RequestException | None:
    """The requests exception for a failure while reading a body, as requests
    itself maps them when it reads one (``Response.iter_content``): urllib3's
    own exceptions (and socket errors of a transport adapter's file object)
    would escape ``except requests.RequestException``. None for anything else
    (a bug: left as it is)."""
    import http.client

    from urllib3 import exceptions as urllib3_errors

    error: type[requests.RequestException]
    if isinstance(exc, (urllib3_errors.ReadTimeoutError, TimeoutError)):
        error = requests.exceptions.ReadTimeout
    elif isinstance(exc, urllib3_errors.SSLError):
        error = requests.exceptions.SSLError
    elif isinstance(exc, (urllib3_errors.ProtocolError, http.client.IncompleteRead)):
        error = requests.exceptions.ChunkedEncodingError
    elif isinstance(exc, (urllib3_errors.HTTPError, http.client.HTTPException, OSError)):
        error = requests.exceptions.ConnectionError
    else:
        return None
    return error(exc, request=prepared, response=response)


def _reader(raw: Any) -> tuple[Callable[[int], bytes], bool]:
    """How to read ``raw`` (a response's ``raw``) a chunk at a time, and whether
    what it gives is still content-encoded (requests' own transport)."""
    if type(raw).__module__.partition(".")[0] == "urllib3":  # requests' own transport
        read1 = getattr(raw, "read1", None)  # urllib3 2: at most one read from the socket
        if read1 is not None:
            return lambda size: bytes(read1(size, decode_content=False)), True
        return lambda size: bytes(raw.read(size, decode_content=False)), True
    return lambda size: bytes(raw.read(size)), False  # a transport adapter's own file


def _read(
    response: requests.Response, request: EndpointRequest, deadline: float
) -> tuple[bytes, bool]:
    raw = response.raw
    read, _ = _reader(raw)

    def read_in_time(size: int) -> bytes:
        _limit_socket_wait(raw, deadline - time.monotonic())
        return read(size)

    body, how = _body.read_bounded(read_in_time, _wire.MAX_ANSWER_BYTES, deadline)
    if how == _body.LATE:
        raise requests.exceptions.ReadTimeout(
            f"the token endpoint {request.url} did not finish its answer within "
            f"{request.timeout:g} s"
        )
    return body, how == _body.CUT


def _limit_socket_wait(raw: Any, seconds: float) -> None:
    # Each read waits at most the time left (urllib3 sets the socket timeout once,
    # to the read timeout). Best effort: the connection may already be gone.
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    settimeout = getattr(sock, "settimeout", None)
    if settimeout is not None:
        with contextlib.suppress(OSError):
            settimeout(max(seconds, 0.001))


def _drain_401(r: requests.Response) -> None:
    """Read at most ``MAX_401_BODY`` bytes of ``r``'s body (kept as its
    ``content``, cut there); release its connection to the pool when the body
    ended within the bound, close it when more remains. Whatever the request's
    ``stream``: requests runs response hooks before it reads the body."""
    response = cast(Any, r)
    if response._content_consumed or r.raw is None:
        return
    raw = r.raw
    read, encoded = _reader(raw)
    try:
        body, how = _body.read_bounded(read, _wire.MAX_401_BODY)
    except Exception:  # a broken 401 body does not matter: the request is sent again
        body, how = b"", _body.CUT
    if how != _body.ENDED:
        with contextlib.suppress(Exception):
            raw.close()  # closes the connection: nothing more is read from it
    if encoded:
        body, _ = decode_body(body, header(r.headers, "content-encoding"))
    response._content = body
    response._content_consumed = True
    r.close()


def _replayable(prepared: requests.PreparedRequest) -> bool:
    body = prepared.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    return hasattr(body, "seek") and isinstance(prepared._body_position, int)


class RequestsAdapter:
    """The requests side of one ``SemansysAuth``: advisory renewals run in a
    background thread, so that no request waits for them."""

    def __init__(self, shell: Shell, settings: Settings) -> None:
        self._shell = shell
        self._core = shell.core
        self._settings = settings

    def send(self, request: EndpointRequest) -> EndpointResponse:
        return post(request, self._settings.requests_session)

    def token(self, refused: str | None = None) -> Token:
        """A token to send now (blocking)."""
        flow = self._core.renewal(refused)
        return run_blocking(flow, self._shell, self.send, background=True)

    def authorize(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._core.usable() or self.token()
        self._settings.authorize(r.headers, token)
        r.hooks["response"].append(self.handle_401)
        return r

    def handle_401(self, r: requests.Response, **kwargs: Any) -> requests.Response:
        request = r.request
        refused = self._core.refused(
            r.status_code,
            lambda: (
                request.headers.get("Authorization"),
                _replayable(request),
                f"{request.method} {urlsplit(request.url or '').path}",
            ),
        )
        if refused is None:
            return r
        # Read a little of the 401's body and let its connection go first: it
        # goes back to the pool (or is closed) even if the renewal below raises.
        _drain_401(r)
        fresh = self.token(refused)
        prepared = request.copy()
        # As requests' own HTTPDigestAuth does: keep cookies the 401 set.
        jar = cast(Any, prepared)._cookies
        cast(Any, extract_cookies_to_jar)(jar, request, r.raw)
        prepared.prepare_cookies(jar)
        self._settings.authorize(prepared.headers, fresh)
        # One resend only: the copy must not come back to this hook. (copy()
        # shares the hooks dict with the original: replace it, do not mutate it.)
        prepared.hooks = {
            **prepared.hooks,
            "response": [h for h in prepared.hooks["response"] if h != self.handle_401],
        }
        if prepared.body is not None and not isinstance(prepared.body, (bytes, str)):
            rewind_body(prepared)
        retried: requests.Response = r.connection.send(prepared, **kwargs)
        retried.history.append(r)
        retried.request = prepared
        return retried
