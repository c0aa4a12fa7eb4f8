"""The development server: gevent's WSGI server with the production handler and settings.

``python app.py`` runs it, for this app or any other (``python app.py MODULE:APP``);
so does ``python -m echo.server.devserver MODULE:APP`` (``echo.server.testing``).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from typing import Any

import gevent
from gevent.event import Event

from . import memory
from .connection import ServerConnection
from .handler import UpgradeHandler
from .pool import ConnectionPool
from .server import WebSocketServer
from .settings import ConfigError, ListenAddress


def serve(app: Any) -> None:
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
    server = WebSocketServer(listener, app, handler_class=UpgradeHandler, spawn=ConnectionPool())
    try:
        server.start()
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ConfigError(f"cannot listen on {address.bind}: {reason}") from None
    paths = ", ".join(server.endpoints) or "no WebSocket endpoint"
    logging.getLogger(__name__).info(
        "development server on http://%s (%s); use `make run` in production", address.bind, paths
    )
    # Handled by the event loop: a KeyboardInterrupt would be printed by gevent's hub.
    stopping = Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(stop_signal, stopping.set)
    stopping.wait()
    # Ctrl-C or SIGTERM: every WebSocket gets 1001 once idle, then the server stops.
    ServerConnection.go_away_all()
    server.stop(timeout=server.settings.close_timeout)


def load(path: str) -> Any:
    """The application at ``path``: ``"module:name"`` (``name`` defaults to ``app``)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name or "app")


def main() -> None:
    """``python -m echo.server.devserver MODULE:APP``."""
    try:
        serve(load(sys.argv[1]))
    except ConfigError as error:
        raise SystemExit(f"devserver: {error}") from None


if __name__ == "__main__":
    main()
