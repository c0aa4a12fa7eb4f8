"""gevent-websocket's handler: HTTP as pywsgi serves it, handshakes to registered endpoints.

The stock handler upgrades any path before the application sees the request,
answers bad handshakes with a 500 or a broken body, and sends ``402`` to
HTTP/1.0. Here a handshake is upgraded only at a path with an endpoint
(``Endpoints``), after the checks every endpoint gets: the handshake itself,
the origin, subprotocol and permessage-deflate negotiation, and a free slot.
The endpoint is called directly, without the application's dispatch, which
cost more than the rest of the handshake (bench/README.md). Everything else
goes to the application.

A handshake that arrives whole in its first segment, as nearly all do, is
served without pywsgi's request machinery (``_upgrade_at_once``): its head
is peeked from the socket, parsed, and read off only if it is a WebSocket
handshake; anything else is left in the socket for pywsgi to read as usual.

After the upgrade the handler returns the session to run (``Session``)
with an access-log record of the handshake, and ``WebSocketServer`` runs it
with the handler gone: a connection that stays open for days holds none of
its request's objects.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import time
from typing import Any
from urllib.parse import unquote

import gevent
from gevent import socket as gevent_socket
from gevent.pywsgi import Input, WSGIHandler
from geventwebsocket.handler import WebSocketHandler

from ..protocol import handshake, negotiation, request_head
from ..protocol.errors import BadRequest, HandshakeRejected, Headers, Refusal
from ..protocol.excerpt import excerpt
from . import fairness, lingering, metrics
from .access_record import AccessRecord, AccessWriter, write_pywsgi_line
from .connection import ServerConnection
from .endpoints import HandshakeRequest, Route
from .errors import Evicted, RequestTimeout
from .session import Session
from .sockets import discard, peek, peer_text, send_all, wait_readable

log = logging.getLogger(__name__)

_TAKE_OVER_CHUNK = 64 * 1024
# Bytes peeked for a whole handshake: the most a head may hold. One is a few
# hundred bytes; a 60 KB one through pywsgi's reader, line by line, cost
# twice as much as it does served here (docs/hostile-input.md).
_PEEK = request_head.MAX_HEAD
#: The header naming the instance and worker that served a response (``Settings.served_by``).
SERVED_BY = "X-Served-By"
# The headers of no request (gunicorn's access log reads the headers of any request).
_NO_HEAD = request_head.RequestHead()


class UpgradeHandler(WebSocketHandler):
    """Serves plain HTTP as pywsgi does, and valid handshakes with their endpoints."""

    headers: request_head.RequestHead | Any = _NO_HEAD
    _session: Session | None = None  # after an upgrade, what handle() returns
    _linger_after = False  # a handshake was refused: drain what the client still sends

    def __init__(self, sock: Any, address: Any, server: Any) -> None:
        # pywsgi's makes its buffered reader here; a handshake served at once
        # needs none, so handle() makes it only for requests pywsgi reads.
        self.socket, self.client_address, self.server = sock, address, server
        self.rfile: Any = None

    def handle(self) -> Session | None:
        """Serve the connection's HTTP; after an upgrade, return the session to run next.

        The session holds the connection, its endpoint and the access-log
        record, not the handler: ``WebSocketServer`` runs it with pywsgi's frames gone.
        """
        # Silence before a request (and between keep-alive requests) ends the
        # connection after read_timeout; so does silence while a response is written.
        self.socket.settimeout(self.server.settings.read_timeout or None)
        if not self._upgrade_at_once():
            # What pywsgi's requests need: a budget (fairness) and a deadline each.
            self._budget = fairness.Budget()
            self._deadline: gevent.Timeout | None = None
            self.rfile = self.socket.makefile("rb", -1)
            super().handle()
        return self._session

    def _upgrade_at_once(self) -> bool:
        """Serve a WebSocket handshake that has arrived whole, without pywsgi; whether it did.

        pywsgi's request path (its buffered reader, the request line and
        header lines read one by one, its response machinery) was a third of
        a handshake's cost (bench/README.md). A whole head is peeked from the
        socket; a handshake is read off it and answered here, the same checks
        and the same answers. Anything else (plain HTTP, a head that is not
        all there yet or does not parse, TLS, which cannot peek) stays in the
        socket for pywsgi. ``True`` also when there is nothing to serve: the
        client left, stayed silent past ``read_timeout``, or was ended to make
        room, which pywsgi too closes without an answer.
        """
        sock = self.socket
        if type(sock) is not gevent_socket.socket:  # TLS
            return False
        try:
            arrived = peek(sock, _PEEK)
            while arrived is None:  # nothing yet: wait, the first to end when the pool is full
                self.server.unfinished.started()
                try:
                    wait_readable(sock)  # within the socket's timeout
                finally:
                    self.server.unfinished.finished()
                arrived = peek(sock, _PEEK)
        except (OSError, Evicted):
            return True
        head = request_head.whole_head(arrived)
        # A head without "websocket" as clients write it is plain HTTP, left to
        # pywsgi unparsed; a rarer spelling is served there too (lowering the
        # whole head to look cost 1.1k instructions a handshake).
        if head is None or (
            b"websocket" not in head and b"WebSocket" not in head and b"WEBSOCKET" not in head
        ):
            return not arrived
        try:
            parsed = request_head.parse([head])
        except BadRequest:
            return False  # pywsgi reads it again, and answers why
        self._take_head(parsed, head[: head.index(b"\n")].decode("latin-1"))
        self.environ = self.get_environ()
        if not handshake.is_requested(self.environ):
            return False
        self.time_start = time.time()
        self.response_length = 0
        try:
            discard(sock, len(head))  # the head, read now
        except (OSError, EOFError):  # reset since it was peeked: as pywsgi counts it
            metrics.request_unserved("gone")
            return True
        self._upgrade()
        if self._session is None:  # refused, and answered
            self.time_finish = time.time()
            self.log_request()
            self._linger()
        return True

    def handle_one_request(self) -> bool | None:
        # A client pipelining requests on a keep-alive connection never lets
        # the socket run dry: give the other connections a turn now and then.
        self._budget.spend(fairness.REQUEST_COST)
        # What the last request left is not this one's: a refusal before its
        # line is read is logged with "-", not with the line before it.
        self.environ = self.requestline = self.status = self._orig_status = None
        self.headers = _NO_HEAD
        try:
            result = super().handle_one_request()
        except (RequestTimeout, BadRequest) as error:  # reading the request line
            result = self._handle_client_error(error)
        finally:
            self._stop_waiting()
        if isinstance(result, tuple):  # refused before the application saw it
            self._refuse(*result)
            return None
        if self._linger_after:  # a refused handshake, answered and logged
            self._linger()
            return None
        return result

    def _refuse(self, status: str, response: bytes) -> None:
        """Send a refusal and log it, then close so that the client can read it.

        pywsgi would close with the rest of the request unread, and the
        kernel's reset can destroy the answer before the client reads it. A
        408 goes to a client too slow to have anything unread: it is closed
        at once, or trickling clients would hold their connections longer.
        """
        self.status = self._orig_status = status
        with contextlib.suppress(OSError):
            send_all(self.socket, response)
        self.time_finish = time.time()
        self.log_request()
        if not status.startswith("408"):
            self._linger()

    def _linger(self) -> None:
        """Discard what the client still sends, for ``close_timeout`` at most.

        Meanwhile the connection counts as a request still arriving: at
        ``worker_connections`` it may be ended to make room, like one.
        """
        self.server.unfinished.started()
        try:
            lingering.drain(self.socket, self.server.settings.close_timeout)
        except Evicted:
            pass
        finally:
            self.server.unfinished.finished()

    def read_requestline(self) -> str:
        """Wait for a request's first byte, then bound the whole request by ``read_timeout``.

        A deadline per receive counts only silence: a client sending a byte
        every few seconds would hold its connection forever.
        """
        self.server.unfinished.started()  # the first to end when the pool is full
        try:
            arrived = self.rfile.peek(1)  # silence here is bounded by the socket's timeout
        except Evicted:
            # Ended to make room while nothing of a request had come (an idle
            # kept-alive connection, say): closed with no answer, as on timeout.
            return ""
        timeout = self.server.settings.read_timeout
        if timeout and b"\r\n\r\n" not in arrived:  # else it is all here: nothing to wait for
            self._deadline = gevent.Timeout(timeout, RequestTimeout)
            self._deadline.start()
        self._request_line = request_head.read_request_line(self.rfile)
        return self._request_line.decode("latin-1")

    def read_request(self, raw_requestline: str) -> bool:
        """Read the headers and parse the head strictly, in place of pywsgi's ``email`` parser."""
        try:
            lines = request_head.read_header_lines(self.rfile, self._request_line)
        finally:
            self._stop_waiting()  # the application's time is its own
        self._take_head(request_head.parse(lines), raw_requestline)
        return True

    def _take_head(self, head: request_head.RequestHead, requestline: str) -> None:
        """The parsed head as pywsgi keeps a request's."""
        self.requestline = requestline.rstrip()
        self.command, self.path, self.request_version = head.method, head.target, head.version
        self.headers = self._head = head
        self.content_length = head.content_length
        self.close_connection = not head.keep_alive

    def get_environ(self) -> dict[str, Any]:
        """The WSGI environ of the parsed head (pywsgi's would read ``email`` headers)."""
        head = self._head
        environ = self.server.get_environ()
        path, _, query = head.path.partition("?")
        environ.update(head.environ)
        environ["REQUEST_METHOD"] = head.method
        environ["SCRIPT_NAME"] = ""
        environ["PATH_INFO"] = unquote(path, encoding="latin-1") if "%" in path else path
        environ["QUERY_STRING"] = query
        environ["SERVER_PROTOCOL"] = head.version
        if isinstance(self.client_address, tuple):
            environ["REMOTE_ADDR"] = str(self.client_address[0])
            environ["REMOTE_PORT"] = str(self.client_address[1])
        environ["wsgi.input_terminated"] = not head.upgrade
        if self.rfile is None:  # a handshake served at once: its frames are the connection's
            environ["wsgi.input"] = io.BytesIO()
            return environ
        continues = environ.get("HTTP_EXPECT", "").lower() == "100-continue"
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        self.wsgi_input = Input(
            self.rfile, self.content_length, self.socket if continues else None, chunked
        )
        # A handshake's input is the connection itself (take_over_input reads it).
        environ["wsgi.input"] = self.rfile if head.upgrade else self.wsgi_input
        return environ

    def _stop_waiting(self) -> None:
        """The request is here (or never will be): no deadline, and not the one to end for room."""
        self.server.unfinished.finished()
        if self._deadline is not None:
            self._deadline.close()
            self._deadline = None

    def run_application(self) -> None:
        if handshake.is_requested(self.environ):
            self._upgrade()
        else:
            WSGIHandler.run_application(self)

    def _upgrade(self) -> None:
        """Answer the handshake: the 101 and the session to run, or a refusal."""
        self.close_connection = True  # refused or upgraded, the connection ends here
        environ, settings, slots = self.environ, self.server.settings, self.server.capacity
        try:
            route = self._route()
            handshake.check(environ)
            origin = environ.get("HTTP_ORIGIN")
            if not settings.allows_origin(origin):
                reason = f"Origin {excerpt(origin or '')} is not allowed to connect"
                raise HandshakeRejected("403 Forbidden", reason, "origin")
            agreement = negotiation.negotiate(environ, settings.subprotocols, settings.compression)
            params = route.check(self._handshake_request(agreement)) if route.check else None
            slots.take()
        except Refusal as refusal:
            self._reject(refusal)
            return
        ws = ServerConnection(self.socket, settings, agreement, params)
        ws.when_closed(slots.give_back)  # the connection's until it closes
        self.status = self._orig_status = "101 Switching Protocols"
        self.code, self.headers_sent = 101, True
        response = handshake.switching_protocols(
            environ, [*agreement.response_headers(), (SERVED_BY, self.server.served_by)]
        )
        self.response_length = len(response)
        # Served at once, what followed the head is still in the socket.
        ws.open(b"" if self.rfile is None else self._take_over_input(), response)
        record = AccessRecord.of_session(
            self.client_address,
            self.requestline,
            environ,
            self.status,
            self.response_length,
            self.time_start,
        )
        ws.environ = record.environ
        self._session = Session(ws, route.endpoint, record, self._access_writer())
        # Without its socket, pywsgi neither drains nor closes the connection.
        self.socket = None

    def _route(self) -> Route:
        """The endpoint at exactly this path; ``HandshakeRejected`` (404) where there is none."""
        endpoints = self.server.endpoints
        path = self.environ.get("PATH_INFO", "")
        route = endpoints.get(path)
        if route is None:
            paths = ", ".join(endpoints) or "none here"
            reason = f"No WebSocket endpoint at {excerpt(path)}; connect to {paths}"
            raise HandshakeRejected("404 Not Found", reason, "no_endpoint")
        return route

    def _handshake_request(self, agreement: negotiation.Agreement) -> HandshakeRequest:
        """The handshake as it arrived, for the endpoint's check: made only for one that has it."""
        return HandshakeRequest(
            environ=self.environ,
            request_line=self.requestline or "",
            headers=self._head.fields,
            subprotocol=agreement.subprotocol,
            extensions=agreement.extensions,
            settings=self.server.settings,
            socket=self.socket,
        )

    def _reject(self, refusal: Refusal) -> None:
        """Refuse a handshake: one INFO line, the answer, and a lingering close after it."""
        log.info("handshake from %s rejected (%s): %s", self._peer, refusal.status, refusal.reason)
        metrics.handshake_rejected(refusal.slug)
        self.status = self._orig_status = refusal.status
        self._linger_after = True
        with contextlib.suppress(OSError):  # the client left: the log says what it was sent
            self._sendall(self._plain_response(refusal.status, refusal.reason, refusal.headers))

    def _sendall(self, data: bytes | bytearray) -> None:
        """pywsgi's write of a response, one syscall shorter (``sockets.send_all``).

        A write that fails leaves the response's status as it was, so the
        access log shows what was being sent rather than pywsgi's "socket error".
        """
        send_all(self.socket, data)
        self.response_length += len(data)

    def log_request(self) -> None:
        """The access-log line of a request; a session's is written when it ends."""
        if self._session is None:
            self._access_writer()(self._record())

    def _record(self) -> AccessRecord:
        return AccessRecord(
            self.client_address,
            self.requestline,
            self.environ,
            self.headers,
            self._orig_status or self.status or "",
            self.response_headers or [],
            self.response_length,
            self.time_start,
            self.time_finish,
        )

    def _access_writer(self) -> AccessWriter:
        """How this server writes access-log lines: pywsgi's (the development server's) way."""
        return functools.partial(write_pywsgi_line, self.server.log)

    def _take_over_input(self) -> bytes:
        """What the client sent after its handshake, already in pywsgi's reader, which is closed.

        pywsgi's ``BufferedReader`` would hold 8 KiB for the connection's
        lifetime (bench/README.md); after the upgrade the connection reads the
        socket directly. Frames that arrived with the handshake are moved over
        without waiting for more.
        """
        sock, rfile = self.socket, self.rfile
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        chunks = []
        try:
            while chunk := rfile.read1(_TAKE_OVER_CHUNK):
                chunks.append(chunk)
        except OSError:
            # Nothing more has arrived (TLS says so with SSLWantReadError), or
            # the client is already gone, which the next read will report.
            pass
        finally:
            sock.settimeout(timeout)
        rfile.close()  # frees its buffer; the socket stays open
        return b"".join(chunks)

    def _handle_client_error(self, ex: Exception) -> tuple[str, bytes] | None:
        """An unparseable or stalled request: one log line and a 4xx with a reason.

        pywsgi's own answer prints a traceback for some inputs and sends no body.
        A client that reset or vanished while sending its request gets nothing
        (``None``): there is no one to answer, and no request to log.
        """
        if isinstance(ex, (TimeoutError, RequestTimeout)):
            status, reason = "408 Request Timeout", "the request did not arrive in time"
            metrics.request_unserved("evicted" if isinstance(ex, Evicted) else "timeout")
        elif isinstance(ex, ConnectionError):
            metrics.request_unserved("gone")
            log.info("request from %s abandoned: %s", self._peer, type(ex).__name__)
            return None
        elif isinstance(ex, BadRequest):
            status, reason = ex.status, ex.reason
            metrics.request_unserved(ex.slug)
        else:
            status, reason = "400 Bad Request", "malformed or oversized HTTP request"
            metrics.request_unserved("malformed")
        log.info("rejected request from %s: %s (%s)", self._peer, reason, type(ex).__name__)
        response = self._plain_response(status, reason)
        self.response_length = len(response)  # for the access log, as pywsgi leaves 0
        return status, response

    @property
    def _peer(self) -> str:
        return peer_text(self.client_address, self.socket)

    def _plain_response(self, status: str, reason: str, headers: Headers = ()) -> bytes:
        """A refusal: ``status``, then ``reason`` as a line of text, and the connection ends.

        Its headers become the response's, for the access log (``%({name}o)s``).
        """
        body = f"{reason}\n".encode()
        self.response_headers = [
            ("Connection", "close"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *headers,
            (SERVED_BY, self.server.served_by),
        ]
        lines = [
            f"HTTP/1.1 {status}",
            *(f"{name}: {value}" for name, value in self.response_headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def start_response(self, status: str, headers: Headers, exc_info: Any = None) -> Any:
        """pywsgi's, with ``X-Served-By`` (gevent-websocket's adds nothing for plain HTTP),
        and ``Connection: close`` when the connection ends after this response.

        pywsgi says so only to HTTP/1.0; RFC 9112 section 9.6 asks it of HTTP/1.1 too, so
        that a client or proxy does not send its next request on a closing connection.
        """
        headers = [*headers, (SERVED_BY, self.server.served_by)]
        if (
            self.close_connection
            and self.request_version == "HTTP/1.1"
            and not any(name.lower() == "connection" for name, _ in headers)
        ):
            headers.append(("Connection", "close"))
        return WSGIHandler.start_response(self, status, headers, exc_info)
