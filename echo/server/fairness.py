"""Cooperative fairness: a connection that never has to wait still lets the others run.

gevent switches greenlets only when one would block. A client that keeps its
socket full (pipelining messages and reading the echoes as fast as they come,
or pipelining HTTP requests) never makes its greenlet block, and without a
turn given up on purpose every other connection, the accept loop and
gunicorn's heartbeat wait behind it until the worker is killed as hung.
"""

from __future__ import annotations

import gevent

# Work one greenlet may do between turns given up, counted in bytes handled,
# where every message or control frame counts for at least EVENT_COST and an
# HTTP request (Flask's dispatch, 0.1-0.3 ms) for REQUEST_COST: a turn is then
# about 0.2-1 ms of work on the machine in bench/.
TURN = 256 * 1024
EVENT_COST = 16 * 1024
REQUEST_COST = TURN // 4


class Budget:
    """One connection's work since it last gave the others a turn."""

    __slots__ = ("_left",)

    def __init__(self) -> None:
        self._left = TURN

    def spend(self, cost: int) -> None:
        """Count ``cost`` bytes' worth of work; give up a turn once the budget is used."""
        self._left -= cost
        if self._left <= 0:
            self._left = TURN
            yield_turn()


def yield_turn() -> None:
    """Resume only after the event loop has polled and run what was ready then.

    ``gevent.sleep(0)`` is not enough: its callback can run again before the
    loop polls for I/O (up to gevent's switch interval, 5 ms, times 50). A
    zero timer is due at the next iteration, after the poll, so every other
    greenlet with input, and every due timer, runs first.
    """
    hub = gevent.get_hub()
    timer = hub.loop.timer(0.0)
    try:
        hub.wait(timer)
    finally:
        timer.close()
