"""A client that never lets its socket run dry cannot starve the other clients or the worker.

gunicorn runs with ``--timeout 3``: a worker whose event loop is starved
misses its heartbeat and is killed within the test, as it was (at 30 s) before
connections gave up turns.
"""

from __future__ import annotations

import pytest

from .greedy import GreedyClient, probe

SECONDS = 5.0


@pytest.mark.parametrize("mode", ["ws:256", "ws:65536", "http"])
def test_greedy_client_leaves_room_for_the_others(gunicorn_server, mode):
    server = gunicorn_server(GUNICORN_CMD_ARGS="--timeout 3")
    worker = server.worker_pid()
    with GreedyClient(server.port, SECONDS, mode) as greedy:
        seen = probe(server, SECONDS - 1)
    print(f"\n{mode}: greedy client {greedy.rate:,.0f} replies/s; other client {seen.summary()}")
    assert seen.percentile(0.99) < 0.1, seen.summary()
    assert "WORKER TIMEOUT" not in server.log()
    assert server.worker_pids() == [worker]
    assert greedy.result["replies"] > 1000, "the greedy client was not served"
