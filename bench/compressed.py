"""Compressed workloads: permessage-deflate against websockets with its compression on.

The client offers ``permessage-deflate; client_no_context_takeover``, so each
of its messages is compressed once, before the run, and sent as is: the load
generator does no zlib work. The servers keep their own context takeover (the
default of both) and compress every echo, which varies in size, so replies
are counted in frames, each header parsed. 64 distinct JSON-like texts go
round, so a server's 4 KiB window seldom holds the very message it compresses.
"""

from __future__ import annotations

import json
import random
import zlib

from . import loadgen
from .loadgen import Measured, Target

OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
DISTINCT = 64


class FrameCounting(loadgen.Connection):
    """Offers compression and counts whole reply frames instead of bytes."""

    handshake = loadgen.HANDSHAKE.replace(b"\r\n\r\n", b"\r\n" + OFFER + b"\r\n")

    def __init__(self) -> None:
        super().__init__()
        self._header = b""  # a frame header split across receives
        self._left = 0  # payload bytes of the current frame still to come

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done() and b"\r\n\r\n" in self.head + data:
            head = (self.head + data).partition(b"\r\n\r\n")[0]
            if head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" not in head:
                self.upgraded.set_exception(ConnectionError("compression was not negotiated"))
                return
        super().data_received(data)

    def units(self, data: bytes) -> int:
        view = self._header + data if self._header else data
        self._header = b""
        frames, position, end = 0, 0, len(view)
        while position < end:
            if self._left:
                step = min(self._left, end - position)
                position += step
                self._left -= step
                frames += not self._left
                continue
            length = view[position + 1] & 0x7F if end - position > 1 else 0
            size = 2 if length < 126 else 4 if length == 126 else 10
            if end - position < size:
                self._header = view[position:]
                break
            if length >= 126:
                length = int.from_bytes(view[position + 2 : position + size], "big")
            position += size
            self._left = length
            frames += not length
        return frames


def json_like_text(size: int, rng: random.Random) -> bytes:
    """Chat-like JSON records, ``size`` bytes of them."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
    records = []
    while sum(map(len, records)) < size:
        record = {
            "id": rng.randrange(10**9),
            "user": f"user{rng.randrange(10**4)}",
            "text": " ".join(rng.choices(words, k=rng.randrange(3, 12))),
            "score": round(rng.random() * 100, 2),
        }
        records.append(json.dumps(record).encode())
    return b"[" + b",".join(records)[: size - 2] + b"]"


def compressed_frame(payload: bytes) -> bytes:
    """A masked text frame with RSV1, its payload compressed as permessage-deflate says."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
    frame = bytearray(loadgen.client_frame(0x1, data))
    frame[0] |= 0x40
    return bytes(frame)


async def round_trips(target: Target, connections: int, size: int, seconds: float) -> Measured:
    """Compressed text round trips, DISTINCT messages of ``size`` bytes in turn."""
    rng = random.Random(size)
    requests = [(compressed_frame(json_like_text(size, rng)), 1) for _ in range(DISTINCT)]
    return await loadgen.exchanges(target, connections, requests, seconds, FrameCounting)


async def throughput(target: Target, size: int, seconds: float) -> Measured:
    """Payload MB/s of compressed text echoed on one connection, one message in flight."""
    frame = compressed_frame(json_like_text(size, random.Random(size)))
    result = await loadgen.exchanges(target, 1, [(frame, 1)], seconds, FrameCounting)
    return loadgen.in_megabytes(result, size)
