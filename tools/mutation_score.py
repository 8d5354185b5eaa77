"""Print the mutation score of the last ``mutmut run``, leaving out the mutants
listed in ``mutation-equivalents.txt``.

Usage (from the checkout, after ``mutmut run``)::

    python tools/mutation_score.py [CHECKOUT]

Exit status 0 when every mutant was either killed by a failing test or is
listed and still survives; 1 otherwise: a mutant survived unlisted, a test run
ended in another way (a timeout, a pytest error), or the list is out of date
(mutant names move when the code changes, so each listed one must be checked
again); 2 when there are no results to read.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

EQUIVALENTS = "mutation-equivalents.txt"


def listed_equivalents(path: Path) -> dict[str, str]:
    """Mutant name -> reason, from the lines of ``path`` that are not comments."""
    listed: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"mutation_score: cannot read {path}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, hash_sign, reason = line.partition("#")
        if not hash_sign or not reason.strip() or not name.strip():
            raise SystemExit(f"{path.name}:{number}: expected 'mutant-name  # reason'")
        listed[name.strip()] = reason.strip()
    return listed


def mutant_statuses(root: Path) -> dict[str, str]:
    """Mutant name -> "killed", "survived" or what else happened, from the exit
    codes that ``mutmut run`` records in ``mutants/**/*.meta``.

    Read here rather than through ``mutmut results``, which counts a pytest
    internal error (exit code 3) as a kill: only a failing test (1) is one.
    """
    statuses: dict[str, str] = {}
    for meta in sorted((root / "mutants").rglob("*.meta")):
        try:
            codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"mutation_score: cannot read {meta}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        for name, code in codes.items():
            statuses[name] = {0: "survived", 1: "killed", None: "not checked"}.get(
                code, f"exit code {code}"
            )
    if not statuses:
        print("mutation_score: no results; run 'mutmut run' first", file=sys.stderr)
        raise SystemExit(2)
    return statuses


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    statuses = mutant_statuses(root)
    listed = listed_equivalents(root / EQUIVALENTS)
    counts = Counter(statuses.values())
    unlisted = sorted(
        name for name, status in statuses.items() if status != "killed" and name not in listed
    )
    stale = sorted(name for name in listed if statuses.get(name) != "survived")
    counted = len(statuses) - (len(listed) - len(stale))
    score = counts["killed"] / counted if counted else 0.0
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    print(f"{len(statuses)} mutants: {summary}")
    print(f"{len(listed) - len(stale)} listed as equivalent in {EQUIVALENTS}")
    print(f"score: {counts['killed']} killed of {counted} counted = {score:.1%}")
    for name in unlisted:
        print(f"not killed and not listed: {name} ({statuses[name]})")
    for name in stale:
        print(f"listed but not a surviving mutant (names move when code changes): {name}")
    return 1 if unlisted or stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
