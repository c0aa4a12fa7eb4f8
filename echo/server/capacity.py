"""WebSocket slots: a limit kept under the worker's connection pool.

gunicorn's gevent worker accepts at most ``worker_connections`` connections
and leaves the rest waiting in the kernel's backlog. If WebSockets, which
stay open, could take every one of them, a load balancer's health check and a
Prometheus scrape would wait there too and the worker would look dead. So
WebSocket handshakes beyond a limit get 503 with ``Retry-After``, and the
slots above it stay free for plain HTTP.
"""

from __future__ import annotations

import logging

from ..protocol.errors import HandshakeRejected
from . import metrics
from .throttled import ThrottledWarning

log = logging.getLogger(__name__)

RETRY_AFTER = 5  # seconds, in the 503 of a handshake over the limit
# Slots kept for plain HTTP: a tenth of the pool, at most this many.
MAX_RESERVE = 100


def default_limit(pool_size: int | None) -> int | None:
    """The limit when ``max_websockets`` is ``auto``: none without a bounded pool."""
    if pool_size is None:
        return None
    return max(1, pool_size - min(MAX_RESERVE, pool_size // 10))


class Capacity:
    """Counts one server's WebSockets, from the handshake's check to the connection's close."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.taken = 0
        self._full = ThrottledWarning(
            log,
            "WebSocket limit reached: %d open on this worker (max_websockets), handshakes get 503",
        )
        metrics.set_websocket_limit(limit)

    def take(self) -> None:
        """A slot for a new WebSocket; ``HandshakeRejected`` (503) when none is left."""
        if self.limit is not None and self.taken >= self.limit:
            self._full.happened(self.limit)
            raise HandshakeRejected(
                "503 Service Unavailable",
                f"this server holds its limit of {self.limit} WebSocket connections; retry later",
                "capacity",
                [("Retry-After", str(RETRY_AFTER))],
            )
        self.taken += 1

    def give_back(self) -> None:
        self.taken -= 1
