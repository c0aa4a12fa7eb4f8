"""One workload run by several load-generator processes at once, so no one of them sets the pace.

A Python generator on one core can push about as many small round trips as
the fastest servers here can answer, and would then be what is measured.
Each process opens its share of the connections; all of them start and
stop their timed part together (a barrier), and the server's CPU time is
read across that common window. Rates add up, latencies are merged, and the
generators' CPU is reported as their sum, in % of one core.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Awaitable, Callable

import uvloop

from . import loadgen
from .loadgen import Gate, Measured, Target

# run(target, share, gate): one process's part of the workload, ``share`` of its connections.
Part = Callable[[Target, int, Gate], Awaitable[Measured]]


def run(part: Part, target: Target, connections: int, processes: int) -> Measured:
    """``part`` in ``processes`` forked processes, ``connections`` shared out among them."""
    if processes == 1:
        return uvloop.run(part(target, connections, loadgen.no_gate))
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes + 1)
    results = context.SimpleQueue()
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    unmeasured = Target(target.port, target.raw_tcp)  # the server's CPU is read here

    def child(share: int) -> None:
        results.put(uvloop.run(part(unmeasured, share, barrier.wait)))

    children = [context.Process(target=child, args=(share,)) for share in shares]
    for process in children:
        process.start()
    try:
        barrier.wait()  # every process has its connections
        cpu, started = target.server_cpu(), time.perf_counter()
        barrier.wait()  # every process has finished its timed part
        elapsed, server_cpu = time.perf_counter() - started, target.server_cpu() - cpu
        parts = [results.get() for _ in children]
    finally:
        for process in children:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    return _merged(parts, elapsed, server_cpu)


def _merged(parts: list[Measured], elapsed: float, server_cpu: float) -> Measured:
    operations = sum(part.operations for part in parts)
    latencies = sorted(latency for part in parts for latency in part.latencies)
    return Measured(
        rate=operations / elapsed,
        p50_ms=loadgen.percentile(latencies, 0.5),
        p99_ms=loadgen.percentile(latencies, 0.99),
        client_cpu=sum(part.client_cpu for part in parts),
        operations=operations,
        server_us=1e6 * server_cpu / operations if operations else 0.0,
    )
