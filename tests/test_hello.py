"""``/ws?hello``: the first message describes the handshake as the server saw it."""

from __future__ import annotations

import json

from websockets.sync.client import connect

from .exchange import exchange
from .rawws import OP_TEXT, RawClient
from .servers import TIMEOUT


def hello_of(client: RawClient) -> dict:
    opcode, payload = client.recv_message()
    assert opcode == OP_TEXT
    return json.loads(payload)


def test_hello_shows_the_request_as_it_arrived_with_credentials_hidden(server):
    with RawClient(
        server.port,
        "/ws?_=1&hello&cb",
        sec_websocket_protocol="chat, superchat",
        authorization="Bearer very-secret",
        X_lower_Case="kept as written",
        Cookie="session=secret",
        Proxy_Authorization="Basic c2VjcmV0",
        # Two fields of one name stay two entries, in their order.
        X_Repeated="one\r\nX-Repeated: two",
    ) as client:
        hello = hello_of(client)
        client.send(OP_TEXT, b"then the echo")
        assert client.recv_message() == (OP_TEXT, b"then the echo")
        host, port = client.sock.getsockname()
    assert hello["request_line"] == "GET /ws?_=1&hello&cb HTTP/1.1"
    assert hello["headers"][:5] == [
        ["Host", f"127.0.0.1:{server.port}"],
        ["Upgrade", "websocket"],
        ["Connection", "Upgrade"],
        ["Sec-WebSocket-Key", hello["headers"][3][1]],
        ["Sec-WebSocket-Version", "13"],
    ]
    assert hello["headers"][5:] == [
        ["sec-websocket-protocol", "chat, superchat"],
        ["authorization", "(18 characters hidden)"],
        ["X-lower-Case", "kept as written"],
        ["Cookie", "(14 characters hidden)"],
        ["Proxy-Authorization", "(14 characters hidden)"],
        ["X-Repeated", "one"],
        ["X-Repeated", "two"],
    ]
    assert "secret" not in json.dumps(hello)
    assert hello["peer"] == f"{host}:{port}"
    assert hello["client"] == "127.0.0.1"
    assert hello["tls"] is None
    assert hello["subprotocol"] == "chat"
    assert hello["extensions"] is None
    assert hello["served_by"] == client.headers["x-served-by"]
    assert hello["test_modes"] == {}
    assert hello["ignored_parameters"] == ["_", "cb"]
    assert hello["settings"] == {
        "ping_interval": 20.0,
        "ping_timeout": 20.0,
        "max_message_size": 1 << 20,
        "compression": True,
    }


def test_hello_lists_the_test_modes_and_the_negotiated_compression(server):
    with connect(f"{server.ws_url}?hello&delay=5&stream=2&size=3") as ws:
        hello = json.loads(ws.recv(timeout=TIMEOUT))
        assert sorted(ws.recv(timeout=TIMEOUT) for _ in range(2)) == ["1 .", "2 ."]
    assert hello["test_modes"] == {"delay": "5", "stream": "2", "size": "3"}
    assert hello["extensions"].startswith("permessage-deflate")


def test_headers_named_in_the_setting_are_hidden_too(gunicorn_server):
    server = gunicorn_server(ECHO_HIDDEN_HEADERS="X-Api-Key, x-internal-token")
    with RawClient(
        server.port, "/ws?hello", X_API_KEY="12345", X_Internal_Token="abc", X_Shown="yes"
    ) as client:
        headers = dict(map(tuple, hello_of(client)["headers"]))
    assert headers["X-API-KEY"] == "(5 characters hidden)"
    assert headers["X-Internal-Token"] == "(3 characters hidden)"
    assert headers["X-Shown"] == "yes"


def test_hello_over_tls_names_the_version_and_cipher(tls_server):
    said = exchange(f"{tls_server.ws_url}?hello", tls_server.tls, unsolicited=1)
    assert said.tls is not None
    version, cipher = said.tls
    assert json.loads(said.received[0])["tls"] == {"version": version, "cipher": cipher}
    assert version in ("TLSv1.2", "TLSv1.3")


def test_a_parameter_that_is_not_utf8_is_listed_as_ignored(server):
    with RawClient(server.port, "/ws?hello&%ff%fe=1") as client:
        assert hello_of(client)["ignored_parameters"] == ["\ufffd\ufffd"]
