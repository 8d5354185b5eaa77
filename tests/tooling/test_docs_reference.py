"""The documentation site as a reader gets it: built with README's own command,
with nothing printed that a reader must ignore; an API reference that renders
every cross-reference (no raw Sphinx role), shows no private base and documents
every public attribute; and diagrams that render with no network (mermaid is
vendored, never fetched from a CDN).

The site is built once per module (about 3 seconds) into a scratch directory.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "semansys_auth"

SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|attr|exc|mod|obj|const):`")

# The modules whose docstrings reach the API reference.
PUBLIC_MODULES = [
    "__init__.py",
    "_auth.py",
    "_errors.py",
    "_token.py",
    "_token_url.py",
    "_cache.py",
    "_file_cache.py",
    "_redis_cache.py",
    "testing/__init__.py",
    "testing/_emulator.py",
    "testing/_records.py",
    "testing/pytest_plugin.py",
]


def reference_objects() -> list[str]:
    """The objects that docs/reference.md renders (its ``::: name`` lines)."""
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    names = re.findall(r"^::: (\S+)$", text, re.MULTILINE)
    assert names, "docs/reference.md renders no object"
    return names


def docs_build_command() -> str:
    """The docs build step of README's test command (the line CI runs)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    marker = readme.index("<!-- test-command:")
    block = re.search(r"```bash\n(.+?)\n```", readme[marker:], re.DOTALL)
    assert block is not None, "no bash block after README's test-command marker"
    steps = [step.strip() for step in block.group(1).split("&&")]
    (build,) = [step for step in steps if "mkdocs build" in step]
    return build


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The site built by README's command; and what the build printed."""
    out = tmp_path_factory.mktemp("site")
    env = {k: v for k, v in os.environ.items() if k not in ("NO_MKDOCS_2_WARNING",)}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    result = subprocess.run(
        ["bash", "-c", f"{docs_build_command()} --site-dir {out}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed[-4000:]
    return out, printed


@pytest.fixture(scope="module")
def reference(site: tuple[Path, str]) -> str:
    return (site[0] / "reference" / "index.html").read_text(encoding="utf-8")


def section(page: str, name: str) -> str:
    """The HTML of one documented object: from its heading to the next object's."""
    start = page.find(f'<h2 id="{name}"')
    assert start >= 0, f"{name} is not in the reference page"
    following = [
        page.find(f'<h2 id="{other}"', start + 1) for other in reference_objects() if other != name
    ]
    ends = [index for index in following if index > start]
    return page[start : min(ends) if ends else len(page)]


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


@pytest.mark.timeout(300)
def test_readme_docs_build_prints_nothing_to_ignore(site: tuple[Path, str]) -> None:
    # Only mkdocs' own INFO lines: no banner, no warning, no deprecation notice.
    _, printed = site
    lines = [line for line in printed.splitlines() if line.strip()]
    assert lines, "the build printed nothing: was it run?"
    others = [line for line in lines if not line.startswith("INFO ")]
    assert others == [], "\n".join(others)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", reference_objects())
def test_reference_renders_no_sphinx_role(reference: str, name: str) -> None:
    rendered = text_of(section(reference, name))
    found = SPHINX_ROLE.findall(rendered) + re.findall(
        r":(?:class|meth|func|data|attr|exc):[~\w.]", rendered
    )
    assert found == [], f"{name}: raw Sphinx roles in the rendered reference: {found}"


@functools.cache
def package_model() -> object:
    griffe = pytest.importorskip("griffe")
    return griffe.load("semansys_auth", search_paths=[str(ROOT)], resolve_aliases=True)


def public_names() -> set[str]:
    import semansys_auth
    import semansys_auth.testing

    return set(semansys_auth.__all__) | set(semansys_auth.testing.__all__)


def private_classes(model: object) -> set[str]:
    """Names of the classes defined in the package that are not exported."""
    found: set[str] = set()

    def walk(module: object) -> None:
        for member in module.members.values():  # type: ignore[attr-defined]
            if member.is_alias:
                continue
            if member.is_module:
                walk(member)
            elif member.is_class:
                found.add(member.name)

    walk(model)
    return found - public_names()


@pytest.mark.timeout(300)
def test_reference_shows_no_private_base(reference: str) -> None:
    forbidden = private_classes(package_model())
    assert "HttpxAuth" in forbidden and "_Frozen" in forbidden  # the check can see them
    shown = re.findall(r'<p class="doc doc-class-bases">(.*?)</p>', reference, re.DOTALL)
    assert shown, "no class shows its bases: the check sees nothing"
    bases = {
        base.strip()
        for paragraph in shown
        for base in text_of(paragraph).replace("Bases:", "").split(",")
    }
    assert "SemansysAuthError" in bases  # public bases are still shown
    private = sorted(base for base in bases if base in forbidden or base.startswith("_"))
    assert private == [], f"private bases in the reference: {private}"


def test_every_copy_of_the_test_command_is_readmes() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.+?)\n```", readme[readme.index("<!-- test-command:") :], re.S)
    assert block is not None
    command = block.group(1)
    copies = {
        page.name: re.findall(r"^python3 -m venv .*\[test,docs\].*$", page.read_text("utf-8"), re.M)
        for page in (ROOT / "docs").rglob("*.md")
    }
    found = {name: lines for name, lines in copies.items() if lines}
    assert set(found) == {"getting-started.md", "development.md"}
    assert all(lines == [command] for lines in found.values()), found


@pytest.mark.timeout(300)
def test_parameter_sections_are_lists_not_wide_tables(reference: str) -> None:
    # A table with Type and Default columns scrolls sideways at 1280 px for
    # SemansysAuth; one entry per line fits any width.
    part = section(reference, "semansys_auth.SemansysAuth")
    assert "<table" not in part
    assert part.count('class="doc-section-item field-body"') >= 17  # its parameters


def is_class_name(name: str) -> bool:
    return name[:1].isupper() and not name.isupper()  # not a CONSTANT


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "name",
    [name for name in reference_objects() if is_class_name(name.rsplit(".", 1)[-1])],
)
def test_reference_documents_every_public_attribute(reference: str, name: str) -> None:
    model = package_model()
    relative = name.removeprefix("semansys_auth.")
    obj = model[relative]  # type: ignore[index]
    assert obj.is_class
    members = [member for member in obj.members if not member.startswith("_")]
    part = section(reference, name)
    # A member is documented when it has an entry of its own (a heading with its
    # id) or a line in the class's Attributes section (an item titled with it).
    missing = [
        member
        for member in members
        if f'id="{name}.{member}"' not in part and f'title="{name}.{member}"' not in part
    ]
    assert missing == [], f"{name}: public members missing from the reference: {missing}"


def docstrings(path: Path) -> list[tuple[int, str]]:
    """Every docstring of a module: of the module, its classes and functions,
    and the strings that document attributes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for statement in body:
            if (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            ):
                found.append((statement.lineno, statement.value.value))
    return found


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_public_docstrings_use_no_sphinx_role(module: str) -> None:
    path = PACKAGE / module
    strings = docstrings(path)
    assert strings, f"{module} has no docstring: the check sees nothing"
    roles = [
        f"{module}:{line}: {match}" for line, text in strings for match in SPHINX_ROLE.findall(text)
    ]
    assert roles == [], "Sphinx roles (mkdocstrings does not render them):\n" + "\n".join(roles)


def test_the_role_check_catches_a_role(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""See :class:`~pkg.Thing`."""\n\n\ndef f():\n    """Uses :meth:`g`."""\n')
    found = [m for _, text in docstrings(sample) for m in SPHINX_ROLE.findall(text)]
    assert found == [":class:`", ":meth:`"]


@pytest.mark.timeout(300)
def test_mermaid_is_served_from_the_site(site: tuple[Path, str]) -> None:
    root, _ = site
    vendored = ROOT / "docs" / "assets" / "mermaid" / "mermaid.min.js"
    built = root / "assets" / "mermaid" / "mermaid.min.js"
    assert built.is_file() and built.read_bytes() == vendored.read_bytes()
    assert (root / "assets" / "mermaid" / "LICENSE").is_file()
    # What SOURCE.txt says it is: the sha256 it records.
    source = (ROOT / "docs" / "assets" / "mermaid" / "SOURCE.txt").read_text(encoding="utf-8")
    recorded = re.search(r"^sha256: ([0-9a-f]{64})$", source, re.MULTILINE)
    assert recorded is not None
    assert hashlib.sha256(vendored.read_bytes()).hexdigest() == recorded.group(1)
    # mkdocs-material fetches mermaid only when the page has not defined it.
    assert re.search(rb'globalThis\["mermaid"\]\s*=', vendored.read_bytes()[-4000:])

    pages = sorted(root.rglob("*.html"))
    with_diagrams = [page for page in pages if 'class="mermaid"' in page.read_text("utf-8")]
    assert len(with_diagrams) >= 1, "no page has a diagram: the check sees nothing"
    for page in pages:
        text = page.read_text(encoding="utf-8")
        remote = re.findall(r"https?://[^\s\"'<>]*mermaid[^\s\"'<>]*", text, re.IGNORECASE)
        assert remote == [], f"{page.relative_to(root)} loads mermaid from the network: {remote}"
    for page in pages:
        scripts = re.findall(r'<script src="([^"]+)"', page.read_text(encoding="utf-8"))
        local = [src for src in scripts if src.endswith("assets/mermaid/mermaid.min.js")]
        if page not in with_diagrams:  # 3.5 MB: only where a diagram needs it
            assert local == [], f"{page.relative_to(root)} loads mermaid for no diagram"
            continue
        assert local, f"{page.relative_to(root)} does not load the vendored mermaid"
        assert (page.parent / local[0]).resolve() == built.resolve()
