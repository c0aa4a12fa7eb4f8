"""Server pings at ping_interval, closes 1011 after ping_timeout, never splits a frame."""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from collections import Counter

from websockets.sync.client import connect

from .rawws import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, RawClient
from .servers import connections_held, wait_for

KEEPALIVE = {"ECHO_PING_INTERVAL": "0.5", "ECHO_PING_TIMEOUT": "1"}


def test_pings_arrive_at_the_interval(gunicorn_server):
    server = gunicorn_server(**KEEPALIVE)
    with RawClient(server.port) as client:
        arrivals = []
        while len(arrivals) < 5:
            _, opcode, payload = client.recv_frame()
            assert opcode == OP_PING
            arrivals.append(time.monotonic())
            client.send(OP_PONG, payload)
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert 0.4 < statistics.median(gaps) < 0.8, gaps
        client.send(OP_BINARY, b"still open")
        assert client.recv_frame() == (True, OP_BINARY, b"still open")


def test_client_that_never_answers_is_closed_1011(gunicorn_server):
    server = gunicorn_server(**KEEPALIVE)
    worker = server.worker_pid()
    logged = server.log().count("] closing with 1011: keepalive ping timeout")
    with RawClient(server.port) as client:
        port = client.sock.getsockname()[1]
        _, opcode, _ = client.recv_frame()  # the first ping, left unanswered
        first_ping = time.monotonic()
        assert opcode == OP_PING
        _fin, opcode, payload = client.recv_frame()
        waited = time.monotonic() - first_ping
        assert (opcode, payload[:2]) == (OP_CLOSE, (1011).to_bytes(2, "big"))
        assert waited > 0.9, "closed before ping_timeout had passed"
        client.assert_eof()
    line = "] closing with 1011: keepalive ping timeout"
    wait_for(lambda: server.log().count(line) == logged + 1, what="its INFO line")
    wait_for(lambda: not connections_held(worker, port), what="the worker to free the socket")


def test_library_client_answers_pings_and_stays_open(gunicorn_server):
    server = gunicorn_server(**KEEPALIVE)
    with connect(server.ws_url) as ws:
        deadline = time.monotonic() + 2.5  # several ping intervals and timeouts
        while time.monotonic() < deadline:
            ws.send("tick")
            assert ws.recv() == "tick"
            time.sleep(0.1)  # pace the messages so the run spans the timeout


def test_pings_never_interleave_with_a_message_being_sent(gunicorn_server):
    """Echoes pile up behind a slow reader while pings come due every 20 ms.

    8 MiB in flight is more than the kernel buffers hold, so the server's writes
    block mid-message; a ping written then would corrupt the stream, and one
    racing the blocked writer would kill the keepalive.
    """
    server = gunicorn_server(ECHO_PING_INTERVAL="0.02", ECHO_PING_TIMEOUT="0")
    messages = [os.urandom(1 << 20) for _ in range(8)]
    with RawClient(server.port, rcvbuf=65536) as client:
        sender = threading.Thread(target=lambda: [client.send(OP_BINARY, m) for m in messages])
        sender.start()
        echoed, pings_before = [], Counter()
        while len(echoed) < len(messages):
            _, opcode, payload = client.recv_frame(pace=0.001)
            if opcode == OP_PING:
                assert len(payload) == 4
                pings_before[len(echoed)] += 1
            else:
                assert opcode == OP_BINARY
                echoed.append(payload)
        sender.join()
    assert echoed == messages
    assert sum(pings_before[n] for n in range(4, 8)) > 0, pings_before
    assert "Traceback" not in server.log()
