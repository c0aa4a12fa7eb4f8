"""An ended connection's memory is freed as it ends, not at the next garbage collection.

Objects in a reference cycle wait for the cyclic collector, which may not
run for a long time after a burst: each compressed connection kept its zlib
streams (about 58 KiB) that way. ``make soak`` measures the memory given back.
"""

from __future__ import annotations

import socket
import struct
import sys
import zlib
from collections.abc import Callable

from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .rawws import OP_BINARY, OP_TEXT, RawClient, handshake_request, http_exchange
from .servers import (
    INSTRUMENTED,
    ServerProcess,
    connections_held,
    probe,
    scratch_dir,
    wait_for,
)

COUNT = 10  # of each way to end


def echoes_compressed(server: ServerProcess) -> None:
    with connect(server.ws_url) as ws:  # the client offers permessage-deflate
        ws.send("x" * 4096)
        assert ws.recv() == "x" * 4096


def resets(server: ServerProcess) -> None:
    client = RawClient(server.port)
    client.send(OP_TEXT, b"hello")
    assert client.recv_message() == (OP_TEXT, b"hello")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def breaks_the_protocol(server: ServerProcess) -> None:
    with RawClient(server.port) as client:
        client.send(OP_TEXT, b"unmasked", mask=False)
        assert client.recv_close()[0] == 1002


def sends_a_compression_bomb(server: ServerProcess) -> None:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflater.compress(b"\0" * (4 << 20)) + deflater.flush(zlib.Z_SYNC_FLUSH)
    with RawClient(server.port, Sec_WebSocket_Extensions="permessage-deflate") as client:
        client.send(OP_BINARY, bomb[:-4], rsv=4)
        assert client.recv_close()[0] == 1009


def is_refused_by_origin(server: ServerProcess) -> None:
    try:
        connect(server.ws_url, origin="https://elsewhere.example")
    except InvalidStatus as refused:
        assert refused.response.status_code == 403


def is_refused_for_its_path(server: ServerProcess) -> None:
    assert http_exchange(server.port, handshake_request(server.port, "/nope"))[0] == 404


def is_refused_for_its_key(server: ServerProcess) -> None:
    request = handshake_request(server.port, Sec_WebSocket_Key="short")
    assert http_exchange(server.port, request)[0] == 400


ENDINGS: list[Callable[[ServerProcess], None]] = [
    echoes_compressed,
    resets,
    breaks_the_protocol,
    sends_a_compression_bomb,
    is_refused_by_origin,
    is_refused_for_its_path,
    is_refused_for_its_key,
]


def test_ended_connections_leave_nothing_for_the_garbage_collector():
    probe_file = scratch_dir("echo-probe-") / "probe.json"
    env = {"ECHO_PROBE_FILE": str(probe_file), "ECHO_ALLOWED_ORIGINS": "https://ok.example"}
    command = [sys.executable, "-m", "gunicorn", "-c", str(INSTRUMENTED)]
    with ServerProcess(command, env) as server:
        worker = server.worker_pid()
        probe(server, probe_file)  # whatever starting up left is collected here
        for end in ENDINGS:
            for _ in range(COUNT):
                end(server)
        # Each connection's socket is closed as its greenlet ends, and the probe
        # runs in a greenlet of its own: once none is held, all have ended.
        wait_for(lambda: connections_held(worker) == 0, what="every connection to end")
        garbage = probe(server, probe_file)["garbage"]
    print(f"\n{len(ENDINGS) * COUNT} connections ended; the collector then found {garbage} objects")
    assert garbage < COUNT  # each connection once left 17, and its buffers and zlib streams
