"""``make soak``: 5,000 sequential connect/echo/close cycles, then 500 at once, on one worker.

Passes when the worker ends where it started: RSS within a few MiB and no
greenlet or file descriptor left behind. Prints the figures either way.

The baseline is taken after a warm-up that includes one burst of 500
connections: the allocator keeps the memory of the busiest moment it has
seen (about 6-11 MiB for 500 connections, flat over repeated bursts), which
is a high-water mark, not a leak; growth beyond it would be.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect as async_connect
from websockets.sync.client import connect

from tests.servers import ServerProcess, wait_for

CONF = Path(__file__).with_name("instrumented.conf.py")
SEQUENTIAL, CONCURRENT = 5_000, 500
RSS_SLACK = 4 << 20
IDLE_GREENLETS = 3  # an idle worker: main, hub, and the probe's own signal handler


def probe(server: ServerProcess, probe_file: Path) -> dict:
    """The worker's vital signs, written by bench/instrumented.conf.py on SIGUSR2."""
    probe_file.unlink(missing_ok=True)
    os.kill(server.worker_pid(), signal.SIGUSR2)
    wait_for(probe_file.exists, what="the worker's probe")
    wait_for(lambda: probe_file.read_text().endswith("}"), what="the probe to be written")
    return json.loads(probe_file.read_text())


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


def main() -> int:
    probe_file = Path(tempfile.mkdtemp(prefix="echo-soak-")) / "probe.json"
    command = [sys.executable, "-m", "gunicorn", "-c", str(CONF), "--no-control-socket"]
    with ServerProcess(command, {"ECHO_PROBE_FILE": str(probe_file)}) as server:
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
    for key in ("rss", "fds", "greenlets"):
        print(f"{key:10} {before[key]:>12} {after[key]:>12} {after[key] - before[key]:>+12}")
    leaks = []
    if after["rss"] - before["rss"] > RSS_SLACK:
        leaks.append(f"RSS grew by {(after['rss'] - before['rss']) / 2**20:.1f} MiB")
    leaks += [f"{key} leaked" for key in ("fds", "greenlets") if after[key] > before[key]]
    for leak in leaks:
        print("LEAK", leak)
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
