"""A greedy client in its own process, and a well-behaved one measuring what is left for it.

The greedy client (``python -m tests.greedy PORT SECONDS MODE``) keeps the
server's socket full: it pipelines requests as fast as its socket takes them
and reads the replies as fast as they come, so the server's greenlet never
has to block. MODE is ``ws:SIZE`` (binary messages of SIZE bytes) or ``http``
(``GET /healthz`` on one keep-alive connection). It prints ``ready`` once the
first reply is back, and at the end one JSON line: replies received, seconds.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from websockets.sync.client import connect

from .rawws import OP_BINARY, RawClient, encode_frame, read_response
from .servers import ROOT, TIMEOUT, ServerProcess

BATCH = 256  # requests per send() call
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _open(port: int, mode: str) -> tuple[socket.socket, bytes, int]:
    """The connection, one request, and the size of its reply."""
    if mode == "http":
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(HEALTHZ)
        head, body = read_response(sock)
        return sock, HEALTHZ, len(head) + 4 + len(body)
    size = int(mode.removeprefix("ws:"))
    client = RawClient(port)
    payload = b"\x5a" * size
    return client.sock, encode_frame(OP_BINARY, payload), len(encode_frame(0, payload, mask=False))


def run(port: int, seconds: float, mode: str) -> dict[str, float]:
    sock, request, reply_size = _open(port, mode)
    sock.settimeout(None)
    batch = request * BATCH
    stop = threading.Event()

    def send() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                sock.sendall(batch)

    started = time.monotonic()
    threading.Thread(target=send, daemon=True).start()
    received = 0
    while time.monotonic() - started < seconds:
        try:
            data = sock.recv(1 << 20)
        except OSError:  # reset: the worker was killed
            break
        if not data:
            break
        if not received:
            print("ready", flush=True)
        received += len(data)
    elapsed = time.monotonic() - started
    stop.set()
    sock.close()
    return {"replies": received // reply_size, "seconds": elapsed}


class GreedyClient:
    """``python -m tests.greedy`` against ``port``, started and awaited as a context manager."""

    def __init__(self, port: int, seconds: float, mode: str) -> None:
        self.command = [sys.executable, "-m", "tests.greedy", str(port), str(seconds), mode]
        self.result: dict[str, float] = {}

    def __enter__(self) -> GreedyClient:
        self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline() == "ready\n", "the greedy client got no reply"
        return self

    def __exit__(self, *exc_info: object) -> None:
        out, _ = self.process.communicate(timeout=TIMEOUT * 3)
        self.result = json.loads(out)

    @property
    def rate(self) -> float:
        """Replies per second."""
        return self.result["replies"] / self.result["seconds"]


@dataclass
class Probe:
    """What a well-behaved client saw: echo round trips and /healthz answers, in seconds."""

    round_trips: list[float] = field(default_factory=list)
    healthz: list[float] = field(default_factory=list)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.round_trips)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]

    def summary(self) -> str:
        median = statistics.median(self.round_trips)
        return (
            f"{len(self.round_trips)} echoes: median {median * 1e3:.2f} ms,"
            f" p99 {self.percentile(0.99) * 1e3:.2f} ms, max {max(self.round_trips) * 1e3:.1f} ms;"
            f" {len(self.healthz)} /healthz answered, slowest {max(self.healthz) * 1e3:.1f} ms"
        )


def probe(server: ServerProcess, seconds: float, pace: float = 0.02) -> Probe:
    """Echo a message every ``pace`` seconds and GET /healthz every tenth time.

    A missing echo or health answer fails at once (after ``TIMEOUT`` seconds).
    """
    seen = Probe()
    deadline = time.monotonic() + seconds
    with connect(server.ws_url) as ws:
        n = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            ws.send(f"probe {n}")
            assert ws.recv(timeout=TIMEOUT) == f"probe {n}"
            seen.round_trips.append(time.perf_counter() - started)
            if n % 10 == 0:
                started = time.perf_counter()
                url = f"{server.http_url}/healthz"
                with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                    assert response.status == 200
                seen.healthz.append(time.perf_counter() - started)
            n += 1
            time.sleep(pace)
    return seen


def main() -> None:
    port, seconds, mode = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    print(json.dumps(run(port, seconds, mode)), flush=True)


if __name__ == "__main__":
    main()
