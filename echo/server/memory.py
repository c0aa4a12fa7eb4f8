"""Giving memory back to the system after a burst of connections.

A worker's memory would follow its busiest moment. What keeps it there, and
what is done here (docs/hostile-input.md, "Memory given back", has the figures):

- glibc keeps freed space in its heap, and raises its mmap threshold after
  the first large free, so later message buffers come from the heap too.
  ``malloc_trim`` returns the free pages anywhere in the heap; a worker runs
  it every TRIM_INTERVAL seconds if connections ended since. (Fixing the
  mmap threshold instead would map and fault in every large buffer afresh:
  it made 1 MiB echoes three times slower.)
- CPython's small objects live in 1 MiB arenas, each returned only once
  wholly empty, so a few objects that outlive a burst keep its arenas. Two
  of the interpreter's caches hold such objects: the free lists of tuples,
  lists, dicts and floats (cleared by a full garbage collection), and the
  type attribute cache, whose entries keep the name strings they were
  looked up with. After a burst (as many connections ended since the last
  time as are open now) the worker clears both before trimming. What the
  process holds when it starts serving is frozen out of collections
  (``gc.freeze``), so a collection costs what the connections hold, not the
  modules.
- A cache entry first made during a burst outlives it and keeps one of its
  arenas. The caches every connection fills (the environ keys of a
  handshake's header names, the normal close's metric child) are filled at
  import instead: a fresh worker's RSS after 2,000 compressed connections,
  against its cold start, went from a median of 1.18x to 1.15x (an arena).
- Each log record asks ``threading.current_thread()`` for its thread name;
  under gevent every greenlet then gets a dummy thread object, made at a
  session's end and freed later, which scatters survivors across those
  arenas. No log format here names the thread.
- gevent records, for every greenlet, the greenlet that spawned it, a dict
  of "spawn tree locals" and the spawning stack (ten frames' code and line
  numbers, looked up in the line tables): per connection, objects kept for
  its lifetime and about 11k instructions, 2 % of a handshake
  (bench/README.md). Nothing here reads them; gevent's ``track_greenlet_tree``
  setting turns them off.

Elsewhere than on glibc the trimming is skipped.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import logging
import sys
from collections.abc import Callable
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
    gevent.config.track_greenlet_tree = False


def release_interpreter_caches() -> None:
    """Empty the caches that keep objects alive across a burst (module docstring)."""
    gc.collect()
    sys._clear_type_cache()


def trim_heap() -> None:
    """Return the free pages of the C heap to the system (glibc only)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class Trimmer:
    """Gives memory back every TRIM_INTERVAL seconds, if connections ended since the last time.

    ``open_connections`` counts the connections open now.
    """

    def __init__(self, open_connections: Callable[[], int]) -> None:
        self._open_connections = open_connections
        self._ended = 0  # since the last trim
        self._ended_since_release = 0  # since the interpreter's caches were last emptied
        self._timer: Any = None

    def start(self) -> None:
        """From now on the process serves: what it holds now stays for its life."""
        gc.collect()
        gc.freeze()
        # A frozen object outlives the interpreter's last collection, and would be
        # torn down after the modules it needs (a traceback as the process exits).
        atexit.register(gc.unfreeze)
        self._timer = gevent.get_hub().loop.timer(TRIM_INTERVAL, TRIM_INTERVAL)
        self._timer.start(self._due)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def connection_ended(self) -> None:
        self._ended += 1
        self._ended_since_release += 1

    def _due(self) -> None:
        if not self._ended:
            return
        self._ended = 0
        if self._ended_since_release >= self._open_connections():
            self._ended_since_release = 0
            release_interpreter_caches()
        trim_heap()
