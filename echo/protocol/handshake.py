"""The opening handshake of RFC 6455 section 4.2, as checks on a WSGI environ.

Every rejection carries an HTTP status and a one-line reason for the client,
so a bad handshake is answered with a 4xx that says what was wrong.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

from .errors import HandshakeRejected, Headers
from .excerpt import excerpt

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "13"
# Items read of Connection and Upgrade; a handshake listing more is refused. Browsers
# send one or two ("keep-alive, Upgrade"); a proxy may add the hop-by-hop names it drops.
MAX_LISTED = 32


def is_requested(environ: Mapping[str, Any]) -> bool:
    """Whether the client asks to switch to WebSocket (valid or not).

    Any ``Upgrade`` naming websocket asks: ``check`` says what is wrong
    with it, where the application would answer as to plain HTTP.
    """
    return "websocket" in environ.get("HTTP_UPGRADE", "").lower()


def check(environ: Mapping[str, Any]) -> None:
    """Raise ``HandshakeRejected`` unless the request is a valid version-13 handshake."""
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
    if not _lists(environ.get("HTTP_CONNECTION", ""), "Connection", "upgrade"):
        raise HandshakeRejected(
            "400 Bad Request", "the Connection header must include Upgrade", "connection"
        )
    if not _lists(environ.get("HTTP_UPGRADE", ""), "Upgrade", "websocket"):
        raise HandshakeRejected(
            "400 Bad Request", "the Upgrade header must list websocket", "upgrade"
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


def _lists(value: str, header: str, token: str) -> bool:
    """Whether ``value``, the comma-separated ``header``, lists ``token`` (in lower case).

    At most ``MAX_LISTED`` items are split off and stripped, by C loops
    whatever their length: splitting 15,000 items cost 0.44 ms, twice a
    plain handshake (docs/hostile-input.md). The usual value, the token
    alone, is settled without splitting.
    """
    value = value.lower()
    if value == token:
        return True
    items = value.split(",", MAX_LISTED)
    if len(items) > MAX_LISTED:
        raise HandshakeRejected(
            "400 Bad Request",
            f"{header} lists more than {MAX_LISTED} items ({value.count(',') + 1:,})",
            header.lower(),
        )
    return token in map(str.strip, items)


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
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


def switching_protocols(environ: Mapping[str, Any], negotiated: Headers) -> bytes:
    """The 101 response to a handshake that passed ``check``, with the ``negotiated`` headers.

    Written out whole: pywsgi's response path (header validation, a Date)
    cost about 40 us, for a response whose every header is known here.
    """
    response = (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(environ['HTTP_SEC_WEBSOCKET_KEY'])}\r\n"
    )
    for name, value in negotiated:
        response += f"{name}: {value}\r\n"
    return (response + "\r\n").encode("latin-1")
