"""max_message_size: decided from frame headers, before the payload is read into memory."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from .rawws import OP_BINARY, OP_CONT, OP_TEXT, RawClient, encode_frame

LIMIT = 1 << 20  # the default max_message_size


def test_message_at_the_limit_echoed(server):
    with connect(server.ws_url, max_size=None) as ws:
        ws.send(b"\x5a" * LIMIT)
        assert ws.recv() == b"\x5a" * LIMIT


@pytest.mark.parametrize("claimed", [LIMIT + 1, 2 << 20, 1 << 62], ids=["limit+1", "2MiB", "2^62"])
def test_oversized_frame_header_closes_1009_without_payload(server, claimed):
    """Only the header is sent: the server must decide from it alone."""
    with RawClient(server.port) as client:
        header = encode_frame(OP_BINARY, b"", length=claimed)
        client.sock.sendall(header[:-4] + header[-4:])  # header and mask, no payload
        code, reason = client.recv_close()
        assert code == 1009
        assert b"limit" in reason


def test_fragments_summing_over_limit_close_1009(server):
    part = b"a" * (600 * 1024)
    with RawClient(server.port) as client:
        client.send(OP_TEXT, part, fin=False)
        # The second header alone pushes the message over 1 MiB.
        client.sock.sendall(encode_frame(OP_CONT, b"", length=len(part)))
        assert client.recv_close()[0] == 1009


def test_oversized_message_does_not_grow_server_memory(server):
    """2 MiB against the 1 MiB limit: peak RSS must not rise by anything like 2 MiB."""
    with connect(server.ws_url, max_size=None, compression=None) as ws:
        ws.send("warm up")
        assert ws.recv() == "warm up"
        with server.peak_rss_growth() as peak:
            ws.send(b"\x00" * (2 << 20))
            with pytest.raises(ConnectionClosedError) as closed:
                ws.recv()
    assert closed.value.rcvd.code == 1009
    growth = peak.bytes
    assert growth < 512 * 1024, f"peak RSS grew by {growth} bytes"


@pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT], ids=["binary", "text"])
def test_many_tiny_fragments_cost_about_their_payload_in_memory(server, opcode):
    """250,000 two-byte fragments: kept as a few joined pieces, not an object per fragment."""
    fragments = 250_000
    wire = (
        encode_frame(opcode, b"ab", fin=False)
        + encode_frame(OP_CONT, b"ab", fin=False) * (fragments - 2)
        + encode_frame(OP_CONT, b"ab")
    )
    with RawClient(server.port) as client:
        client.send(OP_BINARY, b"warm up")
        assert client.recv_message() == (OP_BINARY, b"warm up")
        with server.peak_rss_growth() as peak:
            client.sock.sendall(wire)
            assert client.recv_message() == (opcode, b"ab" * fragments)
    growth = peak.bytes
    # An object and a list slot per fragment would be over 15 MB.
    assert growth < 4 << 20, f"peak RSS grew by {growth} bytes"
