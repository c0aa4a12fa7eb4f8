"""``make bench-pinned``: server CPU per operation with the server alone on a core, and scaling.

On a shared machine the server's CPU time per operation is the steadiest
comparison, and it is steadiest when the server does not share its core with
the load generator. So, first, every process of each server is pinned to core
0 and this process, the only load generator, to core 1 (``sched_setaffinity``);
the servers take turns run by run, ROUNDS rounds, and each cell is the
median of the server's CPU per operation, ± half its range. This is the
A/B issue 24's goals are stated in: this server against aiohttp and picows on
uvloop and the gevent floor, and, with ``--before DIR``, against another
checkout of this server (run from DIR with this virtualenv).

Then the same servers side by side: every run drives all of them at once
from the one generator, so each run gives them the same moments of the
machine, and this server's CPU per operation over each other's, run by
run, is reported (median and range). On a shared machine whose speed
changes by half from one second to the next, runs in turn spread by as
much; ratios side by side stay within a few percent. Sharing the core, each
server finds its caches cooled by the others, a cost all of them pay.

Then scaling: this server with 1, 2, 4, ... workers against the gevent
floor in as many processes sharing one listening socket, as gunicorn's
workers do; CPU per handshake at each count, and its rise over one process.
With four cores or more the cores are split in halves: the servers on the
first half (up to as many workers as it has cores), the load generator on
the second, in as many processes, each with 10 handshakes at a time. With
fewer, 2, 4 and 8 processes are each compared with one on a single core,
side by side (``shared_core_scaling_table``): what sharing a listening
socket adds to a handshake, without the parallel part.

The run's tables go to stdout and reports/bench/pinned.md, which git ignores;
bench/pinned.md is the committed run the READMEs quote: copy a run over it to
change the reference.

    .venv/bin/python -m bench.pinned [--before DIR]    # about 5 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import uvloop

from tests.servers import GUNICORN, ROOT, ServerProcess, children, remove_scratch, wait_for

from . import loadgen, split
from .loadgen import Measured, Target

SECONDS, ROUNDS = 2.0, 3
SIDE_BY_SIDE_ROUNDS = 7
# Started servers are ready once their processes spend at most IDLE_CPU
# seconds of CPU in IDLE_SPELL seconds (wait_until_idle).
IDLE_SPELL, IDLE_CPU = 0.5, 0.02
# Processes compared with one on a machine of fewer than four cores (shared_core_scaling_table).
SHARED_CORE_COUNTS = (2, 4, 8)
SERVER_CORE, GENERATOR_CORE = 0, 1
RESULTS = ROOT / "reports" / "bench" / "pinned.md"
GUNICORN_ARGS = ["--worker-connections", "2000"]

PINNED_WORKLOADS: dict[str, Callable[[Target], Awaitable[Measured]]] = {
    "CPU per handshake (10 at a time), µs": lambda t: loadgen.handshakes(t, 10, SECONDS),
    "CPU per 32 B round trip (100 connections), µs": lambda t: loadgen.round_trips(
        t, 100, 32, SECONDS
    ),
}


def echo(workers: int, checkout: Path | None = None) -> ServerProcess:
    args = [*GUNICORN, "--workers", str(workers), *GUNICORN_ARGS]
    if checkout is None:
        return ServerProcess(args)
    # Another checkout's gunicorn.conf.py and code, with this virtualenv.
    command = f"cd {shlex.quote(str(checkout))} && exec {shlex.join(args)}"
    return ServerProcess(["sh", "-c", command])


def peer(kind: str, *args: str) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "bench.peers", kind, *args], health_path=None)


def serving_pids(server: ServerProcess) -> tuple[int, ...]:
    """The server's processes: the first and its children (gunicorn's master and workers)."""
    return (server.process.pid, *children(server.process.pid))


def targets_of(servers: dict[str, ServerProcess]) -> dict[str, Target]:
    """Each started server as the load generator aims at it, with the processes it bills."""
    return {
        name: Target(server.port, raw_tcp=False, server_pids=serving_pids(server))
        for name, server in servers.items()
    }


def interleaved(
    targets: dict[str, Target], workloads: dict[str, Callable[[Target], Measured]]
) -> dict[str, dict[str, list[Measured]]]:
    """Each workload ROUNDS times against each server, the servers taking turns."""
    runs: dict[str, dict[str, list[Measured]]] = {w: {n: [] for n in targets} for w in workloads}
    for round_number in range(ROUNDS):
        for workload, run in workloads.items():
            order = list(targets) if round_number % 2 == 0 else list(reversed(targets))
            for name in order:
                runs[workload][name].append(run(targets[name]))
        print(f"  round {round_number + 1} of {ROUNDS}", flush=True)
    return runs


def side_by_side(
    targets: dict[str, Target], workloads: dict[str, Callable[[Target], Awaitable[Measured]]]
) -> dict[str, dict[str, list[Measured]]]:
    """Each workload SIDE_BY_SIDE_ROUNDS times against all the servers at once.

    One generator drives every server in the same window, so each run gives
    every server the same moments of a shared machine, whose speed can
    change by half from one second to the next.
    """
    runs: dict[str, dict[str, list[Measured]]] = {w: {n: [] for n in targets} for w in workloads}

    async def all_at_once(run: Callable[[Target], Awaitable[Measured]]) -> list[Measured]:
        return await asyncio.gather(*(run(target) for target in targets.values()))

    for round_number in range(SIDE_BY_SIDE_ROUNDS):
        for workload, run in workloads.items():
            for name, measured in zip(targets, uvloop.run(all_at_once(run)), strict=True):
                runs[workload][name].append(measured)
        print(f"  side by side, round {round_number + 1} of {SIDE_BY_SIDE_ROUNDS}", flush=True)
    return runs


def _cell(measured: list[Measured]) -> tuple[float, str]:
    values = [m.server_us for m in measured]
    middle = statistics.median(values)
    return middle, f"{middle:.1f} ± {(max(values) - min(values)) / 2:.1f}"


def _ratio_cell(measured: list[Measured], reference: list[Measured]) -> str:
    """The median of the runs' ratios, and their range: each run's pair had the same moments."""
    ratios = [m.server_us / r.server_us for m, r in zip(measured, reference, strict=True)]
    return f"{statistics.median(ratios):.3f} ({min(ratios):.2f} to {max(ratios):.2f})"


def _table(corner: str, columns: list[str], rows: dict[str, list[str]]) -> str:
    """A Markdown table: ``corner`` and ``columns`` as its head, then a row per name."""
    lines = [f"| {corner} | {' | '.join(columns)} |", f"| --- |{' ---: |' * len(columns)}"]
    lines += [f"| {name} | {' | '.join(cells)} |" for name, cells in rows.items()]
    return "\n".join(lines)


def _revision(checkout: Path) -> str:
    """The checkout's commit, to name its column; "before" if it is not a git checkout."""
    found = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or "before"


def pinned_table(before: Path | None) -> str:
    # Each server, and how many processes it serves with (gunicorn's master and a worker).
    started = {"echo": (echo(1), 2)}
    if before is not None:
        started[f"echo {_revision(before)}"] = (echo(1, before), 2)
    started |= {
        "aiohttp": (peer("aiohttp"), 1),
        "picows": (peer("picows"), 1),
        "gevent floor": (peer("gevent"), 1),
    }
    with Placement({SERVER_CORE}, {GENERATOR_CORE}).serving(started) as targets:
        in_turn = {
            workload: lambda target, run=run: uvloop.run(run(target))
            for workload, run in PINNED_WORKLOADS.items()
        }
        runs = interleaved(targets, in_turn)
        together = side_by_side(targets, PINNED_WORKLOADS)
    names = list(started)
    in_turn_rows = {}
    for workload, by_server in runs.items():
        cells = {name: _cell(measured) for name, measured in by_server.items()}
        ratio = cells["echo"][0] / cells["aiohttp"][0]
        in_turn_rows[workload] = [*(cells[name][1] for name in names), f"{ratio:.2f}"]
    others = [name for name in names if name != "echo"]
    side_rows = {
        workload: [_ratio_cell(by_server["echo"], by_server[name]) for name in others]
        for workload, by_server in together.items()
    }
    turn_table = _table("Server CPU, pinned, in turn", [*names, "echo / aiohttp"], in_turn_rows)
    side_table = _table("Side by side: echo / each, per run (median, range)", others, side_rows)
    return f"{turn_table}\n\n{side_table}"


@dataclass(frozen=True)
class Placement:
    """Where the servers run and where the load generator runs: the cores of each."""

    server_cores: set[int]
    generator_cores: set[int]

    @classmethod
    def for_cores(cls, cores: list[int]) -> Placement:
        """The first half of ``cores`` for the servers, the second for the generator."""
        half = len(cores) // 2
        return cls(set(cores[:half]), set(cores[half:]))

    def worker_counts(self) -> list[int]:
        """1, 2, 4, ... up to the servers' cores."""
        most = len(self.server_cores)
        return [1 << power for power in range(most.bit_length()) if 1 << power <= most]

    def handshakes(self, target: Target) -> Measured:
        part = lambda t, share, gate: loadgen.handshakes(t, share, SECONDS, gate)  # noqa: E731
        processes = len(self.generator_cores)
        return split.run(part, target, 10 * processes, processes)

    @contextlib.contextmanager
    def serving(self, started: dict[str, tuple[ServerProcess, int]]) -> Iterator[dict[str, Target]]:
        """Start each server (with how many processes it serves), place them and this
        process, whose forks are the generator, and stop them all after the block."""
        cores = os.sched_getaffinity(0)
        servers = {name: server for name, (server, _) in started.items()}
        for server in servers.values():
            server.start()
        try:
            for name, (server, expected) in started.items():
                wait_for(
                    lambda server=server, expected=expected: len(serving_pids(server)) >= expected,
                    what=f"{expected} processes of {name}",
                )
                for pid in serving_pids(server):
                    os.sched_setaffinity(pid, self.server_cores)
            os.sched_setaffinity(0, self.generator_cores)
            wait_until_idle(servers)
            yield targets_of(servers)
        finally:
            os.sched_setaffinity(0, cores)
            for server in servers.values():
                server.stop()


def wait_until_idle(servers: dict[str, ServerProcess]) -> None:
    """Until the servers' processes spend no CPU: booted and ready, not still importing.

    A worker's pid exists before it has imported the application; eight
    workers booting on one core spent seconds of CPU in the first runs
    (CPU per handshake 2 to 3 times the later runs').
    """
    pids = [pid for server in servers.values() for pid in serving_pids(server)]
    wait_until_quiet(pids, IDLE_SPELL, IDLE_CPU, timeout=60)


def wait_until_quiet(pids: list[int], spell: float, cpu: float, timeout: float) -> None:
    """Until processes ``pids`` together spend at most ``cpu`` seconds of CPU in ``spell``."""
    last = [sum(loadgen.cpu_seconds(pid) for pid in pids), time.monotonic()]

    def quiet_for_a_spell() -> bool:
        if time.monotonic() - last[1] < spell:
            return False
        used = sum(loadgen.cpu_seconds(pid) for pid in pids)
        quiet = used - last[0] <= cpu
        last[:] = [used, time.monotonic()]
        return quiet

    wait_for(quiet_for_a_spell, timeout=timeout, what="the servers to be idle")


def _processes(name: str, count: int) -> tuple[ServerProcess, int]:
    """``count`` serving processes of this server or the floor, and how many to wait for."""
    if name == "echo":
        return echo(count), count + 1  # gunicorn's master and its workers
    return peer("gevent", str(count)), count  # the floor's first process forks the others


def scaling_table() -> str:
    """CPU per handshake over processes: in parallel with cores to spare, else on one core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 4:
        return shared_core_scaling_table(cores)
    plan = Placement.for_cores(cores)
    counts = plan.worker_counts()
    results: dict[str, dict[int, float]] = {"echo": {}, "gevent floor": {}}
    for count in counts:
        with plan.serving({name: _processes(name, count) for name in results}) as targets:
            runs = interleaved(targets, {"handshakes": plan.handshakes})["handshakes"]
        for name, measured in runs.items():
            results[name][count] = statistics.median(m.server_us for m in measured)
    columns = [f"{count} processes" for count in counts]
    rows = {
        name: [f"{by_count[c]:.0f} ({by_count[c] / by_count[1]:.2f}x)" for c in counts]
        for name, by_count in results.items()
    }
    return _table("CPU per handshake, µs (rise over 1)", columns, rows)


def shared_core_scaling_table(cores: list[int]) -> str:
    """With too few cores to run workers in parallel: N processes against one, on one core.

    What N processes add to a handshake by sharing one listening socket
    (every process woken for a connection only one can accept, less
    batching), without the parallel part: for each N, this server and the
    floor with N processes and with one, all four side by side on the first
    core, the generator on the second.
    """
    plan = Placement({cores[0]}, {cores[1]})
    handshakes = {"handshakes": lambda t: loadgen.handshakes(t, 10, SECONDS)}
    rows: dict[str, list[str]] = {"echo": [], "gevent floor": []}  # a cell per count
    for count in SHARED_CORE_COUNTS:
        started = {f"{name} {n}": _processes(name, n) for name in rows for n in (1, count)}
        with plan.serving(started) as targets:
            runs = side_by_side(targets, handshakes)["handshakes"]
        for name, cells in rows.items():
            cells.append(_ratio_cell(runs[f"{name} {count}"], runs[f"{name} 1"]))
    corner = "CPU per handshake, N processes over 1, all on one core, side by side"
    return _table(corner, [f"{count} processes" for count in SHARED_CORE_COUNTS], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--before", type=Path, help="another checkout of this server")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("bench.pinned needs two cores: one for the server, one for the load generator")
        return 1
    print("Pinned A/B:", flush=True)
    pinned = pinned_table(args.before)
    print(pinned, flush=True)
    print("Scaling:", flush=True)
    scaling = scaling_table()
    print(scaling)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        f"# Pinned A/B and scaling ({date.today()}, {os.cpu_count()} cores)\n\n"
        f"Written by `make bench-pinned`; see bench/README.md for the method.\n\n"
        f"{pinned}\n\n{scaling}\n"
    )
    print(f"tables: {RESULTS.relative_to(ROOT)}")
    remove_scratch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
