"""Every ended connection is recorded as what happened: a close code and who closed it.

The access-log line and ``echo_closes_total`` agree, and both always hold a
number and ``client`` or ``server``: 1005 for a Close frame without a code,
1006 for a connection that ended without a closing handshake.
"""

from __future__ import annotations

import select
import socket
import struct
import time
import uuid
from collections.abc import Callable

import pytest

from .rawws import OP_BINARY, OP_CLOSE, OP_TEXT, RawClient, close_payload, encode_frame
from .servers import GUNICORN, TIMEOUT, ServerProcess, unsent_bytes, wait_for

FAST_TIMEOUTS = {"ECHO_READ_TIMEOUT": "0.5", "ECHO_PING_INTERVAL": "0.5", "ECHO_PING_TIMEOUT": "1"}
NO_PINGS = {"ECHO_PING_INTERVAL": "0"}  # a client that does not read is then never given up on


def closes_with_a_code(client: RawClient, server: ServerProcess) -> None:
    client.send(OP_CLOSE, close_payload(4000, b"bye"))
    assert client.recv_close() == (4000, b"bye")


def closes_without_a_code(client: RawClient, server: ServerProcess) -> None:
    client.send(OP_CLOSE)
    assert client.recv_close() == (None, b"")


def reset(client: RawClient) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def resets(client: RawClient, server: ServerProcess) -> None:
    client.send(OP_TEXT, b"hello")
    assert client.recv_message() == (OP_TEXT, b"hello")
    reset(client)


def resets_while_its_echo_is_written(client: RawClient, server: ServerProcess) -> None:
    """Echoes the client does not read fill the buffers; the reset lands on a blocked write.

    The client goes on sending whole frames (a partial send is finished, never
    cut) until the loopback queues say the server has stopped reading, its
    echo waiting to go: bytes wait to be taken both ways. Until then the
    client waits for its socket to take more, re-checking the queues.
    """
    stream = encode_frame(OP_BINARY, b"\x00" * (1 << 20))
    ours = client.sock.getsockname()[1]
    client.sock.setblocking(False)
    pending = memoryview(stream)

    def server_blocked_on_its_echo() -> bool:
        return bool(unsent_bytes(ours, server.port) and unsent_bytes(server.port, ours))

    deadline = time.monotonic() + TIMEOUT
    while not server_blocked_on_its_echo():
        assert time.monotonic() < deadline, "the server never blocked on its echo"
        try:
            pending = pending[client.sock.send(pending) :] or memoryview(stream)
        except BlockingIOError:
            select.select([], [client.sock], [], 0.02)  # until it takes more, or look again
    reset(client)


def breaks_the_protocol(client: RawClient, server: ServerProcess) -> None:
    client.send(OP_TEXT, b"unmasked", mask=False)
    assert client.recv_close()[0] == 1002


def sends_invalid_utf8(client: RawClient, server: ServerProcess) -> None:
    client.send(OP_TEXT, b"\xff")
    assert client.recv_close()[0] == 1007


def sends_too_much(client: RawClient, server: ServerProcess) -> None:
    client.sock.sendall(encode_frame(OP_BINARY, b"", length=2 << 20))
    assert client.recv_close()[0] == 1009


def stalls_mid_message(client: RawClient, server: ServerProcess) -> None:
    client.sock.sendall(encode_frame(OP_BINARY, b"x" * 100)[:20])
    code, reason = client.recv_close()
    assert (code, reason) == (1008, b"no data for 0.5 s in the middle of a message")


def ignores_pings(client: RawClient, server: ServerProcess) -> None:
    assert client.recv_close() == (1011, b"keepalive ping timeout")  # pings skipped, unanswered


@pytest.mark.parametrize(
    ("end", "code", "by", "settings"),
    [
        (closes_with_a_code, 4000, "client", FAST_TIMEOUTS),
        (closes_without_a_code, 1005, "client", FAST_TIMEOUTS),
        (resets, 1006, "client", FAST_TIMEOUTS),
        (resets_while_its_echo_is_written, 1006, "client", NO_PINGS),
        (breaks_the_protocol, 1002, "server", FAST_TIMEOUTS),
        (sends_invalid_utf8, 1007, "server", FAST_TIMEOUTS),
        (sends_too_much, 1009, "server", FAST_TIMEOUTS),
        (stalls_mid_message, 1008, "server", FAST_TIMEOUTS),
        (ignores_pings, 1011, "server", FAST_TIMEOUTS),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_ending_is_logged_and_counted(
    gunicorn_server,
    end: Callable[[RawClient, ServerProcess], None],
    code: int,
    by: str,
    settings: dict[str, str],
):
    server = gunicorn_server(**settings)
    before = server.metric("echo_closes_total", code=str(code), by=by)
    agent = f"test-{uuid.uuid4()}"
    with RawClient(server.port, User_Agent=agent) as client:
        end(client, server)
    assert server.log_line(agent).endswith(f" close={code} by={by}")
    assert server.metric("echo_closes_total", code=str(code), by=by) == before + 1


def test_application_error_is_logged_as_1011_by_the_server():
    with ServerProcess([*GUNICORN, "tests.faulty_app:app"]) as server:
        agent = f"test-{uuid.uuid4()}"
        with RawClient(server.port, "/fail", User_Agent=agent) as client:
            client.send(OP_TEXT, b"hello")
            assert client.recv_close() == (1011, b"")
        assert server.log_line(agent).endswith(" close=1011 by=server")
        assert "RuntimeError: the application failed" in server.log()


def test_every_recorded_close_has_a_code_and_a_side(gunicorn_server):
    """Including the closes of the tests above when they ran first: no label is ever '-'."""
    server = gunicorn_server(**FAST_TIMEOUTS)
    for end in (closes_without_a_code, stalls_mid_message):
        with RawClient(server.port) as client:
            end(client, server)
    wait_for(lambda: server.metric("echo_open_connections") == 0, what="both to be recorded")
    closes = [dict(labels) for name, labels in server.metrics() if name == "echo_closes_total"]
    for labels in closes:
        assert labels["code"].isdigit() and labels["by"] in ("client", "server"), labels
