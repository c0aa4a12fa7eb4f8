"""A deliberately bare WebSocket client over a raw socket, for what libraries refuse to send."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import time

from echo.protocol import handshake

from .servers import TIMEOUT

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def handshake_request(
    port: int,
    path: str = "/ws",
    method: str = "GET",
    version: str = "HTTP/1.1",
    **headers: str | None,
) -> bytes:
    """A handshake request; ``header_name=None`` leaves a default header out."""
    fields = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    lines = [f"{method} {path} {version}"]
    lines += [f"{name}: {value}" for name, value in fields.items() if value is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def http_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` and read the response until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response, its head and its body (by its Content-Length); the connection stays open.

    A response without a Content-Length (a 101) has no body here: what
    follows its head is the new protocol's.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    _, found, rest = head.lower().partition(b"\r\ncontent-length: ")
    length = int(rest.split(b"\r\n")[0]) if found else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the body"
        body += chunk
    return head, body[:length]


def mask_bytes(payload: bytes, mask: bytes) -> bytes:
    """Byte-by-byte masking: slow and obviously right, to check the server's."""
    return bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """A client frame; ``length`` claims a length other than the payload's."""
    length = len(payload) if length is None else length
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + mask_bytes(payload, key)


class RawClient:
    """An upgraded connection driven frame by frame."""

    def __init__(
        self, port: int, path: str = "/ws", rcvbuf: int | None = None, **headers: str
    ) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        request = handshake_request(port, path, **headers)
        self.sock.sendall(request)
        self.file = self.sock.makefile("rb")
        status = self.file.readline()
        response = [status]
        while (line := self.file.readline()) not in (b"\r\n", b""):
            response.append(line)
        assert status.startswith(b"HTTP/1.1 101 "), b"".join(response)
        key = request.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0].decode()
        fields = (line.decode().rstrip().split(": ", 1) for line in response[1:])
        self.headers = {name.lower(): value for name, value in fields}
        assert self.headers["sec-websocket-accept"] == handshake.accept_key(key)
        # permessage-deflate lets the server set RSV1 (on a compressed message's first frame).
        negotiated = self.headers.get("sec-websocket-extensions", "")
        self.allowed_rsv = 0x40 if negotiated.startswith("permessage-deflate") else 0

    def send(self, opcode: int, payload: bytes = b"", **options: object) -> None:
        self.sock.sendall(encode_frame(opcode, payload, **options))

    def recv_frame(self, pace: float = 0.0) -> tuple[bool, int, bytes]:
        """The next server frame as ``(fin, opcode, payload)``; server frames are never masked.

        With ``pace``, the payload is read 16 KiB at a time with that many seconds
        between reads: a slow consumer, which keeps the server's send blocked.
        """
        head = self._read(2)
        assert not head[1] & 0x80, "server frames must not be masked"
        assert not head[0] & 0x70 & ~self.allowed_rsv, "reserved bits set without an extension"
        self.rsv1 = bool(head[0] & 0x40)  # of the last frame received
        length = head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        if not pace:
            return bool(head[0] & 0x80), head[0] & 0x0F, self._read(length)
        payload = bytearray()
        while len(payload) < length:
            time.sleep(pace)
            payload += self._read(min(16384, length - len(payload)))
        return bool(head[0] & 0x80), head[0] & 0x0F, bytes(payload)

    def recv_message(self) -> tuple[int, bytes]:
        """The next data frame's ``(opcode, payload)``, answering pings on the way."""
        while True:
            _, opcode, payload = self.recv_frame()
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
            else:
                return opcode, payload

    def recv_close(self) -> tuple[int | None, bytes]:
        """Skip to the server's Close frame; its ``(code, reason)``."""
        while True:
            _, opcode, payload = self.recv_frame()
            if opcode == OP_CLOSE:
                if not payload:
                    return None, b""
                return struct.unpack("!H", payload[:2])[0], payload[2:]

    def assert_eof(self) -> None:
        """The server closed the TCP connection."""
        with contextlib.suppress(ConnectionResetError):
            assert self.file.read() == b""

    def _read(self, size: int) -> bytes:
        data = self.file.read(size)
        assert len(data) == size, "connection closed in the middle of a frame"
        return data

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason
