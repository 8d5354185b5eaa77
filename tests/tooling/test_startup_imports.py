"""Start-up: what each entry point imports, checked in a fresh
interpreter (times are measured by benchmarks/bench.py, never asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from semansys_auth.testing import SemansysEmulator

HEAVY = ["requests", "httpx", "httpx2", "aiohttp", "anyio", "oauthlib", "filelock", "redis"]


def loaded_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    script = code + textwrap.dedent(
        """
        import json as _json, sys as _sys
        print(_json.dumps(sorted(_sys.modules)), file=_sys.stderr)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def test_import_semansys_auth_imports_no_http_library() -> None:
    loaded = loaded_after("import semansys_auth")
    assert not loaded & {*HEAVY, "typing", "logging", "cryptography"}


def test_the_auth_object_brings_httpx_only() -> None:
    """requests, aiohttp and their adapters load on first use; oauthlib when a
    token request is built; filelock when a file cache is first locked."""
    loaded = loaded_after("from semansys_auth import SemansysAuth, FileTokenCache")
    assert "httpx" in loaded
    assert not loaded & {"requests", "aiohttp", "oauthlib", "filelock", "redis", "cryptography"}


def test_the_command_with_a_warm_cache_imports_no_http_library(
    semansys_emulator: SemansysEmulator, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMANSYS_")}
    env.update(semansys_emulator.env(), SEMANSYS_TOKEN_CACHE=str(tmp_path / "cache"))
    run = textwrap.dedent(
        """
        import sys, io, contextlib
        from semansys_auth._cli import main
        sys.argv = ["semansys-auth", "token"]
        with contextlib.redirect_stdout(io.StringIO()):
            assert main() == 0
        """
    )
    cold = loaded_after(run, env)
    assert "requests" in cold, "the first run fetched a token"
    importers = tmp_path / "typing-importers"
    warm = loaded_after(TYPING_IMPORTERS.format(str(importers)) + run, env)
    assert not warm & {*HEAVY, "logging", "dataclasses"}
    # Opening the sealed entry needs cryptography's AES-GCM, which imports
    # typing itself; nothing else of cryptography (the sealing key is derived
    # with the standard library's hmac, not cryptography's KDF modules).
    assert "cryptography.hazmat.primitives.ciphers.aead" in warm
    if "typing" in warm:
        by = importers.read_text().split()
        assert by and all(name.startswith("cryptography.") for name in by), by
    assert not {m for m in warm if m.startswith("cryptography.hazmat.primitives.kdf")}
    assert not {m for m in warm if m.startswith("cryptography.hazmat.primitives.hashes")}
    assert len(semansys_emulator.token_requests()) == 1


# Writes to the file {0!r} the name of the module that imports typing.
TYPING_IMPORTERS = textwrap.dedent(
    """
    import sys as _sys

    class _Watch:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "typing":
                frame = _sys._getframe(1)
                while frame is not None and frame.f_globals.get("__name__", "").startswith(
                    ("importlib", "_frozen_importlib")
                ):
                    frame = frame.f_back
                with open({0!r}, "a") as out:
                    print(frame.f_globals.get("__name__") if frame else None, file=out)
            return None

    _sys.meta_path.insert(0, _Watch)
    """
)
