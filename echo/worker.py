"""The gunicorn worker: gevent-websocket's, with ``EchoHandler`` and gunicorn's logging."""

from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from gunicorn.workers.ggevent import PyWSGIHandler

from .handler import EchoHandler


class GunicornEchoHandler(PyWSGIHandler, EchoHandler):
    """``EchoHandler`` whose requests reach gunicorn's access log.

    gunicorn's ``PyWSGIHandler`` comes first so its ``log_request`` and
    ``get_environ`` win; the stock gevent-websocket worker drops both.
    """


class EchoWorker(GeventWebSocketWorker):
    """Use as ``worker_class = "echo.worker.EchoWorker"``."""

    wsgi_handler = GunicornEchoHandler
