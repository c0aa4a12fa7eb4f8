"""``make bench``: this server against the Python WebSocket servers a user could pick instead.

Peers (bench/peers.py): python websockets, aiohttp and picows on uvloop,
uvicorn, a bare gevent StreamServer doing the upgrade (the floor under this
server's layers), and a raw TCP echo (the ceiling). Each cell shows the
median rate and the server's CPU time per operation (round trip, message or
handshake), measured from /proc over the timed window only.

Compression is off for the throughput workloads (the load generator offers
none); RSS per idle compressed connection is measured apart, against
websockets with its compression on.

Every workload runs RUNS times against each server; the table shows medians
and ratios, and goes to stdout and reports/bench/results.md, which git ignores
(bench/results.md is the committed run the READMEs quote). The load generator (this process,
on uvloop) reports its own CPU use: near 100 % of a core would mean it, not
the server, set the pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date

import uvloop
from websockets.asyncio.client import connect as ws_connect

from conformance.run import run_kosoku
from tests.servers import GUNICORN, ROOT, ServerProcess, proc_status, remove_scratch

from . import compressed, loadgen, split
from .loadgen import Measured, Target

SECONDS, RUNS = 2.0, 3
IDLE, MANY = 5_000, 10_000
COMPRESSED_IDLE = 2_000  # the clients' own zlib streams take memory too
RESULTS = ROOT / "reports" / "bench" / "results.md"
RSS_ROW = "RSS per idle connection, KiB"


def peer(kind: str) -> Callable[[], ServerProcess]:
    return lambda: ServerProcess([sys.executable, "-m", "bench.peers", kind], health_path=None)


def echo(workers: int) -> Callable[[], ServerProcess]:
    return lambda: ServerProcess(
        [*GUNICORN, "--workers", str(workers), "--worker-connections", str(MANY + 1000)],
        {"ECHO_MAX_MESSAGE_SIZE": "16MiB"},
    )


# WEB_CONCURRENCY = cores: on a 2-core machine the load generator takes its share of them too.
CORES = os.cpu_count() or 1
SCALED = f"echo, {CORES} workers"
SERVERS: dict[str, Callable[[], ServerProcess]] = {
    "echo": echo(1),
    SCALED: echo(CORES),
    "websockets": peer("websockets"),
    "aiohttp": peer("aiohttp"),
    "picows": peer("picows"),
    "uvicorn": peer("uvicorn"),
    "gevent floor": peer("gevent"),
    "tcp": peer("tcp"),
}
# Autobahn's 9.x needs whole-message semantics; the frame-by-frame peers are left out.
AUTOBAHN_9_SERVERS = ("echo", "websockets", "aiohttp")
COMPRESSED_WORKLOADS: dict[str, Callable[[Target], Awaitable[Measured]]] = {
    "1 KiB JSON-like text round trips/s, 100 connections, compressed": (
        lambda t: compressed.round_trips(t, 100, 1024, SECONDS)
    ),
    "1 MiB JSON-like text echo, compressed, MB/s": (
        lambda t: compressed.throughput(t, 1 << 20, SECONDS)
    ),
}
AUTOBAHN_DEFLATE = ["12.1.*", "13.1.*"]  # the whole of 12-13 takes 7 minutes a server
# The same servers with permessage-deflate on (ours by default).
COMPRESSING: dict[str, Callable[[], ServerProcess]] = {
    "echo": SERVERS["echo"],
    "websockets": peer("websockets-deflate"),
}
GENERATORS = 2  # load-generator processes sharing a many-connection workload (bench/split.py)


def one_process(workload: Callable[[Target], Awaitable[Measured]]) -> Callable[[Target], Measured]:
    return lambda target: uvloop.run(workload(target))


def in_processes(part: split.Part, connections: int) -> Callable[[Target], Measured]:
    return lambda target: split.run(part, target, connections, GENERATORS)


def _round_trips(size: int) -> split.Part:
    return lambda target, share, gate: loadgen.round_trips(target, share, size, SECONDS, gate)


WORKLOADS: dict[str, Callable[[Target], Measured]] = {
    "32 B round trips/s, 1 connection": one_process(
        lambda t: loadgen.round_trips(t, 1, 32, SECONDS)
    ),
    "32 B round trips/s, 100 connections": in_processes(_round_trips(32), 100),
    "32 B round trips/s, 1,000 connections": in_processes(_round_trips(32), 1000),
    "64 KiB echo, MB/s": one_process(lambda t: loadgen.throughput(t, 64 << 10, SECONDS)),
    "1 MiB echo, MB/s": one_process(lambda t: loadgen.throughput(t, 1 << 20, SECONDS)),
    "16 MiB echo, MB/s": one_process(lambda t: loadgen.throughput(t, 16 << 20, SECONDS)),
    "handshakes/s (10 at a time)": in_processes(
        lambda target, share, gate: loadgen.handshakes(target, share, SECONDS, gate), 10
    ),
}


def server_pids(name: str, server: ServerProcess) -> tuple[int, ...]:
    """The processes that serve: gunicorn's workers, or the peer's one process."""
    return tuple(server.worker_pids()) if name.startswith("echo") else (server.process.pid,)


def measure(servers: dict[str, ServerProcess]) -> dict[str, dict[str, Measured | float]]:
    """Every workload against every server, the servers taking turns within each round.

    This machine's speed moves within minutes; servers measured one after
    another would each meet a different machine. Interleaved run by run, a
    slow spell falls on all of them alike.
    """
    targets = {
        name: Target(server.port, raw_tcp=name == "tcp", server_pids=server_pids(name, server))
        for name, server in servers.items()
    }
    # First, while the servers are fresh: after the other workloads, a heap has
    # room to spare and new connections would look cheaper than they are.
    results: dict[str, dict[str, Measured | float]] = {
        name: {RSS_ROW: idle_rss(target, target.server_pids) / 1024}
        for name, target in targets.items()
    }
    for workload, run in WORKLOADS.items():
        runs: dict[str, list[Measured]] = {name: [] for name in servers}
        for _ in range(RUNS):
            for name, target in targets.items():
                runs[name].append(run(target))
        for name, measured in runs.items():
            results[name][workload] = loadgen.median(measured)
        print(
            f"  {workload}: "
            + ", ".join(f"{name} {results[name][workload].rate:,.1f}" for name in servers),
            flush=True,
        )
    return results


def idle_rss(target: Target, pids: tuple[int, ...]) -> float:
    """Bytes of server RSS per connection, with IDLE connections open and doing nothing."""

    async def hold_and_measure() -> float:
        before = sum(proc_status(pid, "VmRSS") for pid in pids)
        conns = await loadgen.hold(target, IDLE)
        await asyncio.sleep(1)  # let the server settle after the burst of handshakes
        after = sum(proc_status(pid, "VmRSS") for pid in pids)
        for conn in conns:
            conn.transport.close()
        return (after - before) / IDLE

    return uvloop.run(hold_and_measure())


def compressed_idle_rss(url: str, pid: int, used: bool) -> float:
    """Bytes of server RSS per connection that negotiated permessage-deflate, then went idle.

    The clients are python websockets' (compression on by default). With
    ``used``, each first echoes one compressed message, so both directions'
    zlib streams exist on either server.
    """

    async def hold_and_measure() -> float:
        before = proc_status(pid, "VmRSS")
        conns = []
        for _ in range(0, COMPRESSED_IDLE, 200):
            conns += await asyncio.gather(
                *(ws_connect(url, ping_interval=None, max_size=None) for _ in range(200))
            )
        assert all(conn.protocol.extensions for conn in conns), "compression not negotiated"
        if used:
            for conn in conns:
                await conn.send("compress me " * 10)
                await conn.recv()
        await asyncio.sleep(1)
        after = proc_status(pid, "VmRSS")
        await asyncio.gather(*(conn.close() for conn in conns))
        return (after - before) / COMPRESSED_IDLE

    return uvloop.run(hold_and_measure())


def compressed_rows() -> dict[str, str]:
    """Compressed workloads and RSS per idle compressed connection, against websockets.

    Each RSS figure is taken on a fresh server; the workloads and Autobahn's
    compression cases follow the first.
    """
    measured: dict[str, dict[str, float]] = {name: {} for name in COMPRESSING}
    for name, make in COMPRESSING.items():
        results = measured[name]
        with make() as server:
            url, (pid,) = server.ws_url, server_pids(name, server)
            results[
                f"RSS per idle connection, compression negotiated, KiB ({COMPRESSED_IDLE:,})"
            ] = compressed_idle_rss(url, pid, used=False) / 1024
            target = Target(server.port, raw_tcp=False)
            for workload, run in COMPRESSED_WORKLOADS.items():
                runs = [uvloop.run(run(target)) for _ in range(RUNS)]
                results[workload] = loadgen.median(runs).rate
                print(f"  {name}: {workload}: {results[workload]:,.1f}", flush=True)
            cases, _ = run_kosoku(
                url, ROOT / "reports" / "bench" / f"{name}-deflate", AUTOBAHN_DEFLATE
            )
            assert all(case["behavior"] == "OK" for case in cases.values()), f"{name}: not all OK"
            results[f"Autobahn {' + '.join(AUTOBAHN_DEFLATE)} ({len(cases)} cases), s"] = (
                sum(case["duration"] for case in cases.values()) / 1000
            )
        with make() as server:
            results["RSS per idle connection after one compressed echo, KiB"] = (
                compressed_idle_rss(server.ws_url, *server_pids(name, server), used=True) / 1024
            )
    echo, peer = measured["echo"], measured["websockets"]
    return {
        f"{row} (websockets compressing too)": (
            f"echo {echo[row]:,.1f}, websockets {peer[row]:,.1f} ({echo[row] / peer[row]:.2f}x)"
        )
        for row in echo
    }


def autobahn_9(url: str, label: str) -> str:
    """Total time of the 9.x cases, and how many passed: a failed case ends early."""
    cases, _ = run_kosoku(url, ROOT / "reports" / "bench" / label, include=["9.*"])
    seconds = sum(case["duration"] for case in cases.values()) / 1000
    passed = sum(case["behavior"] == "OK" for case in cases.values())
    return f"{seconds:.2f} s ({passed} of {len(cases)} cases OK)"


def table(results: dict[str, dict], extra: dict[str, str]) -> str:
    """Rates with server CPU per operation, then this server's ratio to each peer."""
    names, rows = list(SERVERS), [*WORKLOADS, RSS_ROW]
    lines = [
        f"Each cell: the median of {RUNS} runs ± half their range, and the server's CPU "
        "time per operation. Generator CPU: the load generator's processes together, "
        "in % of one core.",
        "",
        f"| Workload | {' | '.join(names)} | generator CPU, max |",
    ]
    lines.append("| --- |" + " ---: |" * (len(names) + 1))
    for workload in rows:
        values = [results[name][workload] for name in names]
        generator = max((v.client_cpu for v in values if isinstance(v, Measured)), default=None)
        cells = [_cell(value) for value in values]
        cells.append("-" if generator is None else f"{generator:.0f}%")
        lines.append(f"| {workload} | {' | '.join(cells)} |")
    peers = names[1:]
    lines += ["", f"| echo / peer | {' | '.join(peers)} |", "| --- |" + " ---: |" * len(peers)]
    for workload in rows:
        echo = _rate(results["echo"][workload])
        ratios = [
            echo / _rate(results[p][workload]) if _rate(results[p][workload]) else 0 for p in peers
        ]
        lines.append(f"| {workload} | {' | '.join(f'{r:.2f}x' for r in ratios)} |")
    lines += ["", *(f"- {key}: {value}" for key, value in extra.items())]
    return "\n".join(lines)


def _rate(value: Measured | float) -> float:
    return value.rate if isinstance(value, Measured) else value


def _cell(value: Measured | float) -> str:
    """A rate ± its spread over the runs, with the server's CPU per operation; or RSS."""
    if not isinstance(value, Measured):
        return f"{value:,.1f}"
    rate = f"{value.rate:,.0f}" if value.rate >= 100 else f"{value.rate:,.1f}"
    rate += f" ±{50 * value.spread:.0f}%"
    return f"{rate} ({value.server_us:,.1f} µs)" if value.server_us else rate


def main() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers
    if hard < MANY + 1000:  # per process: the generator's side and the server's side
        print(f"the open-file limit ({hard}) is too low for {MANY} connections", file=sys.stderr)
        return 1
    started = time.monotonic()
    extra: dict[str, str] = {}
    with contextlib.ExitStack() as running:
        servers = {name: running.enter_context(make()) for name, make in SERVERS.items()}
        servers[SCALED].wait_all_workers_serving(CORES)
        results = measure(servers)
        echo = servers["echo"]
        errors = uvloop.run(loadgen.many_at_once(Target(echo.port, False), MANY))
        extra[f"{MANY:,} connections at once on one worker"] = f"{errors} errors"
        for name in AUTOBAHN_9_SERVERS:
            extra[f"Autobahn 9.x, {name}"] = autobahn_9(servers[name].ws_url, name)
    extra.update(compressed_rows())
    measured = [m for r in results.values() for m in r.values() if isinstance(m, Measured)]
    generator = max(m.client_cpu for m in measured)
    extra["load generator CPU (max over runs)"] = f"{generator:.0f} % of one core"
    extra["run"] = (
        f"{date.today().isoformat()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, {RUNS} runs of {SECONDS:.0f} s per cell, "
        f"{time.monotonic() - started:.0f} s in all"
    )
    report = table(results, extra)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# Benchmark results\n\n{report}\n")
    print(report)
    print(f"table: {RESULTS.relative_to(ROOT)}")
    remove_scratch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
