"""Every way to serve the app behaves: gunicorn conventions, python app.py, flask run."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect, unix_connect

from .rawws import RawClient
from .servers import (
    DEV_SERVER,
    GUNICORN,
    TIMEOUT,
    ServerProcess,
    free_port,
    socket_option,
    wait_for,
)


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


BAD_STARTS = {
    "setting": (
        {"ECHO_MAX_MESSAGE_SIZE": "lots"},
        "ECHO_MAX_MESSAGE_SIZE (setting max_message_size) = 'lots': "
        "must be a byte count such as 1048576 or 1MiB",
    ),
    "port": ({"PORT": "eighty"}, "PORT = 'eighty': must be a port number from 0 to 65535"),
    "host": ({"HOST": "nowhere.invalid"}, "HOST = 'nowhere.invalid': Name or service not known"),
}
CERTIFICATE = (
    {"GUNICORN_CMD_ARGS": "--certfile /nonexistent/cert.pem --keyfile /nonexistent/key.pem"},
    "cannot use --certfile /nonexistent/cert.pem --keyfile /nonexistent/key.pem:"
    " No such file or directory",
)

PROXY_PROTOCOL = (
    {"GUNICORN_CMD_ARGS": "--proxy-protocol v1"},
    "--proxy-protocol v1 is not supported by this worker;"
    " have the proxy send X-Forwarded-For (forwarded_allow_ips) instead",
)


@pytest.mark.parametrize(
    ("command", "bad"),
    [
        *(pytest.param(GUNICORN, bad, id=f"gunicorn-{name}") for name, bad in BAD_STARTS.items()),
        *(
            pytest.param(DEV_SERVER, bad, id=f"dev-server-{name}")
            for name, bad in BAD_STARTS.items()
        ),
        pytest.param(GUNICORN, CERTIFICATE, id="gunicorn-certificate"),
        pytest.param(GUNICORN, PROXY_PROTOCOL, id="gunicorn-proxy-protocol"),
    ],
)
def test_bad_start_is_one_line_naming_the_setting_and_leaves_no_files(command, bad):
    env, message = bad
    server = ServerProcess(command, env).start(wait=False)
    assert server.wait_exit() != 0
    *gunicorn_lines, line = server.log().strip().splitlines()
    assert line.endswith(message), line
    assert all(" [INFO] Starting gunicorn " in extra for extra in gunicorn_lines), gunicorn_lines
    assert [path.name for path in server.log_path.parent.iterdir()] == ["server.log"]


def test_gunicorn_parser_settings_this_worker_does_not_apply_are_said_at_start():
    """gunicorn's request limits belong to its own HTTP parser, which this worker
    replaces, and its statsd metrics to a logger class it does not use: a user who
    sets one is told what applies instead."""
    args = "--limit-request-line 100 --keep-alive 5 --statsd-host 127.0.0.1:9"
    with ServerProcess(GUNICORN, {"GUNICORN_CMD_ARGS": args}) as server:
        with connect(f"{server.ws_url}?{'x' * 200}") as ws:  # a line over 100 bytes
            ws.send("still served")
            assert ws.recv() == "still served"
        warnings = [line for line in server.log().splitlines() if "[WARNING]" in line]
    assert [line.split("[WARNING] ", 1)[1] for line in warnings] == [
        "limit_request_line = 100 is not applied by this worker:"
        " a request line is bounded at 8 KiB (414)",
        "keepalive = 5 is not applied by this worker:"
        " an idle kept-alive connection is closed after ECHO_READ_TIMEOUT",
        "statsd_host = ('127.0.0.1', 9) is not applied by this worker:"
        " metrics are served for Prometheus at /metrics",
    ]


def test_a_unix_socket_bind_serves_hello_and_names_the_forwarded_client(tmp_path):
    """gunicorn's ``--bind unix:PATH``, as a proxy on the same host uses one: ``?hello``
    names the socket as the peer (it was a traceback: a Unix peer has no host and port),
    and X-Forwarded-For names the client, as gunicorn trusts a Unix socket's peer
    whatever forwarded_allow_ips says (it was ignored: every access line said '-'). A
    refusal's log lines name no empty address (the access line began with a space)."""
    path = tmp_path / "echo.sock"
    server = start_on_a_unix_socket(path)
    try:
        headers = {"X-Forwarded-For": "203.0.113.9", "User-Agent": "unix-socket-client"}
        with unix_connect(str(path), "ws://echo/ws?hello", additional_headers=headers) as ws:
            hello = json.loads(ws.recv())
            ws.send("over a Unix socket")
            assert ws.recv() == "over a Unix socket"
        assert (hello["peer"], hello["client"]) == (f"unix:{path}", "203.0.113.9")
        assert server.log_line("unix-socket-client").startswith("203.0.113.9 - - [")
        with socket.socket(socket.AF_UNIX) as refused:  # no Host: 400, and two log lines
            refused.connect(str(path))
            refused.sendall(b"GET /unix-refused HTTP/1.1\r\n\r\n")
            assert refused.recv(100).startswith(b"HTTP/1.1 400 ")
        assert server.log_line("/unix-refused").startswith("- - - [")  # not an empty field
        assert f"rejected request from unix:{path}: an HTTP/1.1 request must" in server.log()
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_a_failed_tls_handshake_over_a_unix_socket_names_the_socket(tmp_path, certificate):
    """Its INFO line named an empty address ("TLS handshake with  failed")."""
    cert, key = certificate
    path = tmp_path / "echo.sock"
    server = start_on_a_unix_socket(path, f"--certfile {cert} --keyfile {key}")
    try:
        with socket.socket(socket.AF_UNIX) as plain:  # plain HTTP to a TLS socket
            plain.settimeout(TIMEOUT)
            plain.connect(str(path))
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert plain.recv(100).startswith(b"HTTP/1.1 400 ")
        line = server.log_line("plain HTTP sent to the TLS port")
        assert f"TLS handshake with unix:{path} failed: " in line, line
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def start_on_a_unix_socket(path: Path, args: str = "") -> ServerProcess:
    """gunicorn bound to ``--bind unix:PATH``, ready once the socket accepts (there is
    no /healthz over TCP to ask)."""
    server = ServerProcess(GUNICORN, {"GUNICORN_CMD_ARGS": f"--bind unix:{path} {args}"})

    def accepting() -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            return probe.connect_ex(str(path)) == 0

    server.start(wait=False)
    try:
        wait_for(accepting, what="the Unix socket")
    except BaseException:
        server.stop()
        raise
    return server


@pytest.mark.parametrize("command", [GUNICORN, DEV_SERVER], ids=["gunicorn", "dev-server"])
def test_small_frames_are_sent_at_once(command):
    """TCP_NODELAY on every connection: with Nagle's algorithm, of two pipelined
    messages the second echo waited for the client's delayed ACK (44 ms a pair under
    python app.py; gunicorn sets it on its listener, the dev server did not)."""
    with ServerProcess(command) as server, RawClient(server.port) as client:
        client_port = client.sock.getsockname()[1]
        pid = server.worker_pid() if command is GUNICORN else server.process.pid
        nodelay = socket_option(
            pid, server.port, client_port, socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        assert nodelay == 1


@pytest.mark.parametrize("command", [GUNICORN, DEV_SERVER], ids=["gunicorn", "dev-server"])
def test_busy_port_stops_startup_without_a_traceback_or_files(command):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ServerProcess(command, port=port).start(wait=False)
        assert server.wait_exit() != 0
    log = server.log()
    assert "Traceback" not in log
    if command is DEV_SERVER:
        assert log.strip() == f"app.py: cannot listen on 127.0.0.1:{port}: Address already in use"
    else:  # gunicorn's own lines, as it retries for a few seconds in case the port frees
        assert log.strip().endswith(f"[ERROR] Can't connect to ('127.0.0.1', {port})"), log
    assert [path.name for path in server.log_path.parent.iterdir()] == ["server.log"]


def test_make_run_says_in_one_line_that_web_concurrency_is_not_a_number():
    server = ServerProcess(["make", "--no-print-directory", "run"], {"WEB_CONCURRENCY": "two"})
    assert server.start(wait=False).wait_exit() != 0
    (line,) = server.log().strip().splitlines()
    assert line.endswith("WEB_CONCURRENCY = 'two': must be a number of workers >= 1.  Stop."), line


@pytest.mark.parametrize("host", ["::1", "[::1]"])
@pytest.mark.parametrize("command", [GUNICORN, DEV_SERVER], ids=["gunicorn", "dev-server"])
def test_ipv6_host_with_or_without_brackets(command, host):
    server = ServerProcess(command, {"HOST": host}, host="[::1]")
    with server, connect(server.ws_url) as ws:
        ws.send("over IPv6")
        assert ws.recv() == "over IPv6"


def test_no_control_socket_unless_one_is_given(tmp_path):
    """gunicorn 27's default path is one per user, shared by every instance on the machine."""
    default_dir = tmp_path / ".gunicorn"
    with ServerProcess(GUNICORN, {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": ""}):
        pass
    assert not default_dir.exists()
    own = tmp_path / "echo.ctl"
    with ServerProcess(GUNICORN, {"HOME": str(tmp_path), "CONTROL_SOCKET": str(own)}) as server:
        wait_for(own.exists, what="the instance's own control socket")
        assert server.process.poll() is None


def test_sigterm_while_workers_boot_does_not_wait_for_graceful_timeout():
    """A worker that got the master's SIGTERM before its own handlers used to stay 30 s."""
    for _ in range(3):
        server = ServerProcess(GUNICORN, {"WEB_CONCURRENCY": "4"}).start(wait=False)
        wait_for(lambda: "Booting worker" in server.log(), what="a worker to be forked")  # noqa: B023
        started = time.monotonic()
        server.terminate()
        assert server.wait_exit() == 0  # within TIMEOUT, a third of graceful_timeout
        assert time.monotonic() - started < 10


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
