"""Real server processes for the tests: started on a free loopback port, torn down by group."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
# Multiply every wait in the tests on a slow machine: ECHO_TEST_TIMEOUT_SCALE=3.
TIMEOUT = 10.0 * float(os.environ.get("ECHO_TEST_TIMEOUT_SCALE", "1"))

GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
# gunicorn.conf.py with a probe in each worker (``probe``); ECHO_PROBE_FILE says where.
INSTRUMENTED = ROOT / "tests" / "instrumented.conf.py"
DEV_SERVER = [sys.executable, "app.py"]


# Servers alive right now, whose logs a failing test shows.
RUNNING: list[ServerProcess] = []
# What the servers of this run wrote (logs, temporary files): see remove_scratch().
_SCRATCH: list[Path] = []


def scratch_dir(prefix: str) -> Path:
    """A temporary directory for a server, removed by ``remove_scratch()``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _SCRATCH.append(path)
    return path


def remove_scratch() -> None:
    """Remove every server's directory (a run that passed needs none of them)."""
    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], bool], timeout: float = TIMEOUT, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def fresh_interpreter(script: str) -> str:
    """What ``script`` prints, run by a new Python in the project's root; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class ServerProcess:
    """A server command run in its own process group, logging to a file."""

    def __init__(
        self,
        command: list[str],
        env: Mapping[str, str] | None = None,
        health_path: str | None = "/healthz",
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.host = host  # as the clients write it: an IPv6 address in brackets
        self.port = port or free_port()
        self.health_path = health_path
        self.tls = tls  # a client context trusting the server's certificate, when it speaks TLS
        self.command = command
        self.label = " ".join([*command[1:3], *(f"{k}={v}" for k, v in (env or {}).items())])
        inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        # Its temporary files (gunicorn.conf.py's metrics directory among them)
        # go into a directory of its own, next to its log.
        scratch = scratch_dir("echo-server-")
        self.env = {
            **inherited,
            "HOST": host,
            "PORT": str(self.port),
            "TMPDIR": str(scratch),
            **(env or {}),
        }
        self.log_path = scratch / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/ws"

    def start(self, wait: bool = True) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        RUNNING.append(self)
        if wait:
            wait_for(self._ready, what=f"{self.command} to answer /healthz")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
        if self.health_path is None:  # not an HTTP server: accepting connections is ready
            try:
                address = self.host.strip("[]")
                socket.create_connection((address, self.port), timeout=1).close()
                return True
            except OSError:
                return False
        try:
            url = self.http_url + self.health_path
            with urllib.request.urlopen(url, timeout=1, context=self.tls) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_exit(self) -> int:
        code = self.process.wait(timeout=TIMEOUT)
        RUNNING.remove(self)
        return code

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def terminate(self) -> None:
        """SIGTERM to the master, as gunicorn documents; ``stop()`` then waits for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self in RUNNING:
            RUNNING.remove(self)
        if self.process is None or self.process.poll() is not None:
            return
        self.terminate()  # SIGKILL to the whole group if it lingers
        try:
            self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """One scrape of /metrics: ``(name, sorted label items)`` to value."""
        with urllib.request.urlopen(f"{self.http_url}/metrics", context=self.tls) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def log_line(self, marker: str) -> str:
        """The one log line containing ``marker`` (e.g. a unique User-Agent), once written."""
        wait_for(lambda: marker in self.log(), what=f"a log line with {marker}")
        (line,) = [line for line in self.log().splitlines() if marker in line]
        return line

    def worker_pids(self) -> list[int]:
        """gunicorn's workers (the children of the master process, which make may have started)."""
        master = self.process.pid
        if self.command[0] == "make":
            (master,) = children(master)
        return children(master)

    def wait_all_workers_serving(self, workers: int) -> None:
        """Open connections until each of ``workers`` workers holds one (all have booted)."""
        wait_for(lambda: len(self.worker_pids()) == workers, what=f"{workers} workers")
        serving: set[int] = set()

        def each_took_one() -> bool:
            # A worker still booting (importing the app) takes none: hold up
            # to 50 a worker at once, and try again until the last has booted.
            with contextlib.ExitStack() as clients:
                for _ in range(50 * workers):
                    ws = clients.enter_context(connect(self.ws_url))
                    ws.send("ready?")
                    assert ws.recv() == "ready?"
                    port = ws.socket.getsockname()[1]
                    serving.update(pid for pid in self.worker_pids() if connections_held(pid, port))
                    if len(serving) == workers:
                        return True
            return False

        wait_for(each_took_one, what=f"each of {workers} workers to take a connection")

    def worker_pid(self) -> int:
        (pid,) = self.worker_pids()
        return pid

    @contextlib.contextmanager
    def peak_rss_growth(self) -> Iterator[Growth]:
        """How far the worker's peak RSS rises in the ``with`` block, from its RSS at the start."""
        worker = self.worker_pid()
        growth = Growth()
        before = proc_status(worker, "VmRSS")
        Path(f"/proc/{worker}/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
        yield growth
        growth.bytes = proc_status(worker, "VmHWM") - before


@dataclass
class Growth:
    bytes: int = 0


def probe(server: ServerProcess, probe_file: Path) -> dict:
    """The worker's vital signs, written by tests/instrumented.conf.py on SIGUSR2."""
    probe_file.unlink(missing_ok=True)
    os.kill(server.worker_pid(), signal.SIGUSR2)
    wait_for(probe_file.exists, what="the worker's probe")
    wait_for(lambda: probe_file.read_text().endswith("}"), what="the probe to be written")
    return json.loads(probe_file.read_text())


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def proc_status(pid: int, field: str) -> int:
    """A ``kB`` figure from /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def allow_open_files(count: int) -> None:
    """Raise the soft limit on open files to ``count``; servers started later inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(count, hard), hard))


def _tcp_sockets() -> Iterator[tuple[int, int, int, str]]:
    """IPv4 sockets from /proc/net/tcp: local port, remote port, unsent bytes, inode."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        yield local, remote, int(fields[4].split(":")[0], 16), fields[9]


def unsent_bytes(local_port: int, remote_port: int) -> int:
    """Bytes the loopback socket ``local_port`` -> ``remote_port`` has queued but not delivered."""
    return sum(
        queued
        for local, remote, queued, _ in _tcp_sockets()
        if (local, remote) == (local_port, remote_port)
    )


def connections_held(pid: int, peer_port: int | None = None) -> int:
    """How many TCP connections process ``pid`` holds open (to ``peer_port``, if given).

    Listening sockets aside. Not a count of its files: the answer to the
    readiness check may still be closing when a test starts, and a baseline
    taken then is one too many.
    """
    inodes = {
        f"socket:[{inode}]"
        for _, remote, _, inode in _tcp_sockets()
        if remote and peer_port in (None, remote)
    }
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            held += os.readlink(fd) in inodes
    return held


_PIDFD_GETFD = 438  # the system call's number, the same on every Linux architecture


def socket_option(pid: int, local_port: int, remote_port: int, level: int, option: int) -> int:
    """An option of process ``pid``'s loopback socket ``local_port`` -> ``remote_port``.

    Read on a copy of the server's own file descriptor (``pidfd_getfd``,
    Linux 5.6; the tests' processes are its children): some options, such
    as ``TCP_NODELAY``, show nowhere else.
    """
    (inode,) = {
        f"socket:[{inode}]"
        for local, remote, _, inode in _tcp_sockets()
        if (local, remote) == (local_port, remote_port)
    }
    (target,) = [
        int(fd.name) for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd) == inode
    ]
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        copy = libc.syscall(_PIDFD_GETFD, pidfd, target, 0)
        if copy < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
    finally:
        os.close(pidfd)
    with socket.socket(fileno=copy) as sock:  # closing the copy leaves the server's open
        return sock.getsockopt(level, option)
