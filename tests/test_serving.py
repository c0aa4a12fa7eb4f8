"""Every way to serve the app behaves: gunicorn conventions, python app.py, flask run."""

from __future__ import annotations

import sys
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from .servers import DEV_SERVER, GUNICORN, ServerProcess, free_port


def test_dev_server_echoes_with_the_same_settings():
    with ServerProcess(DEV_SERVER, {"ECHO_MAX_MESSAGE_SIZE": "1KiB"}) as server:
        with connect(server.ws_url) as ws:
            ws.send("via python app.py")
            assert ws.recv() == "via python app.py"
            ws.send(b"x" * 1025)
            with pytest.raises(ConnectionClosedError) as closed:
                ws.recv()
        assert closed.value.rcvd.code == 1009


def test_flask_run_answers_handshake_with_a_clear_4xx():
    server = ServerProcess([sys.executable, "-m", "flask", "--app", "app", "run"])
    server.env["FLASK_RUN_PORT"] = str(server.port)  # flask run ignores PORT
    with server, pytest.raises(InvalidStatus) as error:
        connect(server.ws_url)
    assert error.value.response.status_code == 400
    assert b"make run" in error.value.response.body


@pytest.mark.parametrize("command", [GUNICORN, DEV_SERVER], ids=["gunicorn", "dev-server"])
def test_invalid_setting_stops_startup_naming_it(command):
    server = ServerProcess(command, {"ECHO_PING_INTERVAL": "soon"}).start(wait=False)
    assert server.wait_exit() != 0
    assert "ECHO_PING_INTERVAL (setting ping_interval) = 'soon'" in server.log()


def test_gunicorn_cmd_args_and_web_concurrency_respected():
    server = ServerProcess(GUNICORN, {"WEB_CONCURRENCY": "2"})
    server.env["GUNICORN_CMD_ARGS"] = f"--bind 127.0.0.1:{server.port}"
    server.env["PORT"] = str(free_port())  # what gunicorn.conf.py binds unless overridden
    with server:
        server.wait_all_workers_serving(2)


def test_make_run_serves_page_and_echo():
    with ServerProcess(["make", "--no-print-directory", "run"]) as server:
        with urllib.request.urlopen(server.http_url) as response:
            assert b"WebSocket Server URL" in response.read()
        with connect(server.ws_url) as ws:
            ws.send("via make run")
            assert ws.recv() == "via make run"
