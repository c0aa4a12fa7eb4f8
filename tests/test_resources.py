"""Out of file descriptors, a worker pauses accepting and serves what it holds."""

from __future__ import annotations

import selectors
import socket

from .rawws import OP_TEXT, encode_frame, handshake_request
from .servers import GUNICORN, TIMEOUT, ServerProcess, allow_open_files

OPEN_FILES = 128  # the worker's limit: about a hundred connections after its own files
CLIENTS = 300


def upgraded_among(pending: list[socket.socket]) -> list[socket.socket]:
    """The connections whose 101 arrives before the others go quiet for a second."""
    heads = dict.fromkeys(pending, b"")
    with selectors.DefaultSelector() as selector:
        for conn in pending:
            selector.register(conn, selectors.EVENT_READ)
        while ready := selector.select(timeout=1):
            for key, _ in ready:
                heads[key.fileobj] += key.fileobj.recv(4096)
                if b"\r\n\r\n" in heads[key.fileobj]:
                    selector.unregister(key.fileobj)
    assert all(head.startswith((b"", b"HTTP/1.1 101 ")) for head in heads.values()), heads
    return [conn for conn, head in heads.items() if head]


def test_out_of_file_descriptors_pauses_accepting_and_keeps_sessions():
    allow_open_files(CLIENTS + 100)
    limited = ["prlimit", f"--nofile={OPEN_FILES}:{OPEN_FILES}", *GUNICORN]
    with ServerProcess(limited) as server:
        pending = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(CLIENTS)]
        for conn in pending:
            conn.settimeout(TIMEOUT)
            conn.sendall(handshake_request(server.port))
        rounds = 0
        while pending:
            upgraded = upgraded_among(pending)
            assert 0 < len(upgraded) < OPEN_FILES, f"round {rounds}: {len(upgraded)} upgraded"
            for conn in upgraded:  # the sessions it holds are served as usual
                conn.sendall(encode_frame(OP_TEXT, b"served"))
                assert conn.recv(64) == b"\x81\x06served"
                conn.close()
            pending = [conn for conn in pending if conn not in upgraded]
            rounds += 1
        assert server.metric("echo_accept_pauses_total") >= 1
        log = server.log()
    assert rounds >= 3
    assert log.count("cannot accept connections: Too many open files") == 1
    assert "Traceback" not in log
    assert "close=1011" not in log
