"""The echo endpoint: every message comes back with its type until the client leaves.

The client's close code and reason come back too: the connection answers a
Close frame with the same code and reason (``echo.server.connection``).
"""

from __future__ import annotations

from ..server.connection import ServerConnection

PATH = "/ws"


def echo(ws: ServerConnection) -> None:
    """Send every message back, text as text and binary as binary."""
    while (message := ws.receive()) is not None:
        ws.send(message)
