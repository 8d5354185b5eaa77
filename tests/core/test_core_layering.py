"""The token core does no I/O and knows nothing above it: checked on the source
of every module the core reaches, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "semansys_auth"

CORE = "_core"

# The logger is the one utility every layer shares: it imports logging (which
# uses threads) on first use, under the fork guard of ``_fork``. The core only
# calls it; the check does not follow it.
SHARED = {"_log"}

# Nothing the core reaches may import these, at any level of a module.
FORBIDDEN = {
    "threading", "asyncio", "anyio", "trio", "os", "socket", "selectors", "subprocess",
    "httpx", "httpx2", "requests", "aiohttp", "niquests", "urllib3", "redis", "filelock",
}  # fmt: skip

# The layers above the core: the shell (drivers, locks, fork hooks), the front,
# the adapters, the caches, the command and the emulator.
ABOVE = {
    "_drive", "_locks", "_fork", "_auth", "_config", "_httpx", "_requests", "_aiohttp",
    "_niquests", "_body", "_cache", "_file_cache", "_redis_cache", "_demo", "testing",
} | {path.stem for path in PACKAGE.glob("_cli*.py")}  # fmt: skip


def imports(module: str) -> set[str]:
    """Every module ``module`` imports: package modules as ``_name``, others by
    their top-level name."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if (node.level == 0 and node.module) or node.module:
                found.add(node.module.partition(".")[0])
            else:
                found |= {alias.name for alias in node.names}
    return found


def reached(start: str) -> dict[str, set[str]]:
    """The package modules ``start`` reaches through imports, with what each imports."""
    seen: dict[str, set[str]] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen[module] = imports(module)
        todo += [
            name
            for name in seen[module]
            if (PACKAGE / f"{name}.py").exists() and name not in SHARED
        ]
    return seen


def test_the_core_reaches_only_modules_without_io_below_it() -> None:
    modules = reached(CORE)
    assert {"_core", "_cache_use", "_policy", "_effects", "_wire"} <= set(modules)
    for module, names in modules.items():
        assert not names & FORBIDDEN, f"{module} imports {sorted(names & FORBIDDEN)}"
        assert not names & ABOVE, f"{module} imports a layer above the core: {names & ABOVE}"


@pytest.mark.parametrize("module", ["_effects", "_policy", "_cache_use", "_wire"])
def test_the_cores_own_parts_import_nothing_above_them(module: str) -> None:
    assert CORE not in reached(module), f"{module} reaches the core: a cycle"


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The check would fail on a lazy import of a forbidden module."""
    source = "def f():\n    import anyio\n    from .drive import x\n    from . import _locks\n"
    tree = ast.parse(source)
    lazy = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert len(lazy) == 3
    (tmp_path / "m.py").write_text(source, encoding="utf-8")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        assert imports("m") == {"anyio", "drive", "_locks"}
    finally:
        PACKAGE = saved
