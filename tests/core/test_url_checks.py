"""``check_token_url`` never quotes the user name or password of the URL it
refuses, whichever of its checks fails first. No I/O."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semansys_auth._token_url import check_token_url

PASSWORD_MARK = "Pw9"
USER_MARK = "Us8"

# Parts of a URL, hostile ones included: other schemes, ports out of range or
# not numeric, hosts with spaces, control characters anywhere.
schemes = st.sampled_from(["https", "http", "ftp", "HTTPS", "h t", "", "1x"])
separators = st.sampled_from(["://", ":/", ":", "", ":///", ":\\\\"])
hosts = st.sampled_from(
    ["id.example", "127.0.0.1", "localhost", "[::1]", "[::1", "ex ample", "", "ex\u00a0ample"]
)
ports = st.one_of(
    st.just(""),
    st.integers(min_value=-5, max_value=10**7).map(lambda p: f":{p}"),
    st.sampled_from([":", ":x", ": 80", ":\uff18\uff10"]),
)
paths = st.sampled_from(["", "/connect/token", "/t?x=1#f", "/a@b", "/ t"])
noise = st.sampled_from(["", " ", "\t", "\n", "\r\n", "\x00", "\x7f", "\x85", "\u2028"])
# A password may hold anything, '@', '/', '#', ':' and control characters included.
secret_text = st.text(
    alphabet=st.one_of(st.sampled_from(list("@/#?:%[] \t\n\x00\\")), st.characters(codec="utf-8")),
    max_size=12,
)


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str, str]:
    user = USER_MARK + draw(secret_text)
    password = PASSWORD_MARK + draw(secret_text)
    userinfo = draw(
        st.sampled_from([f"{user}:{password}", f":{password}", f"{user}", f"{user}:{password}@"])
    )
    url = (
        draw(noise)
        + draw(schemes)
        + draw(separators)
        + userinfo
        + "@"
        + draw(noise)
        + draw(hosts)
        + draw(ports)
        + draw(paths)
        + draw(noise)
    )
    return url, user, password


def _escaped(text: str) -> str:
    return repr(text)[1:-1]


@settings(max_examples=600, deadline=None)
@given(urls())
def test_no_message_quotes_the_user_info(case: tuple[str, str, str]) -> None:
    url, user, password = case
    try:
        check_token_url(url)
    except ValueError as exc:
        caught = exc
    else:
        raise AssertionError("a URL with an '@' (user info, in whatever form) was accepted")
    message = str(caught)
    for secret in (user, password):
        assert secret not in message
        assert _escaped(secret) not in message
    # Not even a part of them (urlsplit's own message may quote a "port" cut
    # out of a password: every part starts with a mark).
    assert PASSWORD_MARK not in message
    assert USER_MARK not in message
    assert caught.__cause__ is None


@settings(max_examples=300, deadline=None)
@given(st.one_of(urls().map(lambda case: case[0]), st.text(), st.binary(), st.none()))
def test_only_type_and_value_errors_come_out(value: object) -> None:
    error: Exception | None = None
    try:
        accepted = check_token_url(value)
    except (TypeError, ValueError) as exc:
        error = exc
    if error is None:
        assert accepted == value
    else:
        assert str(error).startswith("token_url ")


NO_USER_INFO = "token_url must not contain a user name or password (it has an '@')"


@pytest.mark.parametrize(
    "url",
    [
        # Each of these was refused, before, by a check that quoted the whole URL.
        "https://jane:hunter2@id.example:99999/t",
        "ftp://jane:hunter2@id.example/t",
        "https://jane:hunter2@id.example/t ",
        "https://jane:hun\x01ter2@id.example/t",
        "https://jane:hun/ter2@id.example/t",
        "https://jane:hun#ter2@id.example/t",
        "https://jane:p@ss@id.example/t",
        "jane:hunter2@id.example/t",
        "http://jane:hunter2@id.example/t",
        "http://id.example/a@jane:hunter2",
        # Accepted before, as host "jane" and port 4433 (or 12) with the rest of
        # the password in the fragment or the query: later messages showed it.
        "https://jane:4433#hunter2@id.example/t",
        "https://jane:12/hunter2@id.example/t",
        "https://jane:12?hunter2@id.example/t",
    ],
)
def test_refused_urls_with_user_info(url: str) -> None:
    with pytest.raises(ValueError, match=r"^token_url ") as caught:
        check_token_url(url)
    assert str(caught.value).startswith(NO_USER_INFO)
    assert "hunter2" not in str(caught.value)
    assert "jane" not in str(caught.value)


def test_the_parser_reason_is_kept_when_there_is_no_user_info() -> None:
    with pytest.raises(ValueError, match=re.escape("is not a valid URL (Port out of range")):
        check_token_url("https://id.example:99999/t")
