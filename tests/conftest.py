"""Session-wide servers: one gunicorn per distinct configuration, shared by the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .servers import GUNICORN, RUNNING, ServerProcess

_running: dict[tuple, ServerProcess] = {}


@pytest.fixture(scope="session")
def gunicorn_server() -> Iterator[Callable[..., ServerProcess]]:
    """Start (or reuse) a gunicorn with the given ``ECHO_*`` environment."""

    def start(**env: str) -> ServerProcess:
        key = tuple(sorted(env.items()))
        if key not in _running:
            _running[key] = ServerProcess(GUNICORN, env).start()
        return _running[key]

    yield start
    for server in _running.values():
        server.stop()
    _running.clear()


@pytest.fixture(scope="session")
def server(gunicorn_server: Callable[..., ServerProcess]) -> ServerProcess:
    """gunicorn with the default settings, bound through the PORT convention."""
    return gunicorn_server()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Show the logs of the servers in use when a test fails."""
    report = yield
    if report.failed:
        for server in RUNNING:
            report.sections.append((f"server log: {server.label}", server.log()[-8000:]))
    return report
