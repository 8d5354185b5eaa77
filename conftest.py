"""Every example of README.md and docs/ runs in the test suite (Sybil).

Sybil was chosen over pytest-examples and pytest-markdown-docs because it runs
the blocks of one page in order in one namespace (so a page can build on its
earlier blocks), takes a custom evaluator for shell blocks, and has a skip
directive that stays in the Markdown source. The conventions, also stated on
the site's home page:

* ```` ```python ```` blocks run, in order, in one namespace per page;
* ```` ```bash ```` blocks run with ``bash -eu -o pipefail``;
* ```` ```console ```` and ```` ```text ```` blocks are shown, not run
  (installation steps, output);
* a block titled ``needs the real Semansys service`` is shown, not run;
* ``<!-- skip: next -->`` skips the next block (README's test command: it is
  the suite itself).

Each page runs with an emulator of its own: the ``SEMANSYS_*`` variables point
at it, ``API`` is its API URL, and ``SEMANSYS_TOKEN_CACHE`` is a scratch
directory, so that ``from_env()`` and the command work as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sybil import Document, Example, Region, Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import SkipParser
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

from semansys_auth.testing import SemansysEmulator

REAL_SERVICE = "needs the real Semansys service"
RUNNABLE = ("python", "bash")


class ExampleParser:
    """Fenced blocks whose info string starts with ``python`` or ``bash``."""

    def __init__(self) -> None:
        self.lexer = RawFencedCodeBlockLexer(
            info_pattern=re.compile(r"(?P<info>[^\n]*)\n", re.MULTILINE)
        )
        self.python = PythonEvaluator()

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in self.lexer(document):
            info = str(region.lexemes["info"]).strip()
            language = info.split(" ", 1)[0]
            if language not in RUNNABLE or REAL_SERVICE in info:
                continue
            region.parsed = region.lexemes["source"]
            region.evaluator = self.python if language == "python" else run_bash
            yield region


def run_bash(example: Example) -> None:
    namespace = example.namespace
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
        script.write(str(example.parsed))
    try:
        result = subprocess.run(
            ["bash", "-eu", "-o", "pipefail", script.name],
            cwd=namespace["_scratch"],
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.unlink(script.name)
    assert result.returncode == 0, (
        f"{example.path}:{example.line}: exit {result.returncode}\n{result.stderr[-3000:]}"
    )


def setup(namespace: dict[str, Any]) -> None:
    emulator = SemansysEmulator().start()
    scratch = tempfile.mkdtemp(prefix="semansys-docs-")
    saved = dict(os.environ)
    os.environ.update(
        emulator.env(),
        API=emulator.api_url,
        SEMANSYS_TOKEN_CACHE=str(Path(scratch) / "tokens"),
        PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    )
    namespace.update(_emulator=emulator, _scratch=scratch, _saved_environ=saved)


def teardown(namespace: dict[str, Any]) -> None:
    namespace["_emulator"].stop()
    os.environ.clear()
    os.environ.update(namespace["_saved_environ"])
    import shutil

    shutil.rmtree(namespace["_scratch"], ignore_errors=True)


pytest_collect_file = Sybil(
    parsers=[ExampleParser(), SkipParser()],
    patterns=["README.md", "*.md"],
    setup=setup,
    teardown=teardown,
).pytest()
