"""The WebSocket protocol without I/O: bytes in, events and bytes out.

Nothing here reads a socket or knows a framework; ``echo.server`` drives it.
"""
