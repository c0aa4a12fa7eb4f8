"""Hostile handshakes: what negotiation headers cost the worker, and what is left for others.

A handshake whose negotiation headers hold thousands of items once cost the
worker 100 times a plain handshake's CPU in one greenlet turn, so two such
clients looping kept everyone else waiting (issue 22). ``make soak`` runs
``phase``; alone: ``python -m bench.hostile`` against a fresh server.

CPU is the worker's own, from /proc/PID/schedstat (nanoseconds on a CPU),
over a run of handshakes made one after another by this process. A shared
VM's CPU time drifts by half from one second to the next: each case is
measured in ROUNDS, each right after a run of plain handshakes, and judged
by its median round.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.greedy import probe as probe_echoes
from tests.rawws import handshake_request, read_response
from tests.servers import GUNICORN, ROOT, ServerProcess

ITEMS = 15_000
# Each case's extra headers; "plain" is the baseline. The head stays under 64 KiB.
CASES: dict[str, dict[str, str]] = {
    "plain": {},
    f"{ITEMS:,} subprotocols and {ITEMS:,} extensions": {
        "Sec-WebSocket-Protocol": ",".join(["p"] * ITEMS),
        "Sec-WebSocket-Extensions": ",".join(["e"] * ITEMS),
    },
    "2,500 declined permessage-deflate offers": {
        "Sec-WebSocket-Extensions": ", ".join(["permessage-deflate; x=1"] * 2_500),
    },
    "8,000 subprotocols": {"Sec-WebSocket-Protocol": ",".join(f"p{n}" for n in range(8_000))},
    "one offer with 5,000 parameters": {
        "Sec-WebSocket-Extensions": "permessage-deflate" + "; x=1" * 5_000,
    },
    "one 60 KB subprotocol token": {"Sec-WebSocket-Protocol": "p" * 60_000},
    f"Connection with {ITEMS:,} tokens": {"Connection": ",".join(["x"] * ITEMS + ["Upgrade"])},
    f"Upgrade with {ITEMS:,} tokens": {"Upgrade": ",".join(["x"] * ITEMS + ["websocket"])},
    "a 60 KB Host that is not a host": {"Host": "h" * 60_000 + "/"},
    "Connection and Upgrade: 31 items of 900 spaces each": {
        "Connection": ",".join([" " * 900] * 31 + ["Upgrade"]),
        "Upgrade": ",".join([" " * 900] * 31 + ["websocket"]),
    },
}
MAX_RATIO = 5.0  # a hostile handshake's CPU, against a plain one's (the median round)
ROUNDS = 5  # odd: the median is a round
MAX_P99 = 0.020  # seconds: another client's echo while two attackers loop
ATTACK_SECONDS = 10.0
ATTACKED_BY = f"{ITEMS:,} subprotocols and {ITEMS:,} extensions"


def request(port: int, case: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return handshake_request(port, Sec_WebSocket_Key=key, **CASES[case])


def handshake(port: int, data: bytes) -> int:
    """One handshake on a new connection: its status, once the answer is read whole."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(data)
        head, _ = read_response(sock)
        return int(head.split(b" ", 2)[1])


def cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def cpu_per_handshake(server: ServerProcess, case: str, count: int) -> tuple[float, int]:
    """Seconds of the worker's CPU per handshake, and the status answered."""
    data = request(server.port, case)
    worker = server.worker_pid()
    handshake(server.port, data)  # warm
    before = cpu_ns(worker)
    for _ in range(count):
        status = handshake(server.port, data)
    return (cpu_ns(worker) - before) / count / 1e9, status


def attack(port: int, seconds: float) -> None:
    """Loop the worst case for ``seconds`` (run in its own process by ``phase``)."""
    data = request(port, ATTACKED_BY)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        handshake(port, data)


def phase(server: ServerProcess, probe_file: Path | None = None) -> list[str]:
    """Each case's CPU against a plain handshake's; another client's p99 under two attackers."""
    failures = []
    print(f"{'handshake':52} {'status':>6} {'CPU':>9} {'plain':>9} {'ratio':>6} {'spread':>11}")
    for case in list(CASES)[1:]:
        rounds = []
        for _ in range(ROUNDS):
            plain, _ = cpu_per_handshake(server, "plain", 100)
            cpu, status = cpu_per_handshake(server, case, 50)
            rounds.append((cpu / plain, cpu, plain))
        rounds.sort()
        ratio, cpu, plain = rounds[ROUNDS // 2]  # the median round
        print(
            f"{case:52} {status:>6} {cpu * 1e6:>6.0f} µs {plain * 1e6:>6.0f} µs {ratio:>6.2f}"
            f" {rounds[0][0]:>5.2f}-{rounds[-1][0]:.2f}"
        )
        if ratio > MAX_RATIO:
            failures.append(f"{case}: {ratio:.1f}x a plain handshake's CPU")
    command = [sys.executable, "-m", "bench.hostile", "attack", str(server.port)]
    attackers = [subprocess.Popen([*command, str(ATTACK_SECONDS)], cwd=ROOT) for _ in range(2)]
    try:
        seen = probe_echoes(server, ATTACK_SECONDS - 1)
    finally:
        for attacker in attackers:
            attacker.wait()
    print(f"another client, while two clients loop {ATTACKED_BY!r}: {seen.summary()}")
    if seen.percentile(0.99) >= MAX_P99:
        failures.append(f"p99 round trip {seen.percentile(0.99) * 1e3:.1f} ms under attack")
    return failures


def main() -> int:
    if sys.argv[1:2] == ["attack"]:
        attack(int(sys.argv[2]), float(sys.argv[3]))
        return 0
    with ServerProcess(GUNICORN) as server:
        failures = phase(server)
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
