"""At its WebSocket limit a worker answers handshakes 503 and still serves health checks."""

from __future__ import annotations

import contextlib
import socket
import urllib.request
from collections.abc import Iterator

from websockets.sync.client import connect

from .rawws import handshake_request
from .servers import GUNICORN, TIMEOUT, ServerProcess, allow_open_files, wait_for

WORKER_CONNECTIONS = 1000  # gunicorn.conf.py's
LIMIT = 900  # max_websockets=auto: worker_connections less 10 %


def response_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {head!r}"
        head += chunk
    return head


@contextlib.contextmanager
def handshakes(port: int, count: int) -> Iterator[list[tuple[socket.socket, bytes]]]:
    """``count`` handshakes sent at once; each connection with the head of its response."""
    conns = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(count)]
    try:
        for conn in conns:
            conn.sendall(handshake_request(port))
        yield [(conn, response_head(conn)) for conn in conns]
    finally:
        for conn in conns:
            conn.close()


def test_handshakes_over_the_limit_get_503_and_plain_http_still_gets_in():
    allow_open_files(4096)
    with ServerProcess(GUNICORN) as server, handshakes(server.port, WORKER_CONNECTIONS) as held:
        statuses = [head.split(b" ", 2)[1] for _, head in held]
        assert statuses.count(b"101") == LIMIT
        assert statuses.count(b"503") == WORKER_CONNECTIONS - LIMIT
        refused = next(head for _, head in held if b" 503 " in head)
        assert b"\r\nRetry-After: 5\r\n" in refused
        assert b"\r\nX-Served-By: " in refused
        # What the load balancer and Prometheus see while the worker is full:
        with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=TIMEOUT) as health:
            assert health.status == 200
        assert server.metric("echo_websocket_limit") == LIMIT
        assert server.metric("echo_open_connections") == LIMIT
        assert server.metric("echo_handshakes_total", result="rejected", reason="capacity") == 100
        # A slot given back is a slot taken again.
        next(conn for conn, head in held if b" 101 " in head).close()
        wait_for(lambda: server.metric("echo_open_connections") == LIMIT - 1, what="the close")
        with connect(server.ws_url, open_timeout=TIMEOUT) as ws:
            ws.send("a free slot")
            assert ws.recv() == "a free slot"
    warnings = [line for line in server.log().splitlines() if "WebSocket limit reached" in line]
    assert len(warnings) == 1, warnings
    assert "[WARNING]" in warnings[0]
    assert "Traceback" not in server.log()
