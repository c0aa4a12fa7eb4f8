"""permessage-deflate (RFC 7692): one connection's compression, as a codec over bytes.

zlib from the standard library does the work. Its streams cost memory (a
window and hash tables per direction), so each is created on first use: a
connection that negotiated compression but has sent nothing compressed holds
none, and without context takeover a stream lives for one message only.
The server's streams are sized like python ``websockets``': a 4 KiB window
(12 bits, announced in the handshake) and ``memLevel`` 5, about 40 KiB per
connection instead of zlib's 256 KiB default, at little cost in ratio. It
compresses at zlib's fastest level, where websockets uses the default (6):
on 1 KiB JSON messages that is 18 us instead of 34 us, for output 20 %
larger (bench/README.md). An echo server's CPU is its product; the client's
decompressor is exercised all the same.

Inflating is bounded by what the message may still grow by, so a few KiB
that would inflate to gigabytes stop after ``max_message_size`` bytes, and
it goes ``PIECE`` bytes at a time, so a bomb costs the server no more than
that limit and a piece.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import MessageTooBig, ProtocolError

#: The server's LZ77 window and zlib memory level (see the module docstring).
SERVER_MAX_WINDOW_BITS = 12
MEM_LEVEL = 5
#: zlib's fastest level, as nginx compresses on the fly by default (gzip_comp_level 1).
LEVEL = 1
#: The window the server asks clients to compress with, when they let it choose.
CLIENT_MAX_WINDOW_BITS = 12
#: What a sync flush ends with: taken off each message on the wire, put back to inflate it.
TAIL = b"\x00\x00\xff\xff"
#: Most bytes inflated at a time: zlib joins its output blocks, briefly doubling them.
PIECE = 256 * 1024


@dataclass(frozen=True, slots=True)
class Parameters:
    """What the handshake agreed (RFC 7692 section 7.1), from the server's side."""

    client_no_context_takeover: bool
    server_no_context_takeover: bool
    client_max_window_bits: int  # the window the client's messages may refer back to
    server_max_window_bits: int


def max_compressed_size(max_message_size: int) -> int:
    """Most bytes a compressed message may take on the wire.

    Output is bounded while inflating, but empty blocks inflate to nothing:
    without this bound a message could go on forever. Twice the size leaves
    room for incompressible data sent in many small flushed fragments.
    """
    return 2 * max_message_size


class Deflate:
    """Decompresses the client's messages and compresses the server's, as negotiated."""

    __slots__ = ("_deflater", "_inflater", "_params")

    def __init__(self, params: Parameters) -> None:
        self._params = params
        self._inflater: zlib._Decompress | None = None
        self._deflater: zlib._Compress | None = None

    def inflate(self, data: bytes, limit: int) -> Iterator[bytes]:
        """Decompress a piece of a message, in pieces of at most ``PIECE`` bytes.

        ``MessageTooBig`` once the output would exceed ``limit`` bytes: no more
        than ``limit + 1`` bytes are produced, whatever ``data`` holds.
        """
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(
                wbits=-self._params.client_max_window_bits
            )
        while True:
            bound = min(PIECE, limit + 1)
            try:
                piece = inflater.decompress(data, bound)
            except zlib.error as exc:
                raise ProtocolError(f"invalid compressed data ({exc})") from None
            if len(piece) > limit:
                raise MessageTooBig("message over the size limit once decompressed")
            limit -= len(piece)
            if piece:
                yield piece
            data = inflater.unconsumed_tail
            if len(piece) < bound:  # not cut short: all that data holds is out
                return

    def end_message(self) -> None:
        """After a message's ``TAIL``: a new stream without context takeover, or once the
        client ended its stream (a final block), which nothing can continue."""
        if self._params.client_no_context_takeover or self._inflater.eof:
            self._inflater = None

    def compress(self, payload: bytes | bytearray | memoryview) -> bytes:
        """One whole message, compressed and without its tail."""
        deflater = self._deflater
        if deflater is None:
            deflater = zlib.compressobj(
                LEVEL,
                zlib.DEFLATED,
                -self._params.server_max_window_bits,
                MEM_LEVEL,
            )
            if not self._params.server_no_context_takeover:
                self._deflater = deflater
        data = deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH)
        return data[: -len(TAIL)]
