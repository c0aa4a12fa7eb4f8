"""Hostile clients get a clear 4xx or close code and cannot stall or bloat a worker."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from websockets.sync.client import connect

from .rawws import OP_BINARY, RawClient, encode_frame, handshake_request, http_exchange
from .servers import TIMEOUT, connections_held, wait_for

STALL = {"ECHO_READ_TIMEOUT": "0.5"}


def assert_still_serving(server) -> None:
    with connect(server.ws_url) as ws:
        ws.send("still serving")
        assert ws.recv() == "still serving"


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            b"the request head is over 64 KiB or 100 headers",
        ),
        (
            b"GET /ws HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n",
            431,
            b"the request head is over 64 KiB or 100 headers",
        ),
        (b"GET /ws HTTP/9.9\r\nHost: x\r\n\r\n", 400, b"malformed HTTP request"),
        (b"GET /ws HTTP/2.0\r\nHost: x\r\n\r\n", 505, b"HTTP/2.0 is not supported"),
        (b"GET /ws\r\n\r\n", 505, b"HTTP/0.9 is not supported"),
        (b"\n\r\n", 400, b"malformed HTTP request: no request line"),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
            400,
            b"malformed HTTP request: no method",
        ),
    ],
    ids=[
        "70k-header",
        "120-headers",
        "http-9.9",
        "http-2.0",
        "http-0.9",
        "empty-lines",
        "tls-hello",
    ],
)
def test_unparseable_request_gets_4xx_with_reason(server, request_bytes, status, reason):
    got, _, body = http_exchange(server.port, request_bytes)
    assert got == status
    assert body.startswith(reason) and body.endswith(b"\n") and body.count(b"\n") == 1
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("header", ["Sec-WebSocket-Key", "Sec-WebSocket-Version"])
def test_duplicate_handshake_header_gets_400(server, header):
    request = (
        f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"{header}: {'13' if 'Version' in header else 'dGhlIHNhbXBsZSBub25jZQ=='}\r\n\r\n"
    )
    status, headers, body = http_exchange(server.port, request.encode())
    assert status == 400
    assert header.encode() in body
    assert "sec-websocket-accept" not in headers


def test_half_handshake_stall_gets_408_while_others_are_served(gunicorn_server):
    server = gunicorn_server(**STALL)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as stalled:
        stalled.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        started = time.monotonic()
        assert_still_serving(server)
        response = stalled.recv(4096)
        assert response.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started > 0.4
        assert stalled.recv(4096) == b""


def test_half_frame_stall_is_closed_1008_while_others_are_served(gunicorn_server):
    server = gunicorn_server(**STALL)
    worker = server.worker_pid()
    with RawClient(server.port) as stalled:
        port = stalled.sock.getsockname()[1]
        stalled.sock.sendall(encode_frame(OP_BINARY, b"x" * 100)[:20])  # header and 14 bytes
        started = time.monotonic()
        assert_still_serving(server)
        assert stalled.recv_close()[0] == 1008
        assert time.monotonic() - started > 0.4
    wait_for(lambda: not connections_held(worker, port), what="the stalled client to be dropped")


def test_idle_connection_is_not_cut_by_read_timeout(gunicorn_server):
    server = gunicorn_server(**STALL)
    with RawClient(server.port) as client:
        deadline = time.monotonic() + 1.5  # three read timeouts without a frame started
        while time.monotonic() < deadline:
            time.sleep(0.1)
        client.send(OP_BINARY, b"after a quiet spell")
        assert client.recv_message() == (OP_BINARY, b"after a quiet spell")


def test_client_that_never_reads_cannot_make_the_server_buffer(server):
    """Echoes back up into the kernel's buffers; then the server stops reading."""
    message = encode_frame(OP_BINARY, b"\x00" * (1 << 20))
    sent = 0
    with server.peak_rss_growth() as peak, RawClient(server.port) as client:
        client.sock.settimeout(2)  # blocked this long: the server has stopped reading
        with pytest.raises(TimeoutError):
            while sent < 256:
                client.sock.sendall(message)
                sent += 1
        assert_still_serving(server)
    assert sent < 64, f"{sent} MiB accepted without being read"
    growth = peak.bytes
    assert growth < 8 << 20, f"peak RSS grew by {growth} bytes"


def test_clients_resetting_during_the_handshake_leave_no_trace(server):
    """A client gone before the 101 is written (or read back) is an ordinary disconnect."""
    open_before = server.metric("echo_open_connections")
    request = handshake_request(server.port)
    for _ in range(200):  # each reset lands at a different point of the handshake
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(request)
    assert_still_serving(server)
    wait_for(
        lambda: server.metric("echo_open_connections") == open_before,
        what="every reset connection to be counted closed",
    )
    assert "Traceback" not in server.log()
