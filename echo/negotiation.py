"""What the server agrees to in a handshake: a subprotocol and permessage-deflate.

Both headers are parsed by python ``websockets`` (already a dependency, and
well tested against the grammars of RFC 6455 and RFC 7692), and its
``ServerPerMessageDeflateFactory`` applies RFC 7692's parameter rules: each
offer in the client's order, invalid or duplicate parameters declining that
offer. Only the outcome's four parameters are kept; the factory's extension
object works on ``websockets``' own frames and is dropped. That costs about
10 us per handshake that offers compression, and nothing for one that does not.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import InvalidHeaderFormat, NegotiationError
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.headers import build_extension, parse_extension, parse_subprotocol

from . import deflate
from .config import Settings
from .handshake import HandshakeRejected, Headers

_DEFLATE = ServerPerMessageDeflateFactory(
    server_max_window_bits=deflate.SERVER_MAX_WINDOW_BITS,
    client_max_window_bits=deflate.CLIENT_MAX_WINDOW_BITS,
    compress_settings={"memLevel": deflate.MEM_LEVEL},
)


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


def negotiate(environ: Mapping[str, Any], settings: Settings) -> Agreement:
    """Select a subprotocol and accept compression; ``HandshakeRejected`` if it cannot be done.

    Repeated header lines arrive joined with commas, which their list grammar allows.
    """
    protocols = environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL")
    extensions = environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS") if settings.compression else None
    if protocols is None and extensions is None:
        return NOTHING
    subprotocol = None if protocols is None else select_subprotocol(protocols, settings)
    params, response = (None, None) if extensions is None else accept_deflate(extensions)
    return Agreement(subprotocol, params, response)


def select_subprotocol(header: str, settings: Settings) -> str | None:
    """The first subprotocol offered that the settings allow (any, with ``*``)."""
    offered = _parse(parse_subprotocol, header, "subprotocol")
    supported = settings.subprotocols
    if supported is None:
        return sys.intern(offered[0])
    if not supported:
        return None
    for subprotocol in offered:
        if subprotocol in supported:
            return sys.intern(subprotocol)
    raise HandshakeRejected(
        "400 Bad Request",
        f"none of the subprotocols offered ({', '.join(offered)}) is supported;"
        f" this server speaks {', '.join(supported)}",
        "subprotocol",
    )


def accept_deflate(header: str) -> tuple[deflate.Parameters | None, str | None]:
    """The first acceptable permessage-deflate offer: its parameters and the response header.

    Other extensions are ignored; if no offer is acceptable, none is accepted.
    """
    for name, params in _parse(parse_extension, header, "extensions"):
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


def _parse(parse: Any, header: str, slug: str) -> list:
    try:
        return parse(header.strip())
    except InvalidHeaderFormat as exc:  # "invalid NAME header: expected token at 4 in ..."
        raise HandshakeRejected("400 Bad Request", str(exc), slug) from None
