"""Exceptions of the server, one module so callers know what to catch."""

from geventwebsocket.exceptions import WebSocketError


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455; the connection is failed with ``code``."""

    code = 1002

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class InvalidUTF8(ProtocolError):
    """Text that is not UTF-8 (close code 1007)."""

    code = 1007


class MessageTooBig(ProtocolError):
    """A message over ``max_message_size`` (close code 1009)."""

    code = 1009


class ConnectionClosed(WebSocketError):
    """The connection is closing or closed: nothing more can be sent."""


class RequestTimeout(Exception):
    """An HTTP request (line and headers) still incomplete ``read_timeout`` after its first byte.

    Not an ``OSError``: pywsgi takes those for a vanished client and answers nothing.
    """


class Evicted(RequestTimeout):
    """Ended to make room: the pool was full and this request had been arriving the longest."""
