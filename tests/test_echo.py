"""Messages come back whole and with their type; closes echo the client's code and reason."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from websockets.asyncio.client import connect as async_connect
from websockets.sync.client import connect

from .rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    close_payload,
    encode_frame,
    handshake_request,
)
from .servers import TIMEOUT, connections_held, wait_for


@pytest.mark.parametrize(
    "message",
    ["hello", "", "héllo wörld ✓ 日本語 🎉", b"\x00\x01\xfe\xff", b"", bytes(range(256)) * 300],
    ids=["text", "empty-text", "unicode", "binary", "empty-binary", "binary-76800"],
)
def test_message_echoed_with_its_type(server, message):
    with connect(server.ws_url) as ws:
        ws.send(message)
        echoed = ws.recv()
    assert echoed == message
    assert type(echoed) is type(message)


@pytest.mark.parametrize("parts", [["frag", "men", "ted ✓"], [b"\x01\x02", b"", b"\x03"]])
def test_fragmented_message_echoed_as_one(server, parts):
    with connect(server.ws_url) as ws:
        ws.send(parts)
        assert ws.recv() == parts[0][:0].join(parts)


def test_ping_between_fragments_is_answered_and_message_kept(server):
    with RawClient(server.port) as client:
        client.send(OP_TEXT, b"abc", fin=False)
        client.send(OP_PING, b"mid")
        client.send(OP_CONT, b"def")
        assert client.recv_frame() == (True, OP_PONG, b"mid")
        assert client.recv_frame() == (True, OP_TEXT, b"abcdef")


def test_messages_echoed_in_order(server):
    with connect(server.ws_url) as ws:
        for i in range(100):
            ws.send(f"message {i}")
        assert [ws.recv() for _ in range(100)] == [f"message {i}" for i in range(100)]


@pytest.mark.parametrize("reason", ["bye now", "", "ça va ✓"])
def test_close_code_and_reason_echoed(server, reason):
    with connect(server.ws_url) as ws:
        ws.close(4001, reason)
        assert ws.protocol.close_rcvd.code == 4001
        assert ws.protocol.close_rcvd.reason == reason


def test_close_without_code_answered_with_empty_close(server):
    with RawClient(server.port) as client:
        client.send(OP_CLOSE)
        assert client.recv_frame() == (True, OP_CLOSE, b"")
        client.assert_eof()


def test_close_with_registered_code_echoed(server):
    with RawClient(server.port) as client:
        client.send(OP_CLOSE, close_payload(1001, b"going away"))
        assert client.recv_frame() == (True, OP_CLOSE, struct.pack("!H", 1001) + b"going away")
        client.assert_eof()


def test_vanished_client_cleaned_up_quietly(server):
    worker = server.worker_pid()
    for vanish in ("reset", "fin", "mid-frame"):
        client = RawClient(server.port)
        port = client.sock.getsockname()[1]
        assert connections_held(worker, port)
        if vanish == "reset":  # SO_LINGER 0: the kernel sends RST instead of FIN
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if vanish == "mid-frame":
            client.sock.sendall(b"\x82\xfe\x10\x00")  # 4096-byte frame announced, never sent
        client.close()
        wait_for(
            lambda p=port: not connections_held(worker, p), what="the server to drop the socket"
        )
    assert "Traceback" not in server.log()
    with connect(server.ws_url) as ws:
        ws.send("still serving")
        assert ws.recv() == "still serving"


def test_many_concurrent_clients_echo_independently(server):
    clients, rounds = 200, 10

    async def client(n: int) -> list[str | bytes]:
        async with async_connect(server.ws_url) as ws:
            echoed = []
            for i in range(rounds):
                message = f"client {n} message {i}" if i % 2 else f"{n}:{i}".encode()
                await ws.send(message)
                echoed.append(await ws.recv())
            return echoed

    async def main() -> list[list[str | bytes]]:
        return await asyncio.gather(*(client(n) for n in range(clients)))

    results = asyncio.run(main())
    for n, echoed in enumerate(results):
        assert echoed == [
            f"client {n} message {i}" if i % 2 else f"{n}:{i}".encode() for i in range(rounds)
        ]


def test_binary_stays_binary_on_the_wire(server):
    with RawClient(server.port) as client:
        client.send(OP_BINARY, b"text bytes")
        client.send(OP_TEXT, b"text")
        assert client.recv_message() == (OP_BINARY, b"text bytes")
        assert client.recv_message() == (OP_TEXT, b"text")


def test_frames_sent_with_the_handshake_are_not_lost(server):
    """Frames in the same packet as the request reach the reader that takes over."""
    request = handshake_request(server.port)
    frames = encode_frame(OP_TEXT, b"early") + encode_frame(OP_BINARY, b"\x00bird")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request + frames)
        stream = sock.makefile("rb")
        while stream.readline() != b"\r\n":
            pass
        assert stream.read(7) == b"\x81\x05early"
        assert stream.read(7) == b"\x82\x05\x00bird"
