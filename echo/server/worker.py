"""The gunicorn worker: gevent-websocket's, with ``UpgradeHandler`` and gunicorn's logging."""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import signal
import ssl
import sys
from datetime import timedelta
from types import FrameType
from typing import Any

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventResponse, PyWSGIHandler

from . import memory, metrics
from .access_log import AccessLogger
from .access_record import AccessRecord, AccessWriter
from .connection import ServerConnection
from .handler import UpgradeHandler
from .server import WebSocketServer


class GunicornHandler(PyWSGIHandler, UpgradeHandler):
    """``UpgradeHandler`` whose requests reach gunicorn's access log.

    gunicorn's ``PyWSGIHandler`` comes first so its ``get_environ`` wins;
    the stock gevent-websocket worker drops both it and the access log.
    """

    def get_environ(self) -> dict[str, Any]:
        """Honour X-Forwarded-For/-Proto from a proxy in gunicorn's ``forwarded_allow_ips``.

        gunicorn applies that setting in its own HTTP parser, which this
        pywsgi-based worker does not use.
        """
        environ = super().get_environ()
        # As gunicorn: a connection over a Unix socket (a proxy on the same host)
        # is trusted whatever forwarded_allow_ips says.
        if isinstance(self.client_address, tuple) and not _trusted(
            environ.get("REMOTE_ADDR", ""), self.server.worker.cfg
        ):
            return environ
        forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded_for:
            environ["REMOTE_ADDR"] = forwarded_for.split(",")[-1].strip()
        proto = environ.get("HTTP_X_FORWARDED_PROTO", "").lower()
        if proto in ("http", "https"):
            environ["wsgi.url_scheme"] = proto
        return environ

    log_request = UpgradeHandler.log_request  # deferred to the end of a WebSocket session

    def _access_writer(self) -> AccessWriter:
        return functools.partial(write_gunicorn_line, self.server.worker.log)


class CountingHandler(GunicornHandler):
    """``GunicornHandler`` counting requests toward gunicorn's ``max_requests``.

    Used only when that is set, so that the default (no limit) pays nothing a
    request. Every request comes to ``get_environ`` once, a handshake served
    without pywsgi included.
    """

    def get_environ(self) -> dict[str, Any]:
        self.server.worker.request_started()
        return super().get_environ()


def write_gunicorn_line(log: Any, record: AccessRecord) -> None:
    """gunicorn's access-log call, as its ``PyWSGIHandler.log_request`` makes it.

    The request's headers go as they are, for the atoms to read only if the
    format names one (``access_log``); gunicorn's own handler lists them
    first, and converts both timestamps to datetimes.
    """
    environ = record.environ
    if environ is None:
        # The request was refused before it had an environ (4xx): gunicorn's
        # access log needs one, so log what is known.
        client = record.client_address
        words = (record.requestline or "").split()
        method, uri, protocol = words if len(words) == 3 else ("-", "-", "-")
        environ = {"REQUEST_METHOD": method, "RAW_URI": uri, "SERVER_PROTOCOL": protocol}
        if isinstance(client, tuple):  # a Unix socket's peer has no address: "-"
            environ["REMOTE_ADDR"] = client[0]
    status = record.status.decode() if isinstance(record.status, bytes) else record.status
    seconds = record.time_finish - record.time_start
    if isinstance(log, AccessLogger):
        log.log_values(
            environ,
            status,
            record.response_length,
            record.headers,
            record.response_headers,
            seconds,
        )
        return
    response = GeventResponse(status, record.response_headers, record.response_length)
    log.access(response, record.headers, environ, timedelta(seconds=seconds))


# Whether each client address is a trusted proxy: settled once per address
# (ipaddress costs about 20 us a request); the worker's settings never change.
_trusted_addresses: dict[str, bool] = {}
_TRUSTED_ADDRESSES_KEPT = 4096


def _trusted(address: str, cfg: Any) -> bool:
    trusted = _trusted_addresses.get(address)
    if trusted is None:
        if len(_trusted_addresses) >= _TRUSTED_ADDRESSES_KEPT:
            _trusted_addresses.clear()
        trusted = _trusted_addresses[address] = _is_trusted(address, cfg)
    return trusted


def _is_trusted(address: str, cfg: Any) -> bool:
    if "*" in cfg.forwarded_allow_ips:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in cfg.forwarded_allow_networks())


class GunicornServer(WebSocketServer):
    """``WebSocketServer`` that knows its gunicorn worker: its settings, its request
    count, and its logger as given.

    pywsgi wraps the server's logger in a ``LoggingLogAdapter``, through which
    every attribute (``cfg``, ``access``) is a failed lookup, an
    ``AttributeError`` raised and caught, and then its ``__getattr__``: three
    a handshake. The worker's is gunicorn's own.
    """

    def __init__(self, *args: Any, worker: WebSocketWorker, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker = worker

    def close(self) -> None:
        """Stop accepting; the worker stops serving too (``stop_serving``).

        gunicorn closes its servers once the worker is no longer ``alive``,
        whatever ended its life: its reloader (``--reload``, on a changed
        file) only clears ``alive``, and the WebSockets stayed open, the old
        code serving, until they left or ``graceful_timeout`` passed.
        """
        super().close()
        self.worker.stop_serving()


class WebSocketWorker(GeventWebSocketWorker):
    """Use as ``worker_class = "echo.server.worker.WebSocketWorker"``.

    On shutdown (SIGTERM, which is also how a reload retires old workers) every
    open WebSocket is closed with 1001 once idle, so clients see a clean close
    instead of the stock worker's dropped connection (1006) at graceful_timeout.
    """

    wsgi_handler = GunicornHandler

    def server_class(self, *args: Any, **kwargs: Any) -> GunicornServer:
        """gunicorn makes each listener's server with ``self.server_class(...)``: each
        server knows its worker, which counts requests for ``max_requests``, and the
        worker its servers, to stop them accepting at once."""
        if self.cfg.max_requests > 0:
            kwargs["handler_class"] = CountingHandler
        server = GunicornServer(*args, worker=self, **kwargs)
        self._servers.append(server)
        return server

    def request_started(self) -> None:
        """Count a request (a handshake is one) toward gunicorn's ``max_requests``.

        At the limit the worker stops as a reload stops it: it accepts no
        more, its WebSockets close with 1001 once idle, and gunicorn's master
        starts another. gunicorn's own gevent worker counts in a code path
        this one does not take, so the setting did nothing.
        """
        self.nr += 1
        if self.nr == self.max_requests:
            self.log.info("Autorestarting worker after %d requests (max_requests)", self.nr)
            self.stop_serving()

    def init_process(self) -> None:
        self._servers: list[GunicornServer] = []
        memory.tune_process()
        # The echo.* loggers write to gunicorn's error log, at its level.
        logger = logging.getLogger("echo")
        logger.handlers = self.log.error_log.handlers
        logger.setLevel(self.log.error_log.level)
        logger.propagate = False
        super().init_process()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM: stop, from the event loop. A handler runs between any two bytecodes,
        in whatever greenlet is running: accepting a batch, say, which a listener
        closed under it would end in a traceback."""
        gevent.spawn(self.stop_serving)

    def stop_serving(self) -> None:
        """Stop gracefully: accept nothing more, and close each WebSocket with 1001 once idle.

        gunicorn's loop would close the listeners within a second (its second
        close does nothing); meanwhile this worker would take connections
        only to close them, where another worker, or the next, can serve them.
        """
        self.alive = False
        if self._stopping:
            return
        self._stopping = True
        for server in self._servers:
            server.close()
        ServerConnection.go_away_all()

    _stopping = False  # a graceful stop has begun
    _quitting = False  # a quick stop has begun
    _served = False  # run() has returned: the process is on its way out

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._served = True
            metrics.BATCH.flush()  # the counts of the last second

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """Quick shutdown (SIGQUIT, SIGINT): a Close frame where one can go now, then exit.

        Ctrl-C reaches a worker twice, as SIGINT from the terminal and as the
        master's SIGQUIT. gunicorn's handler would run once for each, in a
        greenlet that exits with ``sys.exit()`` after 0.1 s; the second such
        exit, or one that comes after the worker has finished on its own,
        lands in the interpreter's shutdown and prints a traceback. So the
        quick stop runs once, and only ends a worker that is still serving.
        """
        if not self._quitting:
            self._quitting = True
            gevent.spawn(self._quit)

    def _quit(self) -> None:
        self.alive = False
        gevent.spawn(ServerConnection.abort_all)  # a client that stopped reading may hold it
        self.cfg.worker_int(self)
        gevent.sleep(0.1)  # gunicorn's pause, for the Close frames to go
        if not self._served:
            sys.exit(0)  # raised in the main greenlet by gevent's hub: the worker exits


_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


def stop_early_if_asked(arbiter: Any) -> None:
    """In a new worker, right after the fork: a stop signal from now on ends it at once.

    Until ``init_process`` installs the worker's handlers, it has the
    master's, which only queue a signal for the master's loop: a SIGTERM
    that stopped the server in that window was lost, and the worker stayed
    until ``graceful_timeout`` (30 s). Such a signal now takes its default
    action (a worker that serves nothing yet just ends), and one the
    master's handler already queued here ends it too. gunicorn.conf.py
    calls this from its ``post_fork`` hook.
    """
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    queued = arbiter.SIG_QUEUE  # this process's copy of the master's queue
    while not queued.empty():
        if queued.get_nowait() in _STOP_SIGNALS:
            os._exit(0)


# gunicorn settings this worker does not apply, and what does the same thing
# here: those of gunicorn's own HTTP parser, which it replaces with a strict
# one, and of the statsd logger, which gunicorn uses only in place of the
# default logger class (gunicorn.conf.py sets this server's).
_NOT_APPLIED = {
    "limit_request_line": "a request line is bounded at 8 KiB (414)",
    "limit_request_fields": "a request has at most 100 header lines (431)",
    "limit_request_field_size": "a request's head is bounded at 64 KiB (431)",
    "keepalive": "an idle kept-alive connection is closed after ECHO_READ_TIMEOUT",
    "permit_obsolete_folding": "obs-fold is refused (400), as proxies may read it otherwise",
    "strip_header_spaces": "a space before a header's colon is refused (400)",
    "permit_unconventional_http_method": "a method is a token; unknown ones get 501",
    "casefold_http_method": "methods are case-sensitive (RFC 9110)",
    "header_map": "a header name with an underscore is dropped",
    "secure_scheme_headers": "X-Forwarded-Proto from forwarded_allow_ips sets the scheme",
    "statsd_host": "metrics are served for Prometheus at /metrics",
}


def check_gunicorn_settings(cfg: Any, log: Any) -> None:
    """Say at start which gunicorn settings this worker does not apply.

    Each changed from its default is a WARNING saying what applies instead
    (``_NOT_APPLIED``; request limits: docs/refusals.md). A PROXY protocol
    header would be read as a malformed request, every request refused:
    that stops the start.
    """
    if cfg.proxy_protocol != "off":
        raise SystemExit(
            f"gunicorn.conf.py: --proxy-protocol {cfg.proxy_protocol} is not supported by this"
            " worker; have the proxy send X-Forwarded-For (forwarded_allow_ips) instead"
        )
    for name, instead in _NOT_APPLIED.items():
        setting = cfg.settings[name]
        if setting.value != setting.default:
            log.warning("%s = %r is not applied by this worker: %s", name, setting.value, instead)


def check_certificate(cfg: Any) -> None:
    """Load gunicorn's ``certfile`` and ``keyfile`` as its workers will; one line if they fail.

    gunicorn checks only that the files exist, in a traceback; a key that
    does not match, or a file that is not PEM, would fail each worker's boot.
    """
    if not cfg.is_ssl:
        return
    try:
        ssl_context(cfg)
    except ssl.SSLError as error:
        reason = f"not a PEM certificate and its key ({error})"
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
    else:
        return
    raise SystemExit(
        f"gunicorn.conf.py: cannot use --certfile {cfg.certfile} --keyfile {cfg.keyfile}: {reason}"
    )
