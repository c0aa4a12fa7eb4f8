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
from .excerpt import excerpt

MAX_REQUEST_LINE = 8 * 1024  # bytes, as pywsgi's; longer gets 414
MAX_HEAD = 64 * 1024  # bytes of request line and header lines; more gets 431
MAX_FIELDS = 100  # header lines; more gets 431
MAX_HOST = 1024  # characters of a Host (a DNS name has at most 253); more gets 400
_VERSIONS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1"}
_INTERNED_UP_TO = 256  # characters of a value interned (on_header)
_UNIQUE = "HTTP_SEC_WEBSOCKET_KEY"  # a value never interned: each connection's own
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]++")  # RFC 9110 5.6.2, in one pass
# Host = uri-host [ ":" port ] (RFC 9112 section 3.2; RFC 3986 section 3.2.2): an IP
# literal in brackets, or a registered name (empty when the target has no authority).
# Possessive (*+, ++): a value that fails at its last character is not matched again
# from each of its characters (a 60 KB one took 6 ms, 20 handshakes; bench/hostile.py).
_HOST = re.compile(
    r"(?:\[[0-9A-Za-z:.!$&'()*+,;=_~-]++\]|[0-9A-Za-z.!$&'()*+,;=_~%-]*+)(?::[0-9]*+)?+"
)
_HOSTS_KEPT = 64  # valid Host values remembered (each at most _INTERNED_UP_TO characters)
_ABSOLUTE = re.compile(r"https?://([^/?]*+)(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(slots=True)
class RequestHead:
    """What a request's head says; names and values decoded as Latin-1, as WSGI wants."""

    method: str = ""
    target: str = ""  # as sent: the access log's request line
    path: str = ""  # the target's path and query, the target in absolute form without its host
    version: str = ""  # "HTTP/1.1"
    fields: list[tuple[str, str]] = field(default_factory=list)
    # The headers as WSGI environ entries (HTTP_*, CONTENT_TYPE, CONTENT_LENGTH): see on_header.
    environ: dict[str, str] = field(default_factory=dict)
    content_length: int | None = None
    keep_alive: bool = False  # the client may send another request on the connection
    upgrade: bool = False  # Connection lists "upgrade" and there is an Upgrade header
    hosts_repeated: bool = False  # more than one Host line: refused (see parse)

    def items(self) -> list[tuple[str, str]]:
        """The headers as sent (gunicorn's access log reads them so)."""
        return self.fields


class _Reading:
    """httptools' callbacks, filling a ``RequestHead`` while its bytes are parsed."""

    __slots__ = ("environ", "fields", "head", "parser")

    def __init__(self, head: RequestHead) -> None:
        self.head = head
        # The head's, at hand: on_header runs for every header of every request.
        self.fields, self.environ = head.fields, head.environ
        self.parser: httptools.HttpRequestParser | None = None

    def on_url(self, url: bytes) -> None:
        self.head.target += url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep the header as sent, and as an environ entry.

        A repeated header's values are joined with commas (cookies with
        ``; ``), so a handshake cannot pass a second ``Sec-WebSocket-Key``
        unseen. Names with an underscore get no entry, as with pywsgi and
        nginx: ``X_Forwarded_For`` would otherwise pass for
        ``X-Forwarded-For``. Values are interned: a WebSocket session keeps
        its environ for the access log, and connections mostly send the same
        values (about 1 KiB per idle connection, bench/README.md); a long one
        (a hostile 60 KB header) is not, which would hash it for nothing, nor
        is the handshake's key, which no other connection sends.
        """
        text = value.decode("latin-1")
        name_text = name.decode("latin-1")
        self.fields.append((name_text, text))
        key = _environ_key(name_text)
        if key is None:
            return
        environ = self.environ
        if key in environ:
            if key == "HTTP_HOST":
                self.head.hosts_repeated = True
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + text
        interned = len(text) <= _INTERNED_UP_TO and key != _UNIQUE
        environ[key] = sys.intern(text) if interned else text
        if key == "CONTENT_LENGTH":
            self.head.content_length = int(text)  # digits, and never twice: llhttp checks

    def on_headers_complete(self) -> None:
        """What ``Connection`` says, as llhttp's C parser read its tokens.

        Read here because llhttp forgets it once the message is complete.
        Splitting the header in Python instead cost 0.44 ms for a hostile
        one of 15,000 tokens, twice a plain handshake (docs/hostile-input.md).
        """
        assert self.parser is not None
        self.head.keep_alive = self.parser.should_keep_alive()
        self.head.upgrade = self.parser.should_upgrade()


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
    """The head made of ``lines`` (request line first, blank line last), strictly parsed."""
    head = RequestHead()
    reading = _Reading(head)
    parser = reading.parser = httptools.HttpRequestParser(reading)
    try:
        parser.feed_data(b"".join(lines))
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
        reading.parser = None  # the parser holds the callbacks: no cycle left for the GC
    if not head.target:  # only empty lines, which llhttp skips: it has read no request
        raise BadRequest("400 Bad Request", "malformed HTTP request: no request line")
    version = parser.get_http_version()
    if version not in _VERSIONS:
        raise BadRequest(
            "505 HTTP Version Not Supported", f"HTTP/{version} is not supported; use HTTP/1.1"
        )
    head.method = sys.intern(parser.get_method().decode("ascii"))
    head.version = _VERSIONS[version]
    host = head.environ.get("HTTP_HOST")
    if host not in _hosts_seen or head.hosts_repeated:
        _check_host(head, host)
    head.target = head.path = sys.intern(head.target)
    if "#" in head.target:  # no target has one (RFC 9112 section 3.2; RFC 6455 section 3)
        raise BadRequest("400 Bad Request", "the request target must not have a fragment ('#')")
    if head.target == "*":  # asterisk-form: the server as a whole (RFC 9112 section 3.2.4)
        if head.method != "OPTIONS":
            raise BadRequest("400 Bad Request", "the request target * is only for OPTIONS")
    elif head.target[:1] != "/":
        _take_absolute_form(head)
    if head.method == "CONNECT":  # what follows would be a tunnel's, never a request
        head.keep_alive = head.upgrade = False
    return head


def _check_host(head: RequestHead, host: str | None) -> None:
    """Refuse what RFC 9112 section 3.2 tells a server to refuse with 400.

    An HTTP/1.1 request without a Host, with two, or with one that is no
    host: a proxy in front may have read another host there than this
    server would, and RFC 6455 section 4.2.1 asks a handshake for a Host too.
    HTTP/1.0 needs none.
    """
    if host is None:
        if head.version == "HTTP/1.1":
            raise BadRequest("400 Bad Request", "an HTTP/1.1 request must have a Host header")
    elif head.hosts_repeated:
        raise BadRequest("400 Bad Request", "a request must have one Host header, not several")
    else:
        _refuse_unless_host(host, "the Host header")
        if len(_hosts_seen) < _HOSTS_KEPT and len(host) <= _INTERNED_UP_TO:
            _hosts_seen.add(host)


def _refuse_unless_host(value: str, where: str) -> None:
    """A 400 unless ``value`` is a host and optional port; ``where`` names it in the reason."""
    if len(value) > MAX_HOST:  # no name is this long: refused before it is matched
        raise BadRequest("400 Bad Request", f"{where} is over {MAX_HOST:,} characters")
    if not _HOST.fullmatch(value):
        reason = f"{where} is not a host and port ({excerpt(repr(value))})"
        raise BadRequest("400 Bad Request", reason)


# Hosts found valid: the next request naming one costs a lookup (matching _HOST
# cost 2k instructions, 0.5 % of a handshake). Bounded, so a client naming new
# hosts only ever costs its own matching.
_hosts_seen: set[str] = set()


def _take_absolute_form(head: RequestHead) -> None:
    """Serve ``GET http://host/ws`` as ``GET /ws`` with that host.

    A server must accept a target in absolute form (RFC 9112 section 3.2.2,
    which then takes the target's host over the Host header's), and RFC
    6455 section 4.2.1 names an http or https URL as a handshake's target:
    clients send one through forward proxies. Other targets are left as
    they came, to be answered 404.
    """
    match = _ABSOLUTE.fullmatch(head.target)
    if match is None:
        return
    host, rest = match.groups()
    if not host:  # an http URL names one (RFC 9110 section 4.2.1)
        raise BadRequest("400 Bad Request", "the request target's host is empty")
    _refuse_unless_host(host, "the request target's host")
    head.path = rest if rest[:1] == "/" else f"/{rest}"
    head.environ["HTTP_HOST"] = host


@functools.lru_cache(maxsize=256)  # requests repeat the same few names
def _environ_key(name: str) -> str | None:
    if "_" in name:
        return None
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"


#: The names of a handshake's headers as browsers and client libraries write
#: them, cached with the module: an entry first made in the middle of a burst
#: of connections outlives it in one of the burst's memory arenas and keeps
#: that arena from going back to the system (docs/hostile-input.md, "Memory
#: given back").
_HANDSHAKE_HEADER_NAMES = (
    "Host", "Connection", "Upgrade", "Origin", "User-Agent", "Pragma", "Cache-Control",
    "Accept-Encoding", "Accept-Language", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol",
)  # fmt: skip
for _name in _HANDSHAKE_HEADER_NAMES:
    _environ_key(_name)
