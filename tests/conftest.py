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
