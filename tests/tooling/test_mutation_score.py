"""tools/mutation_score.py: the score it prints from mutmut's records, and how
it catches a list of equivalent mutants that no longer matches the code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "mutation_score.py"


def score(root: Path, codes: dict[str, int | None], listed: str) -> tuple[int, str, str]:
    (root / "mutants" / "pkg").mkdir(parents=True, exist_ok=True)
    meta = {"exit_code_by_key": codes, "durations_by_key": {}}
    (root / "mutants" / "pkg" / "m.py.meta").write_text(json.dumps(meta), encoding="utf-8")
    (root / "mutation-equivalents.txt").write_text(listed, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(TOOL), str(root)], capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout, done.stderr


def test_listed_survivors_are_left_out_of_the_score(tmp_path: Path) -> None:
    codes: dict[str, int | None] = {"m_1": 1, "m_2": 1, "m_3": 1, "m_4": 0}
    code, out, _ = score(tmp_path, codes, "# comment\n\nm_4  # the same behaviour\n")
    assert code == 0
    assert out.splitlines() == [
        "4 mutants: 3 killed, 1 survived",
        "1 listed as equivalent in mutation-equivalents.txt",
        "score: 3 killed of 3 counted = 100.0%",
    ]


def test_an_unlisted_survivor_counts_against_the_score(tmp_path: Path) -> None:
    code, out, _ = score(tmp_path, {"m_1": 1, "m_2": 0, "m_3": 0}, "m_3  # why\n")
    assert code == 1
    assert "score: 1 killed of 2 counted = 50.0%" in out
    assert "not killed and not listed: m_2 (survived)" in out


@pytest.mark.parametrize(
    ("exit_code", "shown"), [(3, "exit code 3"), (36, "exit code 36"), (None, "not checked")]
)
def test_only_a_failing_test_is_a_kill(tmp_path: Path, exit_code: int | None, shown: str) -> None:
    code, out, _ = score(tmp_path, {"m_1": 1, "m_2": exit_code}, "")
    assert code == 1
    assert "score: 1 killed of 2 counted = 50.0%" in out
    assert f"not killed and not listed: m_2 ({shown})" in out


def test_a_listed_mutant_that_is_killed_or_gone_is_reported(tmp_path: Path) -> None:
    code, out, _ = score(tmp_path, {"m_1": 1, "m_2": 1}, "m_2  # why\nm_9  # why\n")
    assert code == 1
    assert "score: 2 killed of 2 counted = 100.0%" in out
    for name in ("m_2", "m_9"):
        assert f"listed but not a surviving mutant (names move when code changes): {name}" in out


def test_a_line_without_a_reason_is_refused(tmp_path: Path) -> None:
    code, _, err = score(tmp_path, {"m_1": 0}, "m_1\n")
    assert code == 1
    assert "mutation-equivalents.txt:1: expected 'mutant-name  # reason'" in err


def test_without_results_it_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "mutation-equivalents.txt").write_text("", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(TOOL), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr == "mutation_score: no results; run 'mutmut run' first\n"
