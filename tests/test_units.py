"""The pure parts, on bytes: masking, frame reading, settings parsing."""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import random
import re
import signal
import socket
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta

import gevent
import gevent.event
import httptools
import pytest
from gevent import socket as gevent_socket
from gunicorn.config import Config
from gunicorn.workers.ggevent import GeventResponse

from echo.app.settings import EchoSettings
from echo.protocol import frames, request_head
from echo.protocol.deflate import Deflate, Parameters
from echo.protocol.errors import (
    BadRequest,
    HandshakeRejected,
    InvalidUTF8,
    MessageTooBig,
    ProtocolError,
)
from echo.protocol.negotiation import parse_subprotocols
from echo.protocol.reader import Close, Message, MessageReader, Ping
from echo.server import pool as pool_module
from echo.server import server as server_module
from echo.server.access_format import Atoms, LineFormat
from echo.server.access_log import AccessLogger, plain_handlers
from echo.server.connection import ServerConnection
from echo.server.pool import ConnectionPool
from echo.server.server import WebSocketServer
from echo.server.settings import ConfigError, Settings
from echo.server.sockets import send_now

from .rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, encode_frame, mask_bytes
from .servers import fresh_interpreter

MASKERS = {"c": frames._apply_mask_in_c, "ints": frames._apply_mask_with_ints}


def test_compiled_masking_is_in_use():
    assert frames.apply_mask is frames._apply_mask_in_c is not None


@pytest.mark.parametrize("implementation", MASKERS)
@pytest.mark.parametrize("size", [*range(0, 17), 125, 126, 127, 65535, 65536, 65537])
def test_apply_mask_matches_bytewise_xor_for_every_length(implementation, size):
    data, mask = os.urandom(size), os.urandom(4)
    assert MASKERS[implementation](data, mask) == mask_bytes(data, mask)
    assert MASKERS[implementation](memoryview(data), mask) == mask_bytes(data, mask)


@pytest.mark.parametrize("offset", range(8))
def test_rotated_mask_continues_mid_payload(offset):
    data, mask = os.urandom(64), os.urandom(4)
    whole = mask_bytes(data, mask)
    assert frames.apply_mask(data[offset:], frames.rotate_mask(mask, offset)) == whole[offset:]


def read_all(
    wire: bytes, max_size: int = 1 << 20, most: int | None = None, compression: bool = False
) -> list:
    """Every event in ``wire``, received at most ``most`` bytes at a time."""
    stream = io.BytesIO(wire)
    reader = MessageReader(
        lambda size, idle: stream.read(min(size, most or size)),
        max_size,
        compression=Deflate(TAKEOVER) if compression else None,
    )
    events = []
    while True:
        try:
            events.append(reader.read_event())
        except EOFError:
            return events


@pytest.mark.parametrize("most", [3, None])
def test_reader_reads_payload_in_chunks_across_chunk_boundaries(monkeypatch, most):
    monkeypatch.setattr("echo.protocol.reader.CHUNK_SIZE", 7)
    text = "ünïcödé " * 50
    wire = encode_frame(OP_TEXT, text.encode(), fin=False) + encode_frame(OP_CONT, b"!")
    assert read_all(wire, most=most) == [Message(text + "!", len(text.encode()) + 1)]


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_reader_joins_pieces_of_a_long_fragmented_message_as_it_goes(monkeypatch, opcode):
    monkeypatch.setattr("echo.protocol.reader.JOIN_EVERY", 3)
    payload = "ab€d".encode() * 5  # fragments below split the euro sign
    pieces = [payload[i : i + 2] for i in range(0, len(payload), 2)]
    wire = b"".join(
        encode_frame(OP_CONT if i else opcode, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )
    data = payload.decode() if opcode == OP_TEXT else payload
    assert read_all(wire + wire) == [Message(data, len(payload))] * 2


def test_reader_yields_control_frames_inside_a_message():
    wire = (
        encode_frame(OP_BINARY, b"ab", fin=False)
        + encode_frame(OP_PING, b"p")
        + encode_frame(OP_CONT, b"cd")
        + encode_frame(OP_CLOSE, b"\x03\xe8bye")
    )
    assert read_all(wire) == [Ping(b"p"), Message(b"abcd", 4), Close(1000, "bye")]


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (encode_frame(OP_TEXT, b"\xff"), InvalidUTF8),
        (encode_frame(OP_BINARY, b"", length=(1 << 20) + 1), MessageTooBig),
        (encode_frame(OP_BINARY, b"", length=1 << 63), ProtocolError),
        (encode_frame(OP_TEXT, b"x", mask=False), ProtocolError),
    ],
    ids=["utf8", "too-big", "64-bit-msb", "unmasked"],
)
def test_reader_errors_carry_close_codes(wire, error):
    with pytest.raises(error) as raised:
        read_all(wire)
    assert raised.value.code == {InvalidUTF8: 1007, MessageTooBig: 1009}.get(error, 1002)


def test_close_codes_that_may_be_sent():
    sendable = [code for code in range(0, 5100) if frames.is_sendable_close_code(code)]
    assert sendable[:12] == [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
    assert sendable[12] == 3000 and sendable[-1] == 4999


def test_settings_defaults():
    settings = Settings.from_env({})
    assert settings == Settings(20.0, 20.0, 1 << 20, None, 5.0, 10.0, None, None, True, True)


def test_environment_overrides_code_values():
    env = {"ECHO_PING_INTERVAL": "0.5", "ECHO_ALLOWED_ORIGINS": "https://A.example/, null"}
    settings = Settings.from_env(env, ping_interval=3, max_message_size="16MiB")
    assert settings.ping_interval == 0.5
    assert settings.max_message_size == 16 << 20
    assert settings.allowed_origins == {"https://a.example", "null"}


@pytest.mark.parametrize(
    "values",
    [
        {"allowed_origins": "https://b.example,https://a.example"},
        {"subprotocols": "mqtt, wamp.2.json"},
        {"subprotocols": ""},
        {"compression": "off"},
    ],
)
def test_settings_round_trip_through_the_environment(values):
    settings = Settings.from_env({}, **values)
    env = dict(line.split("=", 1) for line in settings.to_env())
    assert Settings.from_env(env) == settings


def test_subprotocols_setting_keeps_its_order_and_tells_any_from_none():
    assert Settings.from_env({"ECHO_SUBPROTOCOLS": "b,a"}).subprotocols == ("b", "a")
    assert Settings.from_env({"ECHO_SUBPROTOCOLS": "*"}).subprotocols is None
    assert Settings.from_env({"ECHO_SUBPROTOCOLS": ""}).subprotocols == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ECHO_PING_INTERVAL", "abc"),
        ("ECHO_PING_TIMEOUT", "-1"),
        ("ECHO_PING_INTERVAL", "inf"),
        ("ECHO_MAX_MESSAGE_SIZE", "0"),
        ("ECHO_MAX_MESSAGE_SIZE", "1 MB"),
        ("ECHO_ALLOWED_ORIGINS", "example.com"),
        ("ECHO_CLOSE_TIMEOUT", "soon"),
        ("ECHO_SUBPROTOCOLS", "mqtt v5"),
        ("ECHO_COMPRESSION", "gzip"),
        ("ECHO_INSTANCE", "edge 7"),
        ("ECHO_INSTANCE", "x" * 64),
        ("ECHO_INSTANCE", "edge/7"),
    ],
)
def test_invalid_value_names_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("name", "value"), [("ECHO_TEST_MODES", "maybe"), ("ECHO_HIDDEN_HEADERS", "X-Key, bad:name")]
)
def test_invalid_app_setting_names_it(name, value):
    with pytest.raises(ConfigError, match=name):
        EchoSettings.from_env({name: value})


def test_app_settings_parse_back_from_the_environment():
    settings = EchoSettings.from_env({"ECHO_HIDDEN_HEADERS": "X-Key,x-other"}, test_modes="off")
    assert settings == EchoSettings(False, ("x-key", "x-other"))
    assert EchoSettings.from_env(dict(line.split("=", 1) for line in settings.to_env())) == settings


def test_unknown_setting_in_code_rejected():
    with pytest.raises(ConfigError, match="ping_intervall"):
        Settings.from_env({}, ping_intervall=1)


def test_conformance_gate_rejects_failures_and_unimplemented_compression():
    from conformance.run import problems

    cases = {
        "1.1.1": {"behavior": "OK", "behaviorClose": "OK"},
        "6.4.1": {"behavior": "NON-STRICT", "behaviorClose": "OK"},
        "7.1.6": {"behavior": "INFORMATIONAL", "behaviorClose": "INFORMATIONAL"},
        "7.3.4": {"behavior": "OK", "behaviorClose": "FAILED"},
        "12.1.1": {"behavior": "UNIMPLEMENTED", "behaviorClose": "OK"},
        "12.1.2": {"behavior": "OK", "behaviorClose": "OK"},
        "13.1.1": {"behavior": "OK", "behaviorClose": "FAILED"},
    }
    assert [p.split(":")[0] for p in problems(cases)] == ["6.4.1", "7.3.4", "12.1.1", "13.1.1"]


MIXED_WIRE = b"".join(
    [
        encode_frame(OP_TEXT, "héllo wörld".encode()),
        encode_frame(OP_BINARY, bytes(range(200)), fin=False),  # 16-bit length
        encode_frame(OP_PING, b"ping"),
        encode_frame(OP_CONT, os.urandom(70_000)),  # 64-bit length
        encode_frame(OP_TEXT, "€".encode()[:2], fin=False),  # a character split in two
        encode_frame(OP_CONT, "€".encode()[2:] + b"!"),
        encode_frame(OP_BINARY, b""),
        encode_frame(OP_CLOSE, b"\x03\xe8"),
    ]
)


@pytest.mark.parametrize("most", [1, 2, 3, 7, 125, 4096, None])
def test_reader_gives_the_same_events_however_the_bytes_arrive(most):
    assert read_all(MIXED_WIRE, most=most) == read_all(MIXED_WIRE)
    assert len(read_all(MIXED_WIRE)) == 6


TAKEOVER = Parameters(False, False, 15, 12)


def compressed_wire() -> bytes:
    """MIXED_WIRE's messages compressed with context takeover, fragments and all."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)

    def part(data: bytes, last: bool) -> bytes:
        data = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4] if last else data

    text = "héllo wörld".encode()
    return b"".join(
        [
            encode_frame(OP_TEXT, part(text, True), rsv=4),
            encode_frame(OP_TEXT, part(text, True), rsv=4),  # refers back to the first
            encode_frame(OP_BINARY, part(bytes(range(200)), False), rsv=4, fin=False),
            encode_frame(OP_PING, b"ping"),
            encode_frame(OP_CONT, part(os.urandom(70_000), True)),
            encode_frame(OP_TEXT, part("€".encode()[:2], False), rsv=4, fin=False),
            encode_frame(OP_CONT, part("€".encode()[2:] + b"!", True)),
            encode_frame(OP_TEXT, b"not compressed"),
            encode_frame(OP_BINARY, part(b"", True), rsv=4),
            encode_frame(OP_CLOSE, b"\x03\xe8"),
        ]
    )


@pytest.mark.parametrize("most", [1, 3, 125, 4096, None])
def test_reader_inflates_the_same_events_however_the_bytes_arrive(most):
    wire = compressed_wire()
    events = read_all(wire, most=most, compression=True)
    assert events == read_all(wire, compression=True)
    text = Message("héllo wörld", 13)
    assert events[:2] == [text, text]
    assert events[4:] == [
        Message("€!", 4),
        Message("not compressed", 14),
        Message(b"", 0),
        Close(1000, ""),
    ]


@pytest.mark.parametrize(("limit", "fits"), [(10_000, True), (9_999, False)])
def test_reader_bounds_a_compressed_message_by_its_inflated_size(limit, fits):
    data = zlib.compressobj(9, zlib.DEFLATED, -15)
    wire = encode_frame(
        OP_BINARY, (data.compress(b"z" * 10_000) + data.flush(zlib.Z_SYNC_FLUSH))[:-4], rsv=4
    )
    if fits:
        assert read_all(wire, max_size=limit, compression=True) == [Message(b"z" * 10_000, 10_000)]
    else:
        with pytest.raises(MessageTooBig):
            read_all(wire, max_size=limit, compression=True)


def test_reader_starts_a_new_stream_after_a_final_block():
    """A client may end a message's stream (BFINAL); the next message starts afresh."""

    def finished(data: bytes) -> bytes:
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        return deflater.compress(data) + deflater.flush(zlib.Z_FINISH)

    wire = encode_frame(OP_TEXT, finished(b"one"), rsv=4) + encode_frame(
        OP_TEXT, finished(b"two"), rsv=4
    )
    assert read_all(wire, compression=True) == [Message("one", 3), Message("two", 3)]


def test_reader_gives_the_same_events_for_random_splits():
    rng = random.Random(6455)
    cuts = sorted(rng.sample(range(1, len(MIXED_WIRE)), 300))
    pieces = [MIXED_WIRE[a:b] for a, b in zip([0, *cuts], [*cuts, len(MIXED_WIRE)], strict=True)]

    def receive(size, idle):  # like recv(): what has arrived, up to size
        piece = pieces.pop(0) if pieces else b""
        if len(piece) > size:
            pieces.insert(0, piece[size:])
        return piece[:size]

    reader = MessageReader(receive, 1 << 20)
    assert [reader.read_event() for _ in range(6)] == read_all(MIXED_WIRE)


def test_reader_tells_receive_when_it_waits_between_messages():
    frame = encode_frame(OP_TEXT, b"abcdef")
    pieces = [frame[:3], frame[3:] + frame[:1], frame[1:]]
    calls = []

    def receive(size, idle):
        calls.append(idle)
        return pieces.pop(0) if pieces else b""

    reader = MessageReader(receive, 1 << 20, pending=b"")
    assert reader.read_event() == reader.read_event() == Message("abcdef", 6)
    assert calls == [True, False, False]  # idle only before the first byte of a message
    with pytest.raises(EOFError):
        reader.read_event()
    assert calls[-1] is True and reader._buffer == b""  # nothing held while waiting


def test_reader_starts_with_the_pending_bytes():
    frame = encode_frame(OP_BINARY, b"xyz")
    reader = MessageReader(lambda size, idle: b"", 1 << 20, pending=frame + frame[:2])
    assert reader.read_event() == Message(b"xyz", 3)
    with pytest.raises(EOFError):
        reader.read_event()


def test_access_lines_skip_logging_only_where_the_handlers_write_the_message_as_it_is():
    config = Config()
    config.set("accesslog", "-")
    logger = AccessLogger(config)
    assert plain_handlers(logger.access_log) == logger.access_log.handlers  # gunicorn's own
    logger.access_log.handlers[0].setFormatter(logging.Formatter("ACCESS %(message)s"))
    assert plain_handlers(logger.access_log) is None
    config.set("accesslog", None)
    assert plain_handlers(AccessLogger(config).access_log) is None  # no handler: nothing to write


@pytest.mark.parametrize(
    "agent",
    ["curl/8", 'say "hi"', "back\\slash", "tab\there", "c1 \x9b31m", "é", "\x7f", ""],
)
def test_a_compiled_access_format_writes_the_line_formatting_by_name_writes(agent):
    fmt = (
        '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(L)ss %(D)s %(T)s '
        "%(M)s %(p)s %(m)s %(U)s %(q)s %(H)s %({user-agent}i)s %({X-Served-By}o)s "
        '%({echo.session}e)s %({host}e)s %(nonesuch)s 100%% "%({missing}i)s"'
    )
    config = Config()
    config.set("access_log_format", fmt)
    logger = AccessLogger(config)
    environ = {
        "REMOTE_ADDR": "10.0.0.1",
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/ws?x=1",
        "PATH_INFO": "/ws",
        "QUERY_STRING": "x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "h",
        "HTTP_USER_AGENT": agent,
        "echo.session": f"id=1 note={agent}",
    }
    response = GeventResponse("101 Switching Protocols", [(b"X-Served-By", b"vm/1")], 151)
    headers = [("Host", "h"), ("User-Agent", agent)]

    def atoms() -> Atoms:
        return Atoms.of_response(logger, response, headers, environ, timedelta(seconds=1.25))

    compiled = LineFormat.compile(fmt)
    assert compiled is not None
    line = compiled.line(environ, response.status, 151, headers, response.headers, 1.25, logger)
    assert line == fmt % atoms()


@pytest.mark.parametrize(
    "text",
    ["{__import__('os').getpid()}", '""" + str(1) + """', "\\' \\n }{ {{", "%(s)s\n%(b)s"],
)
def test_a_format_is_data_never_code(text):
    """The format's own text is a constant of the generated function, never its source."""
    fmt = f"{text} %(s)s {text}"
    logger = AccessLogger(Config())
    response = GeventResponse("101 Switching Protocols", [], 0)
    atoms = Atoms.of_response(logger, response, [], {}, timedelta(seconds=1))
    compiled = LineFormat.compile(fmt)
    assert compiled is not None
    assert compiled.line({}, response.status, 0, [], [], 1.0, logger) == fmt % atoms


def test_durations_count_every_day_of_a_long_session():
    """A ``timedelta``'s ``seconds`` starts again every day: gunicorn's atoms would log
    a session of two days and an hour as one of an hour."""
    logger = AccessLogger(Config())
    took = timedelta(days=2, hours=1, microseconds=250_000)
    atoms = Atoms.of_response(logger, GeventResponse("101 OK", [], 0), [], {}, took)
    durations = "%(L)s %(T)s %(D)s %(M)s"  # formatted as logging formats gunicorn's line
    assert durations % atoms == "176400.250000 176400 176400250000 176400250"


def test_a_format_with_other_directives_is_not_compiled():
    assert LineFormat.compile("%(b)d bytes") is None
    assert LineFormat.compile("%s") is None
    assert LineFormat.compile("no atoms at all") is not None


def test_a_close_frame_the_socket_cannot_take_gets_close_timeout_then_the_connection_is_dropped():
    """The Close frame's deadline, made only when the frame does not go at once (a full socket)."""
    server_side, client_side = gevent_socket.socketpair()
    with server_side, client_side:
        server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        while send_now(server_side, b"x" * 4096):  # the client reads nothing
            pass
        ws = ServerConnection(server_side, Settings.from_env({}, close_timeout=0.3))
        ws.open(b"", b"")
        started = time.monotonic()
        ws.close(4000, "bye")
        assert time.monotonic() - started >= 0.3
        assert (ws.state.value, ws.close_code, ws.closed_by) == ("closed", 4000, "server")


def test_a_close_frame_goes_at_once_when_the_socket_takes_it():
    server_side, client_side = gevent_socket.socketpair()
    with server_side, client_side:
        ws = ServerConnection(server_side, Settings.from_env({}))
        ws.open(b"", b"")
        ws.close(4000, "bye")
        assert client_side.recv(64) == b"\x88\x05\x0f\xa0bye"
        assert ws.state.value == "closing"  # until the client's Close, or close_timeout
        ws.abort()


def test_writers_take_turns_in_order_and_an_interrupted_one_passes_its_turn_on():
    """Frames never interleave: writers wait for the one writing and go in the order they came.

    A writer killed while it waits leaves the queue; one interrupted just
    after it was handed the turn (before it ran) hands it to the next, or
    every later write would wait for ever.
    """
    server_side, client_side = gevent_socket.socketpair()
    with server_side, client_side:
        server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ws = ServerConnection(server_side, Settings.from_env({}))
        ws.open(b"", b"")
        large = os.urandom(1 << 20)
        waiting: dict[str, gevent.Greenlet] = {}

        def write_then_interrupt_the_next() -> None:
            ws.send(large)  # blocks until the client reads; then "b" has the turn
            waiting["b"].throw(gevent.GreenletExit)  # before "b" could run

        first = gevent.spawn(write_then_interrupt_the_next)
        for name in "abc":
            waiting[name] = gevent.spawn(ws.send, name.encode() * 10)
        gevent.idle()  # the first is blocked mid-frame, the others wait in turn
        waiting["a"].kill()  # while it waits
        expected = frames.encode_header(OP_BINARY, len(large)) + large + b"\x82\x0a" + b"c" * 10
        received = b""
        with gevent.Timeout(10):
            while len(received) < len(expected):
                received += client_side.recv(1 << 16)
            waiting["c"].join()
        assert received == expected
        ws.send(b"d")  # nobody writing, nobody waiting: it goes at once
        assert client_side.recv(16) == b"\x82\x01d"
        first.kill()
        ws.abort()


def _waiting_for(event: gevent.event.Event) -> Callable[[object, object], None]:
    """A connection's handler, for a pool, that returns once ``event`` is set."""

    def handle(sock: object, address: object) -> None:
        event.wait()

    return handle


def test_a_full_connection_pool_tells_the_server_once_when_it_has_room():
    """gevent's server links to a pool's ``_semaphore`` to accept again once there is room."""
    pool = ConnectionPool(2)
    told: list[object] = []
    pool._semaphore.rawlink(told.append)
    release = gevent.event.Event()
    for _ in range(2):
        pool.spawn(_waiting_for(release), None, None)
    assert (pool.full(), pool.free_count(), len(pool)) == (True, 0, 2)
    release.set()
    assert pool.join(timeout=1)
    assert (pool.full(), pool.free_count(), len(pool)) == (False, 2, 0)
    assert told == [pool._semaphore]  # when the full pool got room, not per greenlet
    unbounded = ConnectionPool()
    assert (unbounded.full(), unbounded.free_count()) == (False, 1)


_CONNECTION_VALUE: contextvars.ContextVar[object] = contextvars.ContextVar("connection_value")


def test_a_connection_pool_serves_the_next_connection_in_a_greenlet_whose_connection_ended():
    """A new greenlet per connection maps and unmaps a Python data stack each time
    (pool.py): an ended one serves the next, in a context as fresh as a new greenlet's."""
    pool = ConnectionPool(4)
    seen: list[object] = []

    def serve(value: str, address: object) -> None:
        seen.append(_CONNECTION_VALUE.get("unset"))
        _CONNECTION_VALUE.set(value)

    first = pool.spawn(serve, "first", None)
    assert pool.join(timeout=1)
    assert not first.dead  # it waits for another connection
    second = pool.spawn(serve, "second", None)
    assert second is first and len(pool) == 1
    assert pool.join(timeout=1)
    assert seen == ["unset", "unset"]  # nothing the first connection set reached the second
    assert (len(pool), pool.free_count()) == (0, 4)
    pool.kill()
    assert first.dead


def test_a_connection_pool_keeps_a_bounded_number_of_idle_greenlets(monkeypatch):
    """Memory taken for a burst of connections comes back: beyond IDLE_KEPT, greenlets end."""
    monkeypatch.setattr(pool_module, "IDLE_KEPT", 2)
    pool = ConnectionPool(8)
    release = gevent.event.Event()
    greenlets = [pool.spawn(_waiting_for(release), None, None) for _ in range(5)]
    release.set()
    assert pool.join(timeout=1)
    gevent.idle()
    assert sorted(greenlet.dead for greenlet in greenlets) == [False, False, True, True, True]
    pool.kill()


def test_an_idle_pool_greenlet_keeps_nothing_of_the_connection_it_served():
    """Up to IDLE_KEPT greenlets wait between connections: what they served
    (the socket, its handler, context variables it set) is freed when it ends."""

    class Socket:
        pass

    class Handler:
        def __call__(self, sock: object, address: object) -> None:
            _CONNECTION_VALUE.set(sock)  # as an application's context variable might

    pool = ConnectionPool(4)
    sock, handler = Socket(), Handler()
    served = [weakref.ref(sock), weakref.ref(handler)]
    idle = pool.spawn(handler, sock, ("127.0.0.1", 1))
    del sock, handler
    assert pool.join(timeout=1)
    gevent.idle()
    assert not idle.dead  # waiting for the next connection
    assert [ref() for ref in served] == [None, None]
    pool.kill()


def test_an_idle_pool_greenlet_that_dies_is_never_handed_a_connection():
    """An exception thrown into a greenlet waiting for a connection ends it; the next
    connection gets a greenlet that runs it, and the pool's count stays right."""
    pool = ConnectionPool(4)
    idle = pool.spawn(lambda sock, address: None, None, None)
    assert pool.join(timeout=1)
    idle.kill(ValueError, block=True, timeout=1)
    assert idle.dead and isinstance(idle.exception, ValueError)
    served = gevent.event.Event()
    fresh = pool.spawn(lambda sock, address: served.set(), None, None)
    assert served.wait(timeout=1) and fresh is not idle
    assert pool.join(timeout=1) and len(pool) == 0
    pool.kill()


@pytest.mark.parametrize(
    ("multiprocess", "expected"), [(False, 100), (True, server_module.SHARED_MAX_ACCEPT)]
)
def test_workers_sharing_a_socket_accept_a_bounded_batch_per_pass(multiprocess, expected):
    """gevent accepts up to 100 connections per pass of its loop; pywsgi only one when
    several workers share the socket, which cost each handshake a pass (bench/README.md)."""
    listener = gevent_socket.socket()
    try:
        application = lambda environ, start_response: []  # noqa: E731
        server = WebSocketServer(listener, application, environ={"wsgi.multiprocess": multiprocess})
        assert server.max_accept == expected
    finally:
        listener.close()


_RFC_9110_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@pytest.mark.parametrize("char", [chr(code) for code in range(256)] + ["\u0100", "\u20ac"])
def test_a_subprotocol_is_a_token_exactly_as_rfc_9110_says(char):
    """Tokens are checked by deleting their characters; the grammar's regular expression
    is the reference, one character at a time and within a longer token."""
    for offer in (char, f"a{char}b", char * 3):
        expected = _RFC_9110_TOKEN.fullmatch(offer) is not None and "," not in offer
        try:
            accepted = parse_subprotocols(offer) == [offer]
        except HandshakeRejected:
            accepted = False
        assert accepted == expected, repr(offer)


@contextlib.contextmanager
def _interrupted_after(seconds: float) -> Iterator[None]:
    """Raise ``TimeoutError`` in a busy loop that never yields, after ``seconds``."""

    def interrupt(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_killing_a_connection_pool_ends_greenlets_running_and_not_started_yet():
    """gevent's server stops by killing its pool; a greenlet killed before it ran never
    runs the code that takes it out of the pool, and the kill must not wait for it."""
    pool = ConnectionPool(4)
    asleep = _waiting_for(gevent.event.Event())  # never set
    running = pool.spawn(asleep, None, None)
    gevent.idle()  # running is asleep; the next has not started
    not_started = pool.spawn(asleep, None, None)
    with _interrupted_after(5):  # a kill waiting for ever would spin, never yield to a timer
        pool.kill()
    assert running.dead and not_started.dead
    assert (len(pool), pool.free_count()) == (0, 4)
    assert pool.join(timeout=0)


class _Callbacks:
    """What llhttp itself reports of a head's headers, one callback each."""

    def __init__(self) -> None:
        self.fields: list[tuple[str, str]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.decode("latin-1"), value.decode("latin-1")))


@pytest.mark.parametrize(
    "headers",
    [
        b"Host: a\r\n",
        b"Host:a\r\nX:  b c \t\r\nEmpty:\r\nSpace: \r\nTabs:\t\t\r\n",
        b"Host: h\r\nCookie: a=1\r\nCookie: b=2 \r\nX-A: 1\r\nx-a: 2\r\nX_A: 3\r\n",
        b"Host: h\r\nUser-Agent: caf\xc3\xa9 \xff\r\nConnection: keep-alive, Upgrade\r\n",
        b"Host:\r\n",  # empty, as for a target without a host (RFC 9112 section 3.2)
    ],
)
@pytest.mark.parametrize("before", [b"", b"\r\n"], ids=["", "after-an-empty-line"])
@pytest.mark.parametrize("spaces", [b" ", b"   "], ids=["", "runs-of-spaces"])
def test_a_heads_headers_are_what_llhttp_reports_and_repeated_ones_are_joined(
    headers, before, spaces
):
    data = before + b"GET" + spaces + b"/ws?x" + spaces + b"HTTP/1.1\r\n" + headers + b"\r\n"
    callbacks = _Callbacks()
    httptools.HttpRequestParser(callbacks).feed_data(data)
    head = request_head.parse([data])
    assert head.fields == callbacks.fields
    expected: dict[str, str] = {}
    for name, value in callbacks.fields:
        if "_" not in name:
            key = "HTTP_" + name.upper().replace("-", "_")
            joiner = "; " if key == "HTTP_COOKIE" else ","
            expected[key] = expected[key] + joiner + value if key in expected else value
    assert head.environ == expected
    assert (head.method, head.target, head.version) == ("GET", "/ws?x", "HTTP/1.1")


def test_hosts_remembered_as_valid_are_bounded_and_never_excuse_a_second_host():
    """Valid hosts are remembered, so the usual Host costs a lookup: a client naming
    new hosts cannot grow that, and a remembered one sent twice is still refused."""
    for number in range(3 * request_head._HOSTS_KEPT):
        request_head.parse([f"GET / HTTP/1.1\r\nHost: h{number}\r\n\r\n".encode()])
    assert len(request_head._hosts_seen) <= request_head._HOSTS_KEPT
    request_head.parse([b"GET / HTTP/1.1\r\nHost: h0\r\n\r\n"])
    with pytest.raises(BadRequest, match="one Host header, not several"):
        request_head.parse([b"GET / HTTP/1.1\r\nHost: h0\r\nHost: h0\r\n\r\n"])


# A handshake as Chromium sends it (its header names, in its order).
CHROMIUM_HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: Upgrade\r\nPragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\nUser-Agent: Mozilla/5.0\r\nUpgrade: websocket\r\n"
    b"Origin: http://127.0.0.1:8000\r\nSec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


def test_the_header_names_of_usual_handshakes_are_cached_with_the_module():
    """A fresh interpreter parses Chromium's and python websockets' handshakes without
    adding to the cache of header names: entries made during a worker's first burst
    of connections would keep one of its memory arenas (docs/hostile-input.md)."""
    script = f"""
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.uri import parse_uri
from echo.protocol import request_head
client = ClientProtocol(
    parse_uri("ws://127.0.0.1:8000/ws"), extensions=[ClientPerMessageDeflateFactory()]
)
client.send_request(client.connect())
websockets_handshake = b"".join(client.data_to_send())
before = request_head._environ_key.cache_info().misses
for data in (websockets_handshake, {CHROMIUM_HANDSHAKE!r}):
    assert request_head.parse([data]).environ["HTTP_UPGRADE"] == "websocket"
print(request_head._environ_key.cache_info().misses - before)
"""
    assert fresh_interpreter(script) == "0"


def test_a_flood_of_new_header_names_cannot_grow_their_cache():
    """A client naming 9,000 headers never seen cannot grow the cache of header names, and
    the usual ones are still read as before once it has pushed them out."""
    for request in range(100):
        names = "".join(f"X-Flood-{request}-{n}: v\r\n" for n in range(90))
        request_head.parse([f"GET / HTTP/1.1\r\nHost: h\r\n{names}\r\n".encode()])
    cache = request_head._environ_key.cache_info()
    assert cache.currsize <= cache.maxsize == 256
    environ = request_head.parse([CHROMIUM_HANDSHAKE]).environ
    assert environ["HTTP_SEC_WEBSOCKET_VERSION"] == "13"
    assert environ["HTTP_UPGRADE"] == "websocket"


def test_values_are_shared_between_requests_unless_long():
    """Connections keep their environ: short values repeat and are shared (interned); a
    60 KB one from a hostile client would only cost its hashing."""

    def value(text: str) -> str:
        return request_head.parse(
            [f"GET / HTTP/1.1\r\nHost: h\r\nX: {text}\r\n\r\n".encode()]
        ).environ["HTTP_X"]

    assert value("short") is value("short")
    assert value("p" * 60_000) is not value("p" * 60_000)


@pytest.mark.parametrize(
    ("version", "headers", "keep_alive", "upgrade"),
    [
        (b"1.1", b"", True, False),
        (b"1.1", b"Connection: x ,\tCLOSE\r\n", False, False),
        (b"1.1", b"Connection: closed\r\n", True, False),
        (b"1.0", b"", False, False),
        (b"1.0", b"Connection: Keep-Alive\r\n", True, False),
        (b"1.1", b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n", True, True),
        (b"1.1", b"Connection: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n", True, True),
        (b"1.1", b"Connection: upgrade\r\n", True, False),  # upgrade to nothing
        (b"1.1", b"Connection: upgrades\r\nUpgrade: websocket\r\n", True, False),
    ],
)
def test_connection_is_read_as_llhttp_reads_its_tokens(version, headers, keep_alive, upgrade):
    head = request_head.parse([b"GET / HTTP/" + version + b"\r\nHost: h\r\n" + headers + b"\r\n"])
    assert (head.keep_alive, head.upgrade) == (keep_alive, upgrade)
