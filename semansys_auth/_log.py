"""The package's logger, ``semansys_auth``, made on first real use.

``import logging`` costs about 8 ms, a tenth of the command's start-up budget.
Until some code has imported logging, no handler or level can have been set up,
so a record below WARNING would only reach logging's last-resort handler, which
drops it: debug lines are skipped then, without importing logging. Warnings
always go through logging.
"""

from __future__ import annotations

import sys

# typing is not imported at run time: it costs 7 ms of the command's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Logger:
    __slots__ = ("_logger",)

    def __init__(self) -> None:
        self._logger: Any = None

    def _real(self) -> Any:
        if self._logger is None:
            from ._fork import IMPORTING

            with IMPORTING:
                import logging

            self._logger = logging.getLogger("semansys_auth")
        return self._logger

    def debug(self, message: str, *args: object) -> None:
        if "logging" in sys.modules:
            self._real().debug(message, *args)

    def warning(self, message: str, *args: object, **options: Any) -> None:
        self._real().warning(message, *args, **options)


logger = _Logger()
