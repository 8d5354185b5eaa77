"""The token value objects: what a Token accepts, how it compares, what it shows,
and the cache format it is stored in (to_json / from_json). No I/O."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from semansys_auth import Token, TokenInfo
from semansys_auth._token import access_token_problem, jwt_claims, refresh_token_problem
from token_parts import b64url as encode


def token(**changes: Any) -> Token:
    fields: dict[str, Any] = {
        "access_token": "at-1",
        "expires_at": 2000.0,
        "obtained_at": 1000.0,
        "refresh_token": "rt-1",
        "scope": "read write",
    }
    fields.update(changes)
    return Token(**fields)


# -- what a token accepts -------------------------------------------------------------

CHARACTERS = (
    "the access_token has characters that are not allowed in a bearer token "
    "(RFC 6750 b64token: letters, digits and -._~+/ with trailing =)"
)
REFRESH = "the refresh_token is empty, too long, or not visible ASCII"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"access_token": None}, "the access_token is a NoneType, not a string"),
        ({"access_token": ""}, "the access_token is empty"),
        ({"access_token": "a" * 16385}, "the access_token is longer than 16384 characters"),
        ({"access_token": "a b"}, CHARACTERS),
        ({"access_token": "a\r\n b"}, CHARACTERS),
        ({"access_token": "tøken"}, CHARACTERS),
        ({"access_token": "ab=c"}, CHARACTERS),
        ({"refresh_token": 5}, "the refresh_token is a int, not a string"),
        ({"refresh_token": ""}, REFRESH),
        ({"refresh_token": "r\n"}, REFRESH),
        ({"refresh_token": "r" * 16385}, REFRESH),
        ({"expires_at": math.inf}, "expires_at is not a finite number"),
        ({"expires_at": math.nan}, "expires_at is not a finite number"),
        ({"expires_at": 10**400}, "expires_at is not a finite number"),
        ({"expires_at": True}, "expires_at is not a finite number"),
        ({"expires_at": "2000"}, "expires_at is not a finite number"),
        ({"obtained_at": None}, "obtained_at is not a finite number"),
        ({"obtained_at": -math.inf}, "obtained_at is not a finite number"),
        ({"scope": 5}, "scope is not a string of visible ASCII"),
        ({"scope": "a\tb"}, "scope is not a string of visible ASCII"),
        ({"token_type": "bearer"}, "token_type is not 'Bearer'"),
        ({"grant_type": "cache"}, "grant_type is not one of password, refresh_token"),
    ],
)
def test_a_token_refuses_unusable_fields_without_quoting_them(
    changes: dict[str, Any], problem: str
) -> None:
    expected = "not a usable token: " + problem
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$") as caught:
        token(**changes)
    assert str(caught.value) == expected
    for value in changes.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in str(caught.value)


def test_a_token_accepts_the_edges_of_what_is_valid() -> None:
    longest = "a" * 16384
    assert token(access_token=longest).access_token == longest
    assert token(refresh_token="r" * 16384, scope="").scope == ""
    assert token(access_token="Ab0-._~+/==").authorization == "Bearer Ab0-._~+/=="
    assert token(expires_at=None, refresh_token=None).lifetime is None
    assert token(expires_at=3000, obtained_at=1000).lifetime == 2000
    assert token(grant_type="refresh_token").grant_type == "refresh_token"
    assert token(refresh_token=" visible ~ ascii ").refresh_token == " visible ~ ascii "


def test_problem_helpers_say_none_for_good_values() -> None:
    assert access_token_problem("abc") is None
    assert refresh_token_problem("abc") is None


# -- value semantics -------------------------------------------------------------------


def test_tokens_compare_and_hash_by_every_field() -> None:
    assert token() == token() and hash(token()) == hash(token())
    assert {token(), token()} == {token()}
    for changes in (
        {"access_token": "at-2"},
        {"expires_at": 2001.0},
        {"obtained_at": 1001.0},
        {"refresh_token": "rt-2"},
        {"scope": "read"},
        {"grant_type": "refresh_token"},
    ):
        assert token(**changes) != token()
    assert token() != "at-1"
    assert token().__eq__("at-1") is NotImplemented
    assert len({hash(token(access_token=f"at-{i}")) for i in range(10)}) == 10


def test_tokens_are_immutable() -> None:
    value = token()
    with pytest.raises(AttributeError, match=r"^Token is immutable: cannot set 'access_token'$"):
        value.access_token = "x"
    with pytest.raises(AttributeError, match=r"^Token is immutable: cannot delete 'scope'$"):
        del value.scope
    info = value.info()
    with pytest.raises(AttributeError, match=r"^TokenInfo is immutable: cannot set 'scope'$"):
        info.scope = "x"


def test_repr_shows_no_secret() -> None:
    shown = repr(token(access_token="AT-secret", refresh_token="RT-secret"))
    assert shown == (
        "Token(expires_at=2000.0, obtained_at=1000.0, scope='read write', "
        "token_type='Bearer', grant_type='password')"
    )
    assert str(token()) == repr(token())


def test_replace_changes_fields_and_checks_them() -> None:
    changed = token().replace(refresh_token="rt-2", grant_type="refresh_token")
    assert changed == token(refresh_token="rt-2", grant_type="refresh_token")
    assert changed.authorization == "Bearer at-1"
    with pytest.raises(ValueError, match="access_token"):
        token().replace(access_token="a b")


def test_info_holds_the_non_secret_facts() -> None:
    info = token().info()
    assert info == TokenInfo(
        grant_type="password",
        token_type="Bearer",
        obtained_at=1000.0,
        expires_at=2000.0,
        scope="read write",
        has_refresh_token=True,
        from_cache=False,
    )
    assert token(refresh_token=None).info(from_cache=True) == TokenInfo(
        "password", "Bearer", 1000.0, 2000.0, "read write", False, True
    )
    assert info != token().info(from_cache=True)
    assert TokenInfo("password", "Bearer", 1.0, None, None, False).from_cache is False
    assert hash(info) == hash(token().info())
    assert repr(info) == (
        "TokenInfo(grant_type='password', token_type='Bearer', obtained_at=1000.0, "
        "expires_at=2000.0, scope='read write', has_refresh_token=True, from_cache=False)"
    )


def test_info_as_dict_is_json_ready() -> None:
    assert token().info(from_cache=True).as_dict() == {
        "grant_type": "password",
        "token_type": "Bearer",
        "obtained_at": 1000.0,
        "expires_at": 2000.0,
        "expires_in": 1000,
        "scope": "read write",
        "has_refresh_token": True,
        "from_cache": True,
    }
    assert token(expires_at=None).info().as_dict()["expires_in"] is None
    assert token(expires_at=1000.6).info().as_dict()["expires_in"] == 1


# -- the cache format --------------------------------------------------------------------


def test_to_json_and_back() -> None:
    original = token(grant_type="refresh_token")
    data = original.to_json()
    assert data == {
        "access_token": "at-1",
        "refresh_token": "rt-1",
        "expires_at": 2000.0,
        "obtained_at": 1000.0,
        "scope": "read write",
        "token_type": "Bearer",
        "grant_type": "refresh_token",
    }
    assert Token.from_json(json.loads(json.dumps(data))) == original


def test_from_json_defaults_the_type_and_grant() -> None:
    rebuilt = Token.from_json({"access_token": "at", "obtained_at": 5, "expires_at": 9})
    assert (rebuilt.token_type, rebuilt.grant_type) == ("Bearer", "password")
    assert (rebuilt.expires_at, rebuilt.obtained_at) == (9.0, 5.0)
    assert isinstance(rebuilt.obtained_at, float) and isinstance(rebuilt.expires_at, float)
    assert rebuilt.refresh_token is None and rebuilt.scope is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([], "not a JSON object"),
        ("token", "not a JSON object"),
        ({}, "not a usable token: a time is not a number"),
        ({"access_token": "", "obtained_at": 1}, "not a usable token: the access_token is empty"),
        (
            {"access_token": 5, "obtained_at": 1},
            "not a usable token: the access_token is a int, not a string",
        ),
        ({"access_token": "at"}, "not a usable token: a time is not a number"),
        ({"access_token": "at", "obtained_at": "1"}, "not a usable token: a time is not a number"),
        ({"access_token": "at", "obtained_at": True}, "not a usable token: a time is not a number"),
        (
            {"access_token": "at", "obtained_at": 1, "expires_at": "2"},
            "not a usable token: a time is not a number",
        ),
        ({"access_token": "at", "obtained_at": 10**400}, "not a usable token: OverflowError"),
        (
            {"access_token": "at", "obtained_at": 1, "token_type": "mac"},
            "not a usable token: token_type is not 'Bearer'",
        ),
        (
            {"access_token": "at", "obtained_at": 1, "grant_type": "cache"},
            "not a usable token: grant_type is not one of password, refresh_token",
        ),
        (
            {"access_token": "at", "obtained_at": 1, "scope": ["a"]},
            "not a usable token: scope is not a string of visible ASCII",
        ),
        (
            {"access_token": "at", "obtained_at": 1, "refresh_token": 7},
            "not a usable token: the refresh_token is a int, not a string",
        ),
    ],
)
def test_from_json_refuses_tampered_entries(data: object, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        Token.from_json(data)


# -- JWT claims (never verified) ----------------------------------------------------------


def test_jwt_claims_reads_the_payload_without_padding() -> None:
    for claims in ({"exp": 5}, {"sub": "x" * 5}, {"a": "bc"}, {"ab": 1}):  # every padding length
        assert jwt_claims(f"{encode({'alg': 'none'})}.{encode(claims)}.sig") == claims


def test_jwt_claims_reads_a_token_of_the_longest_length() -> None:
    head = f"{encode({'alg': 'none'})}.{encode({'exp': 5})}."
    longest = head + "s" * (16384 - len(head))
    assert len(longest) == 16384 and jwt_claims(longest) == {"exp": 5}
    assert jwt_claims(longest + "s") is None


@pytest.mark.parametrize(
    "value",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        f"h.{encode(b'not json')}.s",
        f"h.{encode([1, 2])}.s",
        "h.!!!.s",
        f"h.{encode(b'[' * 10000 + b']' * 10000)}.s",
        "h." + "a" * 20000 + ".s",
    ],
)
def test_jwt_claims_is_none_for_anything_else(value: str) -> None:
    assert jwt_claims(value) is None
