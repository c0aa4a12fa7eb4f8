"""HTTP in front of the upgrade: parsed strictly, refused with a reason the client can read."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import uuid
from http import HTTPStatus

import pytest

from .rawws import OP_TEXT, RawClient, handshake_request, http_exchange, read_response
from .servers import TIMEOUT, wait_for

HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


def refusals(server, status: int) -> tuple[int, int]:
    """Access-log lines of requests answered ``status``, and INFO lines of refused requests."""
    log = server.log()
    return log.count(f'" {status} '), log.count("[INFO] rejected request from")


def wait_for_one_more(server, status: int, before: tuple[int, int]) -> None:
    """The refusal was logged: one access-log line and one INFO line."""
    logged, explained = before
    wait_for(lambda: refusals(server, status) == (logged + 1, explained + 1), what="its log lines")


@pytest.mark.parametrize(
    "request_bytes",
    [
        HEALTH + b"X-Note: a\rb\r\n\r\n",
        HEALTH + b"X-Note: a\x00b\r\n\r\n",
        HEALTH + b"X-Note: a\r\n folded\r\n\r\n",
        handshake_request(0).replace(b"Host:", b"X-A\x00b: c\r\nHost:"),
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HEALTH + b"\r\n",
    ],
    ids=["bare-cr", "nul-in-value", "obs-fold", "nul-in-name", "length-and-chunked"],
)
def test_ambiguous_request_is_refused_400_and_the_connection_closed(server, request_bytes):
    """What a proxy in front might read otherwise (request smuggling) is never served."""
    before = refusals(server, 400)
    status, headers, body = http_exchange(server.port, request_bytes)  # reads until closed
    assert status == 400
    assert body.startswith(b"malformed HTTP request: ") and body.count(b"\n") == 1, body
    assert headers["connection"] == "close"
    assert b"HTTP/1.1" not in body  # nothing pipelined behind it was answered
    assert "Traceback" not in server.log()
    wait_for_one_more(server, 400, before)
    request_line = request_bytes.split(b"\r\n", 1)[0].decode()
    assert f'"{request_line}" 400 ' in server.log()  # logged with what it asked for


NO_HOST = b"an HTTP/1.1 request must have a Host header\n"
HOSTS = b"a request must have one Host header, not several\n"


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (handshake_request(0, Host=None), NO_HOST),
        (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", NO_HOST),
        (handshake_request(0).replace(b"Host:", b"Host: a\r\nHost:"), HOSTS),
        (HEALTH + b"Host: x\r\n\r\n", HOSTS),
        (handshake_request(0, Host="a/b"), b"the Host header is not a host and port ('a/b')\n"),
        (handshake_request(0, Host="h" * 1025), b"the Host header is over 1,024 characters\n"),
        (
            handshake_request(0, "http://u@x/ws"),
            b"the request target's host is not a host and port ('u@x')\n",
        ),
        (handshake_request(0, "http:///ws"), b"the request target's host is empty\n"),
    ],
    ids=[
        "handshake-none",
        "http-none",
        "handshake-two",
        "http-two",
        "invalid",
        "too-long",
        "target-userinfo",
        "target-empty",
    ],
)
def test_a_request_without_one_valid_host_is_refused_400(server, request_bytes, reason):
    """RFC 9112 section 3.2 tells a server to refuse it, and RFC 6455 asks a handshake
    for a Host: a proxy in front may have read another host there than this server."""
    before = refusals(server, 400)
    status, headers, body = http_exchange(server.port, request_bytes)
    assert (status, body, headers["connection"]) == (400, reason, "close")
    wait_for_one_more(server, 400, before)


def test_http_1_0_needs_no_host(server):
    """HTTP/1.0 has no Host requirement: its requests are served without one."""
    status, _, body = http_exchange(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert (status, body) == (200, b"ok\n")


@pytest.mark.parametrize("scheme", ["http", "HTTPS"])
def test_a_target_in_absolute_form_is_served_as_its_path(server, scheme):
    """RFC 9112 section 3.2.2: a server accepts ``GET http://host/path`` (as clients send
    through a forward proxy), and RFC 6455 section 4.2.1 names it for a handshake."""
    authority = f"127.0.0.1:{server.port}"
    with RawClient(server.port, f"{scheme}://{authority}/ws?close_after=1") as client:
        client.send(OP_TEXT, b"hi")
        assert client.recv_message() == (OP_TEXT, b"hi")
        assert client.recv_close()[0] == 1000  # the query was read as the path's
    as_sent = f'"GET {scheme}://{authority}/ws?close_after=1 HTTP/1.1" 101 '
    wait_for(lambda: as_sent in server.log(), what="its session line, with the target as sent")
    request = f"GET {scheme}://{authority}?probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, _, body = http_exchange(server.port, request.encode())
    assert status == 200 and b"<title>WebSocket Echo" in body  # the page at /
    nowhere = handshake_request(server.port, f"{scheme}://{authority}/nope")
    status, _, body = http_exchange(server.port, nowhere)
    assert (status, body) == (404, b"No WebSocket endpoint at /nope; connect to /ws\n")


@pytest.mark.parametrize("target", ["/ws#x", "/ws?close_after=1#x", "http://h/ws#"])
def test_a_target_with_a_fragment_is_refused_400(server, target):
    """No request target has a fragment (RFC 9112 section 3.2), and RFC 6455 section 3 says
    a WebSocket URI must not: a client that sends one is told so, not sent a 404 or a
    test-mode refusal for a query it did not mean."""
    before = refusals(server, 400)
    status, headers, body = http_exchange(server.port, handshake_request(server.port, target))
    reason = b"the request target must not have a fragment ('#')\n"
    assert (status, body, headers["connection"]) == (400, reason, "close")
    wait_for_one_more(server, 400, before)


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "CONNECT"])
def test_other_methods_to_ws_get_405_with_a_one_line_reason(server, method):
    request = f"{method} /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    status, headers, body = http_exchange(server.port, request)
    assert status == 405
    assert headers["allow"] == "GET"
    reason = f"{method} is not allowed: /ws only accepts WebSocket handshakes, which use GET\n"
    assert body == reason.encode()


def test_unknown_method_gets_501(server):
    request = b"BREW /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, _, body = http_exchange(server.port, request)
    assert (status, body) == (501, b"unknown method BREW\n")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /ws HTTP/1.1\r\n" + b"X-Many: y\r\n" * 10_000 + b"\r\n", 431),
        (handshake_request(0, Sec_WebSocket_Key="k" * 1_000_000), 431),
    ],
    ids=["9k-request-line", "100k-request-line", "10000-headers", "1m-key"],
)
def test_oversized_request_gets_its_status_readable_before_the_close(server, request_bytes, status):
    """The rest of the request is read and discarded, so no reset destroys the answer."""
    before = refusals(server, status)
    got, headers, body = http_exchange(server.port, request_bytes)
    assert got == status
    assert body.endswith(b"\n") and body.count(b"\n") == 1
    assert int(headers["content-length"]) == len(body)
    wait_for_one_more(server, status, before)


def test_connection_close_and_http_1_0_end_the_connection_after_the_response(server):
    for request in (
        HEALTH + b"Connection: close\r\n\r\n",
        HEALTH + b"Connection: x-a ,\tClose , x-b\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
    ):
        status, _, body = http_exchange(server.port, request)  # times out if held open
        assert (status, body) == (200, b"ok\n")


def test_keep_alive_serves_pipelined_requests_in_order(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(HEALTH + b"\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.count(b"HTTP/1.1 404 ") == 1


def test_a_response_says_connection_close_when_the_connection_ends_after_it(server):
    """RFC 9112 section 9.6: a client or proxy must not send its next request on a
    connection about to close. pywsgi said so only to HTTP/1.0."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(HEALTH + b"\r\n" + HEALTH + b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    kept, closing = (head for head in data.split(b"ok\n") if head)
    assert b"\r\nconnection:" not in kept.lower(), kept
    assert b"\r\nConnection: close\r\n" in closing, closing


def test_options_asterisk_is_answered_for_the_server(server):
    """``OPTIONS *`` asks about the server as a whole (RFC 9110 section 9.3.7), as proxies
    and monitors send it: 200 and ``Allow``, not a 404 for a path ``/*``."""
    request = b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, headers, body = http_exchange(server.port, request)
    assert (status, headers["allow"], body) == (200, "GET, HEAD, OPTIONS", b"")


@pytest.mark.parametrize("handshake", [False, True], ids=["get", "handshake"])
def test_an_asterisk_target_is_only_for_options(server, handshake):
    """RFC 9112 section 3.2.4: the asterisk-form is OPTIONS's alone."""
    before = refusals(server, 400)
    if handshake:
        request = handshake_request(server.port, "*")
    else:
        request = b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"
    status, _, body = http_exchange(server.port, request)
    assert (status, body) == (400, b"the request target * is only for OPTIONS\n")
    wait_for_one_more(server, 400, before)


PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: half"


def test_client_that_resets_inside_its_headers_is_counted_as_gone_not_malformed(server):
    """Nothing to answer and nothing it asked for: no access-log line, no traceback."""
    gone = server.metric("echo_unserved_requests_total", reason="gone")
    malformed = server.metric("echo_unserved_requests_total", reason="malformed")
    before = refusals(server, 400)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(PARTIAL)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_for(
        lambda: server.metric("echo_unserved_requests_total", reason="gone") == gone + 1,
        what="the abandoned request to be counted",
    )
    assert server.metric("echo_unserved_requests_total", reason="malformed") == malformed
    assert refusals(server, 400)[0] == before[0]
    assert "Traceback" not in server.log()


def test_client_that_stops_sending_inside_its_headers_gets_400_incomplete(server):
    """A half-close: the client can still read why its request was refused."""
    incomplete = server.metric("echo_unserved_requests_total", reason="incomplete")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(PARTIAL)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ")
    assert data.endswith(b"\r\n\r\nthe request ended inside its headers\n")
    assert server.metric("echo_unserved_requests_total", reason="incomplete") == incomplete + 1


@pytest.mark.parametrize("keeps_sending", [True, False], ids=["flooding", "silent"])
def test_client_that_neither_closes_nor_stops_after_a_refusal_is_cut_off(
    gunicorn_server, keeps_sending
):
    """The lingering close after a 4xx lasts close_timeout at most, whatever the client does."""
    server = gunicorn_server(ECHO_CLOSE_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"BREW /ws HTTP/1.1\r\n\r\n")
        refused = time.monotonic()
        stop = threading.Event()

        def flood() -> None:
            with contextlib.suppress(OSError):  # the server's close ends it
                while not stop.is_set():
                    sock.sendall(b"x" * 65536)

        flooding = threading.Thread(target=flood, daemon=True)
        if keeps_sending:
            flooding.start()
        data = b""
        with contextlib.suppress(ConnectionResetError):  # unread flood: a reset, after the answer
            while chunk := sock.recv(65536):
                data += chunk
        ended = time.monotonic() - refused
        stop.set()
        if keeps_sending:
            flooding.join()
    assert data.startswith(b"HTTP/1.1 501 ")
    assert ended < 1 + 2, ended  # close_timeout, and some slack for a loaded machine


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        (b"TRACE /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
        (handshake_request(0, "/nope"), 404),
        (handshake_request(0, Sec_WebSocket_Key="short"), 400),
        (HEALTH + b"X-Note: a\x00b\r\n\r\n", 400),
    ],
    ids=["app-400", "app-405", "app-404", "handshake-400", "parser-400"],
)
def test_status_lines_are_written_alike_whoever_refuses(server, request_bytes, status):
    """The application's refusals read as the server's: ``400 Bad Request``, not ``BAD REQUEST``."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request_bytes)
        status_line = sock.makefile("rb").readline()
    assert status_line == f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()


def kept_alive_after_a_400(port: int, agent: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUser-Agent: {agent}\r\n\r\n".encode())
    assert read_response(sock)[0].startswith(b"HTTP/1.1 400 ")
    return sock


def test_idle_kept_alive_connection_ended_for_room_gets_no_second_answer(gunicorn_server):
    """It is closed unanswered, and its one request is logged once (not again as a 408)."""
    server = gunicorn_server(GUNICORN_CMD_ARGS="--worker-connections 10")
    agent = f"test-{uuid.uuid4()}"
    with kept_alive_after_a_400(server.port, agent) as idle:
        # Enough trickling requests to fill the pool and wait in the backlog:
        # the oldest unfinished connection, the idle one, is ended for room.
        trickling = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(12)]
        for conn in trickling:
            conn.sendall(b"G")
        assert idle.recv(4096) == b""
        for conn in trickling:
            conn.close()
    assert [line for line in server.log().splitlines() if agent in line] == [server.log_line(agent)]
    assert '"GET /ws HTTP/1.1" 400 ' in server.log_line(agent)


def test_bytes_after_a_kept_alive_refusal_are_logged_as_their_own(gunicorn_server):
    """Not as the request before them: no request line was read, so the line says ``-``."""
    server = gunicorn_server(GUNICORN_CMD_ARGS="--worker-connections 10")
    before = server.log().count('"- - -" 414 ')
    with kept_alive_after_a_400(server.port, f"test-{uuid.uuid4()}") as sock:
        sock.sendall(b"x" * 9000)  # no line end: too long a request line
        assert read_response(sock)[0].startswith(b"HTTP/1.1 414 ")
    wait_for(lambda: server.log().count('"- - -" 414 ') == before + 1, what="its log line")
    assert '"GET /ws HTTP/1.1" 414 ' not in server.log()
