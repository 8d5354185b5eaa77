"""Release hygiene: ``python -m build`` gives an sdist and a wheel that pass
``twine check --strict``, and the wheel alone, installed in a fresh virtual
environment, has the version, ``py.typed``, the command and the pytest fixture."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import semansys_auth

ROOT = Path(__file__).resolve().parents[2]


def run(*command: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.timeout(900)
def test_the_wheel_alone_has_everything(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT))
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert wheel.name.startswith(f"semansys_auth-{semansys_auth.__version__}-")
    run(sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist))

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    python = venv / "bin" / "python"
    run(str(python), "-m", "pip", "install", "--quiet", str(wheel))
    facts = run(
        str(python),
        "-c",
        textwrap.dedent(
            """
            import importlib.metadata as metadata, pathlib, semansys_auth
            package = pathlib.Path(semansys_auth.__file__).parent
            print(semansys_auth.__version__)
            print((package / "py.typed").is_file())
            print(metadata.version("semansys-auth"))
            print(sorted(e.value for e in metadata.entry_points(group="pytest11")
                         if e.name == "semansys_auth"))
            print(sorted(e.value for e in metadata.entry_points(group="console_scripts")
                         if e.name == "semansys-auth"))
            print((package / "testing" / "pytest_plugin.py").is_file())
            """
        ),
    ).split("\n")
    version = semansys_auth.__version__
    assert facts[:6] == [
        version,
        "True",
        version,
        "['semansys_auth.testing.pytest_plugin']",
        "['semansys_auth._cli:main']",
        "True",
    ]
    assert run(str(venv / "bin" / "semansys-auth"), "--version").strip() == (
        f"semansys-auth {version}"
    )
