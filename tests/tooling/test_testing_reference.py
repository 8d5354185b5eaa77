"""The API reference of ``semansys_auth.testing``, as mkdocstrings reads it (with
griffe, from the source): every public member of its public classes has a
docstring, no docstring holds a Sphinx role (mkdocstrings shows those
literally), and no public class names a private base."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")

import semansys_auth.testing  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPHINX_ROLE = re.compile(r":(?:class|meth|attr|func|mod|exc|data|obj|ref|py:\w+):`")


@pytest.fixture(scope="module")
def package() -> object:
    return griffe.load("semansys_auth.testing", search_paths=[str(ROOT)])


def walk(obj: object) -> list[object]:
    found = [obj]
    for member in getattr(obj, "members", {}).values():
        if not member.is_alias:
            found.extend(walk(member))
    return found


@pytest.mark.parametrize("name", semansys_auth.testing.__all__)
def test_every_public_member_is_documented(package: object, name: str) -> None:
    obj = package[name]  # type: ignore[index]
    assert obj.docstring, name
    undocumented = [
        member
        for member, value in getattr(obj, "members", {}).items()
        if not member.startswith("_") and not value.docstring
    ]
    assert undocumented == [], f"{name}: no docstring for {undocumented}"
    private_bases = [str(base) for base in getattr(obj, "bases", []) if str(base).startswith("_")]
    assert private_bases == []


def test_the_fixture_is_documented() -> None:
    plugin = griffe.load("semansys_auth.testing.pytest_plugin", search_paths=[str(ROOT)])
    assert plugin["semansys_emulator"].docstring


def test_no_docstring_holds_a_sphinx_role(package: object) -> None:
    modules = [package, *package.modules.values()]  # type: ignore[attr-defined]
    roles = [
        (obj.path, match)
        for module in modules
        for obj in walk(module)
        if obj.docstring
        for match in SPHINX_ROLE.findall(obj.docstring.value)
    ]
    assert roles == []
    # The check finds a role where there is one.
    assert SPHINX_ROLE.findall("see :class:`~semansys_auth.TokenCache` and :meth:`start`")
