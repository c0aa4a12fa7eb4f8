"""The peers ``make bench`` compares against, run as ``PORT=N python -m bench.peers KIND``.

- ``websockets``: python websockets' asyncio echo server, the reference Python
  implementation, on the standard asyncio loop, with compression off like ours
  and no limit on a message's fragments (ours has none below its size limit;
  websockets' default of 4096 fails Autobahn 9.3.1-9.4.2 early, which would
  make its 9.x time look shorter than a full run).
- ``websockets-deflate``: the same with websockets' default compression
  (permessage-deflate, 12-bit windows, memLevel 5), for RSS per compressed
  connection.
- ``tcp``: a raw TCP echo on uvloop, the ceiling for any WebSocket server.
"""

from __future__ import annotations

import asyncio
import os
import sys


async def websockets_echo(port: int, compression: str | None) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", port, max_size=None, compression=compression) as server:
        await server.serve_forever()


class TCPEcho(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def tcp_echo(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        TCPEcho, "127.0.0.1", port, backlog=4096
    )
    await server.serve_forever()


def main() -> None:
    kind, port = sys.argv[1], int(os.environ["PORT"])
    if kind.startswith("websockets"):
        os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 30))  # read at import
        asyncio.run(websockets_echo(port, "deflate" if kind == "websockets-deflate" else None))
    else:
        import uvloop

        uvloop.run(tcp_echo(port))


if __name__ == "__main__":
    main()
