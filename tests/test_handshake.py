"""Only /ws upgrades; every bad handshake gets a 4xx with a reason, never a 500."""

from __future__ import annotations

import collections
import socket
import urllib.error
import urllib.request
import uuid
from typing import BinaryIO

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .rawws import (
    OP_BINARY,
    RawClient,
    encode_frame,
    handshake_request,
    http_exchange,
)
from .servers import TIMEOUT, wait_for


def test_plain_http_to_ws_gets_400_with_reason(server):
    for method in ("GET", "POST"):
        request = urllib.request.Request(f"{server.http_url}/ws", method=method, data=None)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request)
        assert error.value.code == 400
        assert b"only accepts WebSocket handshakes" in error.value.read()


@pytest.mark.parametrize("path", ["/", "/nope", "/healthz", "/ws/extra"])
def test_handshake_to_other_path_gets_404_and_no_upgrade(server, path):
    status, headers, _body = http_exchange(server.port, handshake_request(server.port, path))
    assert status == 404
    assert "sec-websocket-accept" not in headers
    assert "upgrade" not in headers


def test_handshake_to_ws_switches_protocols(server):
    with RawClient(server.port) as client:
        assert client.headers["upgrade"].lower() == "websocket"
        assert client.headers["connection"].lower() == "upgrade"
        assert "sec-websocket-extensions" not in client.headers  # none offered, none accepted


@pytest.mark.parametrize(
    ("connection", "upgrade"),
    [
        ("keep-alive, Upgrade", "websocket"),
        ("UPGRADE", "WebSocket"),
        ("Upgrade", "WebSOCKET"),  # a spelling served by pywsgi's path, not at once
        (" x ,\t upgrade\t, y ", "h2c ,  websocket "),
        (",".join(["x"] * 31 + ["upgrade"]), ",".join(["x"] * 31 + ["websocket"])),
    ],
    ids=["firefox", "upper-case", "mixed-case", "spaces-and-tabs", "32-items"],
)
def test_connection_and_upgrade_are_read_as_token_lists(server, connection, upgrade):
    with RawClient(server.port, Connection=connection, Upgrade=upgrade) as client:
        assert client.headers["upgrade"] == "websocket"


def test_index_page_served(server):
    with urllib.request.urlopen(server.http_url) as response:
        page = response.read().decode()
    assert "WebSocket Server URL" in page
    assert "Communication Log" in page


def test_healthz(server):
    with urllib.request.urlopen(f"{server.http_url}/healthz") as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("headers", "version", "method", "status", "reason"),
    [
        ({"Sec_WebSocket_Key": "not base64!"}, "HTTP/1.1", "GET", 400, b"Sec-WebSocket-Key"),
        ({"Sec_WebSocket_Key": "c2hvcnQ="}, "HTTP/1.1", "GET", 400, b"16 bytes"),
        ({"Sec_WebSocket_Key": None}, "HTTP/1.1", "GET", 400, b"Sec-WebSocket-Key is missing"),
        ({"Sec_WebSocket_Version": None}, "HTTP/1.1", "GET", 400, b"missing"),
        ({"Sec_WebSocket_Version": "8"}, "HTTP/1.1", "GET", 400, b"unsupported"),
        ({"Connection": "keep-alive"}, "HTTP/1.1", "GET", 400, b"Connection header"),
        ({"Connection": "up grade"}, "HTTP/1.1", "GET", 400, b"Connection header"),
        ({"Upgrade": "websockets"}, "HTTP/1.1", "GET", 400, b"Upgrade header must list"),
        ({"Upgrade": "x websocket"}, "HTTP/1.1", "GET", 400, b"Upgrade header must list"),
        (
            {"Connection": ",".join(["x"] * 15_000 + ["Upgrade"])},
            "HTTP/1.1",
            "GET",
            400,
            b"Connection lists more than 32 items (15,001)",
        ),
        (
            {"Upgrade": ",".join(["x"] * 32 + ["websocket"])},
            "HTTP/1.1",
            "GET",
            400,
            b"Upgrade lists more than 32 items (33)",
        ),
        ({}, "HTTP/1.0", "GET", 400, b"HTTP/1.1"),
        ({}, "HTTP/1.1", "POST", 405, b"must use GET"),
    ],
    ids=[
        "bad-key",
        "short-key",
        "no-key",
        "no-version",
        "version-8",
        "no-connection-upgrade",
        "connection-token-with-a-space",
        "upgrade-to-websockets",
        "upgrade-token-with-a-space",
        "connection-15001-items",
        "upgrade-33-items",
        "http-1.0",
        "post",
    ],
)
def test_bad_handshake_rejected_with_reason(server, headers, version, method, status, reason):
    request = handshake_request(server.port, method=method, version=version, **headers)
    got_status, got_headers, body = http_exchange(server.port, request)
    assert got_status == status
    assert reason in body
    assert "sec-websocket-accept" not in got_headers
    if b"Version" in reason or reason in (b"missing", b"unsupported"):
        assert got_headers["sec-websocket-version"] == "13"
    assert "Traceback" not in server.log()


def test_hostile_token_lists_are_logged_and_counted_without_their_contents(server):
    """Each refusal is one short INFO line, one short access line and its metric's reason."""
    marker = f"x-{uuid.uuid4().hex}"  # in the hostile header only: no line may show it
    cases = [  # header, its items, the metric's reason
        ("Connection", ["x"] * 4_321 + [marker, "Upgrade"], "connection"),
        ("Upgrade", ["x"] * 1_234 + [marker, "websocket"], "upgrade"),
        ("Upgrade", [f"{marker}-websockets"], "upgrade"),
    ]
    counted = collections.Counter(reason for _, _, reason in cases)

    def rejected(reason: str) -> float:
        return server.metric("echo_handshakes_total", result="rejected", reason=reason)

    before = {reason: rejected(reason) for reason in counted}
    agent = f"test-{uuid.uuid4()}"
    for header, items, _ in cases:
        request = handshake_request(server.port, User_Agent=agent, **{header: ",".join(items)})
        status, _, body = http_exchange(server.port, request)
        assert status == 400
        assert marker.encode() not in body
    wait_for(
        lambda: all(rejected(reason) == before[reason] + n for reason, n in counted.items()),
        what="the refusals counted by reason",
    )
    wait_for(lambda: server.log().count(agent) == len(cases), what="the access lines")
    log = server.log()
    assert marker not in log
    for reason in (
        "Connection lists more than 32 items (4,323)",
        "Upgrade lists more than 32 items (1,236)",
        "the Upgrade header must list websocket",
    ):
        assert f" rejected (400 Bad Request): {reason}" in log
    for line in log.splitlines():
        if agent in line:
            assert '"GET /ws HTTP/1.1" 400 ' in line
            assert len(line) < 300


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        ({"Content_Length": "5"}, b"hello"),
        ({"Transfer_Encoding": "chunked"}, b"5\r\nhello\r\n0\r\n\r\n"),
    ],
    ids=["content-length", "chunked"],
)
def test_handshake_with_a_body_rejected(server, framing, body):
    # Bytes after the handshake are WebSocket frames: a body must not be taken for them.
    request = handshake_request(server.port, **framing) + body
    status, headers, reason = http_exchange(server.port, request)
    assert (status, reason) == (400, b"a WebSocket handshake has no body\n")
    assert "sec-websocket-accept" not in headers
    assert "Traceback" not in server.log()


def test_disallowed_origin_gets_403_and_a_log_line(gunicorn_server):
    server = gunicorn_server(ECHO_ALLOWED_ORIGINS="https://good.example, http://localhost:3000")
    evil = f"https://{uuid.uuid4().hex}.example"
    with pytest.raises(InvalidStatus) as error:
        connect(server.ws_url, origin=evil)
    assert error.value.response.status_code == 403
    assert f"{evil} is not allowed".encode() in error.value.response.body
    line = server.log_line(evil)
    assert "[INFO] handshake from 127.0.0.1:" in line
    assert line.endswith(f" rejected (403 Forbidden): Origin {evil} is not allowed to connect")
    for origin in ("https://good.example", "HTTP://LOCALHOST:3000", None):
        with connect(server.ws_url, origin=origin) as ws:
            ws.send("allowed")
            assert ws.recv() == "allowed"


@pytest.mark.parametrize("path", ["//ws", "/ws/", "/ws/x", "/WS"])
def test_only_ws_itself_is_upgraded(server, path):
    status, _, body = http_exchange(server.port, handshake_request(server.port, path))
    assert status == 404
    assert body == f"No WebSocket endpoint at {path}; connect to /ws\n".encode()


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/nope", {}, 404),
        ("/ws", {"Sec_WebSocket_Key": "short"}, 400),
        ("/ws", {"Origin": "https://elsewhere.example"}, 403),
    ],
    ids=["path", "key", "origin"],
)
def test_refused_handshake_with_frames_behind_it_still_reads_its_answer(
    gunicorn_server, path, headers, status
):
    """Closing with the frames unread would reset the connection under the answer."""
    server = gunicorn_server(ECHO_ALLOWED_ORIGINS="https://ok.example")
    frames = encode_frame(OP_BINARY, b"\x00" * 65536) * 4
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(handshake_request(server.port, path, **headers) + frames)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert answer.endswith(b"\n") and b"\r\n\r\n" in answer


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
KEPT_ALIVE = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/ws", {}, b""),
        ("/ws", {"Sec_WebSocket_Extensions": "permessage-deflate"}, b""),
        ("/ws", {"Sec_WebSocket_Key": "nope"}, b""),
        ("/ws", {"Sec_WebSocket_Version": "8"}, b""),
        ("/ws", {"Sec_WebSocket_Extensions": "permessage-deflate; x=1, y"}, b""),
        ("/ws", {"Content_Length": "5"}, b"hello"),
        ("/elsewhere", {}, b""),
    ],
)
def test_a_handshake_is_answered_alike_at_once_and_after_a_kept_alive_request(
    server, path, headers, body
):
    """A connection's first request, arrived whole, is served without pywsgi; a
    second one on a kept-alive connection goes through it: the same answer."""
    request = handshake_request(server.port, path, **{"Sec_WebSocket_Key": KEY, **headers}) + body
    answers = []
    for before in (b"", KEPT_ALIVE):
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(before + request)
            stream = sock.makefile("rb")  # both answers may come in one segment
            if before:
                assert _read_answer(stream)[0].startswith(b"HTTP/1.1 200 ")
            answers.append(_read_answer(stream))
    (first_head, first_body), (second_head, second_body) = answers
    assert sorted(first_head.split(b"\r\n")) == sorted(second_head.split(b"\r\n"))
    assert first_body == second_body
    assert first_head.startswith((b"HTTP/1.1 101 ", b"HTTP/1.1 400 ", b"HTTP/1.1 404 "))


def _read_answer(stream: BinaryIO) -> tuple[bytes, bytes]:
    """One response from ``stream``: its head, and its body by its Content-Length."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        assert line, f"closed after {head!r}"
        head += line
    _, found, rest = head.lower().partition(b"\r\ncontent-length: ")
    return head[:-4], stream.read(int(rest.split(b"\r\n")[0]) if found else 0)
