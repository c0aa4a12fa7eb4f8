"""The echo endpoint: every message comes back with its type until the client leaves.

The client's close code and reason come back too: the connection answers a
Close frame with the same code and reason (``echo.server.connection``).
A handshake may ask for test modes and ``hello`` in its query
(``modes``, ``hello``): without them the endpoint is the four lines of
``echo``, and nothing unsolicited is ever sent.
"""

from __future__ import annotations

import dataclasses

from ..protocol.errors import HandshakeRejected
from ..server.connection import ServerConnection
from ..server.endpoints import HandshakeRequest
from .hello import describe
from .modes import HELLO, Modes, parse, read_query
from .scripted import run_with_modes
from .settings import EchoSettings

PATH = "/ws"


def echo(ws: ServerConnection) -> None:
    """Send every message back, text as text and binary as binary."""
    if ws.params is not None:
        run_with_modes(ws, ws.params)
        return
    while (message := ws.receive()) is not None:
        ws.send(message)


def check(settings: EchoSettings, request: HandshakeRequest) -> Modes | None:
    """The handshake's test modes (``None``: a plain echo); a 400 for a bad one."""
    query = request.environ.get("QUERY_STRING")
    if not query:
        return None
    given, ignored = read_query(query)
    if not given:
        return None
    if not settings.test_modes:
        raise HandshakeRejected(
            "400 Bad Request", "test modes are turned off on this server", "test_mode"
        )
    asked = parse(given, request.settings.max_message_size)
    if HELLO not in given:
        return asked
    description = describe(request, asked.given, ignored, settings.hidden_headers)
    return dataclasses.replace(asked, hello=description)
