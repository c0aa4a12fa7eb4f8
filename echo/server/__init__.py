"""The gevent and gunicorn server: connections, their limits and deadlines, and endpoints.

Import what you need from its modules; this package imports nothing itself,
so that ``gunicorn.conf.py`` can read ``echo.server.settings`` before
prometheus_client is imported (``PROMETHEUS_MULTIPROC_DIR`` must be set
first).
"""
