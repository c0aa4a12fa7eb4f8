"""``make soak``: what a worker must survive, each phase on a fresh worker; fails on any miss.

1. Leaks: 5,000 sequential connect/echo/close cycles, then 500 at once. The
   worker must end where it started: RSS within a few MiB and no greenlet or
   file descriptor left behind. The probe reads RSS after emptying the
   interpreter's caches and trimming the heap, as the worker does after a
   burst, so it counts what is alive: read straight after a burst, RSS is
   the allocator's high-water mark of the moment, which differed by 15 MiB
   between two runs of the same burst.
2. Memory given back, within 15 s of each burst's last close, against the
   worker's cold start: 2,000 connections that negotiate permessage-deflate
   and echo 1 KiB, 40 compression bombs at once, 200 clients that send 1 MiB
   messages and never read (each within 1.3x), then 15,000 idle connections
   (within 2x).
3. Fairness: a greedy client (tests/greedy.py) for 20 s while another client
   echoes and polls /healthz: its p99 round trip under 100 ms, every
   /healthz answered, the same worker at the end.
4. Hostile handshakes (bench/hostile.py): each hostile negotiation header
   within 5x a plain handshake's CPU, and another client's p99 under 20 ms
   while two clients loop the worst of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import zlib
from pathlib import Path

import uvloop
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as async_connect
from websockets.sync.client import connect

from echo.server.pool import IDLE_KEPT
from tests.greedy import GreedyClient
from tests.greedy import probe as greedy_probe
from tests.rawws import OP_BINARY, RawClient, encode_frame
from tests.servers import (
    INSTRUMENTED,
    ServerProcess,
    allow_open_files,
    connections_held,
    probe,
    proc_status,
    remove_scratch,
    scratch_dir,
    wait_for,
)

from . import hostile, loadgen

SEQUENTIAL, CONCURRENT = 5_000, 500
RSS_SLACK = 4 << 20
BURST_CLIENTS, IDLE, DEFLATE_CLIENTS, BOMBS = 200, 15_000, 2_000, 40
GIVE_BACK = (
    15.0  # seconds for RSS to come back after a burst: echo/server/memory.py trims every 10 s
)
GREEDY_SECONDS = 20.0
# --timeout 10: a worker whose loop is starved misses gunicorn's heartbeat
# within the fairness phase and is replaced, which that phase checks.
COMMAND = [
    sys.executable, "-m", "gunicorn", "-c", str(INSTRUMENTED), "--no-control-socket",
    "--worker-connections", str(IDLE + 1000), "--timeout", "10",
]  # fmt: skip
IDLE_GREENLETS = 3  # an idle worker: main, hub, and the probe's own signal handler


def settle(server: ServerProcess, probe_file: Path, greenlets: int = IDLE_GREENLETS) -> None:
    """Wait for closing handshakes, which end on the server after the clients return."""
    wait_for(
        lambda: probe(server, probe_file)["greenlets"] <= greenlets,
        what="connection greenlets to finish",
    )


def cycle(url: str, n: int) -> None:
    with connect(url) as ws:
        ws.send(f"soak {n}")
        assert ws.recv() == f"soak {n}"


async def concurrent(url: str) -> None:
    connected = asyncio.Event()
    ready = 0

    async def client(n: int) -> None:
        nonlocal ready
        async with async_connect(url) as ws:
            ready += 1
            if ready == CONCURRENT:
                connected.set()
            await connected.wait()  # all open at once
            await ws.send(b"%d" % n)
            assert await ws.recv() == b"%d" % n

    await asyncio.gather(*(client(n) for n in range(CONCURRENT)))


def leaks(server: ServerProcess, probe_file: Path) -> list[str]:
    for n in range(200):  # warm up imports, caches and allocator pools
        cycle(server.ws_url, n)
    cold_rss = probe(server, probe_file)["rss"]
    asyncio.run(concurrent(server.ws_url))
    settle(server, probe_file)
    before = probe(server, probe_file)
    started = time.monotonic()
    for n in range(SEQUENTIAL):
        cycle(server.ws_url, n)
    sequential_s = time.monotonic() - started
    started = time.monotonic()
    asyncio.run(concurrent(server.ws_url))
    concurrent_s = time.monotonic() - started
    settle(server, probe_file, before["greenlets"])
    after = probe(server, probe_file)

    print(
        f"{SEQUENTIAL} sequential cycles in {sequential_s:.1f} s; "
        f"{CONCURRENT} concurrent in {concurrent_s:.1f} s"
    )
    print(f"RSS before the warm-up burst of {CONCURRENT}: {cold_rss}")
    print(f"{'':10} {'before':>12} {'after':>12} {'change':>12}")
    for key in ("rss", "fds", "greenlets", "idle_greenlets"):
        print(f"{key:10} {before[key]:>12} {after[key]:>12} {after[key] - before[key]:>+12}")
    failures = []
    if after["rss"] - before["rss"] > RSS_SLACK:
        failures.append(f"RSS grew by {(after['rss'] - before['rss']) / 2**20:.1f} MiB")
    failures += [f"{key} leaked" for key in ("fds", "greenlets") if after[key] > before[key]]
    if after["idle_greenlets"] > IDLE_KEPT:
        failures.append(f"{after['idle_greenlets']} idle greenlets kept, over {IDLE_KEPT}")
    return failures


def flood_without_reading(port: int) -> None:
    """BURST_CLIENTS clients send 1 MiB messages until their sockets are full, then leave."""
    frame = encode_frame(OP_BINARY, b"\x00" * (1 << 20))
    clients = [RawClient(port) for _ in range(BURST_CLIENTS)]
    for client in clients:
        client.sock.setblocking(False)
    for _ in range(8):  # a few MiB each: the server reads until its echoes block
        for client in clients:
            with contextlib.suppress(BlockingIOError):
                client.sock.send(frame)
    for client in clients:
        client.close()


def hold_idle(port: int) -> None:
    """IDLE connections opened, then closed."""

    async def hold() -> None:
        conns = await loadgen.hold(loadgen.Target(port, raw_tcp=False), IDLE)
        for conn in conns:
            conn.transport.close()

    uvloop.run(hold())


def compressed_echoes(port: int) -> None:
    """DEFLATE_CLIENTS connections negotiate permessage-deflate and echo 1 KiB each, all open
    at once (200 handshakes at a time), then close."""

    async def client(n: int, slots: asyncio.Semaphore) -> ClientConnection:
        async with slots:
            ws = await async_connect(f"ws://127.0.0.1:{port}/ws")
            message = f"{n:06d}" * 170
            await ws.send(message)
            assert await ws.recv() == message
            return ws

    async def run() -> None:
        slots = asyncio.Semaphore(200)
        conns = await asyncio.gather(*(client(n, slots) for n in range(DEFLATE_CLIENTS)))
        await asyncio.gather(*(ws.close() for ws in conns))

    uvloop.run(run())


def compression_bombs(port: int) -> None:
    """BOMBS connections at once each send 10 KiB that would inflate to 10 MiB (closed 1009)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = (deflater.compress(b"\0" * (10 << 20)) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
    clients = [RawClient(port, Sec_WebSocket_Extensions="permessage-deflate") for _ in range(BOMBS)]
    for client in clients:
        client.sock.sendall(encode_frame(OP_BINARY, bomb, rsv=4))
    for client in clients:
        assert client.recv_close()[0] == 1009
        client.close()


def memory_given_back(server: ServerProcess, probe_file: Path) -> list[str]:
    """After each burst, RSS within its bound of the cold start, GIVE_BACK s after the last close.

    RSS is read from /proc, not from the probe, whose garbage collection
    would do part of the worker's work for it.
    """
    worker = server.worker_pid()
    cold = proc_status(worker, "VmRSS")
    failures = []
    bursts = [
        (f"{DEFLATE_CLIENTS:,} compressed connections echoing 1 KiB", compressed_echoes, 1.3),
        (f"{BOMBS} compression bombs at once", compression_bombs, 1.3),
        (f"{BURST_CLIENTS} clients flooding 1 MiB messages", flood_without_reading, 1.3),
        (f"{IDLE:,} idle connections", hold_idle, 2.0),
    ]
    for name, burst, bound in bursts:
        burst(server.port)
        peak = proc_status(worker, "VmRSS")
        wait_for(lambda: connections_held(worker) == 0, what="every connection to end")
        ended = time.monotonic()
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: proc_status(worker, "VmRSS") < bound * cold,  # noqa: B023
                timeout=GIVE_BACK,
            )
        rss = proc_status(worker, "VmRSS")
        print(
            f"after {name}: RSS {peak / 2**20:.1f} -> {rss / 2**20:.1f} MiB, {rss / cold:.2f}x"
            f" the cold start ({cold / 2**20:.1f} MiB) {time.monotonic() - ended:.1f} s after"
            f" the last close (bound {bound}x)"
        )
        if rss >= bound * cold:
            failures.append(f"RSS still {rss / cold:.2f}x the cold start after {name}")
    return failures


def fairness(server: ServerProcess, probe_file: Path) -> list[str]:
    worker = server.worker_pid()
    with GreedyClient(server.port, GREEDY_SECONDS, "ws:256") as greedy:
        seen = greedy_probe(server, GREEDY_SECONDS - 1)
    print(f"greedy client: {greedy.rate:,.0f} echoes/s; meanwhile another client: {seen.summary()}")
    failures = []
    if seen.percentile(0.99) >= 0.1:
        failures.append(
            f"p99 round trip {seen.percentile(0.99) * 1e3:.1f} ms under a greedy client"
        )
    if server.worker_pids() != [worker] or "WORKER TIMEOUT" in server.log():
        failures.append("the worker was replaced")
    return failures


PHASES = {
    "leaks": leaks,
    "memory given back": memory_given_back,
    "fairness": fairness,
    "hostile handshakes": hostile.phase,
}


def main() -> int:
    allow_open_files(IDLE + 1000)
    failures = []
    for name, phase in PHASES.items():
        print(f"== {name}", flush=True)
        probe_file = scratch_dir("echo-soak-") / "probe.json"
        env = {"ECHO_PROBE_FILE": str(probe_file)}
        with ServerProcess(COMMAND, env) as server:
            failures += [f"{name}: {failure}" for failure in phase(server, probe_file)]
    for failure in failures:
        print("FAIL", failure)
    if not failures:
        remove_scratch()  # the servers' logs are kept when something failed
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
