"""``/ws?hello``: the first message describes the handshake as the server saw it.

What a client, a proxy or a load balancer changed is then in plain sight:
the headers in the order they arrived (names as written, repeats kept), the
address that connected and the client address the server trusts, TLS, what
was negotiated and which instance and worker answered. Credentials are
never shown back: the values of ``Authorization``, ``Proxy-Authorization``,
``Cookie`` and the headers of ``ECHO_HIDDEN_HEADERS`` are replaced by their
length (a proxy may add its own, meant for the server only).
"""

from __future__ import annotations

import json
from typing import Any

from ..server.endpoints import HandshakeRequest

ALWAYS_HIDDEN = frozenset({"authorization", "proxy-authorization", "cookie"})


def describe(
    request: HandshakeRequest,
    modes: dict[str, str],
    ignored: list[str],
    hidden: tuple[str, ...] = (),
) -> str:
    """The description, as the JSON text of the first message."""
    hide = ALWAYS_HIDDEN.union(hidden)
    settings = request.settings
    tls = request.tls
    description: dict[str, Any] = {
        "request_line": request.request_line,
        "headers": [
            [name, _hidden(value) if name.lower() in hide else value]
            for name, value in request.headers
        ],
        "peer": request.peer,
        "client": request.environ.get("REMOTE_ADDR"),
        "tls": {"version": tls[0], "cipher": tls[1]} if tls else None,
        "subprotocol": request.subprotocol,
        "extensions": request.extensions,
        "served_by": settings.served_by,
        "test_modes": modes,
        "ignored_parameters": ignored,
        "settings": {
            "ping_interval": settings.ping_interval,
            "ping_timeout": settings.ping_timeout,
            "max_message_size": settings.max_message_size,
            "compression": settings.compression,
        },
    }
    return json.dumps(description, ensure_ascii=False)


def _hidden(value: str) -> str:
    return f"({len(value)} characters hidden)"
