"""The WebSocket endpoints of an application, and the settings they are served with.

The server looks a handshake's path up here and calls the endpoint itself,
without the application's dispatch (which cost more than the rest of a
handshake, bench/README.md). It finds the registry through the application
object it serves (``Endpoints.of``), so it never imports the application; a
Flask app gets one from ``echo.server.flask.FlaskWebSockets``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .settings import Settings
from .sockets import peer_text

if TYPE_CHECKING:
    from .connection import ServerConnection

#: An endpoint: called with the open connection, in the connection's own
#: greenlet; the connection is closed (1000, or 1011 if it raised) when it returns.
Endpoint = Callable[["ServerConnection"], None]


@dataclass(slots=True)
class HandshakeRequest:
    """A handshake as it arrived, for an endpoint's ``check``, once the server accepts it.

    The peer and TLS details are read from the socket only if asked for:
    most checks look at the path and query alone.
    """

    environ: dict[str, Any]  # the WSGI environ: REMOTE_ADDR is the client a proxy names
    request_line: str
    headers: list[tuple[str, str]]  # as received: in order, names as the client wrote them
    subprotocol: str | None  # agreed
    extensions: str | None  # agreed: the 101's Sec-WebSocket-Extensions
    settings: Settings
    socket: Any

    @property
    def peer(self) -> str:
        """The address that connected (a proxy's, behind one), as ``host:port``; over a
        Unix socket (gunicorn's ``--bind unix:PATH``), ``unix:PATH``."""
        return peer_text(self.socket.getpeername(), self.socket)

    @property
    def tls(self) -> tuple[str, str] | None:
        """The TLS version and cipher, or ``None`` on plain TCP."""
        cipher = getattr(self.socket, "cipher", None)
        return (self.socket.version(), cipher()[0]) if cipher is not None else None


#: An endpoint's check: called with the handshake before the 101, it refuses it
#: by raising ``echo.protocol.errors.HandshakeRejected`` (a 4xx with its reason).
#: What it returns is the connection's ``params``.
Check = Callable[[HandshakeRequest], Any]


@dataclass(frozen=True, slots=True)
class Route:
    endpoint: Endpoint
    check: Check | None = None


class Endpoints:
    """Paths and their endpoints; only these paths are ever upgraded."""

    #: Where an application keeps its registry: Flask's ``app.extensions``.
    KEY = "echo.websocket_endpoints"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._by_path: dict[str, Route] = {}

    @classmethod
    def of(cls, application: Any) -> Endpoints:
        """The registry of ``application``; an empty one (no endpoint) if it has none."""
        extensions = getattr(application, "extensions", None)
        found = extensions.get(cls.KEY) if isinstance(extensions, dict) else None
        return found if isinstance(found, Endpoints) else cls(Settings.from_env())

    def add(self, path: str, endpoint: Endpoint, check: Check | None = None) -> None:
        if not path.startswith("/"):
            raise ValueError(f"an endpoint's path starts with /, not {path!r}")
        if path in self._by_path:
            raise ValueError(f"{path} has an endpoint already")
        self._by_path[path] = Route(endpoint, check)

    def get(self, path: str) -> Route | None:
        """The endpoint at exactly ``path`` (``//ws`` and ``/ws/`` are not ``/ws``)."""
        return self._by_path.get(path)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_path)

    def __contains__(self, path: object) -> bool:
        return path in self._by_path
