"""Test modes in /ws's query: late echoes, closes and drops on cue, streams, and their bounds."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import threading
import time
import urllib.request
import uuid
from urllib.parse import quote

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .rawws import OP_BINARY, OP_TEXT, RawClient, handshake_request, http_exchange
from .servers import GUNICORN, TIMEOUT, ServerProcess


def refusal(server: ServerProcess, query: str) -> tuple[int, str]:
    status, _, body = http_exchange(server.port, handshake_request(server.port, f"/ws?{query}"))
    return status, body.decode()


def test_delay_sends_each_echo_late_and_in_order(server):
    with connect(f"{server.ws_url}?delay=200") as ws:
        sent = time.monotonic()
        ws.send("one")
        ws.send(b"two")
        ws.send("three")
        assert [ws.recv(timeout=TIMEOUT) for _ in range(3)] == ["one", b"two", "three"]
        assert time.monotonic() - sent >= 0.2
        sent = time.monotonic()
        ws.send("again")
        assert ws.recv(timeout=TIMEOUT) == "again"
        assert time.monotonic() - sent >= 0.2


def test_a_clients_close_ends_a_delayed_session_at_once_dropping_the_waiting_echoes(server):
    agent = f"test-{uuid.uuid4()}"
    with connect(f"{server.ws_url}?delay=30000", user_agent_header=agent) as ws:
        for n in range(3):
            ws.send(f"never echoed {n}")
        ws.close(4000, "enough")  # waits for the server's Close, long before 30 s
        assert ws.protocol.close_rcvd.code == 4000
    line = server.log_line(agent)
    assert line.endswith(" close=4000 by=client modes=delay dropped=3"), line


def test_delayed_echoes_past_what_may_wait_are_all_echoed_in_order(gunicorn_server):
    """Over max_message_size waiting: the server stops reading, then reads on, losing nothing."""
    server = gunicorn_server(ECHO_MAX_MESSAGE_SIZE="4KiB")
    messages = [os.urandom(3000) for _ in range(20)]
    with connect(f"{server.ws_url}?delay=10", compression=None) as ws:
        for message in messages:
            ws.send(message)
        assert [ws.recv(timeout=TIMEOUT) for _ in messages] == messages


def test_close_after_closes_after_the_nth_echo_with_its_code_and_reason(server):
    reason = "au revoir ✓"
    with connect(f"{server.ws_url}?close_after=3&code=4001&reason={quote(reason)}") as ws:
        for n in range(3):
            ws.send(f"m{n}")
            assert ws.recv(timeout=TIMEOUT) == f"m{n}"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, reason)


def test_close_after_with_delay_counts_echoes_sent(server):
    with connect(f"{server.ws_url}?close_after=2&delay=50") as ws:
        for n in range(4):
            ws.send(f"m{n}")
        assert [ws.recv(timeout=TIMEOUT) for _ in range(2)] == ["m0", "m1"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.code == 1000


def test_close_in_closes_that_long_after_the_handshake(server):
    asked = time.monotonic()
    with connect(f"{server.ws_url}?close_in=0.3&code=1011") as ws:
        ws.send("still echoed before")
        assert ws.recv(timeout=TIMEOUT) == "still echoed before"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert time.monotonic() - asked >= 0.3
    assert closed.value.rcvd.code == 1011


def test_drop_in_cuts_the_connection_without_a_close_frame(server):
    agent = f"test-{uuid.uuid4()}"
    asked = time.monotonic()
    with RawClient(server.port, "/ws?drop_in=0.2", User_Agent=agent) as client:
        client.send(OP_TEXT, b"hi")
        assert client.recv_message() == (OP_TEXT, b"hi")
        client.assert_eof()  # no Close frame before the end
        assert time.monotonic() - asked >= 0.2
    assert " close=1006 by=server modes=drop_in" in server.log_line(agent)


def test_stream_sends_numbered_messages_while_echoing(server):
    with connect(f"{server.ws_url}?stream=200&size=100&type=binary") as ws:
        ws.send("echo me")
        received = [ws.recv(timeout=TIMEOUT) for _ in range(201)]
    assert "echo me" in received
    streamed = [message for message in received if message != "echo me"]
    assert [message.split(b" ")[0] for message in streamed] == [b"%d" % n for n in range(1, 201)]
    assert {len(message) for message in streamed} == {100}


def test_stream_defaults_to_text_of_1024_bytes_and_keeps_its_rate(server):
    asked = time.monotonic()  # before the server can start counting
    with connect(f"{server.ws_url}?stream=5&rate=20") as ws:
        received = [ws.recv(timeout=TIMEOUT) for _ in range(5)]
        assert time.monotonic() - asked >= 4 / 20  # the first goes at once
    assert received[0] == "1 " + "." * 1022
    assert [message.split()[0] for message in received] == ["1", "2", "3", "4", "5"]


def test_a_stream_read_as_fast_as_it_comes_leaves_the_worker_to_the_others(server):
    """Counted against the fairness budget: /healthz is answered while the stream goes on."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    sock.sendall(handshake_request(server.port, "/ws?stream=1000000&size=0"))
    streamed = 0
    stop = threading.Event()

    def read_all() -> None:
        nonlocal streamed
        try:
            while not stop.is_set() and (chunk := sock.recv(1 << 16)):
                streamed += len(chunk)
        except ConnectionResetError:
            if not stop.is_set():  # at the end, our own shutdown may reset the stream
                raise

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=TIMEOUT) as response:
            assert response.read() == b"ok\n"
        assert streamed < 2_000_000  # the stream (2 bytes a message) is still going
    finally:
        stop.set()
        sock.shutdown(socket.SHUT_RDWR)
        reader.join()
        sock.close()


def test_a_stream_stops_at_shutdown_with_1001():
    with ServerProcess(GUNICORN) as server, connect(f"{server.ws_url}?stream=1000&rate=50") as ws:
        assert ws.recv(timeout=TIMEOUT).startswith("1 ")
        os.kill(server.process.pid, signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == 1001
        assert server.wait_exit() == 0


@pytest.mark.parametrize(
    "query",
    [
        "delay=0", "delay=30000", "close_after=1000000", "close_in=0.1", "close_in=3600",
        "drop_in=0.1&close_in=1", "close_after=1&code=1000", "close_after=1&code=1003",
        "close_after=1&code=1007", "close_after=1&code=1014", "close_in=9&code=3000",
        "close_in=9&code=4999", f"close_in=9&reason={quote('é' * 61)}x", "stream=1&size=0",
        "stream=64&size=1048576&rate=0.5", "stream=1000000&size=0&rate=10000", "stream=1&type=text",
        "cachebuster=12345&_=1", "x=%ff&stream=1&rate=0.01",
    ],
)  # fmt: skip
def test_values_at_their_bounds_are_accepted(server, query):
    with connect(f"{server.ws_url}?{query}") as ws:
        assert ws.protocol.state.name == "OPEN"


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("delay=-1", "delay=-1: "), ("delay=30001", "delay="), ("delay=1.5", "delay="),
        ("delay=", "delay=: "), ("close_after=0", "close_after="),
        ("close_after=1000001", "close_after="), ("close_in=0.09", "close_in="),
        ("close_in=3601", "close_in="), ("close_in=nan", "close_in="),
        ("close_in=inf", "close_in="), ("drop_in=0", "drop_in="), ("close_in=1&code=999", "code="),
        ("close_in=1&code=1004", "code="),
        ("close_in=1&code=1005", "code="), ("close_in=1&code=1006", "code="),
        ("close_in=1&code=1015", "code="), ("close_in=1&code=2999", "code="),
        ("close_in=1&code=5000", "code="), (f"close_in=1&reason={quote('é' * 62)}", "reason="),
        ("code=1000", "code= needs close_after= or close_in="), ("stream=0", "stream="),
        ("stream=1000001&size=0", "stream="), ("stream=1&size=1048577", "size=1048577"),
        ("stream=65&size=1048576", "stream=65 x size=1048576"), ("stream=1&rate=0", "rate="),
        ("stream=1&rate=10001", "rate="), ("stream=1&type=json", "type="),
        ("size=1", "size= needs"),
        ("delay=1&delay=2", "delay= is given twice"), ("delay=%ff", "delay=\ufffd: "),
        ("close_in=1&reason=%ff", "reason=\ufffd: must be UTF-8"), ("stream=1&rate=0.009", "rate="),
        ("&".join(f"p{n}=1" for n in range(101)), "more than 100 query parameters"),
    ],
)  # fmt: skip
def test_a_bad_value_gets_400_naming_the_parameter(server, query, named):
    status, body = refusal(server, query)
    assert status == 400
    assert named in body and body.count("\n") == 1, body
    assert len(body) < 200


def test_test_modes_turned_off_answer_400(gunicorn_server):
    server = gunicorn_server(ECHO_TEST_MODES="off")
    for query in ("delay=10", "stream=1", "hello"):
        assert refusal(server, query) == (400, "test modes are turned off on this server\n")
    with connect(f"{server.ws_url}?cachebuster=1") as ws:  # other parameters are ignored
        ws.send("plain")
        assert ws.recv(timeout=TIMEOUT) == "plain"


def test_without_a_mode_nothing_unsolicited_is_sent(server):
    with RawClient(server.port, "/ws?x=1") as client:
        client.send(OP_BINARY, b"first")
        assert client.recv_message() == (OP_BINARY, b"first")


def test_connections_are_counted_by_test_mode(server):
    before = server.metric("echo_test_mode_connections_total", mode="delay")
    with connect(f"{server.ws_url}?delay=1&stream=1") as ws:
        ws.recv(timeout=TIMEOUT)
    assert server.metric("echo_test_mode_connections_total", mode="delay") == before + 1
    assert server.metric("echo_test_mode_connections_total", mode="stream") >= 1


def test_refused_test_modes_are_counted_as_rejected_handshakes(server):
    before = server.metric("echo_handshakes_total", result="rejected", reason="test_mode")
    assert refusal(server, "delay=x")[0] == 400
    after = server.metric("echo_handshakes_total", result="rejected", reason="test_mode")
    assert after == before + 1


def test_a_stream_to_a_client_that_never_reads_ends_with_the_keepalive(gunicorn_server):
    server = gunicorn_server(
        ECHO_READ_TIMEOUT="0.5", ECHO_PING_INTERVAL="0.5", ECHO_PING_TIMEOUT="1"
    )
    agent = f"test-{uuid.uuid4()}"
    with RawClient(server.port, "/ws?stream=1000&size=65536", rcvbuf=4096, User_Agent=agent):
        line = server.log_line(agent)  # written once the server has given up on it
    assert re.search(r" out=\d+/\d+B close=1011 by=server modes=stream$", line), line


def test_a_client_that_vanishes_with_echoes_waiting_is_logged_as_gone(server):
    agent = f"test-{uuid.uuid4()}"
    client = RawClient(server.port, "/ws?delay=30000", User_Agent=agent)
    client.send(OP_TEXT, b"never echoed")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset: gone without a Close
    line = server.log_line(agent)
    assert re.search(r" out=0/0B close=1006 by=client modes=delay dropped=[01]$", line), line
