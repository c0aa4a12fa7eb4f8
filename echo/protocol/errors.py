"""The protocol's exceptions, one module so callers know what to catch."""

from __future__ import annotations

Headers = list[tuple[str, str]]


class ProtocolError(Exception):
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


class ConnectionClosed(Exception):
    """The connection is closing or closed: nothing more can be sent."""


class Refusal(Exception):
    """A request answered with an HTTP error: its status line and a one-line reason.

    ``slug`` says why, for metrics; ``headers`` go with the answer.
    """

    def __init__(self, status: str, reason: str, slug: str, headers: Headers | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.slug = slug
        self.headers = headers or []


class BadRequest(Refusal):
    """A request head refused before any application sees it.

    Its slug is ``malformed``, or ``incomplete`` when the client stopped
    sending inside its headers.
    """

    def __init__(self, status: str, reason: str, slug: str = "malformed") -> None:
        super().__init__(status, reason, slug)


class HandshakeRejected(Refusal):
    """A WebSocket handshake refused, never upgraded."""
