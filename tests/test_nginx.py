"""deploy/nginx.conf, run by a real nginx in front of gunicorn on loopback."""

from __future__ import annotations

import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .nginx import nginx_proxy

SHORT_READ_TIMEOUT = {"proxy_read_timeout 60s;": "proxy_read_timeout 3s;"}


def ws_url(proxy) -> str:
    return f"ws://127.0.0.1:{proxy.port}/ws"


def test_echo_through_the_recipe(server):
    with nginx_proxy(server) as proxy, connect(ws_url(proxy)) as ws:
        for message in ("through nginx ✓", b"\x00\xff" * 40_000):
            ws.send(message)
            assert ws.recv() == message
        ws.close(4000, "bye")
        assert ws.protocol.close_rcvd.code == 4000


def test_server_pings_keep_an_idle_connection_open_through_nginx(gunicorn_server):
    """nginx drops connections idle for proxy_read_timeout (3 s) unless the server pings."""
    pinging = gunicorn_server(ECHO_PING_INTERVAL="1", ECHO_PING_TIMEOUT="5")
    silent = gunicorn_server(ECHO_PING_INTERVAL="0")

    def idle(server) -> float | None:
        """Stay idle for 10 s; the time nginx dropped the connection, or None."""
        with nginx_proxy(server, **SHORT_READ_TIMEOUT) as proxy, connect(ws_url(proxy)) as ws:
            started = time.monotonic()
            try:
                ws.recv(timeout=10)
            except TimeoutError:
                ws.send("still open")
                assert ws.recv() == "still open"
                return None
            except ConnectionClosed:
                return time.monotonic() - started
            pytest.fail("an idle echo connection received a message")

    with ThreadPoolExecutor(2) as pool:
        kept, dropped = pool.map(idle, (pinging, silent))
    assert kept is None, f"nginx dropped the pinged connection after {kept:.1f} s"
    assert dropped is not None and 2.5 < dropped < 6, dropped


def test_forwarded_client_address_reaches_the_access_log(server):
    """The client connects from 127.0.0.2; gunicorn sees nginx (127.0.0.1) but logs the client."""
    agent = f"test-{uuid.uuid4()}"
    with nginx_proxy(server) as proxy:
        sock = socket.socket()
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", proxy.port))
        with connect(ws_url(proxy), sock=sock, user_agent_header=agent) as ws:
            ws.send("who am I")
            assert ws.recv() == "who am I"
    line = server.log_line(agent)
    assert line.startswith("127.0.0.2 - - "), line
