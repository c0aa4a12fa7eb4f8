"""At worker_connections, the oldest unfinished request makes room for a new connection.

gunicorn's gevent worker stops accepting when its pool of connections is
full; the next ones wait in the kernel's backlog. A request still arriving
(or a TLS handshake) is bounded by ``read_timeout``, but a client that keeps
more of them open than the pool holds, opening new ones as the old ones are
ended, would keep every other client in the backlog. So when the pool is full
and a connection waits to be accepted, the connection that has been sending
its request the longest is ended (a 408, as its deadline would have) to make
room, the way nginx reuses idle keep-alive connections. Open WebSockets and
requests being answered are never ended this way, nor a request younger than
MIN_AGE.
"""

from __future__ import annotations

import time

from gevent import getcurrent
from greenlet import greenlet

from .errors import Evicted

MIN_AGE = 1.0  # seconds a request may take to arrive before it can be ended for room


class UnfinishedRequests:
    """The greenlets reading a request or a TLS handshake, oldest first, with when they began."""

    def __init__(self) -> None:
        self._oldest_first: dict[greenlet, float] = {}

    def started(self) -> None:
        """The current greenlet waits for a request (or handshake) to arrive."""
        self._oldest_first[getcurrent()] = time.monotonic()

    def finished(self) -> None:
        """The current greenlet has its request, or its connection is over."""
        self._oldest_first.pop(getcurrent(), None)

    def end_oldest(self) -> bool:
        """From the event loop: raise ``Evicted`` where the oldest waits; ``False`` if none may.

        Only a greenlet that is waiting for its client is ever listed, so the
        exception lands in a read, never in the application. A request gets
        MIN_AGE seconds first: a client's own request takes a round trip or
        two to arrive, and a burst of them must not end one another.
        """
        if not self._oldest_first:
            return False
        oldest, began = next(iter(self._oldest_first.items()))
        if time.monotonic() - began < MIN_AGE:
            return False
        del self._oldest_first[oldest]
        oldest.throw(Evicted)
        return True
