"""gevent's WSGI server, running each WebSocket session after its handshake is served.

It serves an application's endpoints (``Endpoints.of(application)``) with
their settings. pywsgi keeps a request's objects (the handler, the WSGI
environ, the parsed headers, Flask's request) until its handler returns. A
WebSocket session can last for days, so ``UpgradeHandler`` returns after the
upgrade, handing back the session, and the server runs it in the same
greenlet with none of them alive: an idle connection then costs about 4 KiB
less (bench/README.md).

With TLS, the server also bounds the TLS handshake: gevent's would wait
forever for a client that sends nothing, and print a traceback for every
handshake that fails. Out of file descriptors, it pauses accepting instead of
printing a traceback per attempt; and it hands freed memory back now and then
(echo/memory.py).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import ssl
from typing import Any

import gevent
from gevent import socket
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from . import lingering, memory, metrics
from .capacity import Capacity, default_limit
from .endpoints import Endpoints
from .errors import Evicted
from .pool import ConnectionPool
from .settings import Settings
from .sockets import peer_text
from .throttled import ThrottledWarning
from .unfinished import UnfinishedRequests

log = logging.getLogger(__name__)

# accept() errors that mean "not now" rather than "never": pause, then try again.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_PAUSE = 0.1  # seconds
SHARED_MAX_ACCEPT = 10  # connections accepted per pass with several workers (set_max_accept)

_PLAIN_HTTP_REASON = "this port speaks TLS: use https:// or wss://"
_PLAIN_HTTP_ANSWER = (
    "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    f"Content-Length: {len(_PLAIN_HTTP_REASON) + 1}\r\n\r\n{_PLAIN_HTTP_REASON}\n"
).encode()


class WebSocketServer(WSGIServer):
    """Use with ``UpgradeHandler`` (or a subclass): gunicorn's worker and ``python app.py`` do."""

    def __init__(
        self, listener: Any, application: Any = None, spawn: Any = "default", **kwargs: Any
    ):
        if isinstance(spawn, Pool):  # gunicorn's worker hands one of worker_connections
            spawn = ConnectionPool(spawn.size)
        super().__init__(listener, application, spawn=spawn, **kwargs)
        self.endpoints = Endpoints.of(self.application)
        self.settings: Settings = self.endpoints.settings
        # Made in the process that serves (a worker is forked before): its pid.
        self.served_by = self.settings.served_by
        pool_size = self.pool.size if self.pool is not None else None
        limit = self.settings.max_websockets
        if limit is not None and pool_size is not None and limit >= pool_size:
            log.warning(
                "max_websockets (%d) is not below worker_connections (%d): "
                "health checks may find no free connection",
                limit,
                pool_size,
            )
        self.capacity = Capacity(limit or default_limit(pool_size))
        self.unfinished = UnfinishedRequests()
        if self.pool is not None:
            self.full = self._full  # gevent sets it to the pool's full(); see _full
        self._making_room = ThrottledWarning(
            log,
            "worker_connections reached: ending the oldest unfinished request (408) "
            "to accept a new connection",
        )
        self._trimmer = memory.Trimmer(lambda: len(self.pool) if self.pool is not None else 0)
        self._resume: Any = None  # the timer that resumes accepting after a pause
        self._cannot_accept = ThrottledWarning(
            log,
            f"cannot accept connections: %s (open-file limit %d, %s connections open); "
            f"accepting pauses for {ACCEPT_PAUSE:g} s at a time",
        )

    def set_max_accept(self) -> None:
        """Connections accepted per pass of the event loop when several workers share a socket.

        pywsgi accepts one per pass then (gevent's own accepts up to 100), so
        that one worker does not take a whole burst: each connection then
        cost a pass of the loop, about 10 µs of a handshake with two workers
        (bench/README.md). A batch of ``SHARED_MAX_ACCEPT`` keeps most of
        what a pass costs, shared, and still leaves the rest of a burst to
        the other workers.
        """
        if self.environ.get("wsgi.multiprocess"):
            self.max_accept = SHARED_MAX_ACCEPT

    def _full(self) -> bool:
        """Whether accepting must wait; at the pool's limit, the oldest unfinished request yields.

        Ending it can free its slot at once (the 408 sent, the greenlet gone),
        so the pool is asked again. If it is still full, accepting resumes
        when a slot frees, and is tried again after ACCEPT_PAUSE in case an
        unfinished request has grown old enough to end by then.
        """
        if not self.pool.full():
            return False
        if self.unfinished.end_oldest():
            self._making_room.happened()
        if not self.pool.full():
            return False
        self._pause()
        return True

    def do_read(self) -> tuple[socket.socket, Any] | None:
        """Accept a connection; out of file descriptors (or memory), pause instead of failing.

        gevent's own handling prints a traceback per failed accept(), a
        hundred a second while the limit lasts. The connections accepted
        already are not affected; new ones wait in the kernel's backlog.
        """
        try:
            return super().do_read()
        except OSError as error:
            if error.errno not in _OUT_OF_RESOURCES:
                raise
            self._pause_accepting(error)
            return None

    def _pause(self) -> None:
        """Stop accepting for ACCEPT_PAUSE seconds."""
        self.stop_accepting()
        if self._resume is not None:
            self._resume.close()
        self._resume = self.loop.timer(ACCEPT_PAUSE)
        self._resume.start(self._start_accepting_if_started)

    def _pause_accepting(self, error: OSError) -> None:
        self._pause()
        metrics.ACCEPT_PAUSES.inc()
        in_use = self.pool.size - self.pool.free_count() if self.pool is not None else None
        self._cannot_accept.happened(
            error.strerror, resource.getrlimit(resource.RLIMIT_NOFILE)[0], in_use
        )

    def init_socket(self) -> None:
        """gevent's, with ``TCP_NODELAY`` on the listener, which accepted sockets inherit.

        Nagle's algorithm holds a small write while an earlier one is not yet
        acknowledged: of two pipelined messages, the second echo waited for
        the client's delayed ACK, 44 ms a pair under ``python app.py``.
        gunicorn sets it on its own listeners.
        """
        super().init_socket()
        if self.socket.family in (socket.AF_INET, socket.AF_INET6):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def start(self) -> None:
        super().start()
        self._trimmer.start()

    def close(self) -> None:
        self._trimmer.stop()
        super().close()

    def do_handle(self, sock: Any, address: Any) -> None:
        """Serve an accepted connection in a greenlet of its own, then close it.

        gevent's runs it through a function that calls ``handle(*args)``: on
        Python 3.11 and 3.12 two calls through C, whose frames every switch of
        the connection's greenlet would copy out and back in (``pool.py``).
        """
        try:
            self._spawn(self._handle_and_close, sock, address)
        except BaseException:
            self.do_close(sock, address)
            raise

    def _handle_and_close(self, sock: Any, address: Any) -> None:
        try:
            # Chosen as gevent's init_socket chooses its _handle, which close()
            # forgets: connections accepted before a close still start after it.
            if self.ssl_args:
                self.wrap_socket_and_handle(sock, address)
            else:
                self.handle(sock, address)
        finally:
            self.do_close(sock, address)

    def handle(self, sock: Any, address: Any) -> None:
        session = self.handler_class(sock, address, self).handle()
        if session is not None:
            session.serve()

    def do_close(self, sock: socket.socket, *args: Any) -> None:
        super().do_close(sock, *args)
        self._trimmer.connection_ended()

    def wrap_socket_and_handle(self, client_socket: socket.socket, address: Any) -> None:
        tls_socket = self._tls_handshake(client_socket, address)
        if tls_socket is not None:
            with tls_socket:
                self.handle(tls_socket, address)

    def _tls_handshake(self, client_socket: socket.socket, address: Any) -> ssl.SSLSocket | None:
        """The TLS socket, its handshake bounded as a whole by ``read_timeout``.

        ``None`` if the handshake failed, which is one INFO line; plain HTTP
        gets a plain-text 400 saying to use TLS, as nginx does.
        """
        tls_socket = None
        self.unfinished.started()
        try:
            with gevent.Timeout(self.settings.read_timeout or None, TimeoutError):
                tls_socket = self.wrap_socket(
                    client_socket, do_handshake_on_connect=False, **self.ssl_args
                )
                tls_socket.do_handshake()
            return tls_socket
        except (OSError, Evicted) as error:  # ssl.SSLError is an OSError
            log.info(
                "TLS handshake with %s failed: %s",
                peer_text(address, client_socket if tls_socket is None else tls_socket),
                self._failure(error),
            )
            metrics.request_unserved(_unserved_reason(error))
            if tls_socket is not None:
                if _is_plain_http(error):
                    _answer_in_plain_text(tls_socket, self.settings.close_timeout)
                tls_socket.close()
            return None
        finally:
            self.unfinished.finished()

    def _failure(self, error: OSError | Evicted) -> str:
        if isinstance(error, Evicted):
            return "ended to make room for a new connection (worker_connections reached)"
        if isinstance(error, TimeoutError):
            return f"no complete TLS handshake within {self.settings.read_timeout:g} s"
        if _is_plain_http(error):
            return "plain HTTP sent to the TLS port (answered 400)"
        if isinstance(error, ssl.SSLError) and getattr(error, "library", None):  # from OpenSSL
            return f"TLS error {error.reason}"
        return f"the client left ({type(error).__name__})"


def _unserved_reason(error: OSError | Evicted) -> str:
    if isinstance(error, Evicted):
        return "evicted"
    return "tls_timeout" if isinstance(error, TimeoutError) else "tls_failed"


def _is_plain_http(error: OSError) -> bool:
    return isinstance(error, ssl.SSLError) and error.reason == "HTTP_REQUEST"


def _answer_in_plain_text(tls_socket: ssl.SSLSocket, linger: float) -> None:
    """Write the 400 on the TCP connection beneath the failed TLS socket, then close it politely."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(tls_socket.fileno())) as raw:
        raw.sendall(_PLAIN_HTTP_ANSWER)
        lingering.drain(raw, linger)
