"""The server's connection greenlets, bounded by ``worker_connections``, without a lock each.

gevent's ``Pool`` takes a ``Semaphore`` for every greenlet so that
``add()`` can wait for room, and gevent's server links to that semaphore
to accept again once there is room: every connection that ended ran the
link, and with the calls in between the pool cost about 19k of a
handshake's 440k instructions (bench/README.md). The server never waits
for room: it stops accepting while the pool is full
(``WebSocketServer._full``). Here the count is the set of greenlets
itself, and the server is told only when a full pool gets room. A
greenlet leaves the set as its function returns, rather than through a
link run by the event loop after it died (6k instructions more).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gevent import Greenlet, GreenletExit, getcurrent
from gevent.pool import Group


class ConnectionPool(Group):
    """A ``gevent.pool.Pool`` as gevent's server and gunicorn's worker use one."""

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self.size = size  # None: no bound
        self._limit = math.inf if size is None else size
        # gevent's server links to its pool's _semaphore to hear of room.
        self._semaphore = _Room()

    def spawn(self, func: Callable[..., Any], *args: Any) -> Greenlet:
        """Run ``func(*args)`` in a new greenlet of the pool."""
        greenlet = Greenlet(self._run, func, args)
        if not self.greenlets:
            self._empty_event.clear()  # what join() waits for
        self.greenlets.add(greenlet)
        greenlet.start()
        return greenlet

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            func(*args)
        finally:
            self._discard(getcurrent())

    def kill(self, exception: Any = GreenletExit, block: bool = True, timeout: Any = None) -> None:
        """Kill every greenlet (gevent's server, stopping), those not started yet too.

        One killed before it ran never reaches ``_run``: from here on each
        leaves the set as it dies, or the wait for the set to empty would
        never end.
        """
        for greenlet in list(self.greenlets):
            greenlet.rawlink(self._discard)
        super().kill(exception, block, timeout)

    def full(self) -> bool:
        """Whether a new connection must wait for room."""
        return len(self.greenlets) >= self._limit

    def free_count(self) -> int:
        """Room left for connections (1 without a bound, as gevent's ``Pool`` says)."""
        return 1 if self.size is None else max(0, self.size - len(self.greenlets))

    def _discard(self, greenlet: Any) -> None:
        if greenlet not in self.greenlets:
            return  # gone already: it returned, then its link ran (kill)
        full = len(self.greenlets) >= self._limit
        super()._discard(greenlet)
        if full:
            self._semaphore.notify()


class _Room:
    """The callbacks told when a full pool has room (gevent's server links its accepting)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Any], None]] = []

    def rawlink(self, callback: Callable[[Any], None]) -> None:
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def unlink(self, callback: Callable[[Any], None]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def notify(self) -> None:
        for callback in list(self._callbacks):
            callback(self)
