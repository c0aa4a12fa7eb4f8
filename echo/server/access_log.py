"""gunicorn's access log, each atom computed only when the format names it, and escaped.

gunicorn's ``Logger.atoms()`` builds every atom, plus one per request
header, response header and environ entry, and then copies them all to
escape quotes: about 35 us a line, most of it for atoms the format never
names. ``Atoms`` computes an atom when the format asks for it, so the line
is gunicorn's line for a fraction of the cost (bench/README.md). Response
headers (``%({name}o)s``) are found too: gunicorn's own atoms miss them
under its gevent worker, which keeps them as bytes.

Values are escaped as nginx escapes its log: a control character (C0, DEL,
C1) becomes ``\\xHH`` and a backslash ``\\\\``, so no request can forge a log
line or send escape sequences to an operator's terminal; a double quote
becomes ``\\"``, as gunicorn writes it.

Where the line is written without ``logging`` (``plain_handlers``), the
format is compiled once (``LineFormat``): an atom function per ``%(name)s``,
and one check of the whole line for anything to escape.

Set ``logger_class = "echo.server.access_log.AccessLogger"`` (gunicorn.conf.py does).
"""

from __future__ import annotations

import itertools
import logging
import operator
import os
import re
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from gevent import monkey
from gunicorn import glogging

_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def escape(text: str) -> str:
    """``text`` safe to write in a log line (see the module docstring)."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    if char == '"':
        return '\\"'
    return "\\\\" if char == "\\" else f"\\x{ord(char):02x}"


class Atoms(dict):
    """The atoms of one access-log line, computed on lookup (``dict.__missing__``).

    A ``dict`` so that logging passes it to the format as its mapping; the
    format's names are looked up as gunicorn's ``SafeAtoms`` would: header
    and environ names in any case, ``-`` for what is not there.
    """

    __slots__ = (
        "environ",
        "logger",
        "request_headers",
        "response_headers",
        "seconds",
        "sent",
        "status",
    )

    def __init__(
        self,
        logger: AccessLogger,
        status: Any,
        sent: int | None,
        response_headers: Any,
        request_headers: Any,
        environ: dict[str, Any],
        seconds: float,
    ) -> None:
        """The request (or session) as plain values: ``seconds`` is how long it took.

        A session may last days: ``%(L)s`` and the other durations count
        them all, where a ``timedelta``'s ``seconds`` (gunicorn's atoms)
        would start again from 0 every day.
        """
        self["l"] = "-"  # never empty: logging formats with an empty dict as no args
        self.logger, self.status, self.sent = logger, status, sent
        self.response_headers, self.request_headers = response_headers, request_headers
        self.environ, self.seconds = environ, seconds

    @classmethod
    def of_response(
        cls, logger: AccessLogger, resp: Any, req: Any, environ: dict[str, Any], took: timedelta
    ) -> Atoms:
        """The atoms of gunicorn's ``Logger.access`` arguments."""
        return cls(
            logger,
            resp.status,
            getattr(resp, "sent", None),
            resp.headers,
            getattr(req, "headers", req),
            environ,
            took.total_seconds(),
        )

    def __missing__(self, key: str) -> Any:
        compute = _ATOMS.get(key)
        if compute is not None:
            value = compute(self)
        elif key.startswith("{") and len(key) > 3 and key[-2] == "}":
            value = self._named(key[1:-2].lower(), key[-1])
        else:
            return "-"
        return escape(value) if isinstance(value, str) else value

    def _named(self, name: str, kind: str) -> Any:
        """A request header (``i``), response header (``o``) or environ entry (``e``)."""
        if kind == "e":
            # Most names are the environ's own (echo.session) or its upper case (HTTP_HOST).
            for key in (name, name.upper()):
                if key in self.environ:
                    return self.environ[key]
            items: Any = self.environ.items()
        else:
            items = self.request_headers if kind == "i" else self.response_headers
            items = items.items() if hasattr(items, "items") else items
        found: Any = "-"
        for key, value in items:  # the last of equal names, as gunicorn
            if isinstance(key, bytes):  # pywsgi keeps response headers as bytes
                key, value = key.decode("latin-1"), value.decode("latin-1")
            if key.lower() == name:
                found = value
        return found


def _status(atoms: Atoms) -> Any:
    status = atoms.status
    return status.split(None, 1)[0] if isinstance(status, str) else status


def _microseconds(atoms: Atoms) -> int:
    return round(atoms.seconds * 1_000_000)


_ATOMS: dict[str, Callable[[Atoms], Any]] = {
    "h": lambda a: a.environ.get("REMOTE_ADDR", "-"),
    "u": lambda a: a.logger._get_user(a.environ) or "-",
    "t": lambda a: a.logger.now(),
    "r": lambda a: (
        f"{a.environ['REQUEST_METHOD']} {a.environ['RAW_URI']} {a.environ['SERVER_PROTOCOL']}"
    ),
    "s": _status,
    "m": lambda a: a.environ.get("REQUEST_METHOD"),
    "U": lambda a: a.environ.get("PATH_INFO"),
    "q": lambda a: a.environ.get("QUERY_STRING"),
    "H": lambda a: a.environ.get("SERVER_PROTOCOL"),
    "b": lambda a: "-" if a.sent is None else str(a.sent),
    "B": lambda a: a.sent,
    "f": lambda a: a.environ.get("HTTP_REFERER", "-"),
    "a": lambda a: a.environ.get("HTTP_USER_AGENT", "-"),
    "T": lambda a: int(a.seconds),
    "D": _microseconds,
    "M": lambda a: _microseconds(a) // 1000,
    "L": lambda a: f"{a.seconds:.6f}",
    "p": lambda a: f"<{os.getpid()}>",
}


_DIRECTIVE = re.compile(r"(%%|%\([^)]*\)s)")  # what LineFormat understands of a format


class LineFormat:
    """An access-log format compiled once: its text, and the atom of each ``%(name)s``.

    Formatting by name looks each atom up through ``Atoms.__missing__`` and
    escapes each value with a regular expression: about 100k instructions a
    line, an eighth of a handshake (bench/README.md). Here each atom is
    called directly, and the line is escaped only if a check of the whole
    line, in C, finds a character to escape in it.
    """

    def __init__(self, template: str, atoms: list[Callable[[Atoms], Any]]) -> None:
        self._template = template  # the format with %s for each atom
        self._atoms = atoms
        # How many characters an escape would touch the format's own text
        # holds: a line with more has a value to escape (see line()).
        touched = template.encode("latin-1", "replace").translate(None, _TOUCHED)
        self._untouched = len(template) - len(touched)
        self._ascii = template.isascii()

    @classmethod
    def compile(cls, text: str) -> LineFormat | None:
        """``text`` compiled; ``None`` if it has a directive other than ``%(name)s`` or ``%%``."""
        template, atoms = [], []
        # The pieces alternate: text, a directive, text, ...
        for index, piece in enumerate(_DIRECTIVE.split(text)):
            if index % 2 and piece != "%%":
                template.append("%s")
                atoms.append(_atom(piece[2:-2]))
            elif index % 2 or "%" not in piece:
                template.append(piece)
            else:
                return None
        return cls("".join(template), atoms)

    def line(self, atoms: Atoms) -> str:
        """The line for ``atoms``, each atom computed once, escaped only where needed.

        The check is one pass in C over the line's bytes: an ASCII line
        whose count of control characters, quotes and backslashes is the
        format's own has no value to escape.
        """
        values = tuple(map(operator.call, self._atoms, itertools.repeat(atoms)))
        line = self._template % values
        if (
            self._ascii
            and line.isascii()
            and len(line) - len(line.encode("ascii").translate(None, _TOUCHED)) == self._untouched
        ):
            return line
        return self._template % tuple([escape(v) if isinstance(v, str) else v for v in values])


# What escape() changes in ASCII text: controls, DEL, the double quote and the backslash.
_TOUCHED = bytes([*range(0x20), 0x7F, ord('"'), ord("\\")])


def _atom(name: str) -> Callable[[Atoms], Any]:
    """What computes ``%(name)s``, as ``Atoms`` finds it."""
    compute = _ATOMS.get(name)
    if compute is not None:
        return compute
    if name.startswith("{") and len(name) > 3 and name[-2] == "}":
        key, kind = name[1:-2].lower(), name[-1]
        if kind == "e":  # most often an entry of that very name (echo.session)
            return lambda atoms: atoms.environ.get(key) or atoms._named(key, kind)
        return lambda atoms: atoms._named(key, kind)
    return lambda atoms: "-"


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
    """gunicorn's logger with lazily computed, escaped access-log atoms."""

    atoms_wrapper_class = staticmethod(lambda atoms: atoms)  # Atoms is its own SafeAtoms
    _second: int | None = None
    _now = ""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> Atoms:
        return Atoms.of_response(self, resp, req, environ, request_time)

    _plain_handlers: list[logging.StreamHandler] | None = None

    _line_format: LineFormat | None = None

    def setup(self, cfg: Any) -> None:
        """gunicorn's, then whether the access lines can skip ``logging``, and their format
        compiled (as gunicorn settles ``access_log_enabled`` here: a reload runs it again)."""
        super().setup(cfg)
        self._plain_handlers = plain_handlers(self.access_log)
        self._line_format = LineFormat.compile(cfg.access_log_format)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        """gunicorn's: the line of a response (``log_atoms``)."""
        self.log_atoms(Atoms.of_response(self, resp, req, environ, request_time))

    def log_atoms(self, atoms: Atoms) -> None:
        """The access line of ``atoms``, written straight to plain handlers where it can be.

        Through ``logging`` each line costs a ``LogRecord`` (the caller's
        frame looked up, the record built, filtered and formatted): about
        170k of the 800k instructions of a handshake (bench/README.md). When
        the access log's handlers would write the message as it is
        (``plain_handlers``: gunicorn's own ``accesslog``, a file or ``-``),
        the line is written here, the same line; any other set-up, a
        ``logconfig`` of one's own included, goes through ``logging`` as
        gunicorn's ``access()`` sends it. The worker calls this with the
        values of a request or a session as they are: without gunicorn's
        response object and ``timedelta``, a line costs about half as much.
        """
        if not self.access_log_enabled:
            return
        handlers = self._plain_handlers
        try:
            if handlers is None:
                self.access_log.info(self.cfg.access_log_format, atoms)
                return
            line_format = self._line_format
            if line_format is not None:
                line = line_format.line(atoms)
            else:
                line = self.cfg.access_log_format % atoms
            if monkey.is_module_patched("threading"):
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
