"""The echo loop that runs, one greenlet per connection, behind ``/ws``."""

from __future__ import annotations

from .errors import ConnectionClosed
from .keepalive import Keepalive
from .metrics import SessionMetrics
from .websocket import EchoWebSocket


def start_echo(ws: EchoWebSocket) -> None:
    """Accept ``ws``; once the view has returned, echo until the client leaves."""
    ws.accept(session=_echo)


def _echo(ws: EchoWebSocket) -> None:
    """Send every message back with its type until the client leaves."""
    settings = ws.settings
    recorder = SessionMetrics(ws)
    with Keepalive(ws, settings.ping_interval, settings.ping_timeout, recorder.pong):
        while (message := ws.receive()) is not None:
            try:
                ws.send(message)
            except ConnectionClosed:
                break
