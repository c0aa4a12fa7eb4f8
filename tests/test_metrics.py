"""/metrics: Prometheus text, summed over every gunicorn worker."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, multiprocess
from websockets.sync.client import connect

from .rawws import handshake_request, http_exchange
from .servers import GUNICORN, ServerProcess, wait_for


def test_open_connections_gauge_follows_clients(server):
    base = server.metric("echo_open_connections")
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(connect(server.ws_url))
        wait_for(lambda: server.metric("echo_open_connections") == base + 3, what="3 open")
    wait_for(lambda: server.metric("echo_open_connections") == base, what="back to base")


def test_handshakes_counted_by_result_and_reason(server):
    accepted = server.metric("echo_handshakes_total", result="accepted", reason="ok")
    bad_key = server.metric("echo_handshakes_total", result="rejected", reason="key")
    no_endpoint = server.metric("echo_handshakes_total", result="rejected", reason="no_endpoint")
    with connect(server.ws_url):
        pass
    http_exchange(server.port, handshake_request(server.port, Sec_WebSocket_Key="nope"))
    http_exchange(server.port, handshake_request(server.port, "/elsewhere"))
    wait_for(
        lambda: (
            server.metric("echo_handshakes_total", result="accepted", reason="ok") == accepted + 1
            and server.metric("echo_handshakes_total", result="rejected", reason="key")
            == bad_key + 1
            and server.metric("echo_handshakes_total", result="rejected", reason="no_endpoint")
            == no_endpoint + 1
        ),
        what="the handshake counters",
    )


def test_traffic_and_close_codes_counted_when_sessions_end(server):
    before = server.metrics()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return server.metrics().get(key, 0.0) - before.get(key, 0.0)

    with connect(server.ws_url) as ws:
        for message in ("hello", b"\x00" * 100):
            ws.send(message)
            ws.recv()
        ws.close(4321)
    wait_for(lambda: delta("echo_closes_total", code="4321", by="client") == 1, what="the close")
    assert delta("echo_messages_total", direction="in") == 2
    assert delta("echo_messages_total", direction="out") == 2
    assert delta("echo_message_bytes_total", direction="in") == 105
    assert delta("echo_message_bytes_total", direction="out") == 105


def test_the_usual_series_are_there_at_zero_before_any_connection():
    """Handshakes accepted, traffic and the normal close, so a rate works from the first;
    each child made at start, not at the end of a burst (echo/server/metrics.py)."""
    with ServerProcess(GUNICORN) as fresh:
        metrics = fresh.metrics()
    for name, labels in [
        ("echo_handshakes_total", {"result": "accepted", "reason": "ok"}),
        ("echo_messages_total", {"direction": "in"}),
        ("echo_message_bytes_total", {"direction": "out"}),
        ("echo_closes_total", {"code": "1000", "by": "client"}),
    ]:
        assert metrics.get((name, tuple(sorted(labels.items())))) == 0.0, (name, labels)


def test_a_scrape_shows_its_own_workers_counts_at_once(server):
    # Counts are written at most once a second (echo/server/metrics.py,
    # Batch), but the worker answering a scrape writes its own first.
    before = server.metrics()
    with connect(server.ws_url) as ws:
        ws.send("x")
        ws.recv()
    after = server.metrics()  # one scrape, no waiting
    accepted = ("echo_handshakes_total", (("reason", "ok"), ("result", "accepted")))
    closed = ("echo_closes_total", (("by", "client"), ("code", "1000")))
    messages = ("echo_messages_total", (("direction", "in"),))
    for key in (accepted, closed, messages):
        assert after.get(key, 0) - before.get(key, 0) == 1, key


def test_counts_of_a_workers_last_second_are_written_when_it_stops(tmp_path):
    # Within its last second a worker's counts are still in memory: a
    # graceful stop writes them before the worker exits.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with ServerProcess(GUNICORN, env) as server:
        for _ in range(3):
            with connect(server.ws_url):
                pass
        server.terminate()
        assert server.wait_exit() == 0
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    value = registry.get_sample_value(
        "echo_handshakes_total", {"result": "accepted", "reason": "ok"}
    )
    assert value == 3


def test_ping_round_trip_time_observed(gunicorn_server):
    server = gunicorn_server(ECHO_PING_INTERVAL="0.5", ECHO_PING_TIMEOUT="1")
    with connect(server.ws_url):
        wait_for(lambda: server.metric("echo_ping_rtt_seconds_count") >= 2, what="two pongs")
    assert server.metric("echo_ping_rtt_seconds_bucket", le="1.0") >= 2


def test_metrics_add_up_across_four_workers():
    with ServerProcess(GUNICORN, {"WEB_CONCURRENCY": "4"}) as server:
        server.wait_all_workers_serving(4)  # holds connections on every worker, then closes them
        wait_for(lambda: server.metric("echo_open_connections") == 0, what="all closed")
        with contextlib.ExitStack() as stack:
            for _ in range(20):
                stack.enter_context(connect(server.ws_url))
            # Each scrape is answered by whichever worker accepts it: all must agree.
            for _ in range(8):
                wait_for(lambda: server.metric("echo_open_connections") == 20, what="20 open")


def test_metrics_can_be_turned_off(gunicorn_server):
    server = gunicorn_server(ECHO_METRICS="off")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{server.http_url}/metrics")
    assert error.value.code == 404


def test_a_dead_workers_counts_stay_and_its_files_are_folded_into_one_archive(tmp_path):
    """Every worker ever started would otherwise cost each scrape its files (28 ms a
    scrape after 200 restarts, and growing); the master folds them on the way out."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with ServerProcess(GUNICORN, env) as server:
        dead = []
        for restart in range(1, 4):
            with connect(server.ws_url) as ws:
                ws.send("x")
                ws.recv()
            dead.append(server.worker_pid())
            os.kill(dead[-1], signal.SIGTERM)  # gunicorn starts another
            wait_for(lambda: server.worker_pids() not in ([], dead[-1:]), what="a new worker")
            wait_for(
                lambda: not any(str(pid) in f.name for f in tmp_path.iterdir() for pid in dead),
                what="the dead workers' files folded",
            )
            sums = server.metrics()
            assert sums[("echo_handshakes_total", (("reason", "ok"), ("result", "accepted")))] == (
                restart
            )
            assert sums[("echo_messages_total", (("direction", "in"),))] == restart
        assert {"counter_archive.db", "histogram_archive.db"} <= {
            f.name for f in tmp_path.iterdir()
        }


@pytest.mark.parametrize("holder", ["scrape", "fold"])
def test_a_process_stuck_holding_the_metrics_lock_stops_neither_scrapes_nor_the_master(
    tmp_path, holder
):
    """A scrape and a fold take turns on a lock file (echo/server/metric_files.py); one
    that holds it and never lets go (stopped in a debugger, say) must not hang a worker's
    scrape, or the master as it reaps a worker. Each waits two seconds at most."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with ServerProcess(GUNICORN, env) as server, open(tmp_path / "folding.lock", "ab") as lock:
        # A stuck scrape holds it shared: a fold must give up; a stuck fold, exclusive.
        fcntl.flock(lock, fcntl.LOCK_SH if holder == "scrape" else fcntl.LOCK_EX)
        with connect(server.ws_url) as ws:
            ws.send("x")
            ws.recv()
        if holder == "fold":
            assert server.metric("echo_messages_total", direction="in") == 1
        else:
            worker = server.worker_pid()
            os.kill(worker, signal.SIGTERM)
            wait_for(lambda: server.worker_pids() not in ([], [worker]), what="a new worker")
            with connect(server.ws_url) as ws:
                ws.send("served by the next worker")
                assert ws.recv() == "served by the next worker"
            assert f"counter_{worker}.db" in {f.name for f in tmp_path.iterdir()}  # not folded
            assert server.metric("echo_messages_total", direction="in") == 2
