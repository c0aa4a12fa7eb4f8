"""Turns the client's byte stream into messages and control frames.

Knows nothing of sockets: it pulls bytes through a ``receive`` callable, so
the same code runs over a gevent socket in production and over bytes in a
test. Every limit is enforced from a frame's header before its payload is
read, and text is checked as it arrives so invalid UTF-8 fails the connection
at once.

The reader keeps what one receive brought and parses every frame already in
it in one loop, without a call per header or payload: a message sent in
64-byte fragments costs a few hundred nanoseconds a frame (bench/README.md).
Consumed bytes are let go before the next receive, so an idle connection
holds no buffer.

A compressed message (permessage-deflate) is inflated piece by piece as it
arrives, each piece bounded by what the message may still grow by, so
``max_message_size`` limits the decompressed size before it is in memory.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass

from . import deflate, frames
from .deflate import Deflate
from .errors import InvalidUTF8, MessageTooBig, ProtocolError
from .frames import apply_mask

# How much one receive asks for when parsing frames out of a stream.
READ_AHEAD = 64 * 1024
# Largest piece of a long payload received (and unmasked, and UTF-8 checked) at a time.
CHUNK_SIZE = 256 * 1024
# Pieces of a message kept apart before they are joined into one: a message in
# tiny fragments then costs about its size, not an object per fragment.
JOIN_EVERY = 256

_KNOWN_OPCODES = frames.DATA_OPCODES | frames.CONTROL_OPCODES
_RSV1 = frames.RSV1
_RSV1_RSV2_RSV3 = 0x70
_RSV2_RSV3 = 0x30
# Header bytes of the usual small echo: a final text or binary frame, no RSV
# bits; masked, with a length under 126 (RFC 6455 section 5.2).
_FIN_TEXT = 0x80 | frames.OP_TEXT
_FIN_DATA = frozenset({_FIN_TEXT, 0x80 | frames.OP_BINARY})
_MASKED = 0x80
_MASKED_LENGTH_16 = 0x80 | 126

#: ``receive(size, idle)``: up to ``size`` bytes, ``b""`` at end of stream.
#: ``idle`` is true when no frame has begun and no fragmented message is in
#: progress, so the I/O layer can bound how long a client may stall in the
#: middle of a message without bounding the time between messages.
Receive = Callable[[int, bool], bytes]


@dataclass(slots=True)
class Message:
    """A whole data message: ``str`` for text, ``bytes`` for binary; ``size`` in bytes."""

    data: str | bytes
    size: int


@dataclass(slots=True)
class Ping:
    payload: bytes


@dataclass(slots=True)
class Pong:
    payload: bytes


@dataclass(slots=True)
class Close:
    """The client's Close frame; ``code`` is ``None`` when it carried no status."""

    code: int | None
    reason: str


Event = Message | Ping | Pong | Close


class MessageReader:
    """Reads events through ``receive``, starting with the ``pending`` bytes already read."""

    def __init__(
        self,
        receive: Receive,
        max_message_size: int,
        pending: bytes = b"",
        compression: Deflate | None = None,
    ) -> None:
        self._receive = receive
        self._buffer = pending  # received, parsed up to _position
        self._position = 0
        self._max_size = max_message_size
        self._opcode: int | None = None  # of the message being assembled
        self._parts: list[str] | list[bytes] = []  # pieces of the message, not yet joined
        self._joined: list[str] | list[bytes] = []  # runs of JOIN_EVERY pieces, joined
        self._size = 0  # of the message, decompressed
        self._undecoded = b""  # the start of a UTF-8 sequence split across fragments
        # permessage-deflate: RSV1 marks a compressed message (RFC 7692 section 6).
        self._deflate = compression
        self._reserved_bits = _RSV2_RSV3 if compression else _RSV1_RSV2_RSV3
        self._inflating = False  # the message being assembled is compressed
        self._wire_size = 0  # of a compressed message, as received
        self._max_wire_size = deflate.max_compressed_size(max_message_size) if compression else 0

    def read_event(self) -> Event:
        """Block until the next message or control frame is complete.

        Raises ``ProtocolError`` (or a subclass) when the client breaks the
        protocol and ``EOFError`` when the stream ends mid-frame.
        """
        while True:
            buffer, position = self._buffer, self._position
            if len(buffer) - position < 2:
                buffer, position = self._fill(2), 0
            first, second = buffer[position], buffer[position + 1]
            if (
                first in _FIN_DATA
                and _MASKED <= second < _MASKED_LENGTH_16
                and self._opcode is None
            ):
                # The usual small echo: one whole message in one small masked
                # frame, uncompressed, decided from the two header bytes alone.
                opcode, length, start = first & 0x0F, second - _MASKED, position + 6
                whole = True
            else:
                opcode, length = first & 0x0F, second & 0x7F
                header_size = 6 if length < 126 else 8 if length == 126 else 14
                if (
                    first & self._reserved_bits
                    or not second & 0x80
                    or opcode not in _KNOWN_OPCODES
                    or (
                        opcode >= 0x8
                        and (
                            first & _RSV1 or not first & 0x80 or length > frames.MAX_CONTROL_PAYLOAD
                        )
                    )
                ):
                    _reject_header(first, second, self._reserved_bits)
                if opcode >= 0x8:  # a control frame: parsed only once wholly here
                    end = position + header_size + length
                    if len(buffer) < end:
                        self._fill(header_size + length)
                        continue
                    self._position = end
                    payload = apply_mask(
                        buffer[end - length : end], buffer[end - length - 4 : end - length]
                    )
                    return _control_event(opcode, payload)
                if len(buffer) - position < header_size:
                    self._fill(header_size)
                    continue
                if length == 126:
                    length = buffer[position + 2] << 8 | buffer[position + 3]
                elif length == 127:
                    length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                    if length >> 63:
                        raise ProtocolError("frame length has its most significant bit set")
                start = position + header_size
                whole = (
                    first & 0x80
                    and opcode != frames.OP_CONTINUATION
                    and self._opcode is None
                    and not first & _RSV1
                )
            end = start + length
            if whole and end <= len(buffer) and length <= self._max_size:
                # A whole message in one frame, uncompressed, within the limit
                # and already here: without _begin_frame's assembly.
                self._position = end
                payload = apply_mask(buffer[start:end], buffer[start - 4 : start])
                if opcode != frames.OP_TEXT:
                    return Message(payload, length)
                try:
                    return Message(payload.decode("utf-8"), length)
                except UnicodeDecodeError:
                    raise InvalidUTF8("text message is not valid UTF-8") from None
            if len(buffer) < start:  # a small frame's header, not all here yet
                self._fill(start - position)
                continue
            mask = buffer[start - 4 : start]
            self._begin_frame(opcode, length, first & _RSV1)
            if end <= len(buffer):  # the whole payload is here
                self._position = end
                self._keep(apply_mask(buffer[start:end], mask))
            else:
                self._position = start
                self._read_payload(length, mask)
            if first & 0x80:
                return self._end_message()

    def _fill(self, size: int) -> bytes:
        """Receive until at least ``size`` unparsed bytes are buffered; the buffer.

        Called only when fewer are. ``size`` is at most a frame header and a
        control frame's payload (139 bytes), so each receive asks for
        ``READ_AHEAD``.
        """
        rest = self._buffer[self._position :]
        self._buffer, self._position = rest, 0  # what was parsed is let go before waiting
        idle = not rest and self._opcode is None
        while True:
            data = self._receive(READ_AHEAD, idle)
            if not data:
                raise EOFError("connection closed in the middle of a frame")
            rest = self._buffer = rest + data if rest else data
            if len(rest) >= size:
                return rest
            idle = False

    def _begin_frame(self, opcode: int, length: int, compressed: int) -> None:
        if opcode == frames.OP_CONTINUATION:
            if self._opcode is None:
                raise ProtocolError("continuation frame with no message to continue")
            if compressed:
                raise ProtocolError("RSV1 set on a continuation frame")
        elif self._opcode is not None:
            raise ProtocolError("new message started before the previous one ended")
        else:
            self._opcode = opcode
            self._undecoded = b""
            self._inflating = bool(compressed)
        if self._inflating:  # the decompressed size is checked as it is inflated
            if length > self._max_wire_size - self._wire_size:
                raise MessageTooBig(f"compressed message over {self._max_wire_size} bytes")
            self._wire_size += length
        elif length > self._max_size - self._size:
            raise MessageTooBig(f"message over the {self._max_size}-byte limit")
        else:
            self._size += length

    def _read_payload(self, length: int, mask: bytes) -> None:
        """A payload that has not wholly arrived: buffered part first, then receives."""
        buffered = self._buffer[self._position :]
        self._buffer, self._position = b"", 0
        offset = 0
        while offset < length:
            chunk = buffered or self._receive(min(length - offset, CHUNK_SIZE), False)
            buffered = b""
            if not chunk:
                raise EOFError("connection closed in the middle of a frame")
            self._keep(apply_mask(chunk, frames.rotate_mask(mask, offset)))
            offset += len(chunk)

    def _keep(self, data: bytes) -> None:
        """Add a piece of the message as received: inflated, if it is compressed."""
        if not self._inflating:
            self._add(data)
            return
        for piece in self._deflate.inflate(data, self._max_size - self._size):
            self._size += len(piece)
            self._add(piece)

    def _add(self, data: bytes) -> None:
        """Add a piece of the message (UTF-8 checked if text), joining every JOIN_EVERY."""
        parts = self._parts
        parts.append(self._decode(data) if self._opcode == frames.OP_TEXT else data)
        if len(parts) == JOIN_EVERY:
            self._joined.append(self._join(parts))
            self._parts = []

    def _join(self, pieces: list[str] | list[bytes]) -> str | bytes:
        return ("" if self._opcode == frames.OP_TEXT else b"").join(pieces)

    def _end_message(self) -> Message:
        if self._inflating:
            self._keep(deflate.TAIL)  # what the client took off (RFC 7692 section 7.2.2)
            self._deflate.end_message()
            self._inflating, self._wire_size = False, 0
        if self._opcode == frames.OP_TEXT and self._undecoded:
            self._decode(b"", final=True)  # raises: the message ends mid-sequence
        pieces = [*self._joined, self._join(self._parts)] if self._joined else self._parts
        message = Message(self._join(pieces), self._size)
        self._opcode, self._parts, self._joined, self._size = None, [], [], 0
        return message

    def _decode(self, data: bytes, final: bool = False) -> str:
        """Decode a piece of text, keeping a sequence split across pieces for the next."""
        if self._undecoded:
            data = self._undecoded + data
        try:
            text, used = codecs.utf_8_decode(data, "strict", final)
        except UnicodeDecodeError:
            raise InvalidUTF8("text message is not valid UTF-8") from None
        if used < len(data):
            self._undecoded = undecoded = data[used:]
            # The decoder holds back ED A0..BF (a UTF-16 surrogate) until its
            # third byte arrives; no third byte can make it valid, so fail now.
            if undecoded[:1] == b"\xed" and undecoded[1:2] >= b"\xa0":
                raise InvalidUTF8("text message is not valid UTF-8")
        else:
            self._undecoded = b""
        return text


def _reject_header(first: int, second: int, reserved_bits: int) -> None:
    """Raise the error for a frame header the fast check refused."""
    opcode = first & 0x0F
    if first & reserved_bits:
        raise ProtocolError("reserved bits set that no negotiated extension defines")
    if opcode >= 0x8 and first & _RSV1:
        raise ProtocolError("RSV1 set on a control frame")
    if opcode not in _KNOWN_OPCODES:
        raise ProtocolError(f"reserved opcode {opcode:#x}")
    if not second & 0x80:
        raise ProtocolError("client frames must be masked")
    if not first & 0x80:
        raise ProtocolError("fragmented control frame")
    raise ProtocolError("control frame payload over 125 bytes")


def _control_event(opcode: int, payload: bytes) -> Event:
    if opcode == frames.OP_PING:
        return Ping(payload)
    if opcode == frames.OP_PONG:
        return Pong(payload)
    return Close(*frames.decode_close(payload))
