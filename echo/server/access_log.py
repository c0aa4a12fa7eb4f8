"""gunicorn's access log, its format compiled once, its lines written without ``logging``.

The line is gunicorn's line, its values escaped (``access_format``). Where
the access log's handlers would write the message as it is (gunicorn's own
``accesslog``: ``-`` or a file), the line is written to them directly;
any other set-up, a ``logconfig`` of one's own included, gets ``logging``'s
records as gunicorn's ``access()`` makes them.

Set ``logger_class = "echo.server.access_log.AccessLogger"`` (gunicorn.conf.py does).
"""

from __future__ import annotations

import logging
import time
import traceback
from datetime import timedelta
from typing import Any

from gevent import monkey
from gunicorn import glogging

from .access_format import Atoms, LineFormat

_MESSAGE_ONLY = "%(message)s"  # gunicorn's access format: the line is the message
_PLAIN_HANDLERS = (logging.StreamHandler, logging.FileHandler)  # exactly these, not subclasses


def plain_handlers(log: logging.Logger) -> list[logging.StreamHandler] | None:
    """The handlers of ``log`` if each would write a message as it is, else ``None``.

    That is: stream and file handlers, writing the message alone, at INFO,
    with no filter on them or on ``log``, which does not propagate. Any
    other set-up (syslog, a logconfig with formats or filters of its own,
    rotating files) needs ``logging``'s records.
    """
    if log.filters or log.propagate or log.disabled or not log.isEnabledFor(logging.INFO):
        return None
    handlers = log.handlers
    for handler in handlers:
        formatter = handler.formatter
        if (
            type(handler) not in _PLAIN_HANDLERS
            or handler.filters
            or handler.level > logging.INFO
            or getattr(handler, "stream", None) is None  # a file opened on first use
            or type(formatter) is not logging.Formatter
            or type(formatter._style) is not logging.PercentStyle
            or formatter._fmt != _MESSAGE_ONLY
        ):
            return None
    return handlers or None


def _write(handler: logging.StreamHandler, line: str) -> None:
    """Write ``line`` as ``handler`` would; the caller takes its lock where it is needed.

    In a gevent worker (``threading`` patched) every line is written by a
    greenlet of the one thread, and a write to a log file or pipe never
    yields to another greenlet: two lines cannot interleave, and the lock,
    gevent's ``RLock`` in Python, was 13k instructions a line
    (bench/README.md). Where threads are real, it is taken.
    """
    handler.stream.write(line + handler.terminator)
    handler.stream.flush()


class AccessLogger(glogging.Logger):
    """gunicorn's logger with its access-log format compiled, the values escaped."""

    atoms_wrapper_class = staticmethod(lambda atoms: atoms)  # Atoms is its own SafeAtoms
    _second: int | None = None
    _now = ""
    _plain_handlers: list[logging.StreamHandler] | None = None
    _line_format: LineFormat | None = None
    _threads_patched: bool | None = None

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> Atoms:
        return Atoms.of_response(self, resp, req, environ, request_time)

    def setup(self, cfg: Any) -> None:
        """gunicorn's, then whether the access lines can skip ``logging``, and their format
        compiled (as gunicorn settles ``access_log_enabled`` here: a reload runs it again)."""
        super().setup(cfg)
        self._plain_handlers = plain_handlers(self.access_log)
        self._line_format = LineFormat.compile(cfg.access_log_format)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        """gunicorn's: the line of a response (``log_values``)."""
        self.log_values(
            environ,
            resp.status,
            getattr(resp, "sent", None),
            getattr(req, "headers", req),
            resp.headers,
            request_time.total_seconds(),
        )

    def log_values(
        self,
        environ: dict[str, Any],
        status: Any,
        sent: int | None,
        request_headers: Any,
        response_headers: Any,
        seconds: float,
    ) -> None:
        """The access line of a request or a session, written straight to plain handlers
        where it can be.

        Through ``logging`` each line costs a ``LogRecord`` (the caller's
        frame looked up, the record built, filtered and formatted): about
        170k of the 800k instructions of a handshake (bench/README.md). When
        the access log's handlers would write the message as it is
        (``plain_handlers``), the line is written here, the same line, made
        by the compiled format from these values as they are (no response
        object, no ``timedelta``, no mapping of atoms). ``seconds`` is how
        long the request, or the session, took.
        """
        if not self.access_log_enabled:
            return
        handlers, line_format = self._plain_handlers, self._line_format
        try:
            if line_format is not None and handlers is not None:
                line = line_format.line(
                    environ, status, sent, request_headers, response_headers, seconds, self
                )
            else:
                atoms = Atoms(
                    environ, status, sent, request_headers, response_headers, seconds, self
                )
                if handlers is None:
                    self.access_log.info(self.cfg.access_log_format, atoms)
                    return
                line = self.cfg.access_log_format % atoms
            threads_patched = self._threads_patched
            if threads_patched is None:  # settled at the first line: a worker patches after fork
                threads_patched = self._threads_patched = monkey.is_module_patched("threading")
            if threads_patched:
                for handler in handlers:
                    _write(handler, line)
            else:
                for handler in handlers:
                    with handler.lock:
                        _write(handler, line)
        except Exception:
            self.error(traceback.format_exc())

    def now(self) -> str:
        """gunicorn's timestamp, formatted once a second rather than once a line."""
        second = int(time.time())
        if second != self._second:
            self._second, self._now = second, super().now()
        return self._now
