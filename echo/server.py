"""gevent's WSGI server, running each WebSocket session after its handshake is served.

pywsgi keeps a request's objects (the handler, the WSGI environ, the parsed
headers, Flask's request) until its handler returns. A WebSocket session can
last for days, so ``EchoHandler`` returns after the upgrade, handing back the
session, and the server runs it in the same greenlet with none of them alive:
an idle connection then costs about 4 KiB less (bench/README.md).
"""

from __future__ import annotations

from typing import Any

from gevent.pywsgi import WSGIServer


class EchoServer(WSGIServer):
    """Use with ``EchoHandler`` (or a subclass): gunicorn's worker and ``python app.py`` do."""

    def handle(self, sock: Any, address: Any) -> None:
        session = self.handler_class(sock, address, self).handle()
        if session is not None:
            session()
