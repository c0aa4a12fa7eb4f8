"""The load generator: raw frames over uvloop, cheap enough not to be what is measured.

Frames are encoded once; replies are not parsed but counted: an echo server's
reply to an N-byte message is a known number of bytes (the TCP echo returns
the client's masked frame as is). Pings would upset the count, so every run is
kept shorter than the servers' 20 s ping interval.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from echo.protocol.frames import apply_mask, encode_header

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
MASK = b"\x37\xfa\x21\x3d"


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame: the server's header with the mask bit set, the key, the payload."""
    header = bytearray(encode_header(opcode, len(payload)))
    header[1] |= 0x80
    return bytes(header) + MASK + apply_mask(payload, MASK)


def server_frame_size(size: int) -> int:
    return len(encode_header(0x2, size)) + size


@dataclass
class Target:
    port: int
    raw_tcp: bool  # a TCP echo returns exactly what was sent
    server_pids: tuple[int, ...] = ()  # whose CPU time each run reports per operation

    def server_cpu(self) -> float:
        """The serving processes' CPU seconds so far, all together (0 when not known)."""
        return sum(cpu_seconds(pid) for pid in self.server_pids)

    def reply_size(self, frame: bytes, payload_size: int) -> int:
        return len(frame) if self.raw_tcp else server_frame_size(payload_size)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connection(asyncio.Protocol):
    """One client connection: the handshake, then request/reply by byte count."""

    handshake = HANDSHAKE

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.head = b""
        self.upgraded = self.loop.create_future()
        self.expected = 0
        self.received = 0
        self.reply: asyncio.Future | None = None
        self.lost = self.loop.create_future()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.write(self.handshake)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith((b"HTTP/1.1 101", b"GET ")):  # GET: the TCP echo
                self.upgraded.set_exception(
                    ConnectionError(self.head[:40].decode(errors="replace"))
                )
                return
            self.upgraded.set_result(None)
            data = self.head[end + 4 :]
        self.received += self.units(data)
        if self.reply is not None and self.received >= self.expected:
            self.received -= self.expected
            self.reply.set_result(None)
            self.reply = None

    def units(self, data: bytes) -> int:
        """What ``data`` adds to the reply being awaited: bytes (a subclass may count frames)."""
        return len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        for waiter in (self.upgraded, self.reply):
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("connection lost"))

    async def request(self, frame: bytes, reply_size: int) -> None:
        self.expected = reply_size
        self.reply = self.loop.create_future()
        if self.received >= reply_size:  # already here
            self.received -= reply_size
            self.reply.set_result(None)
        self.transport.write(frame)
        await self.reply


async def open_connection(target: Target, protocol: type[Connection] = Connection) -> Connection:
    _, conn = await asyncio.get_running_loop().create_connection(protocol, "127.0.0.1", target.port)
    await conn.upgraded
    return conn


@dataclass
class Measured:
    """One run: a rate, latencies, the generator's own CPU use in % of a core.

    ``operations`` (round trips, messages or handshakes done) lets the caller
    divide the server's CPU time by them. ``latencies`` (seconds, sorted) are
    kept so that runs in several generator processes can be merged.
    """

    rate: float
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    client_cpu: float = 0.0
    operations: int = 0
    server_us: float = 0.0  # server CPU per operation, in microseconds
    spread: float = 0.0  # of the rate over the runs a median was taken of: (max - min) / median
    latencies: list[float] = field(default_factory=list, repr=False)


#: Called when a run's connections are ready and again when its timed part is
#: over: the split generator (bench/split.py) lines its processes up there.
Gate = Callable[[], None]


def no_gate() -> None:
    """A run in one process: nothing to line up with."""


def percentile(sorted_values: list[float], fraction: float) -> float:
    """In milliseconds; 0 without values."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))] * 1000


async def round_trips(
    target: Target, connections: int, size: int, seconds: float, gate: Gate = no_gate
) -> Measured:
    """Each connection sends a message and waits for its echo, again and again."""
    frame = client_frame(0x1 if size < 1024 else 0x2, b"x" * size)
    requests = [(frame, target.reply_size(frame, size))]
    return await exchanges(target, connections, requests, seconds, gate=gate)


async def exchanges(
    target: Target,
    connections: int,
    requests: list[tuple[bytes, int]],
    seconds: float,
    protocol: type[Connection] = Connection,
    gate: Gate = no_gate,
) -> Measured:
    """Each connection sends ``requests`` (frame, reply size) in turn, awaiting each reply."""
    conns = await asyncio.gather(*(open_connection(target, protocol) for _ in range(connections)))
    latencies: list[float] = []
    gate()
    server_cpu = target.server_cpu()
    cpu, started = time.process_time(), time.perf_counter()
    deadline = started + seconds

    async def loop(conn: Connection) -> None:
        now = time.perf_counter
        turn = itertools.cycle(requests)
        while (sent := now()) < deadline:
            await conn.request(*next(turn))
            latencies.append(now() - sent)

    await asyncio.gather(*(loop(conn) for conn in conns))
    elapsed = time.perf_counter() - started
    client_cpu = 100 * (time.process_time() - cpu) / elapsed
    server_us = _per_operation(target.server_cpu() - server_cpu, len(latencies))
    gate()
    for conn in conns:
        conn.transport.close()
    latencies.sort()
    return Measured(
        len(latencies) / elapsed,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        client_cpu,
        len(latencies),
        server_us,
        latencies=latencies,
    )


async def throughput(target: Target, size: int, seconds: float) -> Measured:
    """Payload MB/s echoed back on one connection, one message in flight."""
    return in_megabytes(await round_trips(target, 1, size, seconds), size)


def in_megabytes(result: Measured, size: int) -> Measured:
    """Messages of ``size`` bytes per second as payload MB/s."""
    return replace(result, rate=result.rate * size / 1e6)


CLOSE = client_frame(0x8, b"\x03\xe8")


async def handshakes(
    target: Target, concurrency: int, seconds: float, gate: Gate = no_gate
) -> Measured:
    """Open, handshake, close (Close frame answered), as fast as ``concurrency`` clients can."""
    done = 0
    gate()
    server_cpu = target.server_cpu()
    cpu, started = time.process_time(), time.perf_counter()
    deadline = started + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            conn = await open_connection(target)
            await conn.request(CLOSE, len(CLOSE) if target.raw_tcp else 4)
            conn.transport.close()
            done += 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    client_cpu = 100 * (time.process_time() - cpu) / elapsed
    server_us = _per_operation(target.server_cpu() - server_cpu, done)
    gate()
    return Measured(done / elapsed, client_cpu=client_cpu, operations=done, server_us=server_us)


def _per_operation(seconds: float, operations: int) -> float:
    return 1e6 * seconds / operations if operations else 0.0


async def hold(target: Target, count: int) -> list[Connection]:
    """``count`` open, idle connections, opened a few hundred at a time."""
    conns: list[Connection] = []
    for start in range(0, count, 500):
        batch = min(500, count - start)
        conns += await asyncio.gather(*(open_connection(target) for _ in range(batch)))
    return conns


async def many_at_once(target: Target, count: int) -> int:
    """Open ``count`` connections, echo one message on each while all are open; the errors."""
    frame = client_frame(0x1, b"hello")
    reply = target.reply_size(frame, 5)
    errors = 0
    conns = []
    for start in range(0, count, 500):
        results = await asyncio.gather(
            *(open_connection(target) for _ in range(min(500, count - start))),
            return_exceptions=True,
        )
        errors += sum(isinstance(r, BaseException) for r in results)
        conns += [r for r in results if isinstance(r, Connection)]
    echoes = await asyncio.gather(
        *(conn.request(frame, reply) for conn in conns), return_exceptions=True
    )
    errors += sum(isinstance(r, BaseException) for r in echoes)
    for conn in conns:
        conn.transport.close()
    return errors


def median(runs: list[Measured]) -> Measured:
    """Each figure's median over the runs, and the rate's spread (latencies are not kept)."""
    figures = [f.name for f in fields(Measured) if f.name not in ("spread", "latencies")]
    result = Measured(
        **{name: statistics.median(getattr(r, name) for r in runs) for name in figures}
    )
    rates = [r.rate for r in runs]
    result.spread = (max(rates) - min(rates)) / result.rate if result.rate else 0.0
    return result
