"""A refusal's reason and log line quote at most a short excerpt of what the client sent."""

from __future__ import annotations

import pytest

from .rawws import handshake_request, http_exchange

LONG = 60_000


@pytest.mark.parametrize(
    ("headers", "path", "quoted"),
    [
        ({"Sec_WebSocket_Protocol": "p" * LONG + " x"}, "/ws", "malformed Sec-WebSocket-Protocol"),
        ({"Sec_WebSocket_Version": "9" * LONG}, "/ws", "Sec-WebSocket-Version is unsupported"),
        ({"Origin": "https://" + "o" * LONG}, "/ws", "Origin https://ooo"),
        ({}, "/" + "n" * 8000, "No WebSocket endpoint at /nnn"),
    ],
    ids=["malformed-subprotocol", "version", "origin", "path"],
)
def test_refusal_quotes_an_excerpt_of_what_was_sent(gunicorn_server, headers, path, quoted):
    server = gunicorn_server(ECHO_ALLOWED_ORIGINS="https://ok.example")
    request = handshake_request(server.port, path, **headers)
    status, _, body = http_exchange(server.port, request)
    assert status in (400, 403, 404)
    assert quoted in body.decode()
    assert len(body) < 300 and " characters)" in body.decode(), body[:400]
    # The INFO line says the same, as short; the client's marker is not in it,
    # so the reason is found by its words.
    (line,) = [
        line
        for line in server.log().splitlines()
        if "[INFO] handshake from " in line and quoted in line
    ][-1:]
    assert len(line) < 400, line[:500]


def test_unsupported_offers_are_quoted_short_too(gunicorn_server):
    server = gunicorn_server(ECHO_SUBPROTOCOLS="graphql-ws,mqtt")
    offered = ",".join(f"{n}{'p' * 1800}" for n in range(32))  # 32 offers, 58 KB
    status, body = http_exchange(
        server.port, handshake_request(server.port, Sec_WebSocket_Protocol=offered)
    )[::2]
    assert status == 400
    assert body.startswith(b"none of the subprotocols offered (0ppp")
    assert body.endswith(b" characters)) is supported; this server speaks graphql-ws, mqtt\n")
    assert len(body) < 300
