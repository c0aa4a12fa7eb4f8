"""A second endpoint, written with the API as a user would, gets what /ws gets.

The app is tests/reverse_app.py.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
import uuid

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from echo.server.testing import serving

from .rawws import OP_PING, OP_TEXT, RawClient
from .servers import GUNICORN, TIMEOUT, ServerProcess

APP = "tests.reverse_app:app"
SETTINGS = {
    "ECHO_ALLOWED_ORIGINS": "https://ok.example",
    "ECHO_SUBPROTOCOLS": "reverse.v1",
    "ECHO_PING_INTERVAL": "0.2",
    "ECHO_MAX_MESSAGE_SIZE": "1KiB",
}


def reverses_three_then_closes_4000(url: str) -> None:
    agent = f"test-{uuid.uuid4()}"
    with connect(
        f"{url}/reverse", subprotocols=["other", "reverse.v1"], user_agent_header=agent
    ) as ws:
        assert ws.subprotocol == "reverse.v1"
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        for word in ("abc", "été", "racecar!"):
            ws.send(word)
            assert ws.recv(timeout=TIMEOUT) == word[::-1]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "3 is enough")


def is_served_with_every_check_and_limit(url: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{url}/reverse", origin="https://elsewhere.example")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{url}/ws")  # this app has no /ws
    assert refused.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{url}/reverse?times=10")  # the endpoint's own check
    assert refused.value.response.status_code == 400
    assert refused.value.response.body == b"times= must be 1 to 9\n"
    with connect(f"{url}/reverse?times=1") as ws:
        ws.send("ab")
        assert ws.recv(timeout=TIMEOUT) == "ba"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.reason == "1 is enough"
    http_url = url.replace("ws://", "http://")
    with pytest.raises(urllib.error.HTTPError) as plain:
        urllib.request.urlopen(f"{http_url}/reverse", timeout=TIMEOUT)
    assert plain.value.code == 400
    assert (
        plain.value.read()
        == b"/reverse only accepts WebSocket handshakes; connect with a WebSocket client\n"
    )
    port = int(url.rsplit(":", 1)[1])
    with RawClient(port, "/reverse") as client:
        assert client.recv_frame()[1] == OP_PING  # the keepalive pings every endpoint
        client.send(OP_TEXT, b"x" * 1025)
        assert client.recv_close()[0] == 1009


def test_second_endpoint_under_gunicorn_conf():
    with ServerProcess([*GUNICORN, APP], SETTINGS, health_path=None) as server:
        url = f"ws://127.0.0.1:{server.port}"
        reverses_three_then_closes_4000(url)
        is_served_with_every_check_and_limit(url)
        line = next(
            line for line in server.log().splitlines() if " subprotocol=reverse.v1 " in line
        )
        assert line.endswith(" close=4000 by=server times=3")


def test_second_endpoint_under_python_app_py():
    with ServerProcess([sys.executable, "app.py", APP], SETTINGS, health_path=None) as server:
        url = f"ws://127.0.0.1:{server.port}"
        reverses_three_then_closes_4000(url)
        is_served_with_every_check_and_limit(url)


def test_testing_helper_serves_an_app_on_a_free_port():
    with serving(APP, SETTINGS) as url:
        reverses_three_then_closes_4000(url)


def test_testing_helper_says_why_a_server_did_not_start():
    with (
        pytest.raises(RuntimeError, match="ECHO_PING_INTERVAL"),
        serving(APP, {"ECHO_PING_INTERVAL": "soon"}),
    ):
        pass
