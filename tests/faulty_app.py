"""The echo app plus a WebSocket endpoint whose session fails: the server-error path, for real.

``/fail`` accepts, reads one message, then raises, as a bug in an application
session would.
"""

from flask import Response, request

from echo import create_app
from echo.websocket import EchoWebSocket

app = create_app()


@app.get("/fail", websocket=True)
def fail() -> Response:
    request.environ["wsgi.websocket"].accept(session=_fail_after_one_message)
    return Response()


def _fail_after_one_message(ws: EchoWebSocket) -> None:
    ws.receive()
    raise RuntimeError("the application failed")
