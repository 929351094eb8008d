"""A real reverse proxy for tests: Debian's nginx in front of the service, under a path prefix."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import HOST, free_port, stop

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 64m;
    server {{
        listen {host}:{port};
        # The prefix is stripped here and given to the service as its root path (--root-path {prefix}).
        location {prefix}/ {{
            proxy_pass http://{upstream}/;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


@contextmanager
def nginx(upstream: str, prefix: str = "/api") -> Iterator[str]:
    """nginx on a free loopback port proxying ``prefix``/ to ``upstream`` (host:port); yields its base URL."""
    if not Path(NGINX).exists():
        raise RuntimeError("the proxy tests need Debian's nginx: bash .ci/run installs it")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nginx-") as folder:
        conf = Path(folder) / "nginx.conf"
        conf.write_text(CONFIG.format(dir=folder, host=HOST, port=port, prefix=prefix, upstream=upstream))
        proc = subprocess.Popen(
            [NGINX, "-p", folder, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err = proc.stderr.read().decode() if proc.stderr else ""
                        raise RuntimeError(f"nginx did not start: {err}") from None
                    time.sleep(0.05)
            yield f"http://{HOST}:{port}{prefix}"
        finally:
            stop(proc)
