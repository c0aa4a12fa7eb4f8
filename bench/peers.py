"""The peers ``make bench`` compares against, run as ``PORT=N python -m bench.peers KIND``.

- ``websockets``: python websockets' asyncio echo server, the reference Python
  implementation, on the standard asyncio loop, with compression off like ours
  and no limit on a message's fragments (ours has none below its size limit;
  websockets' default of 4096 fails Autobahn 9.3.1-9.4.2 early, which would
  make its 9.x time look shorter than a full run).
- ``websockets-deflate``: the same with websockets' default compression
  (permessage-deflate, 12-bit windows, memLevel 5), for RSS per compressed
  connection.
- ``aiohttp``: aiohttp's WebSocketResponse on uvloop, compression off, no size
  limit.
- ``picows``: picows (Cython) on uvloop, echoing frame by frame, which keeps a
  fragmented message's shape; frames up to 32 MiB.
- ``uvicorn``: an ASGI echo on uvicorn's defaults (its WebSocket and HTTP
  implementations as installed), compression off, 32 MiB messages.
- ``gevent``: the floor under this server: a bare gevent ``StreamServer``
  that upgrades any request and echoes with ``echo.protocol.reader`` and the same
  socket calls (``echo.server.sockets``), without pywsgi, Flask, gunicorn, logs,
  metrics, limits or keepalive. ``gevent N`` runs it in N processes sharing
  one listening socket, as gunicorn's workers share theirs (``bench/pinned.py``).
- ``tcp``: a raw TCP echo on uvloop, the ceiling for any WebSocket server.
"""

from __future__ import annotations

import asyncio
import os
import signal
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


async def aiohttp_echo(port: int) -> None:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, compress=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


async def picows_echo(port: int) -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport, frame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type not in (WSMsgType.PING, WSMsgType.PONG):
                transport.send(frame.msg_type, frame.get_payload_as_bytes(), frame.fin)

    server = await ws_create_server(
        lambda request: Echo(), "127.0.0.1", port, max_frame_size=32 << 20, backlog=4096
    )
    await server.serve_forever()


async def asgi_echo(scope: dict, receive, send) -> None:
    """The ASGI app for uvicorn: echo on any WebSocket path."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send(
            {
                "type": "websocket.send",
                **{k: message[k] for k in ("text", "bytes") if message.get(k) is not None},
            }
        )


def uvicorn_echo(port: int) -> None:
    import uvicorn

    uvicorn.run(
        asgi_echo,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        ws_max_size=32 << 20,
        ws_per_message_deflate=False,
        backlog=4096,
        log_level="warning",
    )


def gevent_floor(port: int, processes: int = 1) -> None:
    import socket

    import gevent
    from gevent import socket as gevent_socket
    from gevent.server import StreamServer

    from echo.protocol import frames, handshake
    from echo.protocol.reader import Close, Message, MessageReader, Ping
    from echo.server.sockets import receive, send_all

    def handle(sock, address) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            if not (chunk := sock.recv(4096)):
                return
            request += chunk
        head, _, rest = request.partition(b"\r\n\r\n")
        key = head.split(b"Sec-WebSocket-Key: ", 1)[1].split(b"\r\n", 1)[0].decode()
        send_all(
            sock,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + handshake.accept_key(key).encode() + b"\r\n\r\n",
        )
        reader = MessageReader(lambda size, idle: receive(sock, size, idle), 32 << 20, rest)
        while True:
            event = reader.read_event()
            if isinstance(event, Message):
                payload = event.data.encode() if isinstance(event.data, str) else event.data
                opcode = frames.OP_TEXT if isinstance(event.data, str) else frames.OP_BINARY
                send_all(sock, frames.encode_header(opcode, len(payload)) + payload)
            elif isinstance(event, Ping):
                pong = frames.encode_header(frames.OP_PONG, len(event.payload)) + event.payload
                send_all(sock, pong)
            elif isinstance(event, Close):
                send_all(sock, frames.encode_header(frames.OP_CLOSE, 2) + b"\x03\xe8")
                return

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    children = []
    for _ in range(processes - 1):  # forked before gevent's loop exists, as gunicorn forks
        child = os.fork()
        if child == 0:
            children = []
            break
        children.append(child)

    # gevent's own socket, made after the fork: a plain one would block the loop in accept().
    server = StreamServer(gevent_socket.socket(fileno=listener.detach()), handle)
    if children:  # SIGTERM to the first process stops them all (else it just ends it)

        def stop() -> None:
            for child in children:
                os.kill(child, signal.SIGTERM)
            server.stop()

        gevent.signal_handler(signal.SIGTERM, stop)
    server.serve_forever()


def main() -> None:
    kind, port = sys.argv[1], int(os.environ["PORT"])
    if kind.startswith("websockets"):
        os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 30))  # read at import
        asyncio.run(websockets_echo(port, "deflate" if kind == "websockets-deflate" else None))
    elif kind == "uvicorn":
        uvicorn_echo(port)
    elif kind == "gevent":
        gevent_floor(port, int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    else:
        import uvloop

        uvloop.run({"aiohttp": aiohttp_echo, "picows": picows_echo, "tcp": tcp_echo}[kind](port))


if __name__ == "__main__":
    main()
