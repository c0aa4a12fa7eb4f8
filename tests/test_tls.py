"""wss:// when gunicorn is given certfile and keyfile."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect


def test_wss_echo(tls_server):
    with connect(tls_server.ws_url, ssl=tls_server.tls) as ws:
        assert ws.request.path == "/ws"
        for message in ("secure ✓", b"\x01\x02" * 70_000):
            ws.send(message)
            assert ws.recv() == message


def test_plain_http_to_the_tls_port_gets_400_saying_so(tls_server):
    with pytest.raises(InvalidStatus) as error:
        connect(tls_server.ws_url.replace("wss:", "ws:"), open_timeout=3)
    response = error.value.response
    assert response.status_code == 400
    assert response.body == b"this port speaks TLS: use https:// or wss://\n"
    assert "Traceback" not in tls_server.log()
