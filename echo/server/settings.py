"""The server's settings: the one place their names, defaults and meanings live.

Values come from code (``gunicorn.conf.py`` or a test) and are overridden by
``ECHO_*`` environment variables, so the production file, the development
server and ad-hoc runs all agree. Every value is validated at start-up: a bad
one stops the server with a message naming the setting.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, Self
from urllib.parse import urlsplit

from websockets.exceptions import InvalidHeaderFormat
from websockets.headers import parse_subprotocol

ENV_PREFIX = "ECHO_"


class ConfigError(ValueError):
    """A setting has a value the server cannot run with."""


def _seconds(raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be a number of seconds >= 0")
    return value


_SIZE = re.compile(r"\s*(\d[\d_]*)\s*(B|KiB|MiB|GiB)?\s*", re.IGNORECASE)
_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}


def _size(raw: Any) -> int:
    if isinstance(raw, int):
        value = raw
    else:
        match = _SIZE.fullmatch(str(raw))
        if not match:
            raise ValueError("must be a byte count such as 1048576 or 1MiB")
        value = int(match[1]) * _UNITS[(match[2] or "b").lower()]
    if value < 1:
        raise ValueError("must be at least 1 byte")
    return value


@dataclass(frozen=True)
class ListenAddress:
    """``HOST`` and ``PORT``, as both servers read them: checked at start-up, one line if wrong."""

    host: str  # an address or a name; IPv6 without brackets
    port: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ListenAddress:
        """``HOST`` (default 127.0.0.1) and ``PORT`` (8000); ``ConfigError`` naming the bad one.

        The host is resolved now: a name that does not resolve would otherwise
        be retried by gunicorn for five seconds, or end ``app.py`` in a traceback.
        """
        environ = os.environ if environ is None else environ
        raw_host, raw_port = environ.get("HOST", "127.0.0.1"), environ.get("PORT", "8000")
        host = raw_host.strip().removeprefix("[").removesuffix("]")
        port = raw_port.strip()
        if not (port.isascii() and port.isdigit() and int(port) <= 65535):
            raise ConfigError(f"PORT = {raw_port!r}: must be a port number from 0 to 65535")
        try:
            socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (socket.gaierror, UnicodeError) as error:
            reason = getattr(error, "strerror", None) or "not a host name or address"
            raise ConfigError(f"HOST = {raw_host!r}: {reason}") from None
        return cls(host, int(port))

    @property
    def bind(self) -> str:
        """As gunicorn's ``bind`` and URLs write it: an IPv6 address in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def normalize_origin(origin: str) -> str:
    """An origin as compared: trimmed, without a trailing slash, lower case."""
    return origin.strip().rstrip("/").lower()


def _origins(raw: Any) -> frozenset[str] | None:
    items = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    if not items or items == ["*"]:
        return None
    origins = set()
    for item in items:
        origin = normalize_origin(item)
        parts = urlsplit(origin)
        if origin != "null" and not (parts.scheme and parts.netloc and not parts.path):
            raise ValueError(f"{item!r} is not an origin like https://example.com or *")
        origins.add(origin)
    return frozenset(origins)


def _count_or_auto(raw: Any) -> int | None:
    text = str(raw).strip()
    if text.lower() == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError("must be a whole number >= 1, or auto")
    return int(text)


def _subprotocols(raw: Any) -> tuple[str, ...] | None:
    text = raw if isinstance(raw, str) else ",".join(raw)
    if text.strip() == "*":
        return None
    if not text.strip():
        return ()
    try:
        return tuple(parse_subprotocol(text.strip()))
    except InvalidHeaderFormat:
        raise ValueError("must be * or comma-separated tokens such as mqtt,graphql-ws") from None


_INSTANCE = re.compile(r"[A-Za-z0-9._-]{1,63}")


def _instance(raw: Any) -> str:
    name = str(raw).strip()
    if not _INSTANCE.fullmatch(name):
        raise ValueError("must be 1 to 63 letters, digits, '.', '-' or '_'")
    return name


def default_instance() -> str:
    """The host name, as a valid instance name."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:63] or "localhost"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def flag(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value not in _TRUE | _FALSE:
        raise ValueError("must be on or off (1/0, true/false, yes/no)")
    return value in _TRUE


def setting(default: Any, parse: Callable[[Any], Any], doc: str, unset: str = "*") -> Any:
    """A setting; ``unset`` is how its ``None`` is written (and parsed back)."""
    return field(default=default, metadata={"parse": parse, "doc": doc, "unset": unset})


class EnvSettings:
    """Settings given in code and overridden by ``ECHO_*`` variables; subclasses are frozen
    dataclasses of ``setting`` fields (the server's here, an application's beside it).
    """

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **values: Any) -> Self:
        """Build settings from ``values``, each overridden by its ``ECHO_*`` variable."""
        environ = os.environ if environ is None else environ
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        resolved = {}
        for f in fields(cls):
            name = env_name(f.name)
            raw = environ.get(name, values.get(f.name, f.default))
            if raw is None:
                resolved[f.name] = None
                continue
            try:
                resolved[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{name} (setting {f.name}) = {raw!r}: {exc}") from None
        return cls(**resolved)

    def to_env(self) -> list[str]:
        """Render as ``NAME=value`` lines (gunicorn's ``raw_env``) that parse back identically."""
        return [f"{env_name(f.name)}={_render(getattr(self, f.name), f)}" for f in fields(self)]


@dataclass(frozen=True)
class Settings(EnvSettings):
    """WebSocket behaviour of the server (see the README's configuration table)."""

    ping_interval: float = setting(
        20.0, _seconds, "Seconds between server Pings that keep idle connections open; 0 disables."
    )
    ping_timeout: float = setting(
        20.0, _seconds, "Seconds to wait for the Pong before closing with 1011; 0 disables."
    )
    max_message_size: int = setting(
        1 << 20, _size, "Largest message (all fragments) accepted; larger ones close with 1009."
    )
    allowed_origins: frozenset[str] | None = setting(
        None, _origins, "Origins allowed to connect (comma-separated); * allows any."
    )
    close_timeout: float = setting(
        5.0, _seconds, "Seconds to wait for the client's side of a closing handshake."
    )
    read_timeout: float = setting(
        10.0,
        _seconds,
        "Seconds for a whole request (from its first byte) or TLS handshake, and the longest"
        " silence in the middle of a message (1008); 0 disables.",
    )
    max_websockets: int | None = setting(
        None,
        _count_or_auto,
        "Open WebSockets per worker; more handshakes get 503. auto: worker_connections"
        " less 10 % (at most 100), so plain HTTP always finds a slot.",
        unset="auto",
    )
    subprotocols: tuple[str, ...] | None = setting(
        None,
        _subprotocols,
        "Subprotocols the server selects from (comma-separated): the first the client offers"
        " that is listed; * selects the first offered; empty selects none.",
    )
    compression: bool = setting(
        True, flag, "Accept permessage-deflate (RFC 7692) when the client offers it."
    )
    metrics: bool = setting(True, flag, "Serve Prometheus metrics at /metrics.")
    instance: str = setting(
        default_instance(),
        _instance,
        "This server's name in the X-Served-By header of every response, with the worker's pid.",
    )

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a handshake from ``origin`` may connect; one without (not a browser) may."""
        allowed = self.allowed_origins
        return allowed is None or origin is None or normalize_origin(origin) in allowed

    @property
    def served_by(self) -> str:
        """This process as responses name it (``X-Served-By``): instance and pid."""
        return f"{self.instance}/{process_id()}"


_pid = os.getpid()


def process_id() -> int:
    """This process's pid, asked of the kernel once per process rather than per connection."""
    return _pid


def _forked() -> None:
    global _pid  # a gunicorn worker is forked after this module is imported
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def env_name(name: str) -> str:
    """The environment variable that overrides the setting ``name``."""
    return ENV_PREFIX + name.upper()


def _render(value: Any, f: Field) -> str:
    if value is None:
        return f.metadata["unset"]
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)
