"""Giving memory back to the system after a burst of connections.

A worker's memory would follow its busiest moment:

- glibc keeps freed space in its heap, and raises its mmap threshold after
  the first large free, so later message buffers come from the heap too.
  ``malloc_trim`` returns the free pages anywhere in the heap; a worker runs
  it every TRIM_INTERVAL seconds if connections ended since. (Fixing the
  mmap threshold instead would map and fault in every large buffer afresh:
  it made 1 MiB echoes three times slower.)
- Each log record asks ``threading.current_thread()`` for its thread name;
  under gevent every greenlet then gets a dummy thread object, made at a
  session's end and freed later, which scatters survivors across Python's
  small-object arenas so that they cannot be freed. No log format here names
  the thread.

Elsewhere than on glibc the trimming is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

import gevent

TRIM_INTERVAL = 10.0  # seconds


def _glibc() -> Any:
    path = ctypes.util.find_library("c")
    libc = ctypes.CDLL(path) if path else None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def tune_process() -> None:
    """Call once in each serving process (a gunicorn worker, ``python app.py``)."""
    logging.logThreads = False


class Trimmer:
    """Runs ``malloc_trim`` now and then, if connections ended since the last time."""

    def __init__(self) -> None:
        self._ended = 0
        self._timer: Any = None

    def start(self) -> None:
        if _LIBC is not None:
            self._timer = gevent.get_hub().loop.timer(TRIM_INTERVAL, TRIM_INTERVAL)
            self._timer.start(self._due)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def connection_ended(self) -> None:
        self._ended += 1

    def _due(self) -> None:
        if self._ended:
            self._ended = 0
            _LIBC.malloc_trim(0)
