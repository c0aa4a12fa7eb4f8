"""``python app.py``: gevent's WSGI server with the production handler and settings."""

from __future__ import annotations

import logging
import os

from flask import Flask
from gevent.pywsgi import WSGIServer

from .handler import EchoHandler


def serve(app: Flask) -> None:
    """Serve ``app`` on ``HOST``:``PORT`` (default 127.0.0.1:8000) until interrupted."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = WSGIServer((host, port), app, handler_class=EchoHandler)
    logging.getLogger(__name__).info(
        "development server on http://%s:%d (WebSocket at /ws); use `make run` in production",
        host,
        port,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
