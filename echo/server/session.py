"""A WebSocket session: the endpoint's function, with keepalive and metrics around it.

Every endpoint gets the same: pings every ``ping_interval`` and the pong
deadline, the session's metrics, and a closing handshake when the function
returns. A client that leaves while the function sends ends the session as
any close does; any other exception is the application's error: logged
with its traceback, and the connection closed with 1011. Its access-log
line is written when it ends.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gevent import GreenletExit

from ..protocol.errors import ConnectionClosed
from .access_record import SESSION_KEY, AccessRecord, AccessWriter
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


@dataclass(slots=True)
class Session:
    """An upgraded connection, what the handler hands the server to run with pywsgi's frames gone.

    An object with a method rather than ``functools.partial``: a call
    through C would stay on the C stack the connection's greenlet saves at
    every switch (``pool.py``).
    """

    ws: ServerConnection
    endpoint: Endpoint
    record: AccessRecord  # the handshake's, for the session's access-log line
    write_line: AccessWriter

    def serve(self) -> None:
        """Run the endpoint (``run``), then write the session's access-log line.

        A session killed (gunicorn's ``graceful_timeout`` passed with its client
        still holding it, say) is logged too, as dropped by the server.
        """
        try:
            run(self.ws, self.endpoint)
        except GreenletExit:
            self.ws.abort()
            raise
        finally:
            record = self.record
            record.environ[SESSION_KEY] = self.ws.summary()
            record.time_finish = time.time()
            self.write_line(record)
