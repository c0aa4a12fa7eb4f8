"""gunicorn configuration for production: ``gunicorn -c gunicorn.conf.py``.

gunicorn's own conventions still apply on top of this file: command-line
flags and GUNICORN_CMD_ARGS override it, WEB_CONCURRENCY sets the worker count.
"""

import atexit
import os
import shutil
import tempfile

# Prometheus multiprocess mode, so /metrics adds up every worker: the directory
# must be known before the workers import prometheus_client.
# Set PROMETHEUS_MULTIPROC_DIR yourself to choose it (and empty it before start).
# The one made here is removed when this master exits, a failed start
# included; a master started by USR2 (ECHO_METRICS_DIR_MASTER is then
# another's) makes its own.
_OWNER = "ECHO_METRICS_DIR_MASTER"


def _remove_metrics_dir(directory: str, master: int) -> None:
    if os.getpid() == master:  # the workers, forked, inherit this exit handler
        shutil.rmtree(directory, ignore_errors=True)


if os.environ.get(_OWNER, str(os.getpid())) != str(os.getpid()) or (
    "PROMETHEUS_MULTIPROC_DIR" not in os.environ
):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="echo-metrics-")
    os.environ[_OWNER] = str(os.getpid())
    atexit.register(_remove_metrics_dir, os.environ["PROMETHEUS_MULTIPROC_DIR"], os.getpid())

from echo.server.settings import ConfigError, ListenAddress, Settings, default_instance  # noqa: E402 (after the metrics directory)

wsgi_app = "app:app"

# --- Server socket -----------------------------------------------------------
# HOST and PORT as for `python app.py`; loopback unless you say otherwise.
# An IPv6 address may be written with or without brackets: HOST=::1 or HOST=[::1].
try:
    bind = [ListenAddress.from_env().bind]
except ConfigError as error:
    raise SystemExit(f"gunicorn.conf.py: {error}") from None

# --- Control socket ------------------------------------------------------------
# gunicorn 27 opens a control socket for `gunicornc` at one path per user
# ($HOME/.gunicorn/gunicorn.ctl), shared by every instance on the machine, so
# it is off here. To use gunicornc, give this instance a path of its own:
# CONTROL_SOCKET=/run/echo/gunicorn.ctl.
control_socket_disable = not os.environ.get("CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["CONTROL_SOCKET"]

# --- Workers -----------------------------------------------------------------
# One gevent worker holds thousands of connections; `workers` defaults to
# WEB_CONCURRENCY (or 1). Each connection is one greenlet and one open file,
# up to worker_connections per worker: keep `ulimit -n` above it (README,
# "Capacity"). WebSockets may take max_websockets of them (below).
worker_class = "echo.server.worker.WebSocketWorker"
worker_connections = 1000

# --- Logging ---------------------------------------------------------------
# One access-log line per HTTP request, and per WebSocket session when it ends:
# gunicorn's usual atoms (%(L)s is then the session's duration) plus
# %({echo.session}e)s = "id=... served_by=INSTANCE/PID subprotocol=NAME
# compression=permessage-deflate in=MESSAGES/BYTES out=MESSAGES/BYTES close=CODE
# by=WHO" ("-": nothing negotiated), then what the endpoint noted (test modes).
# Client addresses from X-Forwarded-For are used for proxies in
# forwarded_allow_ips (default: 127.0.0.1,::1).
accesslog = "-"
# The same lines as gunicorn's own logger, for less CPU, with control
# characters escaped as nginx does (echo/server/access_log.py).
logger_class = "echo.server.access_log.AccessLogger"
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(L)ss %({echo.session}e)s'
)

# --- WebSocket settings --------------------------------------------------------
# Meanings and defaults: README ("Configuration") and echo/server/settings.py. Each
# value here is overridden by its ECHO_* environment variable. Invalid values
# stop start-up here, in the master, with the setting's name.
try:
    websocket = Settings.from_env(
        ping_interval=20.0,  # ECHO_PING_INTERVAL, seconds; 0 disables
        ping_timeout=20.0,  # ECHO_PING_TIMEOUT, seconds; 0 disables
        max_message_size="1MiB",  # ECHO_MAX_MESSAGE_SIZE
        allowed_origins="*",  # ECHO_ALLOWED_ORIGINS, e.g. "https://example.com"
        close_timeout=5.0,  # ECHO_CLOSE_TIMEOUT, seconds
        read_timeout=10.0,  # ECHO_READ_TIMEOUT, seconds; 0 disables
        max_websockets="auto",  # ECHO_MAX_WEBSOCKETS: auto = worker_connections less 10 %
        subprotocols="*",  # ECHO_SUBPROTOCOLS: * = the first offered, e.g. "mqtt,wamp.2.json"
        compression=True,  # ECHO_COMPRESSION: accept permessage-deflate
        metrics=True,  # ECHO_METRICS: serve /metrics
        instance=default_instance(),  # ECHO_INSTANCE (default: the host name), in X-Served-By
    )
except ConfigError as error:
    raise SystemExit(f"gunicorn.conf.py: {error}") from None

# Hand the resolved settings to the workers (gunicorn resets these on reload).
raw_env = websocket.to_env()


def on_starting(server):
    """A certificate that cannot be used stops the start in one line, not a traceback;
    gunicorn settings this worker does not apply are said at once."""
    from echo.server.worker import check_certificate, check_gunicorn_settings

    check_gunicorn_settings(server.cfg, server.log)
    check_certificate(server.cfg)


def post_fork(server, worker):
    """A stop signal that reaches a worker before its own handlers must not be lost."""
    from echo.server.worker import stop_early_if_asked

    stop_early_if_asked(server)


def child_exit(server, worker):
    """A dead worker's open connections leave the sum; its counts go to one archive."""
    from echo.server.metric_files import retire_worker

    retire_worker(os.environ["PROMETHEUS_MULTIPROC_DIR"], worker.pid)
