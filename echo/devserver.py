"""``python app.py``: gevent's WSGI server with the production handler and settings."""

from __future__ import annotations

import contextlib
import logging
import os
import signal

import gevent
from flask import Flask
from gevent.event import Event
from gevent.pool import Pool

from . import memory
from .config import CONFIG_KEY, bind_host, host_address
from .handler import EchoHandler
from .server import EchoServer
from .websocket import EchoWebSocket


def serve(app: Flask) -> None:
    """Serve ``app`` on ``HOST``:``PORT`` (default 127.0.0.1:8000) until interrupted."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    memory.tune_process()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # A pool, so that stop() waits for the connections' closing handshakes.
    server = EchoServer((host_address(host), port), app, handler_class=EchoHandler, spawn=Pool())
    logging.getLogger(__name__).info(
        "development server on http://%s:%d (WebSocket at /ws); use `make run` in production",
        bind_host(host),
        port,
    )
    server.start()
    stopping = Event()
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    with contextlib.suppress(KeyboardInterrupt):
        stopping.wait()
    # Ctrl-C or SIGTERM: every WebSocket gets 1001 once idle, then the server stops.
    EchoWebSocket.go_away_all()
    server.stop(timeout=app.config[CONFIG_KEY].close_timeout)
