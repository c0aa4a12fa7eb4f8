"""wss:// when gunicorn is given certfile and keyfile."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .exchange import exchange


def test_wss_echo(tls_server):
    messages = ["secure ✓", b"\x01\x02" * 70_000]
    echoed = exchange(tls_server.ws_url, tls_server.tls, messages)
    assert echoed.received == messages
    assert echoed.tls is not None


def test_plain_http_to_the_tls_port_gets_400_saying_so(tls_server):
    with pytest.raises(InvalidStatus) as error:
        connect(tls_server.ws_url.replace("wss:", "ws:"), open_timeout=3)
    response = error.value.response
    assert response.status_code == 400
    assert response.body == b"this port speaks TLS: use https:// or wss://\n"
    assert "Traceback" not in tls_server.log()
