"""Session-wide servers: one gunicorn per distinct configuration, shared by the tests."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .servers import GUNICORN, RUNNING, ServerProcess, remove_scratch

_running: dict[tuple, ServerProcess] = {}


def _shared(env: dict[str, str], tls: ssl.SSLContext | None = None) -> ServerProcess:
    key = tuple(sorted(env.items()))
    if key not in _running:
        _running[key] = ServerProcess(GUNICORN, env, tls=tls).start()
    return _running[key]


@pytest.fixture(scope="session")
def gunicorn_server() -> Iterator[Callable[..., ServerProcess]]:
    """Start (or reuse) a gunicorn with the given ``ECHO_*`` environment."""
    yield lambda **env: _shared(env)
    for server in _running.values():
        server.terminate()  # all at once: each takes about a second to exit
    for server in _running.values():
        server.stop()
    _running.clear()


@pytest.fixture(scope="session")
def server(gunicorn_server: Callable[..., ServerProcess]) -> ServerProcess:
    """gunicorn with the default settings, bound through the PORT convention."""
    return gunicorn_server()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def tls_gunicorn_server(
    gunicorn_server: Callable[..., ServerProcess], certificate: tuple[Path, Path]
) -> Callable[..., ServerProcess]:
    """Start (or reuse) a gunicorn speaking TLS, given certfile and keyfile the gunicorn way."""
    cert, key = certificate
    context = ssl.create_default_context(cafile=cert)
    tls_args = {"GUNICORN_CMD_ARGS": f"--certfile {cert} --keyfile {key}"}
    return lambda **env: _shared({**env, **tls_args}, context)


@pytest.fixture(scope="session")
def tls_server(tls_gunicorn_server: Callable[..., ServerProcess]) -> ServerProcess:
    """gunicorn speaking TLS with the default settings."""
    return tls_gunicorn_server()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Show the logs of the servers in use when a test fails."""
    report = yield
    if report.failed:
        for server in RUNNING:
            report.sections.append((f"server log: {server.label}", server.log()[-8000:]))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the servers' logs and temporary files, unless a test failed (then they tell why)."""
    if exitstatus == 0:
        remove_scratch()
