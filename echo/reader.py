"""Turns the client's byte stream into messages and control frames.

Knows nothing of sockets: it reads from any buffered binary stream, so the
same code runs over a gevent socket in production and over bytes in a test.
Every limit is enforced from a frame's header before its payload is read, and
text is checked as it arrives so invalid UTF-8 fails the connection at once.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from . import frames
from .errors import InvalidUTF8, MessageTooBig, ProtocolError

# Largest piece of payload read (and unmasked, and UTF-8 checked) at a time.
CHUNK_SIZE = 256 * 1024

_LENGTH_16 = struct.Struct("!H")
_LENGTH_64 = struct.Struct("!Q")


@dataclass(frozen=True, slots=True)
class Message:
    """A whole data message: ``str`` for text, ``bytes`` for binary; ``size`` in bytes."""

    data: str | bytes
    size: int


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The client's Close frame; ``code`` is ``None`` when it carried no status."""

    code: int | None
    reason: str


Event = Message | Ping | Pong | Close


def _ignore(busy: bool) -> None:
    """The default ``on_busy`` callback, for readers nobody times."""


class MessageReader:
    """Reads events from ``stream`` (which must offer ``read`` and ``read1``).

    ``on_busy(True)`` is called when a frame begins to arrive while the reader
    was idle, and ``on_busy(False)`` when it is idle again (no frame and no
    fragmented message in progress), so the I/O layer can bound how long a
    client may stall mid-message without bounding the time between messages.
    """

    def __init__(
        self,
        stream: BinaryIO,
        max_message_size: int,
        on_busy: Callable[[bool], None] = _ignore,
    ) -> None:
        self._stream = stream
        self._on_busy = on_busy
        self._busy = False
        self._max_size = max_message_size
        self._undecoded = b""  # the start of a UTF-8 sequence split across chunks
        self._opcode: int | None = None  # of the message being assembled
        self._parts: list[str] | list[bytes] = []
        self._size = 0

    @property
    def in_message(self) -> bool:
        """Whether a fragmented message has begun and not yet ended."""
        return self._opcode is not None

    def read_event(self) -> Event:
        """Block until the next message or control frame is complete.

        Raises ``ProtocolError`` (or a subclass) when the client breaks the
        protocol and ``EOFError`` when the stream ends mid-frame.
        """
        while True:
            fin, opcode, length, mask = self._read_header()
            if opcode in frames.CONTROL_OPCODES:
                payload = frames.apply_mask(self._read_exact(length), mask)
                if self._opcode is None:
                    self._idle()
                if opcode == frames.OP_PING:
                    return Ping(payload)
                if opcode == frames.OP_PONG:
                    return Pong(payload)
                return Close(*frames.decode_close(payload))
            self._begin_frame(opcode, length)
            self._read_payload(length, mask)
            if fin:
                self._idle()
                return self._end_message()

    def _idle(self) -> None:
        self._busy = False
        self._on_busy(False)

    def _read_header(self) -> tuple[bool, int, int, bytes]:
        first, second = self._read_exact(2)
        if not self._busy:
            self._busy = True
            self._on_busy(True)
        fin = bool(first & 0x80)
        opcode = first & 0x0F
        if first & 0x70:
            raise ProtocolError("reserved bits set but no extension was negotiated")
        if opcode not in frames.DATA_OPCODES and opcode not in frames.CONTROL_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        if not second & 0x80:
            raise ProtocolError("client frames must be masked")
        length = second & 0x7F
        if opcode in frames.CONTROL_OPCODES:
            if not fin:
                raise ProtocolError("fragmented control frame")
            if length > frames.MAX_CONTROL_PAYLOAD:
                raise ProtocolError("control frame payload over 125 bytes")
        # The extended length, if any, and the mask come in one read.
        extended = 0 if length < 126 else 2 if length == 126 else 8
        rest = self._read_exact(extended + 4)
        if extended == 2:
            (length,) = _LENGTH_16.unpack_from(rest)
        elif extended == 8:
            (length,) = _LENGTH_64.unpack_from(rest)
            if length >> 63:
                raise ProtocolError("frame length has its most significant bit set")
        return fin, opcode, length, rest[extended:]

    def _begin_frame(self, opcode: int, length: int) -> None:
        if opcode == frames.OP_CONTINUATION:
            if self._opcode is None:
                raise ProtocolError("continuation frame with no message to continue")
        elif self._opcode is not None:
            raise ProtocolError("new message started before the previous one ended")
        else:
            self._opcode = opcode
            self._undecoded = b""
        if length > self._max_size - self._size:
            raise MessageTooBig(f"message over the {self._max_size}-byte limit")
        self._size += length

    def _read_payload(self, length: int, mask: bytes) -> None:
        text = self._opcode == frames.OP_TEXT
        offset = 0
        while offset < length:
            chunk = self._stream.read1(min(length - offset, CHUNK_SIZE))
            if not chunk:
                raise EOFError("connection closed in the middle of a frame")
            data = frames.apply_mask(chunk, frames.rotate_mask(mask, offset))
            offset += len(chunk)
            self._parts.append(self._decode(data) if text else data)

    def _end_message(self) -> Message:
        parts = self._parts
        if self._opcode == frames.OP_TEXT:
            parts.append(self._decode(b"", final=True))
            data: str | bytes = "".join(parts)
        else:
            data = b"".join(parts)
        message = Message(data, self._size)
        self._opcode, self._parts, self._size = None, [], 0
        return message

    def _decode(self, data: bytes, final: bool = False) -> str:
        """Decode a chunk of text, keeping a sequence split across chunks for the next."""
        if self._undecoded:
            data = self._undecoded + data
        try:
            text, used = codecs.utf_8_decode(data, "strict", final)
        except UnicodeDecodeError:
            raise InvalidUTF8("text message is not valid UTF-8") from None
        self._undecoded = undecoded = data[used:]
        # The decoder holds back ED A0..BF (a UTF-16 surrogate) until its
        # third byte arrives; no third byte can make it valid, so fail now.
        if undecoded and undecoded[:1] == b"\xed" and undecoded[1:2] >= b"\xa0":
            raise InvalidUTF8("text message is not valid UTF-8")
        return text

    def _read_exact(self, size: int) -> bytes:
        data = self._stream.read(size)
        if len(data) < size:
            raise EOFError("connection closed in the middle of a frame")
        return data
