"""A server for an application's tests: its endpoints on a free loopback port, for real.

    from echo.server.testing import serving

    def test_reverse():
        with serving("myapp:app") as url, connect(url + "/reverse") as ws:
            ws.send("abc")
            assert ws.recv() == "cba"

The app runs in its own process under ``echo.server.devserver``, the server
``python app.py`` runs, with the same handler, limits and settings
(``ECHO_*`` in ``env``); what it printed is in the error if it fails to start.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping

READY = "development server on "  # the line devserver logs once it listens


@contextlib.contextmanager
def serving(app: str, env: Mapping[str, str] | None = None, timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` (``"module:name"``) until the block ends; its URL, ``ws://127.0.0.1:PORT``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "echo.server.devserver", app],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    listening = threading.Event()
    settled = threading.Event()  # listening, or its output ended: it will never listen

    def read_output() -> None:  # until the server exits, so that it never blocks on the pipe
        for line in process.stdout:
            lines.append(line)
            if READY in line:
                listening.set()
                settled.set()
        settled.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        settled.wait(timeout)
        if not listening.is_set():
            raise RuntimeError(f"the server did not start:\n{''.join(lines)}")
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join()
