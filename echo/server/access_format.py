"""gunicorn's access-log format, compiled once into a function, its values escaped.

gunicorn's ``Logger.atoms()`` builds every atom, plus one per request
header, response header and environ entry, and then copies them all to
escape quotes: about 35 us a line, most of it for atoms the format never
names. Here a format is compiled once, when the logger is set up, into one
Python function that computes the atoms it names, in order, inline, and
formats the line (``LineFormat``): a function per atom cost a call each, 11
calls a line, about a sixth of a handshake (bench/README.md). The same
expressions compute single atoms for ``Atoms``, the mapping that
``logging`` formats by name when the line goes through its records.

The function is generated source text, as ``dataclasses`` generates
``__init__``: the format's own text and names never enter that source
(each is a constant handed to it), so a format cannot inject code.

Values are escaped as nginx escapes its log: a control character (C0, DEL,
C1) becomes ``\\xHH`` and a backslash ``\\\\``, so no request can forge a log
line or send escape sequences to an operator's terminal; a double quote
becomes ``\\"``, as gunicorn writes it. Response headers (``%({name}o)s``)
are found too: gunicorn's own atoms miss them under its gevent worker,
which keeps them as bytes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')

# What escape() changes in ASCII text: controls, DEL, the double quote and the backslash.
_TOUCHED = bytes([*range(0x20), 0x7F, ord('"'), ord("\\")])


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


def _escape_value(value: Any) -> Any:
    return escape(value) if isinstance(value, str) else value


# The values a line is made of, the parameters of every compiled function:
# the request's (or session's) WSGI environ, its status line, the bytes sent
# (None: unknown), request and response headers (``items()`` or pairs), its
# length in seconds, and the logger (its timestamp and ``_get_user``).
_PARAMETERS = "e, status, sent, request_headers, response_headers, seconds, logger"

# gunicorn's atoms as expressions of those values. A session may last days:
# the durations count them all, where a ``timedelta``'s ``seconds``
# (gunicorn's atoms) would start again from 0 every day.
_EXPRESSIONS = {
    "h": "e.get('REMOTE_ADDR', '-')",
    "l": "'-'",
    # gunicorn's _get_user finds no user without the header: no call then.
    "u": "(logger._get_user(e) or '-') if 'HTTP_AUTHORIZATION' in e else '-'",
    "t": "logger.now()",
    "r": "f\"{e['REQUEST_METHOD']} {e['RAW_URI']} {e['SERVER_PROTOCOL']}\"",
    "s": "status.split(None, 1)[0] if isinstance(status, str) else status",
    "m": "e.get('REQUEST_METHOD')",
    "U": "e.get('PATH_INFO')",
    "q": "e.get('QUERY_STRING')",
    "H": "e.get('SERVER_PROTOCOL')",
    "b": "'-' if sent is None else str(sent)",
    "B": "sent",
    "f": "e.get('HTTP_REFERER', '-')",
    "a": "e.get('HTTP_USER_AGENT', '-')",
    "T": "int(seconds)",
    "D": "round(seconds * 1_000_000)",
    "M": "round(seconds * 1_000_000) // 1000",
    "L": "f'{seconds:.6f}'",
    "p": "f'<{getpid()}>'",
}


def _expression(name: str) -> str:
    """The expression of ``%(name)s``, found as gunicorn's ``SafeAtoms`` finds it:
    header and environ names in any case, ``-`` for what is not there."""
    expression = _EXPRESSIONS.get(name)
    if expression is not None:
        return expression
    if name.startswith("{") and len(name) > 3 and name[-2] == "}":
        key, kind = repr(name[1:-2].lower()), repr(name[-1])  # a literal: safe in source
        named = f"named({key}, {kind}, e, request_headers, response_headers)"
        if kind == "'e'":  # most often an entry of that very name (echo.session)
            return f"e.get({key}) or {named}"
        return named
    return "'-'"


def named(
    name: str, kind: str, environ: dict[str, Any], request_headers: Any, response_headers: Any
) -> Any:
    """A request header (``i``), response header (``o``) or environ entry (``e``)."""
    if kind == "e":
        # Most names are the environ's own (echo.session) or its upper case (HTTP_HOST).
        for key in (name, name.upper()):
            if key in environ:
                return environ[key]
        items: Any = environ.items()
    else:
        items = request_headers if kind == "i" else response_headers
        items = items.items() if hasattr(items, "items") else items
    found: Any = "-"
    for key, value in items:  # the last of equal names, as gunicorn
        if isinstance(key, bytes):  # pywsgi keeps response headers as bytes
            key, value = key.decode("latin-1"), value.decode("latin-1")
        if key.lower() == name:
            found = value
    return found


def _function(source: str, constants: dict[str, Any]) -> Callable[..., Any]:
    """The function ``line`` defined by ``source``, with ``constants`` as its globals."""
    namespace = {"named": named, "getpid": os.getpid, **constants}
    exec(compile(source, "<access_log_format>", "exec"), namespace)
    return namespace["line"]


# One function per atom, for Atoms: (the values above) -> the atom's value.
_atom_functions: dict[str, Callable[..., Any]] = {}


def atom_function(name: str) -> Callable[..., Any]:
    """What computes ``%(name)s`` from a line's values (see ``_PARAMETERS``)."""
    function = _atom_functions.get(name)
    if function is None:
        source = f"def line({_PARAMETERS}):\n    return {_expression(name)}\n"
        function = _atom_functions[name] = _function(source, {})
    return function


class Atoms(dict):
    """The atoms of one access-log line, computed on lookup (``dict.__missing__``).

    A ``dict`` so that logging passes it to the format as its mapping, for a
    line that goes through ``logging``'s records.
    """

    __slots__ = ("values",)

    def __init__(
        self,
        environ: dict[str, Any],
        status: Any,
        sent: int | None,
        request_headers: Any,
        response_headers: Any,
        seconds: float,
        logger: Any,
    ) -> None:
        """A line's values, in ``_PARAMETERS``' order: ``seconds`` is how long it took."""
        self["l"] = "-"  # never empty: logging formats with an empty dict as no args
        self.values = (environ, status, sent, request_headers, response_headers, seconds, logger)

    @classmethod
    def of_response(
        cls, logger: Any, resp: Any, req: Any, environ: dict[str, Any], took: timedelta
    ) -> Atoms:
        """The atoms of gunicorn's ``Logger.access`` arguments."""
        return cls(
            environ,
            resp.status,
            getattr(resp, "sent", None),
            getattr(req, "headers", req),
            resp.headers,
            took.total_seconds(),
            logger,
        )

    def __missing__(self, key: str) -> Any:
        return _escape_value(atom_function(key)(*self.values))


_DIRECTIVE = re.compile(r"(%%|%\([^)]*\)s)")  # what LineFormat understands of a format


class LineFormat:
    """An access-log format compiled once into ``line``, a function of a line's values.

    ``line(environ, status, sent, request_headers, response_headers,
    seconds, logger)`` computes each atom once, formats the line, and
    escapes it only if one check of the whole line in C finds a character
    to escape: an ASCII line whose count of control characters, quotes and
    backslashes is the format's own has no value to escape.
    """

    def __init__(self, line: Callable[..., str]) -> None:
        self.line = line

    @classmethod
    def compile(cls, text: str) -> LineFormat | None:
        """``text`` compiled; ``None`` if it has a directive other than ``%(name)s`` or ``%%``."""
        constants: dict[str, Any] = {"escaped": _escape_value, "TOUCHED": _TOUCHED}
        assignments, fields = [], []
        literal = []  # the format's own text
        # The pieces alternate: text, a directive, text, ...
        for index, piece in enumerate(_DIRECTIVE.split(text)):
            if index % 2 and piece != "%%":
                value = f"v{len(assignments)}"
                assignments.append(f"    {value} = {_expression(piece[2:-2])}\n")
                fields.append(value)
                continue
            if not index % 2 and "%" in piece:
                return None
            text_piece = "%" if index % 2 else piece
            if text_piece:
                name = f"t{len(constants)}"
                constants[name] = text_piece
                fields.append(name)
                literal.append(text_piece)
        own = "".join(literal)
        encoded = own.encode("latin-1", "replace")
        constants["UNTOUCHED"] = len(encoded) - len(encoded.translate(None, _TOUCHED))
        plain = "".join(f"{{{field}}}" for field in fields)
        escaped = "".join(
            f"{{escaped({field})}}" if field.startswith("v") else f"{{{field}}}" for field in fields
        )
        check = (
            "line.isascii() and len(line) - len(line.encode('ascii').translate(None, TOUCHED))"
            " == UNTOUCHED"
            if own.isascii()
            else "False"
        )
        source = (
            f"def line({_PARAMETERS}):\n"
            + "".join(assignments)
            + f"    line = f'{plain}'\n"
            + f"    if {check}:\n"
            + "        return line\n"
            + f"    return f'{escaped}'\n"
        )
        return cls(_function(source, constants))
