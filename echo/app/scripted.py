"""The echo with test modes applied: late echoes, a close or a drop on cue, a stream.

Each timed mode runs in a greenlet of its own beside the echo loop, and all
of them end with the session. Nothing here bypasses the connection: every
close is the connection's (a closing handshake bounded by close_timeout, or
an abort), and every message goes through its send lock, so a stream and the
echoes interleave whole messages and shutdown's 1001 still comes after the
message being sent.
"""

from __future__ import annotations

import collections
import time

import gevent
from gevent.event import Event
from prometheus_client import Counter

from ..protocol.errors import ConnectionClosed
from ..server import fairness
from ..server.connection import ServerConnection
from .modes import Modes

TEST_MODE_CONNECTIONS = Counter(
    "echo_test_mode_connections",
    "Connections to /ws that asked for a test mode, by mode.",
    ["mode"],
)
#: Echoes waiting for their delay, at most: past it (or past max_message_size
#: bytes) the client is read no further until the oldest has gone.
MAX_WAITING = 1000


def run_with_modes(ws: ServerConnection, modes: Modes) -> None:
    """Echo as ``modes`` say, until the connection is over."""
    for name in modes.names:
        TEST_MODE_CONNECTIONS.labels(name).inc()
    ws.note("modes", ",".join(modes.names))
    if modes.hello is not None:
        ws.send(modes.hello)
    helpers = []
    if modes.close_in is not None:
        helpers.append(gevent.spawn_later(modes.close_in, ws.close, modes.code, modes.reason))
    if modes.drop_in is not None:
        helpers.append(gevent.spawn_later(modes.drop_in, ws.abort))
    if modes.stream:
        helpers.append(gevent.spawn(_stream, ws, modes))
    try:
        if modes.delay:
            LateEchoes(ws, modes).run()
        else:
            _echo(ws, modes)
    finally:
        gevent.killall(helpers, block=False)


def _echo(ws: ServerConnection, modes: Modes) -> None:
    echoes = 0
    while (message := ws.receive()) is not None:
        ws.send(message)
        echoes += 1
        if echoes == modes.close_after:
            ws.close(modes.code, modes.reason)  # receive() returns None once it is over


class LateEchoes:
    """Each echo sent ``delay`` after its message arrived, in order.

    The reader keeps reading while echoes wait, so a client's Close ends the
    session at once: the echoes still waiting are dropped, and the session's
    log line counts them (``dropped=``). What may wait is bounded
    (max_message_size bytes, MAX_WAITING echoes): a client sending faster
    than that is not read until the oldest echo has gone.
    """

    def __init__(self, ws: ServerConnection, modes: Modes) -> None:
        self._ws, self._modes = ws, modes
        self._waiting: collections.deque[tuple[float, str | bytes]] = collections.deque()
        self._bytes = 0
        self._arrived = Event()
        self._room = Event()
        self._sending = True

    def run(self) -> None:
        sender = gevent.spawn(self._send)
        limit = self._ws.settings.max_message_size
        try:
            while (message := self._ws.receive()) is not None:
                self._waiting.append((time.monotonic() + self._modes.delay, message))
                self._bytes += len(message)
                self._arrived.set()
                while self._sending and (self._bytes >= limit or len(self._waiting) >= MAX_WAITING):
                    self._room.clear()
                    self._room.wait()  # set by the sender as echoes go, and as it ends
        finally:
            sender.kill(block=False)
            self._ws.note("dropped", len(self._waiting))

    def _send(self) -> None:
        ws, modes = self._ws, self._modes
        sent = 0
        try:
            while True:
                while not self._waiting:
                    self._arrived.clear()
                    self._arrived.wait()
                due, message = self._waiting[0]
                gevent.sleep(max(0.0, due - time.monotonic()))
                ws.send(message)
                self._waiting.popleft()
                self._bytes -= len(message)
                self._room.set()
                sent += 1
                if sent == modes.close_after:
                    ws.close(modes.code, modes.reason)
                    return
        except ConnectionClosed:
            pass
        finally:
            self._sending = False
            self._room.set()  # a reader waiting for room reads on, and finds the end


def streamed_message(number: int, size: int) -> bytes:
    """The ``number``-th streamed message: its number, a space, then dots, ``size`` bytes in all."""
    head = b"%d " % number
    return (head + b"." * max(0, size - len(head)))[:size]


def _stream(ws: ServerConnection, modes: Modes) -> None:
    """Send ``stream`` messages, ``rate`` a second or as fast as the client reads them."""
    budget = fairness.Budget()  # a client that reads at once never makes this greenlet wait
    interval = 1 / modes.rate if modes.rate else 0.0
    started = time.monotonic()
    try:
        for number in range(1, modes.stream + 1):
            if interval:
                gevent.sleep(max(0.0, started + (number - 1) * interval - time.monotonic()))
            ws.send(streamed_message(number, modes.size), binary=modes.binary)
            budget.spend(fairness.EVENT_COST + modes.size)
    except ConnectionClosed:
        pass
