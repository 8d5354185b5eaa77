"""pytest plugin (entry point ``pytest11``): the ``semansys_emulator`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._emulator import SemansysEmulator


@pytest.fixture
def semansys_emulator() -> Iterator[SemansysEmulator]:
    """A running [SemansysEmulator][semansys_auth.testing.SemansysEmulator] on 127.0.0.1.

    Fresh for each test: its tokens, failures and request log start empty.
    `semansys_emulator.auth()` gives a [SemansysAuth][semansys_auth.SemansysAuth]
    bound to it and `semansys_emulator.env()` the `SEMANSYS_*` variables.
    """
    with SemansysEmulator() as emulator:
        yield emulator
