"""The echo app plus a WebSocket endpoint whose session fails: the server-error path, for real.

``/fail`` accepts, reads one message, then raises, as a bug in an application
session would.
"""

from echo import create_app
from echo.routes import WEBSOCKET_ENDPOINTS
from echo.websocket import EchoWebSocket

app = create_app()


def fail(ws: EchoWebSocket, environ: dict, settings: object) -> None:
    ws.accept(session=_fail_after_one_message)


app.extensions[WEBSOCKET_ENDPOINTS]["/fail"] = fail


def _fail_after_one_message(ws: EchoWebSocket) -> None:
    ws.receive()
    raise RuntimeError("the application failed")
