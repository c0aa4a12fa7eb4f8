"""Every response names the instance and worker that served it: ``X-Served-By``."""

from __future__ import annotations

import pytest
from websockets.sync.client import connect

from .rawws import handshake_request, http_exchange
from .servers import TIMEOUT

REQUESTS = {
    "console": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "healthz": b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "404": b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "405": b"DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "plain HTTP at /ws": b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "malformed head": b"GET /ws HTTP/1.1\r\nHost x\r\n\r\n",
    "refused handshake": None,
    "origin refused": None,
}


@pytest.fixture(scope="module")
def named_server(gunicorn_server):
    return gunicorn_server(ECHO_INSTANCE="edge-7", ECHO_ALLOWED_ORIGINS="https://ok.example")


@pytest.mark.parametrize("kind", REQUESTS)
def test_every_response_names_instance_and_worker(named_server, kind):
    port = named_server.port
    request = REQUESTS[kind] or handshake_request(
        port,
        Sec_WebSocket_Version="8" if kind == "refused handshake" else "13",
        Origin="https://evil.example" if kind == "origin refused" else None,
    )
    status, headers, _ = http_exchange(port, request)
    assert status >= 200
    assert headers["x-served-by"] == f"edge-7/{named_server.worker_pid()}"


def test_the_101_names_them_too(named_server):
    with connect(named_server.ws_url, open_timeout=TIMEOUT) as ws:
        assert ws.response.headers["X-Served-By"] == f"edge-7/{named_server.worker_pid()}"
