"""HTTP routes: the console page, the health check and the WebSocket endpoint."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request

from . import metrics
from .config import CONFIG_KEY, Settings, normalize_origin
from .session import start_echo

bp = Blueprint("echo", __name__)

WEBSOCKET_PATH = "/ws"
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def text_response(status: int, text: str) -> Response:
    return Response(f"{text}\n", status=status, mimetype="text/plain")


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
    ws = request.environ.get("wsgi.websocket")
    if ws is None:
        return text_response(
            400,
            "This server cannot upgrade to WebSocket (is it `flask run`?). "
            "Serve the app with `make run` (gunicorn) or `python app.py`.",
        )
    settings: Settings = current_app.config[CONFIG_KEY]
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, settings.allowed_origins):
        return text_response(403, f"Origin {origin} is not allowed to connect")
    start_echo(ws)
    return Response()  # never sent: the connection belongs to the WebSocket


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
