"""The echo app's own settings, beside the server's (``echo.server.settings``).

Read the same way (code, then ``ECHO_*`` variables) and listed in the same
README table; they concern only what ``/ws`` offers testers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..server.settings import EnvSettings, flag, setting

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 section 5.6.2)


def _header_names(raw: Any) -> tuple[str, ...]:
    names = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    for name in names:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a header name")
    return tuple(sorted({name.lower() for name in names}))


@dataclass(frozen=True)
class EchoSettings(EnvSettings):
    """What ``/ws`` offers people testing clients and proxies (README, "Testing clients")."""

    test_modes: bool = setting(
        True,
        flag,
        "Honour the test modes and hello in /ws's query; off answers them 400.",
    )
    hidden_headers: tuple[str, ...] = setting(
        (),
        _header_names,
        "Headers whose values hello shows as their length, beside Authorization,"
        " Proxy-Authorization and Cookie (comma-separated).",
    )
