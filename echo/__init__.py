"""A WebSocket echo server, in three layers that import one way only.

- ``echo.protocol``: RFC 6455 and 7692 without I/O (frames, the message
  reader, permessage-deflate, negotiation, handshake checks, request heads);
  it imports none of gevent, gevent-websocket, Flask, werkzeug, gunicorn or
  prometheus_client.
- ``echo.server``: the gevent and gunicorn server that drives it, and the
  endpoint API any Flask app can use (``echo.server.flask``); it never
  imports the application.
- ``echo.app``: this application, the echo endpoint and the console.
"""
