"""gunicorn's access log: every HTTP request, and one line per WebSocket session at its end."""

from __future__ import annotations

import json
import re
import socket
import struct
import uuid

from websockets.sync.client import connect

from .rawws import OP_CLOSE, OP_TEXT, RawClient, handshake_request, http_exchange
from .servers import DEV_SERVER, GUNICORN, ServerProcess, wait_for


def test_http_requests_reach_the_access_log(server):
    agent = f"test-{uuid.uuid4()}"
    request = (
        f"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: {agent}\r\nConnection: close\r\n\r\n"
    )
    http_exchange(server.port, request.encode())
    assert re.match(
        r'127\.0\.0\.1 - - \[.+\] "GET /healthz HTTP/1\.1" 200 ', server.log_line(agent)
    )


def test_logged_values_are_escaped_so_a_request_cannot_forge_a_line(server):
    """Quotes, backslashes and C1 controls (obs-text that a terminal may obey) are escaped."""
    marker = uuid.uuid4().hex
    agent = f'{marker} "quoted" back\\slash \x9b31m \x85next'
    request = (
        f"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: {agent}\r\nConnection: close\r\n\r\n"
    )
    status, _, _ = http_exchange(server.port, request.encode("latin-1"))
    assert status == 200
    line = server.log_line(marker)
    assert f' "{marker} \\"quoted\\" back\\\\slash \\x9b31m \\x85next" ' in line, line
    assert line.isascii()


def test_client_gone_while_its_responses_are_written_is_logged_with_their_status(server):
    """The status being sent, not pywsgi's "socket error" (which gunicorn logged as "socket")."""
    marker = uuid.uuid4().hex
    request = f"GET /static/console.js HTTP/1.1\r\nHost: x\r\nUser-Agent: {marker}\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(request.encode() * 2000)  # megabytes of responses, never read

    def sizes() -> list[str]:
        """The status and size of each logged response to this client."""
        lines = [line for line in server.log().splitlines() if marker in line]
        return [line.split('" ', 1)[1].split()[:2] for line in lines]

    wait_for(lambda: len(sizes()) >= 10, what="some responses written")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset while the server is blocked writing
    full = sizes()[0][1]
    wait_for(lambda: sizes()[-1][1] != full, what="the response cut short to be logged")
    assert len(sizes()) < 2000
    assert all(status == "200" for status, _ in sizes()), sizes()[-1]


def test_session_line_counts_traffic_and_who_closed(server):
    agent = f"test-{uuid.uuid4()}"
    with connect(server.ws_url, user_agent_header=agent) as ws:
        ws.send("hello")
        ws.recv()
        ws.send(b"\x00\x01\x02")
        ws.recv()
        ws.close(4000, "bye")
    line = server.log_line(agent)
    assert '"GET /ws HTTP/1.1" 101 ' in line
    assert re.search(
        r" \d+\.\d{6}s id=(\d+)-\d+ served_by=[\w.-]+/\1 subprotocol=-"
        r" compression=permessage-deflate in=2/8B out=2/8B close=4000 by=client$",
        line,
    ), line


def test_a_logconfig_of_ones_own_formats_the_access_lines(tmp_path):
    """The access log writes its lines itself only to plain handlers; a logconfig keeps its say."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"tagged": {"format": "ACCESS %(message)s"}},
        "handlers": {
            "tagged": {
                "class": "logging.StreamHandler",
                "formatter": "tagged",
                "stream": "ext://sys.stdout",
            },
            "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        },
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {"gunicorn.access": {"handlers": ["tagged"], "propagate": False}},
    }
    path = tmp_path / "logconfig.json"
    path.write_text(json.dumps(config))
    with ServerProcess([*GUNICORN, "--log-config-json", str(path)]) as server:
        agent = f"test-{uuid.uuid4()}"
        with connect(server.ws_url, user_agent_header=agent) as ws:
            ws.send("tagged")
            ws.recv()
        line = server.log_line(agent)
        assert line.startswith("ACCESS 127.0.0.1 - - ["), line
        assert " close=1000 by=client" in line


def test_dev_server_logs_each_session_when_it_ends():
    with ServerProcess(DEV_SERVER) as server:
        marker = uuid.uuid4().hex
        with connect(f"{server.ws_url}?{marker}") as ws:
            ws.send("hello")
            ws.recv()
            ws.close(4000, "bye")
        line = server.log_line(marker)
    request = rf'"GET /ws\?{marker} HTTP/1\.1" 101 \d+ \d+\.\d{{6}}'
    assert re.search(
        rf"{request} id=\S+ served_by=\S+ subprotocol=- compression=permessage-deflate"
        r" in=1/5B out=1/5B close=4000 by=client$",
        line,
    ), line


def test_server_close_is_logged_with_the_connection_id(server):
    agent = f"test-{uuid.uuid4()}"
    with RawClient(server.port, User_Agent=agent) as client:
        client.send(OP_TEXT, b"\xff")
        assert client.recv_close()[0] == 1007
    line = server.log_line(agent)
    assert line.endswith("in=0/0B out=0/0B close=1007 by=server")
    connection = re.search(r"id=(\S+)", line)[1]
    assert f"[{connection}] closing with 1007" in server.log()


def test_vanished_client_logged_as_1006_without_traceback(server):
    agent = f"test-{uuid.uuid4()}"
    RawClient(server.port, User_Agent=agent).close()
    assert server.log_line(agent).endswith("close=1006 by=client")
    assert "Traceback" not in server.log()


def test_forwarded_address_trusted_only_from_forwarded_allow_ips(gunicorn_server):
    forwarded = {"X_Forwarded_For": "198.51.100.1, 203.0.113.9"}
    trusting = gunicorn_server()  # gunicorn's default forwarded_allow_ips: 127.0.0.1,::1
    distrusting = gunicorn_server(GUNICORN_CMD_ARGS="--forwarded-allow-ips 10.9.9.9")
    for server, address in ((trusting, "203.0.113.9"), (distrusting, "127.0.0.1")):
        agent = f"test-{uuid.uuid4()}"
        with RawClient(server.port, User_Agent=agent, **forwarded) as client:
            client.send(OP_CLOSE, b"\x03\xe8")
            client.recv_close()
        assert server.log_line(agent).startswith(f"{address} - - ")


def test_access_log_format_is_configurable_the_gunicorn_way():
    args = (
        "--access-logformat '%(h)s %(s)s %({user-agent}i)s %({content-type}o)s %({echo.session}e)s'"
    )
    with ServerProcess(GUNICORN, {"GUNICORN_CMD_ARGS": args}) as server:
        agent = f"test-{uuid.uuid4()}"
        http_exchange(server.port, handshake_request(server.port, "/nope", User_Agent=agent))
        assert server.log_line(agent) == f"127.0.0.1 404 {agent} text/plain; charset=utf-8 -"
        # A session's line is written when it ends, long after its request.
        agent = f"test-{uuid.uuid4()}"
        with connect(server.ws_url, user_agent_header=agent) as ws:
            ws.close(4000)
        line = server.log_line(agent)
        assert re.fullmatch(
            rf"127\.0\.0\.1 101 {agent} - id=\S+ served_by=\S+ subprotocol=-"
            r" compression=permessage-deflate"
            r" in=0/0B out=0/0B close=4000 by=client",
            line,
        )
