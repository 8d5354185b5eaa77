"""A Python example of README.md or docs/ that builds on an earlier block of its
page says so in its first line (``# continues the previous example: needs X``,
naming what it takes from there), so that a reader who copies it alone knows
what else to copy. The examples themselves run in the suite (see conftest.py,
which runs the blocks of a page in order in one namespace): this checks the
statically visible part, the names a block uses but does not define.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CONTINUES = "# continues the previous example: needs "
BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def borrowed_names(source: str) -> set[str]:
    """Names a block reads but never binds (imports, assignments, definitions,
    parameters, loop and ``with`` targets, ``except ... as``), builtins aside."""
    tree = ast.parse(source)
    bound: set[str] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
    return {name for name in read - bound if not hasattr(builtins, name)}


def blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", match.group(2)))
    return found


@pytest.mark.parametrize(("where", "source"), blocks(), ids=[where for where, _ in blocks()])
def test_a_block_says_what_it_takes_from_an_earlier_one(where: str, source: str) -> None:
    borrowed = borrowed_names(source)
    first = source.splitlines()[0] if source.strip() else ""
    if not borrowed:
        assert not first.startswith(CONTINUES), f"{where}: says it continues, but stands alone"
        return
    assert first.startswith(CONTINUES), (
        f"{where}: uses {sorted(borrowed)} from an earlier block; its first line must be "
        f"'{CONTINUES}{', '.join(sorted(borrowed))}'"
    )
    named = set(re.findall(r"\w+", first[len(CONTINUES) :]))
    assert borrowed <= named, f"{where}: also needs {sorted(borrowed - named)}"


def test_the_check_sees_a_borrowed_name() -> None:
    assert borrowed_names("from m import f\nfor i in range(2):\n    f(i, auth)\n") == {"auth"}
    assert borrowed_names("def g(x):\n    return x\nwith open('p') as h:\n    g(h)\n") == set()
