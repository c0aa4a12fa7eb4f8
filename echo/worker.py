"""The gunicorn worker: gevent-websocket's, with ``EchoHandler`` and gunicorn's logging."""

from types import FrameType

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from gunicorn.workers.ggevent import PyWSGIHandler

from .handler import EchoHandler
from .websocket import EchoWebSocket


class GunicornEchoHandler(PyWSGIHandler, EchoHandler):
    """``EchoHandler`` whose requests reach gunicorn's access log.

    gunicorn's ``PyWSGIHandler`` comes first so its ``log_request`` and
    ``get_environ`` win; the stock gevent-websocket worker drops both.
    """


class EchoWorker(GeventWebSocketWorker):
    """Use as ``worker_class = "echo.worker.EchoWorker"``.

    On shutdown (SIGTERM, which is also how a reload retires old workers) every
    open WebSocket is closed with 1001 once idle, so clients see a clean close
    instead of the stock worker's dropped connection (1006) at graceful_timeout.
    """

    wsgi_handler = GunicornEchoHandler

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        EchoWebSocket.go_away_all()

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        # Quick shutdown (SIGQUIT, SIGINT): a Close frame where one can go now.
        gevent.spawn(EchoWebSocket.abort_all)
        super().handle_quit(sig, frame)
