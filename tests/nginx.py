"""A real nginx in front of a test server, configured by a site file such as deploy/nginx.conf."""

from __future__ import annotations

from .servers import ROOT, ServerProcess, scratch_dir

NGINX = "/usr/sbin/nginx"
RECIPE = ROOT / "deploy" / "nginx.conf"
INSTANCES_RECIPE = ROOT / "deploy" / "nginx-instances.conf"


def nginx_proxy(
    upstream: ServerProcess,
    site: str | None = None,
    health_path: str = "/healthz",
    **replacements: str,
) -> ServerProcess:
    """nginx serving ``site`` (default: the deploy/nginx.conf recipe) in front of ``upstream``.

    The site's ``listen 80;`` and ``127.0.0.1:8000`` become test addresses, and
    each ``replacements`` item swaps one more literal string.
    """
    prefix = scratch_dir("echo-nginx-")
    prefix.chmod(0o755)
    server = ServerProcess(
        [NGINX, "-p", str(prefix), "-e", "error.log", "-c", "nginx.conf"], health_path=health_path
    )
    site = RECIPE.read_text() if site is None else site
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{server.port};",
        "127.0.0.1:8000": f"127.0.0.1:{upstream.port}",
        **replacements,
    }
    for old, new in replacements.items():
        assert old in site, f"{old!r} is not in the nginx site"
        site = site.replace(old, new)
    (prefix / "nginx.conf").write_text(
        "daemon off;\n"
        "worker_processes 1;\n"
        "pid nginx.pid;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "  access_log access.log;\n"
        "  client_body_temp_path tmp; proxy_temp_path tmp;\n"
        f"{site}\n"
        "}\n"
    )
    return server
