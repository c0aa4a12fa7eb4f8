"""Handshake negotiation against a real server: subprotocols and permessage-deflate offers."""

from __future__ import annotations

import socket
import uuid

import pytest
from websockets.sync.client import connect

from .rawws import OP_CLOSE, OP_TEXT, RawClient, handshake_request, http_exchange
from .servers import TIMEOUT


def selected(server, **headers: str) -> dict[str, str]:
    """The 101's headers for a handshake with ``headers``."""
    with RawClient(server.port, **headers) as client:
        client.send(OP_CLOSE, b"\x03\xe8")
        client.recv_close()
        return client.headers


def rejected(server, **headers: str) -> tuple[int, str]:
    status, _, body = http_exchange(server.port, handshake_request(server.port, **headers))
    return status, body.decode()


@pytest.mark.parametrize(
    ("offer", "chosen"),
    [("mqtt", "mqtt"), ("v2.chat.example, chat", "v2.chat.example"), ("a,,b", "a")],
)
def test_any_subprotocol_offered_first_is_selected_by_default(server, offer, chosen):
    assert selected(server, Sec_WebSocket_Protocol=offer)["sec-websocket-protocol"] == chosen


def test_no_offer_no_subprotocol(server):
    assert "sec-websocket-protocol" not in selected(server)


def test_selected_subprotocol_reaches_the_client_and_the_access_log(server):
    agent = f"test-{uuid.uuid4()}"
    with connect(
        server.ws_url, subprotocols=["graphql-transport-ws", "mqtt"], user_agent_header=agent
    ) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        ws.send("hello")
        assert ws.recv() == "hello"
    assert " subprotocol=graphql-transport-ws " in server.log_line(agent)


def test_a_60_kb_subprotocol_is_agreed_but_logged_as_its_first_100_characters(server):
    """The client sees its token; the access line does not grow with it."""
    agent = f"test-{uuid.uuid4()}"
    token = "p" * 60_000
    with RawClient(server.port, User_Agent=agent, Sec_WebSocket_Protocol=token) as client:
        assert client.headers["sec-websocket-protocol"] == token
    line = server.log_line(agent)
    assert f" subprotocol={'p' * 100}… " in line
    assert len(line) < 1000


@pytest.fixture(scope="module")
def listed(gunicorn_server):
    return gunicorn_server(ECHO_SUBPROTOCOLS="graphql-ws,mqtt")


@pytest.mark.parametrize(
    ("offer", "chosen"), [("wamp.2.json, mqtt, graphql-ws", "mqtt"), ("graphql-ws", "graphql-ws")]
)
def test_listed_subprotocols_select_the_clients_first_supported_offer(listed, offer, chosen):
    assert selected(listed, Sec_WebSocket_Protocol=offer)["sec-websocket-protocol"] == chosen


def test_offer_split_over_header_lines_is_one_list(listed):
    request = handshake_request(listed.port, Sec_WebSocket_Protocol="wamp.2.json").replace(
        b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: x, mqtt\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", listed.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        head = sock.makefile("rb").read1(65536)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nSec-WebSocket-Protocol: mqtt\r\n" in head


def test_only_unsupported_subprotocols_get_400_naming_the_supported(listed):
    status, body = rejected(listed, Sec_WebSocket_Protocol="stomp, wamp.2.json")
    assert status == 400
    assert body == (
        "none of the subprotocols offered (stomp, wamp.2.json) is supported;"
        " this server speaks graphql-ws, mqtt\n"
    )
    assert "sec-websocket-protocol" not in selected(listed)  # no offer: no subprotocol


def test_empty_setting_never_selects_a_subprotocol(gunicorn_server):
    server = gunicorn_server(ECHO_SUBPROTOCOLS="")
    assert "sec-websocket-protocol" not in selected(server, Sec_WebSocket_Protocol="mqtt")


@pytest.mark.parametrize("offer", ["mqtt v5", "mqtt;v=5", "", "(mqtt)", "mqtt/5"])
def test_malformed_subprotocol_header_gets_400_with_a_reason(server, offer):
    status, body = rejected(server, Sec_WebSocket_Protocol=offer)
    assert status == 400
    assert body.startswith("malformed Sec-WebSocket-Protocol: ")


MINE = "permessage-deflate; server_max_window_bits=12"


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        ("permessage-deflate", MINE),
        ("permessage-deflate; client_max_window_bits", f"{MINE}; client_max_window_bits=12"),
        ("permessage-deflate; client_max_window_bits=10", f"{MINE}; client_max_window_bits=10"),
        ("permessage-deflate; client_max_window_bits=15", f"{MINE}; client_max_window_bits=12"),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        ("permessage-deflate; server_max_window_bits=15", MINE),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=12",
        ),
        # Declined offers: the next one is taken, or none.
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_no_context_takeover=yes", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; mystery", None),
        (
            "permessage-deflate; client_max_window_bits=7,"
            " permessage-deflate; server_max_window_bits=8,"
            " permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
        ),
        # Unknown extensions are ignored.
        ("x-webkit-deflate-frame, permessage-deflate", MINE),
        ("x-webkit-deflate-frame; no_context_takeover", None),
    ],
)
def test_permessage_deflate_parameters_are_negotiated(server, offer, response):
    assert selected(server, Sec_WebSocket_Extensions=offer).get("sec-websocket-extensions") == (
        response
    )


def test_malformed_extensions_header_gets_400_with_a_reason(server):
    status, body = rejected(server, Sec_WebSocket_Extensions="permessage-deflate;;")
    assert status == 400
    assert body.startswith("malformed Sec-WebSocket-Extensions: ")


def test_compression_off_declines_every_offer(gunicorn_server):
    server = gunicorn_server(ECHO_COMPRESSION="off")
    headers = selected(server, Sec_WebSocket_Extensions="permessage-deflate")
    assert "sec-websocket-extensions" not in headers
    with RawClient(server.port, Sec_WebSocket_Extensions="permessage-deflate") as client:
        client.send(OP_TEXT, b"x", rsv=4)  # RSV1 means nothing here
        assert client.recv_close()[0] == 1002


def test_autobahn_compression_cases_decline_cleanly_with_compression_off(gunicorn_server, tmp_path):
    from conformance.run import run_kosoku

    server = gunicorn_server(ECHO_COMPRESSION="off")
    cases, _ = run_kosoku(server.ws_url, tmp_path, include=["12.1.1", "13.1.1", "13.7.1"])
    assert {case: result["behaviorClose"] for case, result in cases.items()} == dict.fromkeys(
        ["12.1.1", "13.1.1", "13.7.1"], "OK"
    )
    assert {result["behavior"] for result in cases.values()} == {"UNIMPLEMENTED"}


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        (
            "Sec-WebSocket-Protocol",
            ",".join(["p"] * 15_000),
            "Sec-WebSocket-Protocol lists more than 32 subprotocols (15,000)",
        ),
        (
            "Sec-WebSocket-Extensions",
            ", ".join(["permessage-deflate; x=1"] * 2_500),
            "Sec-WebSocket-Extensions lists more than 16 extensions (2,500)",
        ),
        (
            "Sec-WebSocket-Extensions",
            "permessage-deflate" + "; x=1" * 5_000,
            "Sec-WebSocket-Extensions lists more than 8 parameters in one extension (5,000)",
        ),
    ],
    ids=["subprotocols", "extensions", "parameters"],
)
def test_offers_beyond_the_limits_get_400_in_one_short_line(server, header, value, reason):
    """What once cost 100 plain handshakes' CPU is counted first, and refused (bench/hostile.py)."""
    assert rejected(server, **{header.replace("-", "_"): value}) == (400, f"{reason}\n")


def test_offers_within_the_limits_are_negotiated(server):
    """As many as the limits allow, as no client has been seen to send."""
    offers = ", ".join(["x-unknown; a; b; c; d; e; f; g; h"] * 15 + ["permessage-deflate"])
    headers = selected(
        server,
        Sec_WebSocket_Protocol=",".join(f"p{n}" for n in range(32)),
        Sec_WebSocket_Extensions=offers,
    )
    assert headers["sec-websocket-protocol"] == "p0"
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
