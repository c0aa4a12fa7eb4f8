"""Prometheus metrics, added up across gunicorn's workers.

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
anything imports prometheus_client, so every worker writes its values there
and any worker can serve the sum. Without it (``python app.py``) the values
live in the one process.

Traffic counters are bumped per session (at each keepalive pong and at the
end), not per message, to keep the echo path free of bookkeeping. And the
counts of connections, handshakes, closes and traffic are kept in the worker
(``Batch``) and written at most once a second: ``/metrics`` may lag a worker
by a second, except the worker that answers the scrape, which writes its own
first.

The children every connection uses are made at import, in the worker: that
opens each per-process file then, not at the first connection, when file
descriptors may have run out (a failing metric would end the session).
"""

from __future__ import annotations

import os
from typing import Any

import gevent
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from . import metric_files
from .connection import ServerConnection

OPEN_CONNECTIONS = Gauge(
    "echo_open_connections", "WebSocket connections open now.", multiprocess_mode="livesum"
)
HANDSHAKES = Counter(
    "echo_handshakes", "WebSocket handshakes, by result and reason.", ["result", "reason"]
)
MESSAGES = Counter("echo_messages", "Data messages, by direction.", ["direction"])
BYTES = Counter("echo_message_bytes", "Data message payload bytes, by direction.", ["direction"])
CLOSES = Counter("echo_closes", "Ended connections, by close code and who closed.", ["code", "by"])
WEBSOCKET_LIMIT = Gauge(
    "echo_websocket_limit",
    "WebSockets the server holds before answering handshakes 503 (0: no limit).",
    multiprocess_mode="livesum",
)
UNSERVED = Counter(
    "echo_unserved_requests",
    "Requests and TLS handshakes ended before the application saw them, by reason.",
    ["reason"],
)
ACCEPT_PAUSES = Counter(
    "echo_accept_pauses", "Pauses in accepting connections: out of file descriptors or memory."
)
PING_RTT = Histogram(
    "echo_ping_rtt_seconds",
    "Time from a keepalive Ping to its Pong.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# Made now, in the worker: each child opens its per-process file (see above),
# and is there, at 0, from the start. The normal close too, whose child made at
# the end of a burst of connections would keep one of the burst's memory
# arenas from going back to the system (memory.py).
HANDSHAKES.labels("accepted", "ok")
_TRAFFIC = ((MESSAGES, ("in",)), (BYTES, ("in",)), (MESSAGES, ("out",)), (BYTES, ("out",)))
for _metric, _labels in _TRAFFIC:
    _metric.labels(*_labels)
CLOSES.labels("1000", "client")

#: Seconds a worker's counts may wait before they are written (``Batch``).
FLUSH_INTERVAL = 1.0


class Batch:
    """Counts kept in the worker, written to prometheus_client at most once a second.

    In multiprocess mode every increment takes a lock and writes to the
    worker's file: the four of each connection cost about 53k of a
    handshake's 740k instructions (bench/README.md). Here an increment adds
    to a dict; a one-shot timer, started by the first count after a write,
    writes them all ``FLUSH_INTERVAL`` later. ``render`` writes this worker's
    first, and the worker writes what is left when it exits.
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[Any, tuple[str, ...]], float] = {}
        self._timer: Any = None
        # The open connections the gauge says, for this worker. It is written
        # with the other counts: each connection's open and close also count
        # a handshake and a close, which start the timer.
        self._open_written = 0

    def add(self, metric: Any, labels: tuple[str, ...] = (), amount: float = 1) -> None:
        """Add ``amount`` to the counter ``metric`` with ``labels``."""
        key = (metric, labels)
        pending = self._pending
        pending[key] = pending.get(key, 0) + amount
        if self._timer is None:
            self._timer = gevent.get_hub().loop.timer(FLUSH_INTERVAL)
            self._timer.start(self.flush)

    def flush(self) -> None:
        """Write every pending count now."""
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        pending, self._pending = self._pending, {}
        for (metric, labels), amount in pending.items():
            (metric.labels(*labels) if labels else metric).inc(amount)
        open_now = ServerConnection.open_count()
        if open_now != self._open_written:
            OPEN_CONNECTIONS.inc(open_now - self._open_written)
            self._open_written = open_now


#: This process's pending counts.
BATCH = Batch()


def render() -> tuple[bytes, str]:
    """The exposition text (summed over workers in multiprocess mode) and its content type."""
    BATCH.flush()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, directory)
    with metric_files.reading(directory):
        return generate_latest(registry), CONTENT_TYPE_LATEST


def handshake_rejected(reason: str) -> None:
    BATCH.add(HANDSHAKES, ("rejected", reason))


def request_unserved(reason: str) -> None:
    BATCH.add(UNSERVED, (reason,))


def set_websocket_limit(limit: int | None) -> None:
    WEBSOCKET_LIMIT.set(limit or 0)


class SessionMetrics:
    """Records one accepted connection, from open to close."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        self._recorded = (0, 0, 0, 0)
        BATCH.add(HANDSHAKES, ("accepted", "ok"))
        ws.when_closed(self._closed)

    def pong(self, rtt: float) -> None:
        PING_RTT.observe(rtt)
        self._record_traffic()

    def _closed(self) -> None:
        self._record_traffic()
        BATCH.add(CLOSES, (str(self._ws.close_code), self._ws.closed_by))

    def _record_traffic(self) -> None:
        """Add what changed since the last time."""
        ws = self._ws
        now = (ws.messages_in, ws.bytes_in, ws.messages_out, ws.bytes_out)
        if now == self._recorded:
            return
        for (counter, labels), was, value in zip(_TRAFFIC, self._recorded, now, strict=True):
            if value != was:
                BATCH.add(counter, labels, value - was)
        self._recorded = now
