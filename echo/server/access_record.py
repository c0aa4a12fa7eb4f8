"""What an access-log line says of a request or a WebSocket session, kept apart from the handler.

A session's line is written when it ends, maybe days after its handshake.
The record keeps what the line needs (the environ's text entries, interned)
so that at the upgrade the handler, pywsgi's reader and the application's
request objects can all be let go: a connection that stays open holds only
the record (bench/README.md, "An idle connection").
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The environ key of a finished session's summary, for the access log
#: (gunicorn: ``%({echo.session}e)s`` in access_log_format).
SESSION_KEY = "echo.session"

# Environ entries holding objects of the request (the input stream, the socket) rather than text.
_REQUEST_OBJECTS = ("wsgi.input", "gunicorn.sock")


@dataclass(slots=True)
class AccessRecord:
    """One request, or one WebSocket session, as its access-log line describes it."""

    client_address: Any
    requestline: str | None
    environ: dict[str, Any] | None  # None when the request was refused before it had one
    headers: Any  # the request's headers, as ``items()``
    status: str
    response_headers: list[tuple[Any, Any]]
    response_length: int
    time_start: float
    time_finish: float = 0.0

    @classmethod
    def of_session(
        cls,
        client_address: Any,
        requestline: str | None,
        environ: dict[str, Any],
        status: str,
        response_length: int,
        time_start: float,
    ) -> AccessRecord:
        """The record a session keeps of its handshake: the environ less the request's
        objects, and the headers read back from it.

        The handler lets go of the environ at the upgrade, so the session
        keeps that very dict (copying and interning it was 19k instructions,
        bench/README.md), without the entries that would keep pywsgi's reader (and its
        8 KiB buffer) alive. Its strings are shared between connections as far
        as they repeat: ``request_head`` interns what the client sent.
        """
        for key in _REQUEST_OBJECTS:
            environ.pop(key, None)
        return cls(
            client_address,
            sys.intern(requestline or ""),
            environ,
            EnvironHeaders(environ),
            status,
            [],  # a 101 has no response headers of its own to keep
            response_length,
            time_start,
        )


#: Writes one access-log line.
AccessWriter = Callable[[AccessRecord], None]


class EnvironHeaders:
    """A request's headers, read back from its environ's ``HTTP_*`` entries when logged.

    Stands in for the parsed head (about 1.2 KiB), which a session does not keep.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: dict[str, str]) -> None:
        self._environ = environ

    def items(self) -> list[tuple[str, str]]:
        return [
            (key[5:].replace("_", "-"), value)
            for key, value in self._environ.items()
            if key.startswith("HTTP_")
        ]


def write_pywsgi_line(log: Any, record: AccessRecord) -> None:
    """pywsgi's access-log line (the development server's), and the session's summary."""
    client = record.client_address
    address = client[0] if isinstance(client, tuple) else client
    delta = f"{record.time_finish - record.time_start:.6f}" if record.time_finish else "-"
    session = (record.environ or {}).get(SESSION_KEY, "-")
    log.write(
        f"{address or '-'} - - [{datetime.now().replace(microsecond=0)}]"
        f' "{record.requestline or ""}" {(record.status or "000").split()[0]}'
        f" {record.response_length or '-'} {delta} {session}\n"
    )
