from __future__ import annotations

import pytest

from helpers import KINDS

# The ``semansys_emulator`` fixture comes from semansys-auth's own pytest plugin
# (entry point ``pytest11``), exactly as users get it.


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each behaviour test runs through requests, httpx, httpx async, httpx2,
    httpx2 async and aiohttp."""
    return str(request.param)


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Test ids in plain ASCII: a character outside it (or a backslash) is named
    as U+XXXX. pytest would escape it instead, and mutmut, which selects tests
    by id, does not always find an escaped id again (and counts that as a kill)."""
    if isinstance(val, str) and not (val.isascii() and val.isprintable() and "\\" not in val):
        return "".join(
            c if c.isascii() and c.isprintable() and c != "\\" else f"U+{ord(c):04X}" for c in val
        )
    return None
