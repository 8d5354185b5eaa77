"""The redactor: what it removes from text that comes from outside, and how
``shown`` makes such text safe to put in a message. No I/O."""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus

import pytest

from semansys_auth._redact import Redactor, mask_username, shown

SECRET = 'p@ss w&rd"é<x>'


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote_plus(SECRET),
        quote(SECRET, safe=""),
        html.escape(SECRET),
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        SECRET.encode("utf-8").decode("latin-1"),
    ],
    ids=["raw", "form", "url", "html", "json", "json-unicode", "mis-decoded"],
)
def test_every_echoed_form_of_a_secret_is_masked(form: str) -> None:
    redact = Redactor([SECRET])
    assert redact(f"before {form} after") == "before *** after"


def test_a_url_encoded_slash_and_space_are_recognised() -> None:
    redact = Redactor(["pa ss/word"])
    assert redact("echo pa%20ss%2Fword echo") == "echo *** echo"
    assert redact("echo pa+ss%2Fword echo") == "echo *** echo"


def test_secrets_given_later_are_masked_too() -> None:
    redact = Redactor(["fixed-one"])
    redact.add("token-one", None, "", "refresh-one")
    assert redact("fixed-one token-one refresh-one") == "*** *** ***"
    redact.add("token-one")  # again: no harm
    assert redact("token-one") == "***"


def test_none_and_empty_secrets_are_ignored() -> None:
    redact = Redactor([None, "", "kept-secret"])
    assert redact("nothing to hide here") == "nothing to hide here"
    assert redact("kept-secret") == "***"


def test_the_longest_secret_is_masked_first() -> None:
    redact = Redactor(["abcd", "abcdefgh"])
    assert redact("x abcdefgh y") == "x *** y"
    assert redact("x abcd y") == "x *** y"


def test_only_the_sixteen_most_recent_tokens_are_kept() -> None:
    redact = Redactor(["fixed-secret"])
    for i in range(17):
        redact.add(f"token-{i:03d}")
    assert redact("fixed-secret token-016 token-001 token-000") == "*** *** *** token-000"


def test_a_secret_that_cannot_be_encoded_is_masked_as_it_is() -> None:
    redact = Redactor(["sur\udcffrogate"])
    assert redact("a sur\udcffrogate b") == "a *** b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jwt eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln end", "jwt <jwt> end"),
        ("Authorization: Bearer abc.DEF-123== more", "Authorization: Bearer *** more"),
        ("basic dXNlcjpwYXNz", "basic ***"),
        (
            '{"access_token": "abc123", "refresh_token":"r-9"}',
            '{"access_token": "***", "refresh_token":"***"}',
        ),
        ("password=hunter2&client_secret=s3 x", "password=***&client_secret=*** x"),
        ("TOKEN: 'xyz'", "TOKEN: '***'"),
        ("id_token=a secret=b", "id_token=*** secret=***"),
        ("nothing here", "nothing here"),
    ],
)
def test_patterns_catch_what_no_list_knows(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the answer ends in pw-Sec", "the answer ends in ***"),
        ("the answer ends in pw-S", "the answer ends in ***"),
        ("the answer ends in pw-", "the answer ends in pw-"),  # three characters: kept
        ("ret-9 starts the answer", "*** starts the answer"),
        ("et-9 starts the answer", "*** starts the answer"),
        ("t-9 starts the answer", "t-9 starts the answer"),
        ("pw-Secret-9", "***"),
        ("the answer ends in pw-Secret-", "the answer ends in ***"),  # all but one character
        ("the answer ends in pw-Secret", "the answer ends in ***"),
        ("w-Secret-9 starts the answer", "*** starts the answer"),
        ("-Secret-9 starts the answer", "*** starts the answer"),
        ("pw-Secret-", "***"),  # a text that is nothing but part of a secret
        ("w-Secret-9", "***"),
        ("pw-S", "***"),
    ],
)
def test_a_secret_cut_at_either_end_is_masked(text: str, expected: str) -> None:
    assert Redactor(["pw-Secret-9"])(text) == expected


def test_shown_redacts_before_it_cuts() -> None:
    redact = Redactor(["abcdefghij"])
    text = "x" * 8 + "abcdefghij"
    assert shown(text, redact, 12) == "xxxxxxxx***"
    assert shown("y" * 10 + "abcdefghij", redact, 12) == "yyyyyyyyyy*…"


def test_shown_keeps_one_line_without_control_characters() -> None:
    redact = Redactor()
    text = "a\r\nb\tc\x00d\x1b[31me\u202eF\u2028g\udcffh"
    assert shown(text, redact, 100) == "a b c d [31me F g h"
    assert shown("  many    spaces  ", redact, 100) == "many spaces"


def test_shown_cuts_at_the_limit() -> None:
    redact = Redactor()
    assert shown("abcde", redact, 5) == "abcde"
    assert shown("abcdef", redact, 5) == "abcd…"
    assert len(shown("z" * 1000, redact, 60)) == 60


def test_shown_turns_other_values_into_their_repr() -> None:
    redact = Redactor(["hunter2"])
    assert shown(42, redact, 20) == "42"
    assert shown(["hunter2", None], redact, 40) == "['***', None]"


@pytest.mark.parametrize(
    ("username", "masked"),
    [
        ("jane.doe@example.com", "j***@example.com"),
        ("x@y", "x***@y"),
        ("no-at-sign", "n***"),
        ("", "***"),
    ],
)
def test_user_names_are_masked_to_the_domain(username: str, masked: str) -> None:
    assert mask_username(username) == masked
