"""A WebSocket echo server: Flask on gevent-websocket, served by gunicorn."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import WebsocketMismatch

from .config import CONFIG_KEY, Settings
from .excerpt import excerpt
from .routes import WEBSOCKET_ENDPOINTS, WEBSOCKET_PATH, accept_echo, bp, text_response

_ROOT = Path(__file__).resolve().parent.parent


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; without ``settings`` they come from the ``ECHO_*`` environment."""
    app = Flask(
        __name__,
        template_folder=str(_ROOT / "templates"),
        static_folder=str(_ROOT / "static"),
    )
    app.config[CONFIG_KEY] = settings or Settings.from_env()
    app.register_blueprint(bp)
    app.extensions[WEBSOCKET_ENDPOINTS] = {WEBSOCKET_PATH: accept_echo}
    app.register_error_handler(WebsocketMismatch, _no_websocket_here)
    app.register_error_handler(MethodNotAllowed, _method_not_allowed)
    app.register_error_handler(NotFound, _not_found)
    return app


def _not_found(error: NotFound) -> Response:
    """One line, as every other refusal, instead of Flask's HTML page."""
    return text_response(
        404, f"Nothing at {excerpt(request.path)}: the console is at /, the WebSocket at /ws"
    )


def _method_not_allowed(error: MethodNotAllowed) -> Response:
    """A one-line reason and ``Allow``, as for every other refusal, not Flask's HTML page."""
    if request.path == WEBSOCKET_PATH:
        allowed = ["GET"]
        reason = f"{WEBSOCKET_PATH} only accepts WebSocket handshakes, which use GET"
    else:
        allowed = sorted(error.valid_methods or [])
        reason = f"{excerpt(request.path)} answers {', '.join(allowed)}"
    response = text_response(405, f"{request.method} is not allowed: {reason}")
    response.headers["Allow"] = ", ".join(allowed)
    return response


def _no_websocket_here(error: WebsocketMismatch) -> Response:
    """A handshake to a path that serves plain HTTP only: 404, never an upgrade."""
    return text_response(
        404, f"No WebSocket endpoint at {excerpt(request.path)}; connect to {WEBSOCKET_PATH}"
    )
