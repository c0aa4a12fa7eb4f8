"""A request, and a TLS handshake, must be complete within read_timeout, however they trickle in."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from .exchange import exchange
from .servers import TIMEOUT, ServerProcess, allow_open_files

READ_TIMEOUT = 1.0
FAST = {"ECHO_READ_TIMEOUT": f"{READ_TIMEOUT:g}"}
TRICKLE_PACE = 0.1  # seconds between bytes: never silent for a read_timeout


def trickle(port: int, request: bytes) -> tuple[bytes, float]:
    """Send ``request`` a byte at a time until the server answers; the answer and its delay."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(TRICKLE_PACE)  # waiting for an answer between two bytes
        started = time.monotonic()
        for byte in request:
            sock.sendall(bytes([byte]))
            with contextlib.suppress(TimeoutError):
                return sock.recv(4096), time.monotonic() - started
        sock.settimeout(TIMEOUT)
        return sock.recv(4096), time.monotonic() - started


def test_trickling_request_gets_408_read_timeout_after_its_first_byte(gunicorn_server):
    server = gunicorn_server(**FAST)
    timed_out = server.metric("echo_unserved_requests_total", reason="timeout")
    request = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n" * 10
    answer, waited = trickle(server.port, request)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"\r\n\r\nthe request did not arrive in time\n")
    assert READ_TIMEOUT - 0.1 < waited < READ_TIMEOUT + 1
    assert server.metric("echo_unserved_requests_total", reason="timeout") == timed_out + 1


def test_request_line_stalled_before_its_end_gets_408_and_a_log_line(gunicorn_server):
    server = gunicorn_server(**FAST)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        port = sock.getsockname()[1]
        sock.sendall(b"GET /ws HTT")
        assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")
    line = server.log_line(f"rejected request from 127.0.0.1:{port}:")
    assert line.endswith("the request did not arrive in time (RequestTimeout)")


def client_hello() -> bytes:
    """The first flight of a real TLS client."""
    outgoing = ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="x")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("sent", [b"", client_hello()[:60]], ids=["nothing", "half-a-client-hello"])
def test_stalled_tls_handshake_is_closed_after_read_timeout(tls_gunicorn_server, sent):
    server = tls_gunicorn_server(**FAST)
    timed_out = server.metric("echo_unserved_requests_total", reason="tls_timeout")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        port = sock.getsockname()[1]
        started = time.monotonic()
        sock.sendall(sent)
        assert sock.recv(4096) == b""
        assert READ_TIMEOUT - 0.1 < time.monotonic() - started < READ_TIMEOUT + 1
    line = server.log_line(f"TLS handshake with 127.0.0.1:{port} failed")
    assert line.endswith(f"failed: no complete TLS handshake within {READ_TIMEOUT:g} s")
    assert "Traceback" not in server.log()
    assert server.metric("echo_unserved_requests_total", reason="tls_timeout") == timed_out + 1


def test_aborted_tls_handshakes_are_one_info_line_each(tls_gunicorn_server):
    server = tls_gunicorn_server(**FAST)
    hello = client_hello()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(hello)  # and reset before the handshake is done
    assert exchange(server.ws_url, server.tls, ["still serving"]).received == ["still serving"]
    assert "failed: the client left" in server.log()
    assert "Traceback" not in server.log()


@contextlib.contextmanager
def held(port: int, count: int, first: bytes, then: bytes | None) -> Iterator[None]:
    """``count`` connections that send ``first`` and then, every half second, ``then``."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    stop = threading.Event()

    def drip() -> None:
        payload = first
        while payload is not None and not stop.is_set():
            for conn in conns:
                with contextlib.suppress(OSError):  # dropped by the server: as it should
                    conn.send(payload)
            payload = then
            stop.wait(0.5)

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    try:
        yield
    finally:
        stop.set()
        dripping.join()
        for conn in conns:
            conn.close()


def echo_time(server: ServerProcess) -> float:
    """Seconds to connect and get one echo back."""
    started = time.monotonic()
    assert exchange(server.ws_url, server.tls, ["through"]).received == ["through"]
    return time.monotonic() - started


def test_normal_clients_get_through_while_slow_attacks_are_held(
    gunicorn_server, tls_gunicorn_server
):
    """1,100 trickling requests and 1,000 silent TLS clients, each over worker_connections.

    The attackers' deadline is 3 s; a normal client gets in when the oldest
    of them are ended to make room, a second after they came, long before
    it. Its own request then has the same 3 s: with a deadline as short as
    the wait, a client delayed by a busy machine was itself dropped.
    """
    allow_open_files(4096)
    deadline = 3.0
    settings = {"ECHO_READ_TIMEOUT": f"{deadline:g}"}
    plain, tls = gunicorn_server(**settings), tls_gunicorn_server(**settings)
    with (
        held(plain.port, 1100, b"G", b"E"),
        held(tls.port, 1000, b"", None),
        ThreadPoolExecutor() as clients,
    ):
        waited = dict(zip(("plain", "tls"), clients.map(echo_time, (plain, tls)), strict=True))
    print(f"\nnormal clients echoed after {waited}")
    assert all(seconds < deadline for seconds in waited.values()), waited


def test_at_worker_connections_the_oldest_unfinished_request_makes_room(gunicorn_server):
    """120 trickling requests against a pool of 50 and the default 10 s read_timeout.

    The 51st connection onwards wait in the backlog; each one accepted ends
    the oldest request that has been arriving for a second or more (408), so
    a new client is served within seconds, not after the attackers' deadlines.
    """
    server = gunicorn_server(GUNICORN_CMD_ARGS="--worker-connections 50")
    with held(server.port, 120, b"G", b"E"):
        waited = echo_time(server)
        with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=TIMEOUT) as health:
            assert health.status == 200
    print(f"\na new client echoed after {waited:.3f} s")
    assert waited < 4, waited  # 10 s and more without making room
    assert "worker_connections reached: ending the oldest unfinished request" in server.log()
    assert server.metric("echo_unserved_requests_total", reason="evicted") >= 1
    assert "Traceback" not in server.log()
