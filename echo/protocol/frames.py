"""RFC 6455 framing: opcodes, headers, masking and close payloads.

Pure functions over bytes, shared by the reader, the writer and the tests.
"""

from __future__ import annotations

import struct

from .errors import InvalidUTF8, ProtocolError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})
MAX_CONTROL_PAYLOAD = 125
#: The first header bit RFC 6455 reserves; permessage-deflate marks compressed messages with it.
RSV1 = 0x40

# Codes an endpoint may send (RFC 6455 section 7.4 and the IANA registry);
# 1005, 1006 and 1015 only ever describe a closure, they never go on the wire.
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})

_LENGTH_16 = struct.Struct("!BBH")
_LENGTH_64 = struct.Struct("!BBQ")


def is_sendable_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a Close frame."""
    return code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999


def encode_header(opcode: int, length: int, fin: bool = True) -> bytes:
    """The header of an unmasked (server-to-client) frame; ``opcode | RSV1`` marks it compressed."""
    first = opcode | 0x80 if fin else opcode
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return _LENGTH_16.pack(first, 126, length)
    return _LENGTH_64.pack(first, 127, length)


def _apply_mask_with_ints(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """Masking without a compiled extension: the whole buffer XORed as one big integer.

    The loop runs in C, not per byte, but at about 0.5 GB/s (bench/README.md).
    """
    size = len(data)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


try:
    # The C routine python websockets ships in its wheels: 25-60 GB/s here.
    from websockets.speedups import apply_mask as _apply_mask_in_c
except ImportError:  # a platform without websockets' compiled wheel
    _apply_mask_in_c = None

#: XOR ``data`` with the repeating 4-byte ``mask`` (masking and unmasking alike).
apply_mask = _apply_mask_in_c or _apply_mask_with_ints


def rotate_mask(mask: bytes, offset: int) -> bytes:
    """The mask as seen from byte ``offset`` of a payload."""
    shift = offset % 4
    return mask[shift:] + mask[:shift] if shift else mask


def encode_close(code: int | None, reason: str = "") -> bytes:
    """A Close payload; ``None`` gives the empty payload (no status code)."""
    if code is None:
        return b""
    data = struct.pack("!H", code) + reason.encode("utf-8")
    if len(data) > MAX_CONTROL_PAYLOAD:
        raise ValueError("close reason is longer than 123 bytes")
    return data


def decode_close(payload: bytes) -> tuple[int | None, str]:
    """The code and reason of a Close payload, validated as RFC 6455 section 5.5.1 asks."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload of one byte")
    (code,) = struct.unpack("!H", payload[:2])
    if not is_sendable_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidUTF8("close reason is not valid UTF-8") from None
    return code, reason
