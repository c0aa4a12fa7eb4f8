"""A real nginx in front of a test server, configured by a site snippet."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .servers import ServerProcess

NGINX = "/usr/sbin/nginx"


def nginx_proxy(site: str, upstream: ServerProcess, health_path: str = "/healthz") -> ServerProcess:
    """nginx serving ``site``: its ``LISTEN`` and ``UPSTREAM`` placeholders become addresses."""
    prefix = Path(tempfile.mkdtemp(prefix="echo-nginx-"))
    prefix.chmod(0o755)
    server = ServerProcess(
        [NGINX, "-p", str(prefix), "-e", "error.log", "-c", "nginx.conf"], health_path=health_path
    )
    site = site.replace("LISTEN", f"127.0.0.1:{server.port}")
    site = site.replace("UPSTREAM", f"127.0.0.1:{upstream.port}")
    (prefix / "nginx.conf").write_text(
        "daemon off;\n"
        "worker_processes 1;\n"
        "pid nginx.pid;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "  access_log access.log;\n"
        "  client_body_temp_path tmp; proxy_temp_path tmp;\n"
        f"{site}\n"
        "}\n"
    )
    return server
