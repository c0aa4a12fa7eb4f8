"""A real nginx in front of a test server, configured by a site file such as deploy/nginx.conf."""

from __future__ import annotations

import shutil
from pathlib import Path

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


DEBIAN_CONF = Path("/etc/nginx")


def debian_nginx(upstream: ServerProcess, default_site: bool = True) -> ServerProcess:
    """Debian's own nginx layout, with the recipe installed as the README says.

    The package's nginx.conf and default site, copied under a prefix (paths
    made relative to it, port 80 made a test port on 127.0.0.1 for both
    sites), and deploy/nginx.conf in conf.d/echo.conf; ``default_site=False``
    is the README's other way: the default site removed.
    """
    prefix = scratch_dir("echo-nginx-debian-")
    prefix.chmod(0o755)
    server = ServerProcess(
        [NGINX, "-p", str(prefix), "-c", "nginx.conf", "-g", "daemon off;"], health_path=None
    )
    listen = f"127.0.0.1:{server.port}"
    main = (DEBIAN_CONF / "nginx.conf").read_text()
    for old, new in {
        "user www-data;": "",
        "/run/nginx.pid": "nginx.pid",
        "/var/log/nginx/": "",
        "/etc/nginx/": "",
        "http {": "http {\n\tclient_body_temp_path tmp; proxy_temp_path tmp;",
    }.items():
        assert old in main, f"{old!r} is not in Debian's nginx.conf"
        main = main.replace(old, new)
    (prefix / "nginx.conf").write_text(main)
    shutil.copy(DEBIAN_CONF / "mime.types", prefix)
    for directory in ("modules-enabled", "conf.d", "sites-enabled"):
        (prefix / directory).mkdir()
    if default_site:
        site = (DEBIAN_CONF / "sites-available" / "default").read_text()
        site = site.replace("listen 80 default_server;", f"listen {listen} default_server;")
        site = site.replace("listen [::]:80 default_server;", "")
        (prefix / "sites-enabled" / "default").write_text(site)
    recipe = RECIPE.read_text().replace("listen 80;", f"listen {listen};")
    recipe = recipe.replace("127.0.0.1:8000", f"127.0.0.1:{upstream.port}")
    (prefix / "conf.d" / "echo.conf").write_text(recipe)
    return server
