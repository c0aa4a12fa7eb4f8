"""``python app.py``: gevent's WSGI server with the production handler and settings."""

from __future__ import annotations

import logging
import os
import signal

import gevent
from flask import Flask
from gevent.event import Event
from gevent.pool import Pool

from . import memory
from .config import CONFIG_KEY, ConfigError, ListenAddress
from .handler import EchoHandler
from .server import EchoServer
from .websocket import EchoWebSocket


def serve(app: Flask) -> None:
    """Serve ``app`` on ``HOST``:``PORT`` (default 127.0.0.1:8000) until interrupted.

    ``ConfigError`` if the address is wrong or cannot be listened on.
    """
    address = ListenAddress.from_env()
    memory.tune_process()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # A pool, so that stop() waits for the connections' closing handshakes.
    listener = (address.host, address.port)
    server = EchoServer(listener, app, handler_class=EchoHandler, spawn=Pool())
    try:
        server.start()
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ConfigError(f"cannot listen on {address.bind}: {reason}") from None
    logging.getLogger(__name__).info(
        "development server on http://%s (WebSocket at /ws); use `make run` in production",
        address.bind,
    )
    # Handled by the event loop: a KeyboardInterrupt would be printed by gevent's hub.
    stopping = Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(stop_signal, stopping.set)
    stopping.wait()
    # Ctrl-C or SIGTERM: every WebSocket gets 1001 once idle, then the server stops.
    EchoWebSocket.go_away_all()
    server.stop(timeout=app.config[CONFIG_KEY].close_timeout)
