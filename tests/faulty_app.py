"""The echo app plus a WebSocket endpoint whose session fails: the server-error path, for real.

``/fail`` reads one message, then raises, as a bug in an application's
endpoint would.
"""

from echo.app import create_app
from echo.server.connection import ServerConnection
from echo.server.endpoints import Endpoints

app = create_app()


def fail_after_one_message(ws: ServerConnection) -> None:
    ws.receive()
    raise RuntimeError("the application failed")


Endpoints.of(app).add("/fail", fail_after_one_message)
