"""A WebSocket exchange driven from one thread, for the tests that speak TLS.

websockets' sync client reads in a thread of its own while the caller's
thread writes, both on one ``ssl.SSLSocket``: OpenSSL's objects are not
made for that, and under TLS 1.3, whose session tickets arrive just after the
handshake, the request was lost about once in 330 connections (3 of 1,000
handshakes timed out, the server never saw their request; websockets'
asyncio client: 0 of 3,000). CPython gh-137583 discusses that use. Its
asyncio client reads and writes from one thread.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from websockets.asyncio.client import connect

from .servers import TIMEOUT

Message = str | bytes


@dataclass
class Exchange:
    """What came back, and the TLS version and cipher agreed (``None`` without TLS)."""

    received: list[Message]
    tls: tuple[str, str] | None


def exchange(
    url: str, context: ssl.SSLContext | None, sent: Sequence[Message] = (), unsolicited: int = 0
) -> Exchange:
    """Connect, receive ``unsolicited`` messages, then send each of ``sent`` and receive once."""
    return asyncio.run(_exchange(url, context, sent, unsolicited))


async def _exchange(
    url: str, context: ssl.SSLContext | None, sent: Sequence[Message], unsolicited: int
) -> Exchange:
    async with connect(url, ssl=context, open_timeout=TIMEOUT) as ws:
        received = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(unsolicited)]
        for message in sent:
            await ws.send(message)
            received.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
        tls = ws.transport.get_extra_info("ssl_object")
        return Exchange(received, (tls.version(), tls.cipher()[0]) if tls else None)
