"""The three layers of ``echo`` import one way: protocol <- server <- app, with no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .servers import ROOT, fresh_interpreter

PACKAGE = ROOT / "echo"
# What the sans-I/O protocol layer must work without.
IO_LIBRARIES = ["gevent", "geventwebsocket", "flask", "werkzeug", "gunicorn", "prometheus_client"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, type-only imports included, as absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
            prefix = ".".join([*base, node.module] if node.module else base)
            if not node.level:
                prefix = node.module
            found.add(prefix)
            # "from . import frames" imports the module echo.protocol.frames.
            found |= {f"{prefix}.{alias.name}" for alias in node.names}
    return found


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {
    name: {other for other in imports_of(path) if other in MODULES and other != name}
    for name, path in MODULES.items()
}


def layer(name: str) -> str:
    return name.split(".")[1] if name.count(".") else "package"


def test_layers_import_only_downwards():
    allowed = {
        "package": set(),
        "protocol": {"protocol"},
        "server": {"protocol", "server"},
        "app": {"protocol", "server", "app"},
    }
    wrong = [
        f"{name} imports {other}"
        for name, others in GRAPH.items()
        for other in others
        if layer(other) not in allowed[layer(name)] and other != "echo"
    ]
    assert wrong == []


def test_no_import_cycle_in_echo():
    """Type-only imports count: a reader has to follow them as well."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "visiting"
        for other in sorted(GRAPH[name]):
            if state.get(other) == "visiting":
                pytest.fail("import cycle: " + " -> ".join([*path, name, other]))
            if other not in state:
                visit(other, [*path, name])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])


def test_server_needs_flask_only_for_its_flask_endpoint_api():
    """The server serves any WSGI app; ``echo.server.flask`` is the Flask adapter."""
    users = {
        name
        for name, path in MODULES.items()
        if layer(name) == "server"
        and any(m.split(".")[0] in ("flask", "werkzeug") for m in imports_of(path))
    }
    assert users == {"echo.server.flask"}


def test_protocol_layer_imports_without_any_io_library():
    """With gevent, Flask, gunicorn and the rest made unimportable, every module imports."""
    protocol = sorted(name for name in MODULES if layer(name) == "protocol")
    script = (
        f"import sys\nfor name in {IO_LIBRARIES!r}:\n    sys.modules[name] = None\n"
        f"import importlib\nfor name in {protocol!r}:\n    importlib.import_module(name)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {IO_LIBRARIES!r}"
        " and sys.modules[m] is not None)\n"
        "print(loaded)\n"
    )
    assert fresh_interpreter(script) == "[]"
