"""A second app on the endpoint API, as a user would write one (tests/test_endpoint_api.py).

Each text message comes back reversed; after three (or ``?times=N``), the
server closes with 4000.
"""

from urllib.parse import parse_qs

from flask import Flask

from echo.protocol.errors import HandshakeRejected
from echo.server.connection import ServerConnection
from echo.server.endpoints import HandshakeRequest
from echo.server.flask import FlaskWebSockets

app = Flask(__name__)
sockets = FlaskWebSockets(app)


def times(request: HandshakeRequest) -> int:
    """``?times=N``, 1 to 9 (3 without it), or a 400 before the handshake is accepted."""
    raw = parse_qs(request.environ.get("QUERY_STRING", "")).get("times", ["3"])[0]
    if not (len(raw) == 1 and raw in "123456789"):
        raise HandshakeRejected("400 Bad Request", "times= must be 1 to 9", "bad_times")
    return int(raw)


@sockets.route("/reverse", check=times)
def reverse(ws: ServerConnection) -> None:
    ws.note("times", ws.params)
    for _ in range(ws.params):
        message = ws.receive()
        if message is None:
            return
        ws.send(message[::-1])
    ws.close(4000, f"{ws.params} is enough")
