"""A warning that may come a thousand times a second, logged at most once a minute.

Under a flood (handshakes over the limit, accept() out of file descriptors)
a line per event would bury everything else in the log; one line per minute
with a count says the same.
"""

from __future__ import annotations

import logging
import time
from typing import Any

INTERVAL = 60.0  # seconds


class ThrottledWarning:
    """``logger.warning(message, *args)`` at most once per INTERVAL, with the count since."""

    def __init__(self, logger: logging.Logger, message: str) -> None:
        self._logger = logger
        self._message = f"{message} ({{count}} time(s) since the last such warning)"
        self._count = 0
        self._logged_at = -INTERVAL

    def happened(self, *args: Any) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._logged_at >= INTERVAL:
            self._logger.warning(self._message.format(count=self._count), *args)
            self._logged_at, self._count = now, 0
