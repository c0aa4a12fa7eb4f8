"""gunicorn.conf.py plus a probe: on SIGUSR2 a worker writes its vital signs to a file.

For the tests and the soak (tests/servers.py, ``probe``): the figures (what
the garbage collector finds, live greenlets, open file descriptors, RSS) can
only be counted inside the worker.
"""

import gc
import json
import os
import signal
from pathlib import Path

import gevent
import greenlet

from echo.server.memory import release_interpreter_caches, trim_heap
from echo.server.pool import ConnectionPool

exec(Path(__file__).resolve().parent.parent.joinpath("gunicorn.conf.py").read_text())

PROBE_FILE = os.environ.get("ECHO_PROBE_FILE", "/tmp/echo-probe.json")


def _waits_for_a_connection(suspended: greenlet.greenlet) -> bool:
    """Whether a greenlet is one of the connection pool's idle ones (echo/server/pool.py)."""
    frame = suspended.gr_frame
    while frame is not None:
        if frame.f_code is ConnectionPool._wait_for_task.__code__:
            return True
        frame = frame.f_back
    return False


def _write_probe() -> None:
    garbage = gc.collect()  # objects only a collection frees: reference cycles
    # RSS as what is alive, not what the allocator kept of the busiest moment.
    release_interpreter_caches()
    trim_heap()
    with open(f"/proc/{os.getpid()}/status") as status:
        rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    objects = gc.get_objects()  # (not the server and its pool: frozen, echo/server/memory.py)
    greenlets = [o for o in objects if isinstance(o, greenlet.greenlet)]
    idle = sum(_waits_for_a_connection(g) for g in greenlets)
    stats = {
        "pid": os.getpid(),
        "garbage": garbage,
        # Live greenlets less the pool's idle ones, which wait to serve a next connection.
        "greenlets": len(greenlets) - idle,
        "idle_greenlets": idle,
        "fds": len(os.listdir(f"/proc/{os.getpid()}/fd")),
        "rss": rss,
    }
    Path(PROBE_FILE).write_text(json.dumps(stats))


def post_worker_init(worker):
    gevent.signal_handler(signal.SIGUSR2, _write_probe)
