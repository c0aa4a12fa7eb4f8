"""Prometheus metrics, added up across gunicorn's workers.

gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
anything imports prometheus_client, so every worker writes its values there
and any worker can serve the sum. Without it (``python app.py``) the values
live in the one process.

Traffic counters are bumped per session (at each keepalive pong and at the
end), not per message, to keep the echo path free of bookkeeping.

The children every connection uses are made at import, in the worker: that
opens each per-process file then, not at the first connection, when file
descriptors may have run out (a failing metric would end the session).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
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


_ACCEPTED = HANDSHAKES.labels("accepted", "ok")
_TRAFFIC = (MESSAGES.labels("in"), BYTES.labels("in"), MESSAGES.labels("out"), BYTES.labels("out"))


def render() -> tuple[bytes, str]:
    """The exposition text (summed over workers in multiprocess mode) and its content type."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def handshake_rejected(reason: str) -> None:
    HANDSHAKES.labels("rejected", reason).inc()


def request_unserved(reason: str) -> None:
    UNSERVED.labels(reason).inc()


def set_websocket_limit(limit: int | None) -> None:
    WEBSOCKET_LIMIT.set(limit or 0)


class SessionMetrics:
    """Records one accepted connection, from open to close."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        self._recorded = (0, 0, 0, 0)
        _ACCEPTED.inc()
        OPEN_CONNECTIONS.inc()
        ws.when_closed(self._closed)

    def pong(self, rtt: float) -> None:
        PING_RTT.observe(rtt)
        self._record_traffic()

    def _closed(self) -> None:
        self._record_traffic()
        OPEN_CONNECTIONS.dec()
        CLOSES.labels(str(self._ws.close_code), self._ws.closed_by).inc()

    def _record_traffic(self) -> None:
        """Add what changed: each increment of a multiprocess value takes a lock and a write."""
        ws = self._ws
        now = (ws.messages_in, ws.bytes_in, ws.messages_out, ws.bytes_out)
        for counter, was, value in zip(_TRAFFIC, self._recorded, now, strict=True):
            if value != was:
                counter.inc(value - was)
        self._recorded = now
