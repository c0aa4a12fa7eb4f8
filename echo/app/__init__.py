"""The echo application: the browser console, health and metrics, and the echo at ``/ws``.

Built on ``echo.server``'s endpoint API, as any Flask app can be.
"""

from __future__ import annotations

import functools
from pathlib import Path

from flask import Flask

from ..server.flask import FlaskWebSockets
from ..server.settings import Settings
from . import echo, routes
from .settings import EchoSettings

_ROOT = Path(__file__).resolve().parent.parent.parent


def create_app(settings: Settings | None = None, options: EchoSettings | None = None) -> Flask:
    """Build the app; the server's ``settings`` and the app's ``options`` default to the
    ``ECHO_*`` environment."""
    app = Flask(
        __name__,
        template_folder=str(_ROOT / "templates"),
        static_folder=str(_ROOT / "static"),
    )
    app.register_blueprint(routes.bp)
    routes.answer_errors_in_one_line(app)
    routes.answer_server_options(app)
    sockets = FlaskWebSockets(app, settings or Settings.from_env())
    options = options or EchoSettings.from_env()
    sockets.route(echo.PATH, check=functools.partial(echo.check, options))(echo.echo)
    return app
