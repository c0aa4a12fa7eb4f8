"""Exceptions of the server's own deadlines (the protocol's are in ``echo.protocol.errors``)."""


class RequestTimeout(Exception):
    """An HTTP request (line and headers) still incomplete ``read_timeout`` after its first byte.

    Not an ``OSError``: pywsgi takes those for a vanished client and answers nothing.
    """


class Evicted(RequestTimeout):
    """Ended to make room: the pool was full and this request had been arriving the longest."""
