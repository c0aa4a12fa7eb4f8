"""The server's connection greenlets, bounded by ``worker_connections``, kept for reuse.

gevent's ``Pool`` takes a ``Semaphore`` for every greenlet so that
``add()`` can wait for room, and gevent's server links to that semaphore
to accept again once there is room: every connection that ended ran the
link, and with the calls in between the pool cost about 19k of a
handshake's 440k instructions (bench/README.md). The server never waits
for room: it stops accepting while the pool is full
(``WebSocketServer._full``). Here the count is the set of greenlets
serving a connection, and the server is told only when a full pool gets
room.

A new greenlet per connection cost about 12 us of CPU, a quarter of it in
the kernel: on Python 3.11 and later each greenlet gets a data stack of its
own for its Python frames, 16 KiB mapped when it first runs and unmapped
when it dies (an ``mmap``, a page fault and a ``munmap`` per connection;
bench/README.md). A greenlet whose connection has ended waits for the next
one instead, up to ``IDLE_KEPT`` of them; each connection starts with no
``contextvars`` set, as in a new greenlet, and an idle greenlet keeps
nothing of the connection it served.

A greenlet saves the C stack it has built up at every switch, so every
message waited for copies it out and back in. A call from Python to Python
adds nothing there, but one through C (``functools.partial``,
``Context.run``, and ``f(*args)`` before Python 3.13) starts a new frame of
the interpreter's loop, about 600 bytes on 3.11. A
connection is therefore always ``handle(sock, address)``, called with its
arguments written out, in the greenlet's own context rather than one
entered (bench/README.md).

What a thread pool's threads keep between requests, these keep between
connections: greenlet-local data (``gevent.local``, patched
``threading.local``) an application leaves behind.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from gevent import Greenlet, GreenletExit, get_hub, getcurrent, killall
from gevent.hub import Waiter
from gevent.pool import Group

#: Greenlets kept waiting for a connection: enough for the connections a
#: worker opens at once in a reconnect storm; each holds about 20 KiB.
IDLE_KEPT = 64

#: What a connection's greenlet runs: ``handle(sock, address)``.
Handle = Callable[[Any, Any], None]
_Task = tuple[Handle, Any, Any]


class ConnectionPool(Group):
    """A ``gevent.pool.Pool`` as gunicorn's worker and ``WebSocketServer`` use one.

    Unlike gevent's, ``spawn`` takes a connection, not any call.
    """

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self.size = size  # None: no bound
        self._limit = math.inf if size is None else size
        # gevent's server links to its pool's _semaphore to hear of room.
        self._semaphore = _Room()
        # Greenlets whose connection has ended, each waiting for another, newest last.
        self._idle: list[tuple[Greenlet, Waiter]] = []
        self._idle_kept = IDLE_KEPT

    def spawn(self, handle: Handle, sock: Any, address: Any) -> Greenlet:
        """Run ``handle(sock, address)`` in a greenlet of the pool: an idle one, or a new one."""
        task = (handle, sock, address)
        if self._idle:
            greenlet, waiter = self._idle.pop()
            self._add_busy(greenlet)
            get_hub().loop.run_callback(waiter.switch, task)
            return greenlet
        # The first task goes in a list that _run empties: a greenlet's own
        # arguments live as long as it does, and would keep the socket.
        greenlet = Greenlet(self._run, [task])
        self._add_busy(greenlet)
        greenlet.start()
        return greenlet

    def _add_busy(self, greenlet: Greenlet) -> None:
        if not self.greenlets:
            self._empty_event.clear()  # what join() waits for
        self.greenlets.add(greenlet)

    def _run(self, handed_over: list[_Task]) -> None:
        """Serve the first connection, then each handed over while idle, in a fresh context."""
        current = getcurrent()
        handle, sock, address = handed_over.pop()
        while True:
            try:
                handle(sock, address)
            finally:
                self._discard(current)
            if len(self._idle) >= self._idle_kept:
                return
            # Idle, it keeps nothing of the connection it served, and the next
            # starts with no context variables set, as in a new greenlet.
            del handle, sock, address
            current.gr_context = None
            handle, sock, address = self._wait_for_task(current)

    def _wait_for_task(self, current: Greenlet) -> _Task:
        """The next connection for ``current``, once ``spawn`` hands it over."""
        entry = (current, Waiter())
        self._idle.append(entry)
        try:
            return entry[1].get()
        except BaseException:
            # Killed (the pool, stopping), or a stray exception: the greenlet
            # ends. A connection handed over meanwhile is lost with it.
            if entry in self._idle:
                self._idle.remove(entry)
            self._discard(current)
            raise

    def kill(self, exception: Any = GreenletExit, block: bool = True, timeout: Any = None) -> None:
        """Kill every greenlet (gevent's server, stopping): idle ones, and those not started yet.

        One killed before it ran never reaches ``_run``: from here on each
        leaves the set as it dies, or the wait for the set to empty would
        never end. A killed pool keeps no idle greenlets from then on.
        """
        self._idle_kept = 0
        idle, self._idle = self._idle, []
        killall([greenlet for greenlet, _ in idle], exception, block, timeout)
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
