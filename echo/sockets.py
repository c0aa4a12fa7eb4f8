"""Writing to a gevent socket without the syscall its ``sendall()`` adds."""

from __future__ import annotations

from typing import Any


def send_all(sock: Any, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data``, waiting (within the socket's timeout) when the buffer is full.

    gevent's ``sendall()`` asks the kernel for the send buffer size on every
    call; one ``send()`` nearly always takes a message or a response whole,
    and only what is left goes through ``sendall()``.
    """
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])
