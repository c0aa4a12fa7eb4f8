"""A WebSocket session: the endpoint's function, with keepalive and metrics around it.

Every endpoint gets the same: pings every ``ping_interval`` and the pong
deadline, the session's metrics, and a closing handshake when the function
returns. A client that leaves while the function sends ends the session as
any close does; any other exception is the application's error: logged
with its traceback, and the connection closed with 1011.
"""

from __future__ import annotations

import logging

from ..protocol.errors import ConnectionClosed
from .connection import ServerConnection
from .endpoints import Endpoint
from .keepalive import Keepalive
from .metrics import SessionMetrics

log = logging.getLogger(__name__)


def run(ws: ServerConnection, endpoint: Endpoint) -> None:
    """Run ``endpoint`` on the open ``ws``; return once its closing handshake is over."""
    settings = ws.settings
    recorder = SessionMetrics(ws)
    failed = False
    try:
        with Keepalive(ws, settings.ping_interval, settings.ping_timeout, recorder.pong):
            endpoint(ws)
    except ConnectionClosed:
        pass  # the client left, or the server is closing: the connection says which
    except Exception:
        failed = True
        log.exception("[%s] unhandled error serving %s", ws.id, ws.environ.get("PATH_INFO"))
    ws.close_and_wait(1011 if failed else 1000)
