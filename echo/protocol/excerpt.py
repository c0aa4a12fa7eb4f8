"""What the client sent, as a refusal's reason or a log line quotes it: short and inert.

A refusal that quoted a header whole answered a 60 KB header with a 60 KB
body and a 60 KB log line: an attacker could fill the log at the rate it
sends. A quote is cut at LIMIT characters, saying how long the whole was,
and control characters are escaped (``\\x0a``), so that no path or header
value can forge a log line or move a terminal's cursor.
"""

from __future__ import annotations

import re

LIMIT = 100  # characters
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def excerpt(text: str, limit: int = LIMIT) -> str:
    """``text`` as quoted: at most ``limit`` characters (then ``… (N characters)``), escaped."""
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text):,} characters)"
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match[0]):02x}"


def token_excerpt(token: str, limit: int = LIMIT) -> str:
    """A token (no spaces, no controls) as a log line's ``key=value`` quotes it: cut at
    ``limit`` characters, marked by an ellipsis, with no length that would add a space."""
    return token if len(token) <= limit else f"{token[:limit]}…"
