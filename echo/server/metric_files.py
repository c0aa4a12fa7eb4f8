"""The multiprocess metrics directory: each dead worker's counts folded into one archive.

prometheus_client keeps a file per worker and metric type, and a dead
worker's counter and histogram files stay, as its counts must stay in the
sums. So every worker ever started cost every later scrape a file to read,
in one greenlet turn: after 200 worker restarts (reloads, crashes, a
``max_requests``) a scrape took 28 ms instead of 1.5 ms, and it grew on.
The master folds a dead worker's files into one archive per type
(``counter_archive.db``): the directory holds the live workers' files and
two more.

Moving counts from one file to another is not atomic: a scrape between the
two steps would count them twice, or fail on the file that went after its
glob. A lock file orders them: a scrape holds it shared, the fold
exclusively, for about a millisecond. Each waits for the lock for at most
``LOCK_WAIT``: a process stopped while holding it (a debugger, SIGSTOP)
must not stop the master, nor a worker, whose sleep here is gevent's. A
scrape that cannot have it reads without it; a fold leaves the worker's
files as they are, counted all the same, at the cost of reading them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from typing import BinaryIO

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

#: The types whose values add up over workers, and so over a worker's lifetimes.
FOLDED = ("counter", "histogram")
LOCK = "folding.lock"  # not *.db: prometheus_client reads every .db file
#: Seconds a scrape or a fold waits for the lock, and between two tries.
LOCK_WAIT, LOCK_RETRY = 2.0, 0.005


@contextlib.contextmanager
def _locked(directory: str, operation: int) -> Iterator[bool]:
    """Whether the lock is held (``operation``: shared or exclusive), within ``LOCK_WAIT``."""
    with open(os.path.join(directory, LOCK), "ab") as lock:
        yield _take(lock, operation)  # closing the file lets go of the lock


def _take(lock: BinaryIO, operation: int) -> bool:
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(lock, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOCK_RETRY)


def reading(directory: str) -> contextlib.AbstractContextManager[bool]:
    """Hold while a scrape reads ``directory``: no fold is halfway meanwhile."""
    return _locked(directory, fcntl.LOCK_SH)


def retire_worker(directory: str, pid: int) -> None:
    """After worker ``pid`` exited: its live gauges dropped, its counts moved to the archive.

    Its live gauges go whatever a scrape does (prometheus_client expects
    that); its counts stay in its files if the lock cannot be had.
    """
    multiprocess.mark_process_dead(pid, directory)
    with _locked(directory, fcntl.LOCK_EX) as held:
        if not held:
            return
        for kind in FOLDED:
            dead = os.path.join(directory, f"{kind}_{pid}.db")
            if not os.path.exists(dead):
                continue
            archive = MmapedDict(os.path.join(directory, f"{kind}_archive.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(dead):
                    archive.write_value(key, archive.read_value(key)[0] + value, timestamp)
            finally:
                archive.close()
            os.remove(dead)
