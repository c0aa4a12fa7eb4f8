"""Protocol violations fail the connection with the right close code, then TCP closes."""

from __future__ import annotations

import time

import pytest

from .rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawClient,
    close_payload,
)
from .servers import TIMEOUT


def expect_failure(client: RawClient, code: int) -> None:
    assert client.recv_close()[0] == code
    client.assert_eof()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([(OP_TEXT, b"unmasked", {"mask": False})], 1002),
        ([(OP_TEXT, b"rsv1", {"rsv": 4})], 1002),
        ([(OP_TEXT, b"rsv3", {"rsv": 1})], 1002),
        ([(0x3, b"", {})], 1002),
        ([(0xB, b"", {})], 1002),
        ([(OP_PING, b"", {"fin": False})], 1002),
        ([(OP_PING, b"x" * 126, {})], 1002),
        ([(OP_CONT, b"orphan", {})], 1002),
        ([(OP_TEXT, b"a", {"fin": False}), (OP_BINARY, b"b", {})], 1002),
        ([(OP_CLOSE, b"\x03", {})], 1002),
        ([(OP_CLOSE, close_payload(1005), {})], 1002),
        ([(OP_CLOSE, close_payload(999), {})], 1002),
        ([(OP_CLOSE, close_payload(2000), {})], 1002),
        ([(OP_CLOSE, close_payload(5000), {})], 1002),
        ([(OP_CLOSE, close_payload(1000, b"\xff"), {})], 1007),
        ([(OP_TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80", {})], 1007),
        ([(OP_TEXT, b"ends mid-sequence \xe2\x82", {})], 1007),
    ],
    ids=[
        "unmasked",
        "rsv1",
        "rsv3",
        "opcode-3",
        "opcode-0xB",
        "fragmented-ping",
        "ping-126-bytes",
        "orphan-continuation",
        "new-message-mid-message",
        "close-1-byte",
        "close-1005",
        "close-999",
        "close-2000",
        "close-5000",
        "close-reason-not-utf8",
        "text-surrogate",
        "text-truncated",
    ],
)
def test_violation_closes_with_code(server, frames, code):
    with RawClient(server.port) as client:
        for opcode, payload, options in frames:
            client.send(opcode, payload, **options)
        expect_failure(client, code)


def test_invalid_utf8_fails_before_message_ends(server):
    """The first fragment is already invalid: 1007 comes without the rest being sent."""
    with RawClient(server.port) as client:
        client.send(OP_TEXT, b"valid \xc3\x28 then not", fin=False)
        expect_failure(client, 1007)


def test_utf8_sequence_split_across_fragments_accepted(server):
    euro = "€".encode()
    with RawClient(server.port) as client:
        client.send(OP_TEXT, b"price " + euro[:1], fin=False)
        client.send(OP_CONT, euro[1:2], fin=False)
        client.send(OP_CONT, euro[2:] + b"5")
        assert client.recv_message() == (OP_TEXT, "price €5".encode())


def test_invalid_sequence_split_across_fragments_fails_fast(server):
    """ED A0 starts a UTF-16 surrogate: invalid as soon as the second byte arrives."""
    with RawClient(server.port) as client:
        client.send(OP_TEXT, b"ok \xed", fin=False)
        client.send(OP_CONT, b"\xa0", fin=False)
        expect_failure(client, 1007)


def test_client_that_never_finishes_closing_is_dropped_after_close_timeout(gunicorn_server):
    server = gunicorn_server(ECHO_CLOSE_TIMEOUT="0.5")
    with RawClient(server.port) as client:
        client.send(OP_TEXT, b"unmasked", mask=False)
        assert client.recv_close()[0] == 1002
        # Keep sending (as a broken client might) and never close: the server's
        # reset after close_timeout ends the connection.
        started = time.monotonic()
        with pytest.raises(OSError):
            while time.monotonic() - started < TIMEOUT:
                client.sock.sendall(b"\x00" * 1024)
                time.sleep(0.01)
        assert time.monotonic() - started > 0.4
