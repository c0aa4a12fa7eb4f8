"""gevent socket calls: writing and waiting without the syscalls gevent's own add."""

from __future__ import annotations

import socket
from typing import Any

from gevent.socket import socket as PlainSocket


def send_all(sock: Any, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data``, waiting (within the socket's timeout) when the buffer is full.

    gevent's ``sendall()`` asks the kernel for the send buffer size on every
    call; one ``send()`` nearly always takes a message or a response whole,
    and only what is left goes through ``sendall()``. On a plain socket that
    one ``send()`` goes to the kernel's socket beneath gevent's (``send_now``).
    """
    if type(sock) is PlainSocket:
        try:
            sent = sock._sock.send(data)  # as send_now, without its call (every echo)
        except BlockingIOError:
            sent = 0
    else:
        sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def send_now(sock: Any, data: bytes) -> int:
    """Send what ``sock`` takes of ``data`` without waiting; how many bytes that was.

    0 when its buffer is full, and always 0 through TLS (the socket beneath
    is not the one to write to): the caller sends the rest with ``send_all``.
    """
    if type(sock) is not PlainSocket:
        return 0
    try:
        return sock._sock.send(data)  # gevent's own socket, non-blocking
    except BlockingIOError:
        return 0


def peek(sock: PlainSocket, size: int) -> bytes | None:
    """Up to ``size`` bytes that have arrived on a plain socket, left in it; ``None`` if none yet.

    Never waits: a handshake has nearly always arrived by the time its
    connection is served, and gevent's ``recv()`` would enter its timeout's
    machinery first all the same.
    """
    try:
        return sock._sock.recv(size, socket.MSG_PEEK)
    except BlockingIOError:
        return None


def wait_readable(sock: PlainSocket) -> None:
    """Wait, within the socket's timeout, until something (or the end) arrives on a plain socket."""
    sock._wait(sock._read_event)  # gevent's own wait, on the socket's own watcher


def discard(sock: PlainSocket, size: int) -> None:
    """Read and drop ``size`` bytes that have arrived (peeked before); ``EOFError`` if they end."""
    while size > 0:
        data = receive(sock, size, wait_first=False)  # they are there: no wait
        if not data:
            raise EOFError(f"the connection ended {size} bytes short")
        size -= len(data)


def receive(sock: Any, size: int, wait_first: bool) -> bytes:
    """Up to ``size`` bytes from ``sock``, waiting (within its timeout) until some have come.

    gevent's ``recv()`` first tries the socket and, when nothing has come
    (the usual case between messages), waits and tries again: a failed
    syscall and an exception per message, about a fifth of a small echo's
    cost (bench/README.md). With ``wait_first`` (the caller's last receive
    drained the socket) it waits on the socket's own watcher first, then
    receives from the kernel's socket beneath gevent's; where data is
    already waiting, a wait would cost a pass of the event loop, so the
    caller asks for one only after a receive that took all there was. TLS
    goes through ``recv()``: the TLS layer may hold decrypted bytes while
    the socket has none.
    """
    if type(sock) is PlainSocket:  # not gevent's SSLSocket, a subclass
        if wait_first:
            wait_readable(sock)
        try:
            return sock._sock.recv(size)
        except BlockingIOError:
            pass  # nothing after all: recv() waits
    return sock.recv(size)


def has_input(sock: Any) -> bool:
    """Whether bytes have arrived on ``sock`` that nobody has read yet; never waits.

    A reader waiting for the socket (``receive``) may not have been
    told yet of what has already arrived.
    """
    pending = getattr(sock, "pending", None)
    if pending is not None and pending():  # TLS: decrypted, not yet read
        return True
    try:
        return bool(peek(sock, 1))
    except OSError:  # reset: nothing to read
        return False


def peer_text(address: Any, sock: Any) -> str:
    """Who connected, for a log line or ``hello``: ``host:port`` (``[host]:port`` for IPv6).

    A peer over a Unix socket (gunicorn's ``--bind unix:PATH``) has no name:
    ``unix:PATH`` says which socket it came through.
    """
    if not isinstance(address, tuple):
        return f"unix:{sock.getsockname()}"
    host, port, *_ = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
