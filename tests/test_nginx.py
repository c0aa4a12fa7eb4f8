"""deploy/nginx.conf, run by a real nginx in front of gunicorn on loopback."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .nginx import INSTANCES_RECIPE, debian_nginx, nginx_proxy
from .rawws import OP_TEXT, RawClient, http_exchange
from .servers import GUNICORN, ServerProcess

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


def test_hello_through_the_recipe_shows_what_nginx_forwarded(server):
    """The client connects from 127.0.0.2: the peer is nginx, the trusted client is the client."""
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    with nginx_proxy(server) as proxy:
        sock.connect(("127.0.0.1", proxy.port))
        with connect(f"{ws_url(proxy)}?hello", sock=sock) as ws:
            hello = json.loads(ws.recv(timeout=10))
    headers = dict(map(tuple, hello["headers"]))
    assert headers["X-Forwarded-For"] == "127.0.0.2"
    assert hello["peer"].startswith("127.0.0.1:")
    assert hello["client"] == "127.0.0.2"
    assert hello["served_by"] == f"{hello['served_by'].split('/')[0]}/{server.worker_pid()}"


def test_connections_through_the_instances_recipe_name_both_instances():
    first = ServerProcess(GUNICORN, {"ECHO_INSTANCE": "first"})
    second = ServerProcess(GUNICORN, {"ECHO_INSTANCE": "second"})
    second_address = {"127.0.0.1:8001": f"127.0.0.1:{second.port}"}
    with (
        first,
        second,
        nginx_proxy(first, INSTANCES_RECIPE.read_text(), **second_address) as proxy,
    ):
        served_by = []
        for _ in range(10):
            with connect(ws_url(proxy)) as ws:
                served_by.append(ws.response.headers["X-Served-By"].split("/")[0])
    assert set(served_by) == {"first", "second"}, served_by


def test_instances_share_clients_and_one_stopping_leaves_the_other_serving():
    """deploy/nginx-instances.conf with two instances: one gets SIGTERM, the other takes over."""
    first, second = ServerProcess(GUNICORN), ServerProcess(GUNICORN)
    second_address = {"127.0.0.1:8001": f"127.0.0.1:{second.port}"}
    with (
        first,
        second,
        nginx_proxy(first, INSTANCES_RECIPE.read_text(), **second_address) as proxy,
        ThreadPoolExecutor(50) as pool,
        contextlib.ExitStack() as open_clients,
    ):
        connecting = pool.map(lambda _: connect(ws_url(proxy)), range(200))
        clients = [open_clients.enter_context(ws) for ws in connecting]
        on_first = first.metric("echo_open_connections")
        on_second = second.metric("echo_open_connections")
        print(f"\nleast_conn spread 200 clients {on_first:.0f}/{on_second:.0f}")
        assert on_first + on_second == 200
        assert min(on_first, on_second) >= 80, (on_first, on_second)  # least_conn spreads them

        first.terminate()
        assert first.wait_exit() == 0

        def outcome(ws) -> str:
            try:
                ws.send("still there?")
                assert ws.recv(timeout=10) == "still there?"
                return "echoed"
            except ConnectionClosed as closed:
                return f"closed {closed.rcvd.code if closed.rcvd else None}"

        outcomes = list(pool.map(outcome, clients))
        assert outcomes.count("closed 1001") == on_first
        assert outcomes.count("echoed") == on_second

        def new_client(_: int) -> str:
            with connect(ws_url(proxy)) as ws:
                ws.send("new")
                return ws.recv(timeout=10)

        assert list(pool.map(new_client, range(50))) == ["new"] * 50  # none refused
        assert second.metric("echo_handshakes_total", result="accepted", reason="ok") == (
            on_second + 50
        )


def test_recipe_in_debians_layout_needs_its_server_name_or_no_default_site(server):
    """Dropped into conf.d beside Debian's default site, the recipe answers only its name."""
    page = b"GET / HTTP/1.1\r\nHost: echo.example.com\r\nConnection: close\r\n\r\n"
    with debian_nginx(server) as proxy:
        status, _, body = http_exchange(proxy.port, page.replace(b"echo.example.com", b"x"))
        assert (status, b"Welcome to nginx!" in body) == (200, True)  # the trap the README names
        status, _, body = http_exchange(proxy.port, page)
        assert (status, b"WebSocket Server URL" in body) == (200, True)
        with RawClient(proxy.port, Host="echo.example.com") as client:
            client.send(OP_TEXT, b"by its server_name")
            assert client.recv_message() == (OP_TEXT, b"by its server_name")
    with debian_nginx(server, default_site=False) as proxy, connect(ws_url(proxy)) as ws:
        ws.send("with the default site removed")
        assert ws.recv() == "with the default site removed"
