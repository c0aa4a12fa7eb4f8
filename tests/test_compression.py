"""permessage-deflate on the wire, against a real server: raw frames compressed by zlib here."""

from __future__ import annotations

import os
import zlib

import pytest
from websockets.sync.client import connect

from .rawws import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient, encode_frame

TAIL = b"\x00\x00\xff\xff"
RSV1 = 4  # encode_frame's rsv counts from RSV3


class Compressor:
    """A client's side of permessage-deflate, by hand."""

    def __init__(self, takeover: bool = True) -> None:
        self.takeover = takeover
        self.deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(wbits=-15)

    def compress(self, data: bytes) -> bytes:
        """A whole message."""
        if not self.takeover:
            self.deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        return self.compress_part(data)[:-4]

    def compress_part(self, data: bytes) -> bytes:
        """A piece of a message, ending in a sync flush's tail (only the last loses it)."""
        compressed = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        assert compressed.endswith(TAIL)
        return compressed

    def inflate(self, data: bytes) -> bytes:
        return self.inflater.decompress(data + TAIL)


def deflate_client(server, offer: str = "permessage-deflate") -> RawClient:
    client = RawClient(server.port, Sec_WebSocket_Extensions=offer)
    assert client.headers["sec-websocket-extensions"].startswith("permessage-deflate")
    return client


def receive(client: RawClient, codec: Compressor) -> tuple[int, bytes, bool]:
    """The next message: its opcode, its payload decompressed, whether it came compressed."""
    opcode, payload = client.recv_message()
    compressed = client.rsv1
    return opcode, codec.inflate(payload) if compressed else payload, compressed


@pytest.mark.parametrize(
    ("opcode", "payload"),
    [
        (OP_TEXT, "héllo wörld ".encode() * 100),
        (OP_BINARY, os.urandom(70_000)),
        (OP_BINARY, b"\x00" * 500_000),
        (OP_TEXT, b""),
    ],
    ids=["text", "incompressible", "zeros", "empty"],
)
def test_compressed_message_echoes_compressed_with_its_type(server, opcode, payload):
    codec = Compressor()
    with deflate_client(server) as client:
        client.send(opcode, codec.compress(payload), rsv=RSV1)
        assert receive(client, codec) == (opcode, payload, True)


def test_uncompressed_message_on_a_compressed_connection_echoes_compressed(server):
    codec = Compressor()
    with deflate_client(server) as client:
        client.send(OP_TEXT, b"plain " * 50)
        assert receive(client, codec) == (OP_TEXT, b"plain " * 50, True)


def test_rsv1_only_on_the_first_frame_and_never_on_control_frames(server):
    codec = Compressor()
    wire = codec.compress(b"fragmented and compressed " * 40)
    with deflate_client(server) as client:
        client.send(OP_TEXT, wire[:10], rsv=RSV1, fin=False)
        client.send(OP_PING, b"in between")  # a control frame inside the message
        client.send(OP_CONT, wire[10:20], fin=False)
        client.send(OP_CONT, wire[20:])
        _, opcode, payload = client.recv_frame()
        assert (opcode, payload, client.rsv1) == (OP_PONG, b"in between", False)
        assert receive(client, codec) == (OP_TEXT, b"fragmented and compressed " * 40, True)


def test_compressed_message_in_many_fragments_echoes_whole(server):
    """1,000 fragments, each flushed by the client, the first alone with RSV1."""
    codec, text = Compressor(), "fragment {} of a compressed message; "
    parts = [codec.compress_part(text.format(n).encode()) for n in range(1000)]
    parts[-1] = parts[-1][:-4]  # the message's tail comes off, the fragments' stay
    wire = [encode_frame(OP_TEXT, parts[0], rsv=RSV1, fin=False)]
    wire += [encode_frame(OP_CONT, part, fin=False) for part in parts[1:-1]]
    wire.append(encode_frame(OP_CONT, parts[-1]))
    expected = "".join(text.format(n) for n in range(1000)).encode()
    with deflate_client(server) as client:
        client.sock.sendall(b"".join(wire))
        assert receive(client, codec) == (OP_TEXT, expected, True)


@pytest.mark.parametrize(
    "frames",
    [
        [encode_frame(OP_TEXT, b"\x00", rsv=RSV1, fin=False), encode_frame(OP_CONT, b"", rsv=RSV1)],
        [encode_frame(OP_PING, b"", rsv=RSV1)],
        [encode_frame(OP_TEXT, b"", rsv=2)],  # RSV2: no extension defines it
        [encode_frame(OP_BINARY, b"\xff\xff\xff\xff", rsv=RSV1)],  # not DEFLATE data
    ],
    ids=["rsv1-continuation", "rsv1-ping", "rsv2", "corrupt"],
)
def test_compression_protocol_errors_close_1002(server, frames):
    with deflate_client(server) as client:
        client.sock.sendall(b"".join(frames))
        assert client.recv_close()[0] == 1002


def test_invalid_utf8_inside_compressed_text_closes_1007(server):
    with deflate_client(server) as client:
        client.send(OP_TEXT, Compressor().compress(b"ok \xff"), rsv=RSV1)
        assert client.recv_close()[0] == 1007


@pytest.mark.parametrize("takeover", [True, False], ids=["context-takeover", "no-takeover"])
def test_context_takeover_as_negotiated(server, takeover):
    """With takeover each side's second copy of a message refers back to the first."""
    offer = (
        "permessage-deflate"
        if takeover
        else ("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    )
    # 1 KB, compressible only by repetition: two copies back still fit in the
    # server's 4 KiB window (at level 1 zlib does not index a copy it matched whole).
    message = os.urandom(500).hex().encode()
    codec = Compressor(takeover)
    sizes = []
    with deflate_client(server, offer) as client:
        for _ in range(3):
            client.send(OP_TEXT, codec.compress(message), rsv=RSV1)
            opcode, payload = client.recv_message()
            assert (opcode, codec.inflate(payload)) == (OP_TEXT, message)
            sizes.append(len(payload))
    if takeover:
        assert sizes[1] < sizes[0] / 10 and sizes[2] < sizes[0] / 10, sizes
    else:
        assert sizes[0] == sizes[1] == sizes[2], sizes


def test_real_client_round_trips_compressed(server):
    """python websockets, compression on (its default), checks every frame it gets."""
    with connect(server.ws_url, max_size=None) as ws:
        assert ws.protocol.extensions[0].name == "permessage-deflate"
        for message in ["x" * 100_000, os.urandom(300_000), "é" * 10_000, b""]:
            ws.send(message)
            assert ws.recv() == message


def test_compressed_bomb_closes_1009_within_the_limit(server):
    """10 KiB that inflate to 10 MiB, against the 1 MiB limit."""
    bomb = Compressor().compress(b"\x00" * (10 << 20))
    assert len(bomb) <= 10 << 10
    with deflate_client(server) as client:
        client.send(OP_BINARY, b"warm up")
        client.recv_message()
        with server.peak_rss_growth() as peak:
            client.send(OP_BINARY, bomb, rsv=RSV1)
            assert client.recv_close()[0] == 1009
    assert peak.bytes < 2 * (1 << 20), f"peak RSS grew by {peak.bytes} bytes"


def test_compressed_stream_of_a_gigabyte_closes_1009_within_the_limit(server):
    """About 1 MB of frames that would inflate to 1 GiB: inflating stops past 1 MiB."""
    codec, mebibyte = Compressor(), b"\x00" * (1 << 20)
    first, steady = codec.compress_part(mebibyte), codec.compress_part(mebibyte)
    assert codec.compress_part(mebibyte) == steady  # every later MiB of the stream is these bytes
    frames = [encode_frame(OP_BINARY, first, rsv=RSV1, fin=False)]
    frames += [encode_frame(OP_CONT, steady, fin=False)] * 1022
    frames.append(encode_frame(OP_CONT, steady[:-4]))
    with deflate_client(server) as client:
        client.send(OP_BINARY, b"warm up")
        client.recv_message()
        with server.peak_rss_growth() as peak:
            client.sock.sendall(b"".join(frames))
            assert client.recv_close()[0] == 1009
    assert peak.bytes < 2 * (1 << 20), f"peak RSS grew by {peak.bytes} bytes"
