"""A second app on the endpoint API, as a user would write one (tests/test_endpoint_api.py).

Each text message comes back reversed; after three, the server closes with 4000.
"""

from flask import Flask

from echo.server.connection import ServerConnection
from echo.server.flask import FlaskWebSockets

app = Flask(__name__)
sockets = FlaskWebSockets(app)


@sockets.route("/reverse")
def reverse(ws: ServerConnection) -> None:
    for _ in range(3):
        message = ws.receive()
        if message is None:
            return
        ws.send(message[::-1])
    ws.close(4000, "three is enough")
