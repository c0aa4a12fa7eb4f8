"""Server pings (the ASP.NET sample's ``KeepAliveInterval``) and the pong deadline.

Idle connections through proxies and load balancers are dropped after a
minute or so of silence; a ping every ``interval`` seconds keeps them open,
and a pong missing for ``timeout`` seconds reveals a peer that is gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType

import gevent

from ..protocol.errors import ConnectionClosed
from .connection import ServerConnection

log = logging.getLogger(__name__)

_TIMED_OUT = "keepalive ping timeout"


class Keepalive:
    """Pings ``ws`` while the ``with`` block runs; ``0`` disables either part.

    A repeating timer on the event loop, not a sleeping greenlet: an idle
    connection then costs a timer watcher, not a greenlet's stack (about
    10 KiB each, bench/README.md). A greenlet exists only while a ping is
    awaiting its pong.
    """

    def __init__(
        self,
        ws: ServerConnection,
        interval: float,
        timeout: float,
        on_pong: Callable[[float], None] = lambda rtt: None,
    ) -> None:
        self._ws = ws
        self._interval = interval
        self._timeout = timeout
        self._on_pong = on_pong  # called with the round-trip time in seconds
        self._timer = None
        self._in_flight: gevent.Greenlet | None = None

    def __enter__(self) -> Keepalive:
        if self._interval:
            self._timer = gevent.get_hub().loop.timer(self._interval, self._interval)
            self._timer.start(self._due)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.close()
        if self._in_flight is not None:
            self._in_flight.kill(block=False)

    def _due(self) -> None:
        # Runs in the event loop, which must not block: the ping goes from a greenlet.
        if self._in_flight is None:
            self._in_flight = gevent.spawn(self._ping)

    def _ping(self) -> None:
        # The deadline covers sending the ping too: a writer stuck behind
        # a client that stopped reading must not hold the connection forever.
        deadline = gevent.Timeout(self._timeout or None)
        deadline.start()
        try:
            sent = time.perf_counter()
            pong = self._ws.ping()
            if self._timeout:
                pong.wait()
                self._on_pong(time.perf_counter() - sent)
        except ConnectionClosed:
            pass
        except gevent.Timeout as expired:
            if expired is not deadline:
                raise
            log.info("[%s] closing with 1011: %s", self._ws.id, _TIMED_OUT)
            self._ws.abort(1011, _TIMED_OUT)
        finally:
            deadline.close()
            self._in_flight = None
