"""Reading a WebSocket connection's socket without a standing buffer.

pywsgi reads the HTTP request through a ``BufferedReader`` whose 8 KiB buffer
lives as long as the connection: a third of what an idle WebSocket costs
(bench/README.md). After the upgrade the connection reads through
``SocketStream`` instead, which keeps read-ahead bytes only until they are used.
"""

from __future__ import annotations

import socket
from typing import BinaryIO

# How much one receive may read ahead of what the caller asked for.
READ_AHEAD = 64 * 1024


class SocketStream:
    """``read`` and ``read1`` over a socket, as ``MessageReader`` needs them."""

    __slots__ = ("_buffer", "_position", "_recv")

    def __init__(self, sock: socket.socket, pending: bytes = b"") -> None:
        self._recv = sock.recv
        self._buffer = pending  # read ahead, not yet handed out
        self._position = 0

    @classmethod
    def take_over(cls, sock: socket.socket, rfile: BinaryIO) -> SocketStream:
        """A stream continuing where ``rfile`` (pywsgi's reader) stopped, which is closed.

        Frames that arrived with the handshake are already in ``rfile``'s
        buffer: they are moved over without waiting for more.
        """
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        chunks = []
        try:
            while chunk := rfile.read1(READ_AHEAD):
                chunks.append(chunk)
        except OSError:
            # Nothing more has arrived (TLS says so with SSLWantReadError), or
            # the client is already gone, which the next read will report.
            pass
        finally:
            sock.settimeout(timeout)
        pending = b"".join(chunks)
        rfile.close()  # frees its buffer; the socket stays open
        return cls(sock, pending)

    def read1(self, size: int) -> bytes:
        """Up to ``size`` bytes: what is read ahead, else one receive; ``b""`` at EOF."""
        if size <= 0:
            return b""
        buffer, position = self._buffer, self._position
        if position < len(buffer):
            end = position + size
            if end >= len(buffer):
                self._buffer, self._position = b"", 0
                return buffer[position:] if position else buffer
            self._position = end
            return buffer[position:end]
        data = self._recv(max(size, READ_AHEAD))
        if len(data) > size:
            self._buffer, self._position = data, size
            return data[:size]
        return data

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, fewer only at EOF."""
        position = self._position
        end = position + size
        if end < len(self._buffer):  # the common case for headers: already here
            self._position = end
            return self._buffer[position:end]
        data = self.read1(size)
        if len(data) == size or not data:
            return data
        parts = [data]
        missing = size - len(data)
        while missing and (data := self.read1(missing)):
            parts.append(data)
            missing -= len(data)
        return b"".join(parts)
