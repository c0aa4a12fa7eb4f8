"""gevent-websocket's handler, with routing left to the application.

The stock handler upgrades any path before the application sees the request,
answers bad handshakes with a 500 or a broken body, and sends ``402`` to
HTTP/1.0. Here the handler only validates the handshake; the 101 is sent when
the application's view calls ``accept()``, so a handshake to a path without a
WebSocket view gets that path's ordinary response and is never upgraded. An
endpoint the app registers in ``app.extensions[WEBSOCKET_ENDPOINTS]`` is
called directly for its path: a Flask dispatch cost more than the rest of the
handshake (bench/README.md).

After the upgrade the handler returns, keeping only its access-log record, and
``EchoServer`` runs the WebSocket session: a connection that stays open for
days holds none of its request's objects.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import gevent
from gevent.pywsgi import Input, WSGIHandler
from geventwebsocket.handler import WebSocketHandler

from . import fairness, handshake, lingering, metrics, negotiation, request_head
from .config import Settings
from .errors import Evicted, RequestTimeout
from .excerpt import excerpt
from .routes import WEBSOCKET_ENDPOINTS
from .sockets import send_all
from .websocket import EchoWebSocket, State

#: ``endpoint(ws, environ, settings)``: accepts ``ws``, or returns (status, reason).
Endpoint = Callable[[EchoWebSocket, dict[str, Any], Settings], tuple[int, str] | None]

log = logging.getLogger(__name__)

# Why the app answered a valid handshake without accepting it, for metrics.
_REJECTED_BY_APP = {403: "origin"}

# The environ key holding a finished session's summary, for the access log
# (gunicorn: %({echo.session}e)s in access_log_format).
SESSION_KEY = "echo.session"
_TAKE_OVER_CHUNK = 64 * 1024
# What pywsgi's and gunicorn's log_request() read, kept as is by _forget_request().
_LOGGED = (
    "server",
    "client_address",
    "status",
    "_orig_status",
    "response_length",
    "time_start",
)


class EchoHandler(WebSocketHandler):
    """Serves plain HTTP as pywsgi does and hands valid handshakes to the app."""

    websocket: EchoWebSocket | None = None
    # Until a head is parsed (gunicorn's access log reads the headers of any request).
    headers: request_head.RequestHead | Any = request_head.RequestHead()
    _hands_over = False  # the upgrade succeeded: the session runs after handle()
    _linger_after = False  # a handshake was refused: drain what the client still sends

    @property
    def settings(self) -> Settings:
        """The settings of the app being served (built by ``echo.create_app``)."""
        return self.server.settings

    def handle(self) -> Callable[[], None] | None:
        """Serve the connection's HTTP; after an upgrade, return the session to run next.

        By then the handler has forgotten the request but for its access-log
        record, and ``EchoServer`` runs the session with pywsgi's frames gone.
        """
        # Silence before a request (and between keep-alive requests) ends the
        # connection after read_timeout; so does silence while a response is written.
        self.socket.settimeout(self.settings.read_timeout or None)
        self._budget = fairness.Budget()
        self._deadline: gevent.Timeout | None = None
        super().handle()
        if not self._hands_over:
            return None
        self._forget_request()
        return self._run_session

    def handle_one_request(self) -> bool | None:
        # A client pipelining requests on a keep-alive connection never lets
        # the socket run dry: give the other connections a turn now and then.
        self._budget.spend(fairness.REQUEST_COST)
        # What the last request left is not this one's: a refusal before its
        # line is read is logged with "-", not with the line before it.
        self.environ = self.requestline = None
        try:
            result = super().handle_one_request()
        except (RequestTimeout, request_head.BadRequest) as error:  # reading the request line
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
        self.status = status
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
            lingering.drain(self.socket, self.settings.close_timeout)
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
        timeout = self.settings.read_timeout
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
        head = request_head.parse(lines)
        self.requestline = raw_requestline.rstrip()
        self.command, self.path, self.request_version = head.method, head.target, head.version
        self.headers = self._head = head
        self.content_length = head.content_length
        self.close_connection = not head.keep_alive
        return True

    def get_environ(self) -> dict[str, Any]:
        """The WSGI environ of the parsed head (pywsgi's would read ``email`` headers)."""
        head = self._head
        environ = self.server.get_environ()
        path, _, query = head.target.partition("?")
        environ.update(request_head.environ_entries(head))
        environ["REQUEST_METHOD"] = head.method
        environ["SCRIPT_NAME"] = ""
        environ["PATH_INFO"] = unquote(path, encoding="latin-1")
        environ["QUERY_STRING"] = query
        environ["SERVER_PROTOCOL"] = head.version
        if isinstance(self.client_address, tuple):
            environ["REMOTE_ADDR"] = str(self.client_address[0])
            environ["REMOTE_PORT"] = str(self.client_address[1])
        continues = environ.get("HTTP_EXPECT", "").lower() == "100-continue"
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        self.wsgi_input = Input(
            self.rfile, self.content_length, self.socket if continues else None, chunked
        )
        # A handshake's input is the connection itself (take_over_input reads it).
        upgrade = "upgrade" in head.connection
        environ["wsgi.input"] = self.rfile if upgrade else self.wsgi_input
        environ["wsgi.input_terminated"] = not upgrade
        return environ

    def _stop_waiting(self) -> None:
        """The request is here (or never will be): no deadline, and not the one to end for room."""
        self.server.unfinished.finished()
        if self._deadline is not None:
            self._deadline.close()
            self._deadline = None

    def run_application(self) -> None:
        if not handshake.is_requested(self.environ):
            WSGIHandler.run_application(self)
            return
        self.close_connection = True  # refused or upgraded, the connection ends here
        slots = self.server.capacity
        try:
            endpoint = self._endpoint()
            handshake.check(self.environ)
            agreement = negotiation.negotiate(self.environ, self.settings)
            slots.take()
        except handshake.HandshakeRejected as rejection:
            self._reject(rejection.status, rejection.reason, rejection.headers)
            metrics.handshake_rejected(rejection.slug)
            return
        self.websocket = EchoWebSocket(self, self.settings, agreement)
        failed = True
        try:
            if refusal := endpoint(self.websocket, self.environ, self.settings):
                self._reject(f"{refusal[0]} {HTTPStatus(refusal[0]).phrase}", refusal[1], [])
            failed = False
        finally:
            if not self._upgraded:
                slots.give_back()
                reason = _REJECTED_BY_APP.get(self.code, f"status_{self.code}")
                metrics.handshake_rejected("error" if failed else reason)
                self.websocket = None  # it refers to this handler: no cycle to leave behind
            else:
                self.websocket.when_closed(slots.give_back)  # the connection's until it closes
                if failed or self.websocket.session is None:
                    self._end_session(failed)  # the endpoint ran the connection, or failed
                else:
                    # The session runs once pywsgi is done (see handle()); without
                    # its socket, pywsgi neither drains nor closes the connection.
                    self.socket = None
                    self._hands_over = True

    def _endpoint(self) -> Endpoint:
        """The WebSocket endpoint at this path; only the paths registered have one.

        An endpoint is called directly, without the app's dispatch, which would
        cost more than the rest of the handshake (bench/README.md).
        """
        extensions = getattr(self.application, "extensions", None)
        endpoints = extensions.get(WEBSOCKET_ENDPOINTS, {}) if isinstance(extensions, dict) else {}
        path = self.environ.get("PATH_INFO", "")
        endpoint = endpoints.get(path)
        if endpoint is None:
            raise handshake.HandshakeRejected(
                "404 Not Found",
                f"No WebSocket endpoint at {excerpt(path)}; connect to {', '.join(endpoints)}",
                "no_endpoint",
            )
        return endpoint

    def _reject(self, status: str, reason: str, headers: handshake.Headers) -> None:
        """Refuse a handshake: one INFO line, the answer, and a lingering close after it."""
        log.info("handshake rejected (%s): %s", status, reason)
        self._respond(status, reason, headers)
        self._linger_after = True

    def _sendall(self, data: bytes | bytearray) -> None:
        """pywsgi's write of a response, one syscall shorter (``sockets.send_all``).

        A write that fails leaves the response's status as it was, so the
        access log shows what was being sent rather than pywsgi's "socket error".
        """
        send_all(self.socket, data)
        self.response_length += len(data)

    def _forget_request(self) -> None:
        """Keep only the connection and what ``log_request`` reads.

        The environ keeps its text entries, any of which an access-log format
        may name; its objects (Flask's request among them) are left behind.
        Its values are interned: connections mostly repeat the same header
        values, so thousands of records share them (its keys are shared
        already: ``request_head`` makes each once). A 101 has no response
        headers of its own to keep.
        """
        self.__dict__ = {
            **{name: getattr(self, name) for name in _LOGGED},
            "requestline": sys.intern(self.requestline),
            "environ": {k: sys.intern(v) for k, v in self.environ.items() if isinstance(v, str)},
            "response_headers": (),
            "websocket": self.websocket,
        }

    def _run_session(self) -> None:
        """Run the app's session, finish the closing handshake, write the access-log line."""
        ws = self.websocket
        failed = True
        try:
            ws.session(ws)
            failed = False
        except Exception:
            self._log_error(*sys.exc_info())
        finally:
            self._end_session(failed)
            self.time_finish = time.time()
            self._log_request()

    def _end_session(self, failed: bool) -> None:
        self.websocket.close_and_wait(1011 if failed else 1000)
        self.environ[SESSION_KEY] = self.websocket.summary()

    def log_request(self) -> None:
        if not self._hands_over:  # else the session logs when it ends
            self._log_request()

    def _log_request(self) -> None:
        """The access-log line: pywsgi's (the development server's) or gunicorn's."""
        WSGIHandler.log_request(self)

    def format_request(self) -> str:
        """pywsgi's request line (the development server's log), plus the session summary."""
        return f"{super().format_request()} {self.environ.get(SESSION_KEY, '-')}"

    def _log_error(self, t: type, v: BaseException, tb: object) -> None:
        """An unexpected error in the app: logged with the connection id, if any."""
        conn = f"[{self.websocket.id}] " if self.websocket else ""
        log.error(
            "%sunhandled error serving %s", conn, self.environ.get("PATH_INFO"), exc_info=(t, v, tb)
        )

    def take_over_input(self) -> bytes:
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

    def complete_handshake(self, negotiated: handshake.Headers) -> None:
        """Send the 101, with the ``negotiated`` headers (called by ``EchoWebSocket.accept``)."""
        self.status = self._orig_status = "101 Switching Protocols"
        self.code, self.headers_sent = 101, True
        self._sendall(handshake.switching_protocols(self.environ, negotiated))

    @property
    def _upgraded(self) -> bool:
        return self.websocket is not None and self.websocket.state is not State.CONNECTING

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
            log.info("request from %s abandoned: %s", self.client_address, type(ex).__name__)
            return None
        elif isinstance(ex, request_head.BadRequest):
            status, reason = ex.status, ex.reason
            metrics.request_unserved(ex.slug)
        else:
            status, reason = "400 Bad Request", "malformed or oversized HTTP request"
            metrics.request_unserved("malformed")
        log.info(
            "rejected request from %s: %s (%s)", self.client_address, reason, type(ex).__name__
        )
        body = f"{reason}\n".encode()
        head = (
            f"HTTP/1.1 {status}\r\nConnection: close\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.response_length = len(head) + len(body)  # for the access log, as pywsgi leaves 0
        return status, head + body

    def _respond(self, status: str, reason: str, headers: handshake.Headers) -> None:
        body = f"{reason}\n".encode()
        WSGIHandler.start_response(
            self,
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                *headers,
            ],
        )
        self.write(body)
