"""The app's HTTP: the console page, the health check, metrics, and one-line refusals."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, render_template, request
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import WebsocketMismatch

from ..protocol.excerpt import excerpt
from ..server import metrics
from ..server.endpoints import Endpoints
from ..server.flask import text_response
from .echo import PATH

bp = Blueprint("echo", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html", websocket_path=PATH)


@bp.get("/healthz")
def healthz() -> Response:
    return text_response(200, "ok")


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    if not Endpoints.of(current_app).settings.metrics:
        return text_response(404, "metrics are turned off (ECHO_METRICS=off)")
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


def answer_errors_in_one_line(app: Flask) -> None:
    """404 and 405 as one line of text, as every other refusal, not Flask's HTML pages."""
    app.register_error_handler(NotFound, _not_found)
    app.register_error_handler(MethodNotAllowed, _method_not_allowed)
    app.register_error_handler(WebsocketMismatch, _no_websocket_here)


def answer_server_options(app: Flask) -> None:
    """``OPTIONS *`` asks what the server supports, not what a path does (RFC 9110
    section 9.3.7): 200 with ``Allow``, as for ``OPTIONS /``, not a 404 for ``/*``.
    Proxies and monitors send it to see that a server is up."""
    app.before_request(_server_options)


def _server_options() -> Response | None:
    if request.method != "OPTIONS" or request.environ.get("PATH_INFO") != "*":
        return None  # any other request goes on to its route
    response = Response(status=200)
    response.headers["Allow"] = "GET, HEAD, OPTIONS"
    return response


def _not_found(error: NotFound) -> Response:
    return text_response(
        404, f"Nothing at {excerpt(request.path)}: the console is at /, the WebSocket at {PATH}"
    )


def _method_not_allowed(error: MethodNotAllowed) -> Response:
    """A one-line reason and ``Allow``."""
    if request.path in Endpoints.of(current_app):
        allowed = ["GET"]
        reason = f"{request.path} only accepts WebSocket handshakes, which use GET"
    else:
        allowed = sorted(error.valid_methods or [])
        reason = f"{excerpt(request.path)} answers {', '.join(allowed)}"
    response = text_response(405, f"{request.method} is not allowed: {reason}")
    response.headers["Allow"] = ", ".join(allowed)
    return response


def _no_websocket_here(error: WebsocketMismatch) -> Response:
    """A handshake that reached the app (another server) at a path with no endpoint: 404."""
    return text_response(
        404, f"No WebSocket endpoint at {excerpt(request.path)}; connect to {PATH}"
    )
