"""A slow reader gets every echo; only the keepalive gives up on a client that stopped reading."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

from .rawws import OP_BINARY, OP_CLOSE, OP_PING, RawClient, encode_frame
from .servers import GUNICORN, ServerProcess, connections_held, wait_for

READ_TIMEOUT = {"ECHO_READ_TIMEOUT": "1"}
KEEPALIVE = {"ECHO_PING_INTERVAL": "0.5", "ECHO_PING_TIMEOUT": "1"}
PAUSE = 4.0  # seconds a slow reader leaves its echoes unread: 4 read timeouts


class Writer(threading.Thread):
    """Writes ``data`` on the client's socket while the test does not read from it.

    The writes block once the server stops reading; an error ends the thread
    and is kept in ``error``.
    """

    def __init__(self, client: RawClient, data: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.client, self.data = client, data
        self.error: OSError | None = None

    def run(self) -> None:
        try:
            for chunk in self.data:
                self.client.sock.sendall(chunk)
        except OSError as exc:
            self.error = exc


def test_slow_reader_gets_every_echo_intact_and_in_order(gunicorn_server):
    """16 messages of 1,000,000 bytes, sent while not reading: writes blocked 4x read_timeout."""
    server = gunicorn_server(**READ_TIMEOUT)
    messages = [os.urandom(1_000_000) for _ in range(16)]
    with RawClient(server.port) as client:
        writer = Writer(client, [encode_frame(OP_BINARY, m) for m in messages])
        writer.start()
        time.sleep(PAUSE)  # the slow reader is busy elsewhere
        echoed = [client.recv_message() for _ in messages]
        writer.join()
    assert writer.error is None
    assert echoed == [(OP_BINARY, m) for m in messages]


@pytest.mark.parametrize(
    "flood",
    [encode_frame(OP_BINARY, b"\x00" * (1 << 20)), encode_frame(OP_PING, b"p" * 125) * 1000],
    ids=["messages", "pings"],
)
def test_client_that_never_reads_is_closed_1011_by_the_keepalive(gunicorn_server, flood):
    """Its echoes (or pongs) fill every buffer, so the ping cannot go or its pong never comes."""
    server = gunicorn_server(**KEEPALIVE)
    worker = server.worker_pid()
    closed = server.metric("echo_closes_total", code="1011", by="server")
    agent = f"test-{uuid.uuid4()}"
    with RawClient(server.port, User_Agent=agent) as client:
        port = client.sock.getsockname()[1]
        writer = Writer(client, [flood] * 1000)
        writer.start()
        line = server.log_line(agent)
        writer.join()
    assert line.endswith("close=1011 by=server"), line
    assert isinstance(writer.error, (BrokenPipeError, ConnectionResetError))  # hung up on
    assert server.metric("echo_closes_total", code="1011", by="server") == closed + 1
    wait_for(lambda: not connections_held(worker, port), what="the worker to free the socket")


def test_shutdown_echoes_everything_to_a_slow_reader_then_closes_1001():
    with ServerProcess(GUNICORN, READ_TIMEOUT) as server:
        agent = f"test-{uuid.uuid4()}"
        messages = [os.urandom(1_000_000) for _ in range(8)]
        with RawClient(server.port, User_Agent=agent) as client:
            writer = Writer(client, [encode_frame(OP_BINARY, m) for m in messages])
            writer.start()
            time.sleep(PAUSE / 2)  # writes blocked for 2x read_timeout, then the signal
            os.kill(server.process.pid, signal.SIGTERM)
            time.sleep(PAUSE / 2)
            echoed = []
            while (message := client.recv_message())[0] != OP_CLOSE:
                echoed.append(message)
            code = int.from_bytes(message[1][:2], "big")
            client.send(OP_CLOSE, message[1][:2])
            client.assert_eof()
        assert server.wait_exit() == 0
        line = server.log_line(agent)
    assert code == 1001
    assert len(echoed) >= 2
    assert echoed == [(OP_BINARY, m) for m in messages[: len(echoed)]]
    # Every message the server took in was echoed before its Close frame.
    assert f"in={len(echoed)}/" in line and f"out={len(echoed)}/" in line, line
    assert line.endswith("close=1001 by=server"), line
