"""The redactor both ways: every echoed form of a known secret is masked
wherever it stands, and prose (even prose about passwords and tokens) comes
back unchanged. Exact tests for each rule of the name/value and bearer
patterns, then properties over generated texts. No I/O."""

from __future__ import annotations

import html
import itertools
import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semansys_auth._redact import MASK, Redactor, shown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Prose: a colon, white space, then a plain lower-case word.
        (
            "token_url must not contain a user name or password: the client credentials "
            "go in client_id and client_secret",
            "token_url must not contain a user name or password: the client credentials "
            "go in client_id and client_secret",
        ),
        ("the token: expired.", "the token: expired."),
        ("secret:\tnone", "secret:\tnone"),
        ("password : the end", "password : the end"),
        ("password:  twice", "password:  twice"),
        ("token: done!", "token: done!"),
        ("a password: don't", "a password: don't"),
        ("refresh_token: gone, sorry", "refresh_token: gone, sorry"),
        # Values: '=' (with or without spaces), no space after ':', a quote,
        # or anything but a plain lower-case word after ': '.
        ("password=hunter", "password=***"),
        ("password = hunter", "password = ***"),
        ("password:hunter", "password:***"),
        ("password :hunter", "password :***"),
        ('password: "hunter"', 'password: "***"'),
        ("password: 'hunter'", "password: '***'"),
        ('{"password": "x"}', '{"password": "***"}'),
        ('{"password":"the"}', '{"password":"***"}'),
        ("password: hunter2", "password: ***"),
        ("password: Hunter", "password: ***"),
        ("password: HUNTER", "password: ***"),
        ("password: hun-ter", "password: ***"),
        ("password: hun.ter", "password: ***"),
        ("password: hunter_", "password: ***"),
        ("password: h\u00e9las", "password: ***"),
        ("client_secret=the", "client_secret=***"),
        ("access_token: eyJhbGciOiJub25lIn0", "access_token: ***"),
        ("Access_Token: abc123", "Access_Token: ***"),
        ("id_token: x1", "id_token: ***"),
        ("id_token: x", "id_token: x"),
        ("secret: 42", "secret: ***"),
    ],
)
def test_name_value_pairs(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sent as a bearer token to the api", "sent as a bearer token to the api"),
        ("basic auth is not used.", "basic auth is not used."),
        ("Bearer token.", "Bearer token."),
        ("Bearer abcdef", "Bearer abcdef"),  # a plain lower-case word: prose
        ("Bearer abc123", "Bearer ***"),
        ("Bearer Abcdef", "Bearer ***"),
        ("bearer abc-def", "bearer ***"),
        ("Bearer abc.def==", "Bearer ***"),
        ("Bearer abc=", "Bearer ***"),
        ("(Bearer xY1)", "(Bearer ***)"),
        ("Bearer   xY1 more", "Bearer *** more"),
        ("Basic dXNlcjpwYXNz!", "Basic ***!"),
    ],
)
def test_bearer_and_basic_credentials(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


def test_the_message_of_a_refused_token_url_is_shown_as_it_is() -> None:
    from semansys_auth._token_url import check_token_url

    with pytest.raises(ValueError, match="user name or password") as caught:
        check_token_url("https://jane:hunter2@id.example/t")
    message = str(caught.value)
    assert shown(message, Redactor(["hunter2"]), 500) == message


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        ("pass\tword x", "pass word", "*** x"),
        ("pass\r\n  word x", "pass word", "*** x"),
        ("+\x1f0", " ", "******0"),  # '+' is the form-encoded space, then \x1f becomes one
        ("pass\u2028word", "pass word", "***"),
    ],
)
def test_a_secret_assembled_by_the_white_space_rule_is_masked(
    text: str, secret: str, expected: str
) -> None:
    assert shown(text, Redactor([secret]), 100) == expected


# -- (a) a known secret is masked wherever it stands, in every echoed form ------------

ECHOES = {
    "raw": lambda s: s,
    "form": quote_plus,
    "url": lambda s: quote(s, safe=""),
    "html": html.escape,
    "json": lambda s: json.dumps(s)[1:-1],
    "json-unicode": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "mis-decoded": lambda s: s.encode("utf-8").decode("latin-1"),
}

# A secret holding '*' could be rebuilt by the mask itself next to its own
# characters; '<jwt>' is what the JWT pattern writes. Neither is a secret anyone has.
secrets = st.text(min_size=1, max_size=40).filter(lambda s: "*" not in s and "<jwt>" not in s)
texts = st.text(max_size=80)


@settings(max_examples=500, deadline=None)
@given(secrets, st.sampled_from(sorted(ECHOES)), texts, texts, st.lists(secrets, max_size=3))
def test_a_known_secret_is_masked_anywhere(
    secret: str, echo: str, before: str, after: str, others: list[str]
) -> None:
    form = ECHOES[echo](secret)
    redact = Redactor([*others, secret])
    out = redact(before + form + after)
    assert form not in out
    assert secret not in out
    assert MASK in out
    # Through shown as well, at any limit.
    assert secret not in shown(before + form + after, redact, 1000)


@settings(max_examples=300, deadline=None)
@given(secrets, texts, texts)
def test_a_token_added_later_is_masked_anywhere(secret: str, before: str, after: str) -> None:
    redact = Redactor()
    redact.add(secret)
    out = redact(before + secret + after)
    assert secret not in out
    assert MASK in out


# -- (b) prose is left alone ----------------------------------------------------------

WORDS = [
    "the", "a", "password", "passwords", "token", "tokens", "secret", "secrets",
    "access_token", "refresh_token", "client_secret", "id_token", "bearer", "basic",
    "must", "not", "contain", "user", "name", "or", "client", "credentials", "go",
    "in", "expired", "is", "was", "refused", "renewed", "api", "server", "answer",
    "Token", "Password", "The", "Semansys", "HTTP", "401", "x-api-version",
]  # fmt: skip
GLUE = [" ", ": ", ". ", ", ", "; ", " (", ") ", "! ", "? ", ":\t", "\n", " - "]


@st.composite
def prose(draw: st.DrawFn) -> str:
    """Sentences of the words above, where a word that follows ': ' or a
    secret-looking word is a plain lower-case one (a capitalised word or a
    number there would be a value)."""
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=30))
    text = words[0]
    for previous, word in itertools.pairwise(words):
        glue = draw(st.sampled_from(GLUE))
        lowered = previous.lower()
        follows_name = ":" in glue or lowered in ("bearer", "basic")
        if follows_name and not (word.isascii() and word.isalpha() and word.islower()):
            word = "the"
        if lowered in ("bearer", "basic") and glue.strip():
            glue = " "  # a scheme, then its (prose) word
        text += glue + word
    return text


@settings(max_examples=500, deadline=None)
@given(prose())
def test_prose_comes_back_unchanged(text: str) -> None:
    assert Redactor()(text) == text
    # Secrets drawn from another alphabet than the words change nothing either.
    assert Redactor(["Zq9#Zq9#", "QQ77QQ77"])(text) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz .,;()!?\n", max_size=200))
def test_lower_case_text_without_separators_is_unchanged(text: str) -> None:
    assert Redactor()(text) == text
