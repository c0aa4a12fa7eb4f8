"""WebSocket endpoints for a Flask app, in the spirit of flask-sock::

    sockets = FlaskWebSockets(app)

    @sockets.route("/reverse")
    def reverse(ws):
        while (message := ws.receive()) is not None:
            ws.send(message[::-1])

The function gets the open connection (``echo.server.connection``) in its own
greenlet, after the server has checked the handshake, the origin, negotiated
a subprotocol and compression and taken a slot; keepalive, limits, deadlines,
1001 at shutdown, the session's log line and metrics come with it. It runs
without Flask's dispatch or request context: ``ws.environ`` has the
handshake's headers, path and query. When it returns the connection is
closed (1000; 1011 if it raised).

Served by ``gunicorn -c gunicorn.conf.py`` or ``echo.server.devserver``. At
each endpoint's path the app answers plain HTTP with a one-line 400, as it
answers a handshake that reached it through another server (``flask run``
cannot upgrade).
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from flask import Flask, Response

from .endpoints import Check, Endpoint, Endpoints
from .settings import Settings

#: Methods answered 400 at an endpoint's path; any other gets the app's 405.
PLAIN_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def text_response(status: int, text: str) -> Response:
    """A one-line answer; its status line is written as every other one, ``400 Bad Request``.

    (Werkzeug would write an integer status in capitals, ``400 BAD REQUEST``.)
    """
    status_line = f"{status} {HTTPStatus(status).phrase}"
    return Response(f"{text}\n", status=status_line, mimetype="text/plain")


class FlaskWebSockets:
    """The WebSocket endpoints of one Flask app, and the settings they are served with.

    ``settings`` default to the ``ECHO_*`` environment (``Settings.from_env``).
    """

    def __init__(self, app: Flask | None = None, settings: Settings | None = None) -> None:
        self.endpoints = Endpoints(settings or Settings.from_env())
        self._app: Flask | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Serve this registry's endpoints in ``app`` (for an app factory)."""
        app.extensions[Endpoints.KEY] = self.endpoints
        self._app = app
        for path in self.endpoints:
            _answer_http(app, path)

    def route(self, path: str, check: Check | None = None) -> Callable[[Endpoint], Endpoint]:
        """Decorate the function that serves WebSocket connections at ``path``.

        ``check``, if given, sees each handshake before it is accepted
        (``endpoints.Check``): it may refuse it, and what it returns is the
        connection's ``params``.
        """

        def register(function: Endpoint) -> Endpoint:
            self.endpoints.add(path, function, check)
            if self._app is not None:
                _answer_http(self._app, path)
            return function

        return register


def _answer_http(app: Flask, path: str) -> None:
    name = f"websocket {path}"

    def plain_http() -> Response:
        return text_response(
            400, f"{path} only accepts WebSocket handshakes; connect with a WebSocket client"
        )

    def not_upgraded() -> Response:
        return text_response(
            400,
            "This server cannot upgrade to WebSocket (is it `flask run`?). "
            "Serve the app with gunicorn (`make run`) or echo.server.devserver.",
        )

    app.add_url_rule(path, f"{name} (HTTP)", plain_http, methods=PLAIN_METHODS)
    app.add_url_rule(path, f"{name} (handshake)", not_upgraded, websocket=True)
