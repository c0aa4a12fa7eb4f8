"""Closing a connection so that the client reads the server's last words.

Closing a socket with unread input makes the kernel send a reset, which can
destroy a response or Close frame the client has not read yet. So the write
side is shut first and the input read and discarded until the client closes
too, for a bounded time (the lingering close of nginx and Apache).
"""

from __future__ import annotations

import contextlib
import socket

import gevent

_CHUNK = 64 * 1024


def drain(sock: socket.socket, timeout: float) -> None:
    """Shut the write side of ``sock`` and discard its input until EOF, for ``timeout`` at most."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    with gevent.Timeout(timeout, False), contextlib.suppress(OSError):
        while sock.recv(_CHUNK):
            pass
