"""Test modes: how a client asks ``/ws`` to misbehave on purpose, in the handshake's query.

``/ws?delay=500&close_after=3&code=1011`` echoes each message half a second
late and closes with 1011 after the third echo. Every value is checked
before the handshake is accepted: one that does not parse, or is out of its
bounds, gets a 400 naming the parameter. Unknown parameters are ignored
(clients add cache-busters) and listed by ``hello``. The table of
parameters and bounds is in the README, "Testing clients and proxies".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..protocol.errors import HandshakeRejected
from ..protocol.excerpt import excerpt

MAX_STREAM_BYTES = 64 << 20  # stream x size, per connection
MIN_RATE, MAX_RATE = 0.01, 10_000  # streamed messages per second
MAX_QUERY_FIELDS = 100
DEFAULT_STREAM_SIZE = 1024
#: Close codes a server may send (RFC 6455 section 7.4, and the IANA registry).
CLOSE_CODES = frozenset([*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)])
MAX_REASON = 123  # bytes of UTF-8 in a Close frame's reason
HELLO = "hello"
MAX_STREAM_MESSAGES = 1_000_000
#: The parameters that are modes of their own (the others qualify one).
MODES = ("delay", "close_after", "close_in", "drop_in", "stream")


@dataclass(frozen=True, slots=True)
class Modes:
    """One connection's test modes; the defaults are a plain echo."""

    delay: float = 0.0  # seconds before each echo
    close_after: int | None = None  # echoes
    close_in: float | None = None  # seconds after the handshake
    code: int = 1000  # of the close that close_after or close_in makes
    reason: str = ""
    drop_in: float | None = None  # seconds after the handshake
    stream: int = 0  # messages sent unasked
    size: int = DEFAULT_STREAM_SIZE  # bytes in each streamed message
    rate: float | None = None  # streamed messages per second; None: as fast as read
    binary: bool = False  # streamed messages are binary
    given: dict[str, str] = field(default_factory=dict)  # the modes' parameters, as given
    hello: str | None = None  # sent first: what the server saw (``hello.describe``)

    @property
    def names(self) -> list[str]:
        """The modes asked for, as metrics and the session's log line name them."""
        hello = [HELLO] if self.hello is not None else []
        return [name for name in MODES if name in self.given] + hello


def _refuse(reason: str) -> HandshakeRejected:
    return HandshakeRejected("400 Bad Request", reason, "test_mode")


def _whole(low: int, high: int, unit: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
            raise ValueError(f"must be a whole number of {unit} from {low:,} to {high:,}")
        return int(raw)

    return parse


def _number(raw: str) -> float:
    """A decimal number, or NaN, which no bound admits."""
    try:
        return float(raw) if raw.isascii() else math.nan
    except ValueError:
        return math.nan


def _seconds(raw: str) -> float:
    value = _number(raw)
    if not 0.1 <= value <= 3600:  # NaN and infinities included
        raise ValueError("must be a number of seconds from 0.1 to 3,600")
    return value


def _rate(raw: str) -> float:
    value = _number(raw)
    if not MIN_RATE <= value <= MAX_RATE:
        raise ValueError(f"must be a number of messages per second from {MIN_RATE} to {MAX_RATE:,}")
    return value


def _code(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and int(raw) in CLOSE_CODES):
        raise ValueError("must be a close code a server may send: 1000-1003, 1007-1014, 3000-4999")
    return int(raw)


def _reason(raw: str) -> str:
    if "\ufffd" in raw:
        raise ValueError("must be UTF-8, percent-encoded")
    if len(raw.encode()) > MAX_REASON:
        raise ValueError(f"must be at most {MAX_REASON} bytes of UTF-8")
    return raw


def _type(raw: str) -> bool:
    if raw not in ("text", "binary"):
        raise ValueError("must be text or binary")
    return raw == "binary"


#: Each parameter: the field of ``Modes`` it sets, and how its value is read.
_PARSERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "delay": ("delay", lambda raw: _whole(0, 30_000, "milliseconds")(raw) / 1000),
    "close_after": ("close_after", _whole(1, 1_000_000, "echoes")),
    "close_in": ("close_in", _seconds),
    "code": ("code", _code),
    "reason": ("reason", _reason),
    "drop_in": ("drop_in", _seconds),
    "stream": ("stream", _whole(1, MAX_STREAM_MESSAGES, "messages")),
    "size": ("size", _whole(0, MAX_STREAM_BYTES, "bytes")),
    "rate": ("rate", _rate),
    "type": ("binary", _type),
}
#: Parameters that mean nothing without another.
_NEEDS = {
    "code": ("close_after", "close_in"),
    "reason": ("close_after", "close_in"),
    "size": ("stream",),
    "rate": ("stream",),
    "type": ("stream",),
}
PARAMETERS = frozenset(_PARSERS) | {HELLO}


def read_query(query: str) -> tuple[dict[str, str], list[str]]:
    """The query's test-mode parameters, and the names of the others (ignored).

    ``HandshakeRejected`` for a query with too many fields, or that names a
    parameter twice.
    """
    try:
        # Bytes that are not UTF-8 become U+FFFD: harmless in an ignored
        # parameter, and refused in a mode's value (``_reason``; numbers are ASCII).
        pairs = parse_qsl(
            query, keep_blank_values=True, errors="replace", max_num_fields=MAX_QUERY_FIELDS
        )
    except ValueError:
        raise _refuse(f"more than {MAX_QUERY_FIELDS} query parameters") from None
    given: dict[str, str] = {}
    ignored: list[str] = []
    for name, value in pairs:
        if name not in PARAMETERS:
            ignored.append(name)
        elif name in given:
            raise _refuse(f"{name}= is given twice")
        else:
            given[name] = value
    return given, ignored


def parse(given: dict[str, str], max_message_size: int) -> Modes:
    """The modes of ``given`` (``read_query``); ``HandshakeRejected`` naming a bad parameter."""
    values: dict[str, Any] = {}
    for name, raw in given.items():
        if name == HELLO:
            continue
        attribute, read = _PARSERS[name]
        try:
            values[attribute] = read(raw)
        except ValueError as error:
            raise _refuse(f"{name}={excerpt(raw, 20)}: {error}") from None
        needs = _NEEDS.get(name)
        if needs and not any(other in given for other in needs):
            raise _refuse(f"{name}= needs {' or '.join(f'{other}=' for other in needs)}")
    modes = Modes(**values, given={k: v for k, v in given.items() if k != HELLO})
    if modes.stream:
        if modes.size > max_message_size:
            raise _refuse(
                f"size={modes.size}: must be at most the server's max_message_size,"
                f" {max_message_size:,} bytes"
            )
        if modes.stream * modes.size > MAX_STREAM_BYTES:
            raise _refuse(
                f"stream={modes.stream} x size={modes.size}: at most {MAX_STREAM_BYTES:,} bytes"
                " may be streamed on one connection"
            )
    return modes
