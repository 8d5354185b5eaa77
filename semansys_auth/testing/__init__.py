"""Testing tools: an offline Semansys identity emulator and a pytest fixture.

>>> from semansys_auth.testing import SemansysEmulator
>>> with SemansysEmulator() as emulator:
...     session.auth = emulator.auth()

With pytest, the ``semansys_emulator`` fixture (registered automatically when
semansys-auth is installed) yields a running emulator.
"""

from ._emulator import Dialect, SemansysEmulator
from ._records import RecordedRequest

__all__ = ["Dialect", "RecordedRequest", "SemansysEmulator"]
