"""Shutdown and reload close every WebSocket with 1001 after echoing what it had received."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import time

import pytest
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .rawws import OP_BINARY, OP_CLOSE, RawClient, close_payload, encode_frame, handshake_request
from .servers import DEV_SERVER, GUNICORN, TIMEOUT, ServerProcess, wait_for

CLIENTS, MESSAGES = 20, 20


def signal_with_clients_mid_conversation(server: ServerProcess, sig: int) -> list[tuple]:
    """Each client pipelines MESSAGES messages; once all have one echo back, send ``sig``.

    Returns, per client, the echoes it received and the close code the server sent.
    """

    async def client(n: int, first_echoes: asyncio.Barrier) -> tuple[list, int | None]:
        async with async_connect(server.ws_url) as ws:
            for i in range(MESSAGES):
                await ws.send(f"{n}:{i}")
            echoes = [await ws.recv()]
            await first_echoes.wait()
            try:
                while True:
                    echoes.append(await ws.recv())
            except ConnectionClosed as closed:
                return echoes, closed.rcvd.code if closed.rcvd else None

    async def main() -> list[tuple]:
        first_echoes = asyncio.Barrier(CLIENTS + 1)
        tasks = [asyncio.create_task(client(n, first_echoes)) for n in range(CLIENTS)]
        await first_echoes.wait()
        os.kill(server.process.pid, sig)
        return await asyncio.gather(*tasks)

    return asyncio.run(main())


def assert_echoed_then_1001(results: list[tuple]) -> None:
    for n, (echoes, code) in enumerate(results):
        assert echoes == [f"{n}:{i}" for i in range(MESSAGES)], f"client {n}"
        assert code == 1001, f"client {n} saw {code}"


@pytest.mark.parametrize("workers", ["1", "4"])
def test_sigterm_echoes_pending_messages_then_closes_1001(workers):
    with ServerProcess(GUNICORN, {"WEB_CONCURRENCY": workers}) as server:
        server.wait_all_workers_serving(int(workers))  # connections spread over all of them
        started = time.monotonic()
        assert_echoed_then_1001(signal_with_clients_mid_conversation(server, signal.SIGTERM))
        assert server.wait_exit() == 0
        drained = time.monotonic() - started
        print(
            f"\n{workers} worker(s): {CLIENTS} clients closed and server exited in {drained:.2f} s"
        )
        assert "Traceback" not in server.log()


def test_reload_closes_old_connections_1001_and_keeps_serving():
    with ServerProcess(GUNICORN) as server:
        old_worker = server.worker_pid()
        assert_echoed_then_1001(signal_with_clients_mid_conversation(server, signal.SIGHUP))
        # Until it exits, the old worker may take a connection only to close it with 1001.
        wait_for(
            lambda: server.worker_pids() and old_worker not in server.worker_pids(),
            what="the old worker gone and a new one serving",
        )
        with connect(server.ws_url) as ws:
            ws.send("after reload")
            assert ws.recv() == "after reload"


def test_max_requests_restarts_the_worker_as_a_reload_does():
    """gunicorn's ``max_requests`` (a handshake is a request; it did nothing before): at
    the limit the worker's WebSockets close with 1001, the one that reached it included,
    well before ``graceful_timeout``, and a new worker serves."""
    args = "--max-requests 3 --graceful-timeout 60"
    # Ready once it accepts: a health check would be a request too.
    server = ServerProcess(GUNICORN, {"GUNICORN_CMD_ARGS": args}, health_path=None)
    with server, contextlib.ExitStack() as clients:
        first, second = (clients.enter_context(connect(server.ws_url)) for _ in range(2))
        for ws in (first, second):
            ws.send("before")
            assert ws.recv(timeout=TIMEOUT) == "before"
        old_worker = server.worker_pid()
        third = clients.enter_context(connect(server.ws_url))  # the third request
        for ws in (first, second, third):
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT)
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                1001,
                "server shutting down",
            )
        wait_for(lambda: server.worker_pids() not in ([], [old_worker]), what="a new worker")
        with connect(server.ws_url) as ws:
            ws.send("after")
            assert ws.recv(timeout=TIMEOUT) == "after"
        assert "Autorestarting worker after 3 requests (max_requests)" in server.log()


@pytest.mark.parametrize("stop", ["max_requests", "sigterm"])
def test_connections_that_arrive_as_a_worker_stops_are_answered(stop):
    """A worker accepts what has arrived in one pass. When one of those requests stops
    it (``max_requests`` 1), the others are served all the same, each a 101 and then
    1001: gevent's close forgot how to serve them, and each was dropped unanswered, with
    a traceback. SIGTERM as they arrive: the listener closes at once, and what it had
    not accepted is served by the next worker.

    (A SIGTERM handled in the middle of a pass closed the listener under it, a
    traceback; the handler now leaves the close to the event loop. That moment cannot
    be chosen from outside: a storm of reloads found it, one reload in five.)
    """
    args = "--max-requests 1" if stop == "max_requests" else ""
    server = ServerProcess(
        GUNICORN, {"GUNICORN_CMD_ARGS": f"{args} --graceful-timeout 60"}, health_path=None
    )
    with server, contextlib.ExitStack() as clients:
        wait_for(lambda: len(server.worker_pids()) == 1, what="the worker")
        worker = server.worker_pid()
        os.kill(worker, signal.SIGSTOP)  # the connections arrive while it cannot accept
        try:
            socks = []
            for _ in range(20):
                sock = clients.enter_context(socket.create_connection(("127.0.0.1", server.port)))
                sock.settimeout(TIMEOUT)
                sock.sendall(handshake_request(server.port))
                socks.append(sock)
            if stop == "sigterm":
                os.kill(worker, signal.SIGTERM)  # handled as it wakes up
        finally:
            os.kill(worker, signal.SIGCONT)
        for sock in socks:
            response = clients.enter_context(sock.makefile("rb"))
            assert response.readline().startswith(b"HTTP/1.1 101 ")
            while response.readline() != b"\r\n":
                pass
            sock.sendall(encode_frame(OP_CLOSE, close_payload(1000)))
            head = response.read(2)  # the worker's 1001, or the answer to our Close
            assert head[0] == 0x88, head
            assert struct.unpack("!H", response.read(head[1])[:2])[0] in (1000, 1001)
        assert "Traceback" not in server.log()


def test_gunicorn_reload_on_a_changed_file_closes_websockets_1001(tmp_path):
    """gunicorn's ``--reload`` restarts a worker when a file changes, and only tells it
    by ``alive``: its WebSockets stayed open, and the old code served, until the
    clients left or ``graceful_timeout`` passed. They get 1001 now, as on a reload."""
    watched = tmp_path / "watched.py"
    watched.write_text("")
    args = f"--reload --reload-extra-file {watched} --graceful-timeout 60"
    with ServerProcess(GUNICORN, {"GUNICORN_CMD_ARGS": args}) as server:
        with connect(server.ws_url) as ws:
            ws.send("before")
            assert ws.recv(timeout=TIMEOUT) == "before"
            old_worker = server.worker_pid()
            later = time.time() + 60  # past any time the reloader has seen
            os.utime(watched, (later, later))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT)
            assert closed.value.rcvd.code == 1001
        wait_for(lambda: server.worker_pids() not in ([], [old_worker]), what="a new worker")
        with connect(server.ws_url) as ws:
            ws.send("after")
            assert ws.recv(timeout=TIMEOUT) == "after"


def test_a_client_that_never_reads_is_logged_when_graceful_timeout_drops_it():
    """A client that never reads keeps its echo unsent, so no 1001 can go: at
    ``graceful_timeout`` gunicorn kills its session. It was neither logged nor counted
    as the server's doing (no access line; a close by the client in the metrics)."""
    args = "--graceful-timeout 1"
    with ServerProcess(GUNICORN, {"GUNICORN_CMD_ARGS": args}) as server:
        never = RawClient(server.port, rcvbuf=4096, User_Agent="never-reads")
        with contextlib.closing(never):
            never.sock.setblocking(False)
            frame = encode_frame(OP_BINARY, b"x" * 65536)
            with contextlib.suppress(BlockingIOError):  # full: the server has stopped reading,
                while True:  # its echo blocked on the client that never reads
                    never.sock.sendall(frame)
            worker = server.worker_pid()
            os.kill(worker, signal.SIGTERM)  # the worker's own graceful stop, as on a reload
            wait_for(lambda: worker not in server.worker_pids(), what="the worker gone")
        line = server.log_line("never-reads")
        assert " close=1006 by=server" in line, line


def test_quick_shutdown_still_sends_1001():
    with ServerProcess(GUNICORN) as server:
        results = signal_with_clients_mid_conversation(server, signal.SIGQUIT)
        assert [code for _, code in results] == [1001] * CLIENTS


def test_dev_server_sigterm_closes_1001():
    with ServerProcess(DEV_SERVER) as server:
        assert_echoed_then_1001(signal_with_clients_mid_conversation(server, signal.SIGTERM))
        assert server.wait_exit() == 0


@pytest.mark.parametrize(
    "command",
    [["make", "--no-print-directory", "run"], DEV_SERVER],
    ids=["make-run", "dev-server"],
)
def test_ctrl_c_stops_without_a_traceback(command):
    """Ctrl-C signals the terminal's whole group: make, the master and each worker (twice).

    A worker gets the terminal's SIGINT and the master's SIGQUIT; each once
    ended it with an exit that could land in its interpreter's shutdown.
    """
    for _ in range(3):
        with ServerProcess(command, {"WEB_CONCURRENCY": "2"}) as server:
            if command[0] == "make":
                server.wait_all_workers_serving(2)
            with connect(server.ws_url) as ws:
                ws.send("before Ctrl-C")
                assert ws.recv() == "before Ctrl-C"
                os.killpg(server.process.pid, signal.SIGINT)
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=TIMEOUT)
            assert closed.value.rcvd.code == 1001
            server.wait_exit()
        log = server.log()
        assert "Traceback" not in log and "failed with" not in log, log
        assert "KeyboardInterrupt" not in log, log
