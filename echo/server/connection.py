"""A server-side WebSocket connection: gevent-websocket's ``WebSocket`` done right.

What an endpoint gets: ``receive()``, ``send()``, ``ping()``, ``close()``,
``abort()``, the negotiated ``subprotocol``, and ``close_code`` and
``closed_by`` once it is over; ``environ`` is the handshake's WSGI environ
(its text entries), ``params`` what the endpoint's check returned, and
``note()`` adds to the session's log line.

Replaces its frame path (limits, masking, UTF-8, close codes) with
``MessageReader``, lets one greenlet write at a time so pings never land
inside a message, and runs the closing handshake of RFC 6455 section 7 with a
bounded wait, so neither a polite nor a vanished client leaves anything behind.

Deadlines: silence in the middle of a message is bounded by ``read_timeout``;
a write waits as long as the client is alive, which the keepalive decides (a
slow reader gets every echo); the closing handshake is bounded by
``close_timeout``. Every ended connection records a close code and who ended
it, 1005 and 1006 included.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import itertools
import logging
import os
import socket
import ssl
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import gevent
from gevent.event import Event
from geventwebsocket.websocket import WebSocket

from ..protocol import frames
from ..protocol.deflate import Deflate
from ..protocol.errors import ConnectionClosed, ProtocolError
from ..protocol.excerpt import token_excerpt
from ..protocol.negotiation import NOTHING, Agreement
from ..protocol.reader import Close, Message, MessageReader, Ping, Pong
from . import fairness, lingering
from .settings import Settings, process_id
from .sockets import has_input, receive, send_all, send_now

log = logging.getLogger(__name__)

# Payloads up to this size are sent in one write with their header; larger
# ones are written after it, which costs a syscall but saves a copy.
_COALESCE_LIMIT = 64 * 1024
_connection_ids = itertools.count(1)


class State(enum.Enum):
    CONNECTING = "connecting"  # handshake validated, 101 not sent
    OPEN = "open"
    CLOSING = "closing"  # our Close frame is sent, the client's is awaited
    CLOSED = "closed"


# Read per message: a module global costs one lookup, ``State.OPEN`` two.
_OPEN, _CLOSING = State.OPEN, State.CLOSING
_EVENT_COST = fairness.EVENT_COST
_OP_TEXT, _OP_BINARY = frames.OP_TEXT, frames.OP_BINARY


class ServerConnection(WebSocket):
    """One connection, made by the handler for a valid handshake and opened with its 101."""

    # This process's open connections, so shutdown can close every one.
    _open: ClassVar[weakref.WeakSet[ServerConnection]] = weakref.WeakSet()
    # Once the process is stopping (go_away_all), the code and reason a
    # connection opened since is closed with as soon as it is idle.
    _going_away: ClassVar[tuple[int, str] | None] = None

    def __init__(
        self, sock: Any, settings: Settings, agreement: Agreement = NOTHING, params: Any = None
    ) -> None:
        # The parent's __init__ wires up its own frame path, which is not used.
        self.settings = settings
        self.environ: dict[str, Any] = {}  # the handshake's, once the handler has let it go
        self.params = params  # what the endpoint's check made of the handshake
        self._notes: dict[str, str] | None = None  # the endpoint's, for the session's line
        self.subprotocol: str | None = agreement.subprotocol
        self._deflate = Deflate(agreement.deflate) if agreement.deflate else None
        self.state = State.CONNECTING
        self.id = f"{process_id()}-{next(_connection_ids)}"  # in this connection's log lines
        self.close_code: int | None = None  # set once closing starts, 1005/1006 included
        self.closed_by = ""  # "client" or "server", set with close_code
        self.messages_in = self.bytes_in = self.messages_out = self.bytes_out = 0
        self._socket = sock
        self._reader: MessageReader | None = None
        # Work left before the reader gives the others a turn (fairness), kept
        # here rather than in a fairness.Budget: a call per message was 4 % of
        # a small echo's instructions (bench/README.md).
        self._turn_left = fairness.TURN
        # Whether a greenlet is writing a frame, and who waits to write next
        # (_wait_to_write): frames never interleave, and the usual write,
        # with nobody waiting, costs a flag instead of a lock (bench/README.md).
        self._writing = False
        self._next_writers: collections.deque[Event] | None = None
        self._pending_ping: tuple[bytes, Event] | None = None
        self._close_timer: gevent.Greenlet | None = None
        # True while the reader waits for a new message with nothing buffered;
        # go_away() waits on _went_idle for that (made only then).
        self._idle = False
        self._went_idle: Event | None = None
        # Whether the last receive between messages took less than it asked
        # for, so that the socket is likely empty (sockets.receive).
        self._drained = True
        self._closed_callbacks: list[Callable[[], None]] = []

    def __del__(self) -> None:
        """Nothing: gevent-websocket's ``__del__`` calls ``close()``, I/O from a finalizer,
        which may run in any greenlet; a session closes its connection itself."""

    @classmethod
    def open_count(cls) -> int:
        """How many connections of this process are open."""
        return len(cls._open)

    @classmethod
    def go_away_all(cls, code: int = 1001, reason: str = "server shutting down") -> None:
        """Close every connection of this process once each is idle (see ``go_away``).

        Those opened from now on too: a handshake already read when the
        process began to stop is answered, then closed the same way, not
        held until ``graceful_timeout``.
        """
        cls._going_away = (code, reason)
        for ws in list(cls._open):
            ws.go_away(code, reason)

    @classmethod
    def abort_all(cls, code: int = 1001, reason: str = "server shutting down") -> None:
        """Send every open connection a Close frame if it can go now, and drop it."""
        for ws in list(cls._open):
            ws.abort(code, reason)

    @property
    def closed(self) -> bool:  # gevent-websocket's meaning: closing or closed
        return self.state in (State.CLOSING, State.CLOSED)

    def open(self, pending: bytes, response: bytes) -> None:
        """Send the 101 ``response``; from now on the connection speaks WebSocket.

        ``pending`` is what the client sent after its handshake, already read.
        A client that left during the handshake is recorded as gone (1006).
        """
        if self.state is not State.CONNECTING:
            raise RuntimeError("the handshake is already complete")
        # Reads set their own deadline (_receive); writes have none (keepalive).
        self._socket.settimeout(None)
        self._reader = MessageReader(
            self._receive, self.settings.max_message_size, pending, self._deflate
        )
        self.state = State.OPEN
        self._open.add(self)
        try:
            send_all(self._socket, response)
        except OSError:
            self._lost(by="client")  # no error, no traceback
            return
        if self._going_away is not None:
            self.go_away(*self._going_away)

    def when_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the connection is closed and its close code final."""
        if self.state is State.CLOSED:
            callback()
        else:
            self._closed_callbacks.append(callback)

    def note(self, key: str, value: object) -> None:
        """Add ``key=value`` to the session's access-log line (``summary``); ``key`` a word."""
        if self._notes is None:
            self._notes = {}
        self._notes[key] = str(value)

    def summary(self) -> str:
        """One line for the access log: what was negotiated, traffic each way, how it ended.

        A subprotocol is a token the client chose (no spaces, no controls),
        but it may be 60 KB long: the line keeps its first 100 characters.
        """
        notes = self._notes
        subprotocol = self.subprotocol
        return (
            f"id={self.id} served_by={self.settings.served_by}"
            f" subprotocol={token_excerpt(subprotocol) if subprotocol else '-'}"
            f" compression={'permessage-deflate' if self._deflate else '-'}"
            f" in={self.messages_in}/{self.bytes_in}B out={self.messages_out}/{self.bytes_out}B"
            f" close={self.close_code} by={self.closed_by}"
            + ("".join(f" {key}={value}" for key, value in notes.items()) if notes else "")
        )

    def _receive(self, size: int, idle: bool) -> bytes:
        # Waiting for the next message may last forever (keepalive watches
        # that); silence in the middle of one is bounded by read_timeout.
        if not idle:
            return self._receive_within_read_timeout(size)
        self._idle = True  # until the client sends again
        if self._went_idle is not None:
            self._went_idle.set()
        # Wait first only if the last receive took all there was.
        data = receive(self._socket, size, self._drained)
        if data:
            self._idle = False
        self._drained = len(data) < size
        return data

    def _receive_within_read_timeout(self, size: int) -> bytes:
        """The deadline is this read's own: the socket's timeout would bound writes too.

        What has arrived is taken without waiting, so the deadline (a timer,
        about 3 us) is set only when the read has to wait.
        """
        sock = self._socket
        sock.settimeout(0.0)  # no greenlet switch until it is None again
        try:
            return sock.recv(size)
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        finally:
            sock.settimeout(None)
        with gevent.Timeout(self.settings.read_timeout or None, TimeoutError):
            return sock.recv(size)

    def receive(self) -> str | bytes | None:
        """The next message (``str`` for text, ``bytes`` for binary).

        Answers pings and the client's Close on the way. Returns ``None`` once
        the connection is over, whoever ended it and however.
        """
        while (state := self.state) is _OPEN or state is _CLOSING:
            try:
                event = self._reader.read_event()
            except ProtocolError as exc:
                self._fail(exc.code, exc.reason)
            except TimeoutError:
                timeout = self.settings.read_timeout
                self._fail(1008, f"no data for {timeout:g} s in the middle of a message")
            except (EOFError, OSError):
                self._lost(by="client")
            else:
                # A client that never lets the socket run dry must not keep the
                # others waiting (control frames, 125 bytes at most, count as empty).
                message = type(event) is Message
                self._turn_left -= _EVENT_COST + event.size if message else _EVENT_COST
                if self._turn_left <= 0:
                    self._turn_left = fairness.TURN
                    fairness.yield_turn()
                if message:
                    if self.state is _OPEN:  # it may have changed while reading
                        self.messages_in += 1
                        self.bytes_in += event.size
                        return event.data
                    # Data after our Close frame is discarded (RFC 6455 section 5.5.1).
                    continue
                if isinstance(event, Ping):
                    self._send_quietly(frames.OP_PONG, event.payload)
                elif isinstance(event, Pong):
                    self._on_pong(event.payload)
                elif isinstance(event, Close):
                    self._on_close(event.code, event.reason)
        return None

    def send(
        self, message: str | bytes | bytearray | memoryview, binary: bool | None = None
    ) -> None:
        """Send one message; ``str`` goes as text and bytes as binary unless ``binary`` says."""
        if isinstance(message, str):
            payload = message.encode()  # UTF-8; naming it costs a lookup of the name
            self.send_frame(payload, _OP_BINARY if binary else _OP_TEXT)
        else:
            payload = message
            self.send_frame(payload, _OP_TEXT if binary is False else _OP_BINARY)
        self.messages_out += 1
        self.bytes_out += len(payload)

    def send_frame(self, message: bytes | bytearray | memoryview, opcode: int) -> None:
        """Write one whole frame, a data frame compressed if negotiated.

        Raises ``ConnectionClosed`` if it cannot be sent. Compression happens
        in the writer's turn: with context takeover, messages must be
        compressed in the order they are sent.
        """
        if self._writing:
            self._wait_to_write()
        else:
            self._writing = True
        try:
            # Data frames only while open; control frames while closing too.
            if self.state is not _OPEN and (
                opcode in frames.DATA_OPCODES or self.state is not _CLOSING
            ):
                raise ConnectionClosed(f"cannot send on a {self.state.value} connection")
            if self._deflate is not None and opcode in frames.DATA_OPCODES:
                opcode, message = opcode | frames.RSV1, self._deflate.compress(message)
            self._write(opcode, message)
        finally:
            if self._next_writers is None:  # nobody has ever waited: no call (the usual echo)
                self._writing = False
            else:
                self._end_write()

    def _end_write(self) -> None:
        """The frame is written, or failed: the turn goes to the first greenlet waiting, if any."""
        if self._next_writers:
            self._next_writers.popleft().set()  # _writing stays set: the turn is theirs
        else:
            self._writing = False

    def _wait_to_write(self) -> None:
        """Wait for the greenlets writing or waiting before this one; then it is the writer.

        The writer hands over by setting the first waiter's event, leaving
        ``_writing`` set, so waiters write in turn, in the order they came.
        """
        turn = Event()
        if self._next_writers is None:
            self._next_writers = collections.deque()
        self._next_writers.append(turn)
        try:
            turn.wait()
        except BaseException:  # a deadline or a kill while waiting
            if turn.is_set():
                self._end_write()  # handed the turn as it was interrupted: pass it on
            else:
                self._next_writers.remove(turn)
            raise

    def _write(self, opcode: int, payload: bytes | bytearray | memoryview) -> None:
        size = len(payload)
        try:
            if size < 126:  # a small frame's two-byte header, without a call (the usual echo)
                send_all(self._socket, bytes((0x80 | opcode, size)) + payload)
            elif size <= _COALESCE_LIMIT:
                send_all(self._socket, frames.encode_header(opcode, size) + payload)
            else:
                send_all(self._socket, frames.encode_header(opcode, size))
                send_all(self._socket, payload)
        except OSError as exc:
            self._lost(by="client")  # it reset, or went away: our own aborts close first
            raise ConnectionClosed(f"connection lost: {exc}") from None

    def ping(self, payload: bytes | None = None) -> Event:
        """Send a Ping; the returned event is set when its Pong arrives."""
        payload = os.urandom(4) if payload is None else payload
        waiter = Event()
        self._pending_ping = (payload, waiter)
        self.send_frame(payload, frames.OP_PING)
        return waiter

    def close(self, code: int | None = 1000, message: str | bytes = "") -> None:
        """Start the closing handshake; ``receive()`` returns ``None`` when it ends.

        If the client does not answer within ``close_timeout`` the connection is
        dropped. Safe to call from any greenlet, and more than once.
        """
        if self.state is not State.OPEN:
            return
        reason = message.decode("utf-8") if isinstance(message, bytes) else message
        self._send_close(code, reason, by="server")
        self._close_timer = gevent.spawn_later(self.settings.close_timeout, self.abort)

    def go_away(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Close as soon as the client is idle, from any greenlet.

        A message being read or echoed, and every message already buffered,
        is echoed before the Close frame: the close waits until the reader
        would block waiting for a new message.
        """
        if self.state is State.OPEN:
            gevent.spawn(self._close_when_idle, code, reason)

    def _close_when_idle(self, code: int, reason: str) -> None:
        while self.state is State.OPEN:
            if self._idle and not has_input(self._socket):
                self.close(code, reason)
                return
            if self._went_idle is None:
                self._went_idle = Event()
            self._went_idle.clear()
            self._went_idle.wait()

    def close_and_wait(self, code: int | None = 1000, reason: str = "") -> None:
        """Close if still open and read until the closing handshake is over."""
        self.close(code, reason)
        while self.receive() is not None:
            pass  # messages after our Close frame are discarded

    def abort(self, code: int | None = None, reason: str = "") -> None:
        """End the connection now, from any greenlet, waking a blocked reader or writer.

        An open connection is recorded as closed by the server with ``code``
        (1006 without one). A Close frame with ``code`` goes first if no other
        write is in progress (a frame cannot be cut) and the socket takes it
        within ``close_timeout`` (the peer may have stopped reading).
        """
        if self.state is State.OPEN:
            if code is None:
                self._lost(by="server")
                return
            payload = self._start_closing(code, reason, by="server")
            if not self._writing:
                self._writing = True
                try:
                    with gevent.Timeout(self.settings.close_timeout, False):
                        self._write(frames.OP_CLOSE, payload)
                except ConnectionClosed:
                    pass
                finally:
                    self._end_write()
        self._mark_closed(socket.SHUT_RDWR)

    def _start_closing(self, code: int | None, reason: str, by: str) -> bytes:
        """Enter CLOSING, recording the code and who closed; the Close frame's payload.

        A Close frame without a status code is recorded as 1005 (RFC 6455 section 7.1.5).
        """
        self.state, self.closed_by = State.CLOSING, by
        self.close_code = 1005 if code is None else code
        return frames.encode_close(code, reason)

    def _send_close(self, code: int | None, reason: str, by: str) -> None:
        """Send our Close frame; drop the connection if it cannot go within ``close_timeout``.

        The frame nearly always goes at once: the deadline, a gevent
        ``Timeout`` (about 19k instructions, 4 % of a handshake), is made
        only when another greenlet is writing or the socket does not take
        the whole frame without waiting.
        """
        payload = self._start_closing(code, reason, by)
        sent = False
        if not self._writing:
            self._writing = True
            try:
                frame = frames.encode_header(frames.OP_CLOSE, len(payload)) + payload
                rest = frame[send_now(self._socket, frame) :]
                if not rest:
                    return
                with gevent.Timeout(self.settings.close_timeout, False):
                    send_all(self._socket, rest)
                    sent = True
            except OSError:
                self._lost(by="client")
                return
            finally:
                self._end_write()
        else:
            with gevent.Timeout(self.settings.close_timeout, False):
                self._send_quietly(frames.OP_CLOSE, payload)
                sent = True
        if not sent:
            self._mark_closed(socket.SHUT_RDWR)  # the client stopped reading

    def _send_quietly(self, opcode: int, payload: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            self.send_frame(payload, opcode)

    def _on_pong(self, payload: bytes) -> None:
        if self._pending_ping and self._pending_ping[0] == payload:
            self._pending_ping[1].set()
            self._pending_ping = None

    def _on_close(self, code: int | None, reason: str) -> None:
        if self.state is State.OPEN:
            self._send_close(code, reason, by="client")  # echo the client's code and reason
        self._mark_closed(socket.SHUT_WR)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 section 7.1.7) after a protocol error."""
        log.info("[%s] closing with %d: %s", self.id, code, reason)
        if self.state is State.OPEN:
            self._send_close(code, reason, by="server")
        lingering.drain(self._socket, self.settings.close_timeout)
        self._mark_closed(socket.SHUT_RDWR)

    def _lost(self, by: str) -> None:
        """The connection ended without a closing handshake: 1006 (RFC 6455 section 7.1.5)."""
        if self.state is State.OPEN:
            self.close_code, self.closed_by = 1006, by
        self._mark_closed(socket.SHUT_RDWR)

    def _mark_closed(self, how: int) -> None:
        self._socket_shutdown(how)
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._open.discard(self)
        if self._went_idle is not None:
            self._went_idle.set()  # release a pending go_away
        timer, self._close_timer = self._close_timer, None
        if timer is not None and timer is not gevent.getcurrent():
            timer.kill(block=False)
        # The reader (through its receive callable) and the callbacks refer back
        # to this connection: let them go, so that it and its buffers and zlib
        # streams are freed as soon as the session lets go of it, not at the
        # next run of the cyclic garbage collector (docs/hostile-input.md, "Memory given back").
        self._reader = None
        callbacks, self._closed_callbacks = self._closed_callbacks, []
        for callback in callbacks:
            callback()

    def _socket_shutdown(self, how: int) -> None:
        # Not contextlib.suppress: three calls more, on every connection's end.
        try:
            self._socket.shutdown(how)
        except OSError:
            return  # the client is gone already
