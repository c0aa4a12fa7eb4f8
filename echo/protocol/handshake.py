"""The opening handshake of RFC 6455 section 4.2, as checks on a WSGI environ.

Every rejection carries an HTTP status and a one-line reason for the client,
so a bad handshake is answered with a 4xx that says what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

from .errors import HandshakeRejected, Headers
from .excerpt import excerpt
from .request_head import header_tokens

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "13"


def is_requested(environ: Mapping[str, Any]) -> bool:
    """Whether the client asks to switch to WebSocket (valid or not)."""
    return "websocket" in header_tokens(environ.get("HTTP_UPGRADE", ""))


def check(environ: Mapping[str, Any], connection: set[str] | None = None) -> None:
    """Raise ``HandshakeRejected`` unless the request is a valid version-13 handshake.

    ``connection``: the Connection header's tokens where the head's parser
    has them already; a hostile header of 15,000 tokens costs about 0.4 ms
    to split again (docs/hostile-input.md).
    """
    if environ.get("REQUEST_METHOD") != "GET":
        raise HandshakeRejected(
            "405 Method Not Allowed",
            "a WebSocket handshake must use GET",
            "method",
            [("Allow", "GET")],
        )
    if (environ.get("CONTENT_LENGTH") or "0").strip() != "0" or "HTTP_TRANSFER_ENCODING" in environ:
        # What follows the request is WebSocket frames; a body would be read as frames.
        raise HandshakeRejected("400 Bad Request", "a WebSocket handshake has no body", "body")
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1":
        raise HandshakeRejected(
            "400 Bad Request", "a WebSocket handshake must use HTTP/1.1", "http_version"
        )
    if connection is None:
        connection = header_tokens(environ.get("HTTP_CONNECTION", ""))
    if "upgrade" not in connection:
        raise HandshakeRejected(
            "400 Bad Request", "the Connection header must include Upgrade", "connection"
        )
    version = environ.get("HTTP_SEC_WEBSOCKET_VERSION")
    if version is None or version.strip() != VERSION:
        problem = "missing" if version is None else f"unsupported ({excerpt(repr(version))})"
        raise HandshakeRejected(
            "400 Bad Request",
            f"Sec-WebSocket-Version is {problem}; this server speaks version {VERSION}",
            "version",
            [("Sec-WebSocket-Version", VERSION)],
        )
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY")
    if key is None:
        raise HandshakeRejected("400 Bad Request", "Sec-WebSocket-Key is missing", "key")
    if not _is_valid_key(key):
        raise HandshakeRejected(
            "400 Bad Request", "Sec-WebSocket-Key must be 16 bytes encoded in base64", "key"
        )


def _is_valid_key(key: str) -> bool:
    try:
        # strict: only the base64 alphabet, padding only at the end (base64's validate=True
        # says the same through a regular expression, at several times the cost).
        return len(binascii.a2b_base64(key.strip(), strict_mode=True)) == 16
    except (binascii.Error, ValueError):
        return False


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value that proves the server read ``key``."""
    digest = hashlib.sha1((key.strip() + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def switching_protocols(environ: Mapping[str, Any], negotiated: Headers) -> bytes:
    """The 101 response to a handshake that passed ``check``, with the ``negotiated`` headers.

    Written out whole: pywsgi's response path (header validation, a Date)
    cost about 40 us, for a response whose every header is known here.
    """
    accept = accept_key(environ["HTTP_SEC_WEBSOCKET_KEY"])
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept}",
        *(f"{name}: {value}" for name, value in negotiated),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
