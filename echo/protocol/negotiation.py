"""What the server agrees to in a handshake: a subprotocol and permessage-deflate.

The two headers are parsed here, with bounds: a handshake may offer at most
MAX_SUBPROTOCOLS subprotocols and MAX_EXTENSIONS extensions of at most
MAX_PARAMETERS parameters each. The items are counted before any is parsed,
and every step is a string method or a linear regular expression, so a
header of 60 KB costs about what one token of 60 KB costs: a handshake
offering 15,000 items, once 100 times the CPU of a plain one, is refused
at once with 400 (docs/hostile-input.md has the figures). The limits are far above what
clients send: browsers offer one extension with one parameter and the
subprotocols a page asks for; WAMP, MQTT, STOMP and GraphQL clients offer
two to six subprotocols; Autobahn's compression cases offer at most four
extensions, each with at most four parameters.

RFC 7692's parameter rules are applied by python ``websockets``'
``ServerPerMessageDeflateFactory``: each offer in the client's order,
invalid or duplicate parameters declining that offer. Only the outcome's
four parameters are kept; the factory's extension object is dropped.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from websockets.exceptions import NegotiationError
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.headers import build_extension

from . import deflate
from .errors import HandshakeRejected, Headers
from .excerpt import excerpt

MAX_SUBPROTOCOLS = 32
MAX_EXTENSIONS = 16
MAX_PARAMETERS = 8  # per extension; permessage-deflate defines four

_DEFLATE = ServerPerMessageDeflateFactory(
    server_max_window_bits=deflate.SERVER_MAX_WINDOW_BITS,
    client_max_window_bits=deflate.CLIENT_MAX_WINDOW_BITS,
    compress_settings={"memLevel": deflate.MEM_LEVEL},
)
# The characters of a token (RFC 9110 section 5.6.2).
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ESCAPE = re.compile(r"\\(.)")
_OWS = " \t"

#: An extension offer: its name and its parameters, each with its value or ``None``.
Extension = tuple[str, list[tuple[str, str | None]]]


@dataclass(frozen=True, slots=True)
class Agreement:
    """The subprotocol selected and the compression accepted, if any."""

    subprotocol: str | None = None
    deflate: deflate.Parameters | None = None
    extensions: str | None = None  # the Sec-WebSocket-Extensions response

    def response_headers(self) -> Headers:
        """What the 101 says of it."""
        headers = []
        if self.subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", self.subprotocol))
        if self.extensions is not None:
            headers.append(("Sec-WebSocket-Extensions", self.extensions))
        return headers


NOTHING = Agreement()


def negotiate(
    environ: Mapping[str, Any], subprotocols: tuple[str, ...] | None, compression: bool
) -> Agreement:
    """Select a subprotocol and accept compression; ``HandshakeRejected`` if it cannot be done.

    ``subprotocols`` are those the server speaks (``None``: any, ``()``:
    none); ``compression`` whether permessage-deflate may be accepted.
    Repeated header lines arrive joined with commas, which their list grammar allows.
    """
    protocols = environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL")
    extensions = environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS")
    if protocols is None and extensions is None:
        return NOTHING
    subprotocol = None if protocols is None else select_subprotocol(protocols, subprotocols)
    if extensions is None or not compression:
        return Agreement(subprotocol)
    params, response = accept_deflate(parse_extensions(extensions))
    return Agreement(subprotocol, params, response)


def select_subprotocol(header: str, supported: tuple[str, ...] | None) -> str | None:
    """The first subprotocol offered that is ``supported`` (any, with ``None``)."""
    offered = parse_subprotocols(header)
    if supported is None:
        return sys.intern(offered[0])
    if not supported:
        return None
    for subprotocol in offered:
        if subprotocol in supported:
            return sys.intern(subprotocol)
    raise HandshakeRejected(
        "400 Bad Request",
        f"none of the subprotocols offered ({excerpt(', '.join(offered))}) is supported;"
        f" this server speaks {', '.join(supported)}",
        "subprotocol",
    )


def parse_subprotocols(header: str) -> list[str]:
    """``Sec-WebSocket-Protocol``: one or more tokens, comma-separated."""
    _bound(header.count(",") + 1, MAX_SUBPROTOCOLS, "Sec-WebSocket-Protocol", "subprotocols")
    offered = [item.strip(_OWS) for item in header.split(",")]
    offered = [item for item in offered if item]  # empty list elements are allowed
    if not offered:
        _malformed("Sec-WebSocket-Protocol", "no subprotocol", header, "subprotocol")
    for item in offered:
        _token(item, "Sec-WebSocket-Protocol", "subprotocol")
    return offered


def parse_extensions(header: str) -> list[Extension]:
    """``Sec-WebSocket-Extensions`` (RFC 6455 section 9.1): offers and their parameters.

    A quoted value must be a token once unquoted, so no separator can be
    quoted: the header splits on commas and semicolons as it stands.
    """
    name = "Sec-WebSocket-Extensions"
    _bound(header.count(",") + 1, MAX_EXTENSIONS, name, "extensions")
    offers: list[Extension] = []
    for offer in header.split(","):
        parts = offer.split(";")
        _bound(len(parts) - 1, MAX_PARAMETERS, name, "parameters in one extension")
        extension = parts[0].strip(_OWS)
        if not extension and len(parts) == 1:
            continue  # an empty list element
        _token(extension, name, "extensions")
        params = []
        for part in parts[1:]:
            param, equals, value = part.partition("=")
            param = _token(param.strip(_OWS), name, "extensions")
            if not equals:
                params.append((param, None))
                continue
            value = value.strip(_OWS)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = _ESCAPE.sub(r"\1", value[1:-1])
            params.append((param, _token(value, name, "extensions")))
        offers.append((extension, params))
    if not offers:
        _malformed(name, "no extension", header, "extensions")
    return offers


def accept_deflate(offers: list[Extension]) -> tuple[deflate.Parameters | None, str | None]:
    """The first acceptable permessage-deflate offer: its parameters and the response header.

    Other extensions are ignored; if no offer is acceptable, none is accepted.
    """
    for name, params in offers:
        if name != _DEFLATE.name:
            continue
        try:
            response, extension = _DEFLATE.process_request_params(params, [])
        except NegotiationError:
            continue  # declined: try the client's next offer
        agreed = deflate.Parameters(
            client_no_context_takeover=extension.remote_no_context_takeover,
            server_no_context_takeover=extension.local_no_context_takeover,
            client_max_window_bits=extension.remote_max_window_bits,
            server_max_window_bits=extension.local_max_window_bits,
        )
        return agreed, sys.intern(build_extension([(name, response)]))
    return None, None


def _bound(count: int, limit: int, header: str, what: str) -> None:
    if count > limit:
        slug = "subprotocol" if header == "Sec-WebSocket-Protocol" else "extensions"
        raise HandshakeRejected(
            "400 Bad Request", f"{header} lists more than {limit} {what} ({count:,})", slug
        )


def _token(text: str, header: str, slug: str) -> str:
    """``text`` if it is a token, else the handshake's refusal.

    Checked by deleting the token characters in C, which leaves nothing of
    a token: a 60 KB token took 110 us through a regular expression, 23 us
    so (docs/hostile-input.md).
    """
    if not text or not text.isascii() or text.encode("ascii").translate(None, _TOKEN_CHARS):
        _malformed(header, "not a token", text, slug)
    return text


def _malformed(header: str, problem: str, text: str, slug: str) -> NoReturn:
    raise HandshakeRejected(
        "400 Bad Request", f"malformed {header}: {problem}: {excerpt(repr(text))}", slug
    )
