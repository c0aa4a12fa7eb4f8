"""An HTTP/1.x request head, read with bounds and parsed strictly.

pywsgi parses headers with the ``email`` package, which costs about 30 us a
request (the largest share of a handshake's parsing) and accepts what a proxy
in front may read differently: a bare CR or a NUL in a value, obs-fold,
``Content-Length`` beside ``Transfer-Encoding``. Such disagreements are how
requests are smuggled. The head is parsed here by llhttp, Node's HTTP parser,
through ``httptools`` (the parser uvicorn uses), in its strict default mode,
in one call of about 4 us: every request it rejects gets a 4xx with a reason.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

import httptools

from .errors import BadRequest

MAX_REQUEST_LINE = 8 * 1024  # bytes, as pywsgi's; longer gets 414
MAX_HEAD = 64 * 1024  # bytes of request line and header lines; more gets 431
MAX_FIELDS = 100  # header lines; more gets 431
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 section 5.6.2


@dataclass(slots=True)
class RequestHead:
    """What a request's head says; names and values decoded as Latin-1, as WSGI wants."""

    method: str = ""
    target: str = ""
    version: str = ""  # "HTTP/1.1"
    fields: list[tuple[str, str]] = field(default_factory=list)
    # The headers as WSGI environ entries (HTTP_*, CONTENT_TYPE, CONTENT_LENGTH): see parse.
    environ: dict[str, str] = field(default_factory=dict)
    content_length: int | None = None
    keep_alive: bool = False  # the client may send another request on the connection
    upgrade: bool = False  # Connection lists "upgrade" and there is an Upgrade header

    def items(self) -> list[tuple[str, str]]:
        """The headers as sent (gunicorn's access log reads them so)."""
        return self.fields


class _Ending:
    """llhttp's one callback here: what ``Connection`` says, as its C parser read the tokens.

    Read when the headers are complete because llhttp forgets it once the
    message is. Splitting the header in Python instead cost 0.44 ms for a
    hostile one of 15,000 tokens, twice a plain handshake (docs/hostile-input.md).
    """

    __slots__ = ("keep_alive", "parser", "upgrade")

    def __init__(self) -> None:
        self.parser: httptools.HttpRequestParser | None = None
        self.keep_alive = self.upgrade = False

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()
        self.upgrade = self.parser.should_upgrade()


def read_request_line(rfile: BinaryIO) -> bytes:
    """The request line, or ``b""`` if the client closed before sending one."""
    line = rfile.readline(MAX_REQUEST_LINE)
    if len(line) >= MAX_REQUEST_LINE:
        reason = f"the request line is {MAX_REQUEST_LINE} bytes or more"
        raise BadRequest("414 URI Too Long", reason)
    return line


def read_header_lines(rfile: BinaryIO, request_line: bytes) -> list[bytes]:
    """The header lines after ``request_line``, through the blank line that ends them."""
    lines = [request_line]
    size = len(request_line)
    while True:
        line = rfile.readline(MAX_HEAD - size + 1)
        size += len(line)
        lines.append(line)
        if line in (b"\r\n", b"\n"):  # a bare LF is left to the parser to refuse
            return lines
        if not line:
            reason = "the request ended inside its headers"
            raise BadRequest("400 Bad Request", reason, "incomplete")
        if size > MAX_HEAD or len(lines) > MAX_FIELDS + 2:
            raise BadRequest(
                "431 Request Header Fields Too Large",
                f"the request head is over {MAX_HEAD // 1024} KiB or {MAX_FIELDS} headers",
            )


def whole_head(data: bytes) -> bytes | None:
    """The request head that ``data`` starts with, if it is all there and within the limits.

    ``None`` otherwise, for ``read_header_lines`` to read it as it comes (and
    to answer 414 or 431 where it is too long).
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[: end + 4]
    if (
        len(head) > MAX_HEAD
        or head.find(b"\n") + 1 >= MAX_REQUEST_LINE
        or head.count(b"\n") > MAX_FIELDS + 2
    ):
        return None
    return head


def parse(lines: list[bytes]) -> RequestHead:
    """The head made of ``lines`` (request line first, blank line last), strictly parsed.

    llhttp checks the whole head and reads ``Connection``; the head it has
    accepted is then split here in one pass, which costs less than its
    callback per header (through Cython into Python). Accepted, its lines
    end in CRLF and none is folded; its request line is a method, a target
    and a version, printable ASCII between runs of spaces; each field is a
    token, a colon and a value with no control character but HTAB, whose
    surrounding spaces and tabs are not part of it (RFC 9110 section 5.5).

    Each field is kept as sent, and as an environ entry. A repeated field's
    values are joined with commas (cookies with ``; ``), so a handshake
    cannot pass a second ``Sec-WebSocket-Key`` unseen. Names with an
    underscore get no entry, as with pywsgi and nginx: ``X_Forwarded_For``
    would otherwise pass for ``X-Forwarded-For``. Values are interned: a
    WebSocket session keeps its environ for the access log, and connections
    mostly send the same values (about 1 KiB per idle connection, bench/README.md).
    """
    data = b"".join(lines)
    ending = _Ending()
    parser = ending.parser = httptools.HttpRequestParser(ending)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass  # the head is complete; what follows it is the new protocol's
    except httptools.HttpParserInvalidMethodError:
        method = lines[0].split(b" ", 1)[0]
        if not _TOKEN.fullmatch(method):
            raise BadRequest("400 Bad Request", "malformed HTTP request: no method") from None
        name = method[:32].decode("ascii")
        raise BadRequest("501 Not Implemented", f"unknown method {name}") from None
    except httptools.HttpParserError as error:
        raise BadRequest("400 Bad Request", f"malformed HTTP request: {error}") from None
    finally:
        ending.parser = None  # the parser holds the callback: no cycle left for the GC
    text = data.decode("latin-1").lstrip("\r\n")  # llhttp skips line ends before a request
    if not text:
        raise BadRequest("400 Bad Request", "malformed HTTP request: no request line")
    # The request line, the fields, and the two empty strings of the final CRLFCRLF.
    request_line, *field_lines = text.split("\r\n")[:-2]
    parts = request_line.split()  # printable ASCII between runs of spaces: llhttp checked
    if len(parts) < 2:
        raise BadRequest("400 Bad Request", "malformed HTTP request: no target")
    method, target = parts[0], parts[1]
    version = parts[2] if len(parts) > 2 else "HTTP/0.9"  # a line without one is HTTP/0.9's
    if version not in _VERSIONS:
        raise BadRequest(
            "505 HTTP Version Not Supported", f"{version} is not supported; use HTTP/1.1"
        )
    fields = []
    environ: dict[str, str] = {}
    content_length = None
    for line in field_lines:
        name, _, value = line.partition(":")
        value = value.strip(" \t")
        fields.append((name, value))
        key = _environ_key(name)
        if key is None:
            continue
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = sys.intern(value)
        if key == "CONTENT_LENGTH":
            content_length = int(value)  # digits, and never twice: llhttp checks
    # What follows a CONNECT would be a tunnel's, never a request.
    connect = method == "CONNECT"
    return RequestHead(
        sys.intern(method),
        sys.intern(target),
        version,
        fields,
        environ,
        content_length,
        ending.keep_alive and not connect,
        ending.upgrade and not connect,
    )


@functools.lru_cache(maxsize=256)  # requests repeat the same few names
def _environ_key(name: str) -> str | None:
    if "_" in name:
        return None
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
