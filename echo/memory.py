"""Giving memory back to the system after a burst of connections.

A worker's memory follows its busiest moment unless it is handed back:

- glibc raises its mmap threshold to the size of the largest block freed
  (up to 32 MiB), so after the first 1 MiB message every later one comes
  from the heap, where freed space is kept. A fixed threshold keeps large
  buffers in their own mappings, returned the moment they are freed.
- Freed space in the middle of the heap is returned only by ``malloc_trim``,
  which a worker runs every TRIM_INTERVAL seconds if connections ended since.
- Each log record asks ``threading.current_thread()`` for its thread name;
  under gevent every greenlet then gets a dummy thread object, made at a
  session's end and freed later, which scatters survivors across the
  allocator's arenas. No log format here names the thread.

Elsewhere than on glibc the first two are skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

import gevent

MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept from then on
TRIM_INTERVAL = 10.0  # seconds
_M_MMAP_THRESHOLD = -3  # mallopt parameter, from malloc.h


def _glibc() -> Any:
    path = ctypes.util.find_library("c")
    libc = ctypes.CDLL(path) if path else None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def tune_process() -> None:
    """Call once in each serving process (a gunicorn worker, ``python app.py``)."""
    logging.logThreads = False
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


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
