"""Instructions per handshake and per round trip, counted by valgrind's callgrind.

CPU time on a shared machine moves by a factor of two within an hour; the
count of a server's instructions repeats to about 0.1 % whatever else runs
(with one hash seed: see ``instructions``).
Each server (this one's gunicorn worker, and the gevent floor and aiohttp on
uvloop of ``bench/peers.py``) runs under callgrind three times: with H handshakes and
R round trips, with 3H and R, and with H and 3R. The differences, divided by
2H and 2R, are the instructions of one handshake (open, upgrade, Close
answered, closed) and of one 32-byte round trip; start-up, imports, warm-up
and shutdown cancel out. The kernel's work is not counted, nor is gunicorn's
master (it only forks the worker).

    .venv/bin/python -m bench.instructions     # about 4 minutes

With ``--scaling``, instructions per handshake of this server and the floor
in 1, 2 and 4 processes sharing one listening socket, every process summed
(callgrind follows forks; gunicorn's master included), each run started
once all of them have booted: every connection wakes every process waiting
in ``epoll``, and all but one find nothing to accept. What a process does
per handshake as processes are added, without the kernel's side, which no
process counts (about 5 minutes).

No health check reaches the servers (each would add instructions of its
own): once the port listens (read from /proc/net/tcp), the first client
waits in the listening socket's backlog until the worker accepts.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.rawws import (
    OP_CLOSE,
    OP_TEXT,
    close_payload,
    encode_frame,
    handshake_request,
    read_response,
)
from tests.servers import (
    GUNICORN,
    ROOT,
    children,
    free_port,
    remove_scratch,
    scratch_dir,
    wait_for,
)

from .pinned import wait_until_quiet

HANDSHAKES, ROUND_TRIPS = 200, 2000
SCALING_PROCESSES = (1, 2, 4)
# Booted under callgrind: the processes spend at most QUIET_CPU s of CPU in QUIET_SPELL s.
QUIET_SPELL, QUIET_CPU = 1.0, 0.1
CLOSE = encode_frame(OP_CLOSE, close_payload(1000))
BOOT = 600.0  # seconds a server may take to start under callgrind
SERVERS = {
    "echo": [*GUNICORN, "--timeout", "0", "--workers", "1"],
    "gevent floor": [sys.executable, "-m", "bench.peers", "gevent"],
    "aiohttp": [sys.executable, "-m", "bench.peers", "aiohttp"],
}
# Each server in N processes: its command, and how many processes that makes.
SCALING_SERVERS: dict[str, Callable[[int], tuple[list[str], int]]] = {
    "echo": lambda n: ([*GUNICORN, "--timeout", "0", "--workers", str(n)], n + 1),
    "gevent floor": lambda n: ([sys.executable, "-m", "bench.peers", "gevent", str(n)], n),
}


def _listening(port: int) -> bool:
    """Whether a socket listens on ``port`` (/proc/net/tcp state 0A), asked without connecting."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            return True
    return False


def _read_until(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOOT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(handshake_request(port))
    head, _ = read_response(sock)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def handshakes(port: int, count: int) -> None:
    for _ in range(count):
        with _connect(port) as sock:
            sock.sendall(CLOSE)
            _read_until(sock, 4)  # the server's Close: 2 bytes of header, 2 of code
            sock.recv(1)  # and its end of the connection


def round_trips(port: int, count: int) -> None:
    payload = base64.b64encode(os.urandom(24))  # 32 bytes of text
    frame = encode_frame(OP_TEXT, payload)
    with _connect(port) as sock:
        for _ in range(count):
            sock.sendall(frame)
            assert _read_until(sock, 2 + len(payload))[2:] == payload
        sock.sendall(CLOSE)
        _read_until(sock, 4)


def instructions(
    command: list[str], handshake_count: int, round_trip_count: int, processes: int = 1
) -> list[int]:
    """The instructions of each process of the server, which makes ``processes`` of them.

    With one, the first client waits in the backlog until the server serves;
    with more, every one of them has booted before the first client comes.
    """
    scratch = scratch_dir("echo-callgrind-")
    port = free_port()
    # One hash seed for every run: string hashes decide dict collisions, which
    # moved the count of a handshake by up to 2 % between runs.
    env = {
        **os.environ,
        "PORT": str(port),
        "TMPDIR": str(scratch),
        "HOST": "127.0.0.1",
        "PYTHONHASHSEED": "0",
    }
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/out.%p"]
    with open(scratch / "server.log", "wb") as log:
        process = subprocess.Popen(
            [*valgrind, *command], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: _listening(port), timeout=BOOT, what="the server to listen")
        if processes > 1:
            wait_for(
                lambda: len(children(process.pid)) == processes - 1,
                timeout=BOOT,
                what="the processes",
            )
            pids = [process.pid, *children(process.pid)]
            wait_until_quiet(pids, QUIET_SPELL, QUIET_CPU, timeout=BOOT)
        handshakes(port, handshake_count)
        if round_trip_count:
            round_trips(port, round_trip_count)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(BOOT)
    return [_total(path) for path in scratch.glob("out.*")]


def _total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no total in {path}")


def _worker(counts: list[int]) -> int:
    # gunicorn's master writes a file too: the worker is the process that served.
    return max(counts)


def scaling() -> None:
    """Instructions per handshake, every process summed, in 1, 2 and 4 processes."""
    columns = " | ".join(f"{count} process{'es' * (count > 1)}" for count in SCALING_PROCESSES)
    print(f"| Instructions per handshake | {columns} |")
    print(f"| --- |{' ---: |' * len(SCALING_PROCESSES)}")
    for name, server in SCALING_SERVERS.items():
        counts = []
        for count in SCALING_PROCESSES:
            command, processes = server(count)
            base = sum(instructions(command, HANDSHAKES, 0, processes))
            more = sum(instructions(command, 3 * HANDSHAKES, 0, processes))
            counts.append((more - base) / (2 * HANDSHAKES))
        cells = [f"{count:,.0f} ({count / counts[0] - 1:+.1%})" for count in counts]
        print(f"| {name} |", " | ".join(cells), "|")


def main() -> int:
    started = time.monotonic()
    if sys.argv[1:] == ["--scaling"]:
        scaling()
        print(f"({time.monotonic() - started:.0f} s)")
        remove_scratch()
        return 0
    results = {}
    for name, command in SERVERS.items():
        base = _worker(instructions(command, HANDSHAKES, ROUND_TRIPS))
        more_handshakes = _worker(instructions(command, 3 * HANDSHAKES, ROUND_TRIPS))
        more_round_trips = _worker(instructions(command, HANDSHAKES, 3 * ROUND_TRIPS))
        results[name] = (
            (more_handshakes - base) / (2 * HANDSHAKES),
            (more_round_trips - base) / (2 * ROUND_TRIPS),
        )
    floor, aiohttp = results["gevent floor"], results["aiohttp"]
    print("| Server | instructions per handshake | per 32 B round trip |")
    print("| --- | ---: | ---: |")
    for name, (handshake, round_trip) in results.items():
        print(
            f"| {name} | {handshake:,.0f} ({handshake / floor[0]:.2f}x the floor,"
            f" {handshake / aiohttp[0]:.2f}x aiohttp) | {round_trip:,.0f}"
            f" ({round_trip / floor[1]:.2f}x, {round_trip / aiohttp[1]:.2f}x) |"
        )
    print(f"({time.monotonic() - started:.0f} s)")
    remove_scratch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
