"""HTTP routes: the console page, the health check and the WebSocket endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, render_template

from . import metrics
from .config import CONFIG_KEY, Settings, normalize_origin
from .excerpt import excerpt
from .session import start_echo

if TYPE_CHECKING:
    from .websocket import EchoWebSocket

bp = Blueprint("echo", __name__)

WEBSOCKET_PATH = "/ws"
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def text_response(status: int, text: str) -> Response:
    """A one-line answer; its status line is written as every other one, ``400 Bad Request``.

    (Werkzeug would write an integer status in capitals, ``400 BAD REQUEST``.)
    """
    return Response(
        f"{text}\n", status=f"{status} {HTTPStatus(status).phrase}", mimetype="text/plain"
    )


@bp.get("/")
def index() -> str:
    return render_template("index.html", websocket_path=WEBSOCKET_PATH)


@bp.get("/healthz")
def healthz() -> Response:
    return text_response(200, "ok")


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    if not current_app.config[CONFIG_KEY].metrics:
        return text_response(404, "metrics are turned off (ECHO_METRICS=off)")
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.get(WEBSOCKET_PATH, websocket=True)
def echo_socket() -> Response:
    """A handshake that reached Flask: the server is not this project's, which serves it itself."""
    return text_response(
        400,
        "This server cannot upgrade to WebSocket (is it `flask run`?). "
        "Serve the app with `make run` (gunicorn) or `.venv/bin/python app.py`.",
    )


def accept_echo(
    ws: EchoWebSocket, environ: Mapping[str, Any], settings: Settings
) -> tuple[int, str] | None:
    """Start the echo loop on ``ws``, or the refusal (status and reason) of its origin.

    ``EchoHandler`` calls it for a handshake to ``/ws`` without a Flask
    dispatch (``WEBSOCKET_ENDPOINTS``), which would cost more than the rest of
    the request.
    """
    origin = environ.get("HTTP_ORIGIN")
    if not origin_allowed(origin, settings.allowed_origins):
        return 403, f"Origin {excerpt(origin)} is not allowed to connect"
    start_echo(ws)
    return None


#: The WebSocket endpoints by path, registered in ``app.extensions`` under this key.
WEBSOCKET_ENDPOINTS = "echo.websocket_endpoints"


@bp.route(WEBSOCKET_PATH, methods=_ALL_METHODS)
def echo_socket_plain_http() -> Response:
    return text_response(
        400, f"{WEBSOCKET_PATH} only accepts WebSocket handshakes; connect with a WebSocket client"
    )


def origin_allowed(origin: str | None, allowed: frozenset[str] | None) -> bool:
    """``None`` allows any origin; clients that send none (not browsers) are always allowed."""
    if allowed is None or origin is None:
        return True
    return normalize_origin(origin) in allowed
