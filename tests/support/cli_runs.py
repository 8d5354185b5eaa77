"""Running the ``semansys-auth`` command as a real subprocess: the command line,
an environment that points it at an emulator and a cache directory, and one
run with a time bound."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from semansys_auth.testing import SemansysEmulator

COMMAND = [sys.executable, "-m", "semansys_auth"]


def environment(emulator: SemansysEmulator | None, cache: Path, **extra: str) -> dict[str, str]:
    """The current environment without any ``SEMANSYS_*`` variable, then the
    emulator's, the cache directory and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    if emulator is not None:
        env.update(emulator.env())
    env["SEMANSYS_CACHE_DIR"] = str(cache)
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """One run of the command with ``args``, its output captured, within 60 s."""
    return subprocess.run(
        COMMAND + args, env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
