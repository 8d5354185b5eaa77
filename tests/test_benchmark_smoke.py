"""The benchmark script still runs (its quick mode), and reports one token request
for semansys-auth in both concurrency cases. Times are printed, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


@pytest.mark.timeout(600)
def test_benchmark_quick_mode_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=540
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "Part 1: per-request cost" in out and "Part 2:" in out
    ours = [line for line in out.splitlines() if line.startswith("semansys-auth ")]
    assert len(ours) == 1
    cells = ours[0].split()
    assert cells[1:3] == ["1", "1"], ours[0]  # one token request for threads and for tasks
