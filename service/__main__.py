"""`python -m service`: serve the API with uvicorn.

Every setting comes from its ACTIVATION_* environment variable (see
service/settings.py and the README); a command-line flag overrides it.  The
flags are exported as those variables, so every worker process reads the same.

Connections are bounded by service.lifecycle (--header-timeout, --idle-timeout,
--write-timeout, --max-header-bytes, --max-headers), through its uvicorn
protocol and Config subclasses.  uvicorn's own limit_concurrency is left
unset: it counts open connections, idle ones included, and would answer real
requests 503 while sockets sit idle; the idle and header timeouts bound those
instead, and --max-concurrency bounds the work.  backlog keeps uvicorn's
2048 (the kernel caps it at net.core.somaxconn): a short queue only turns a
burst into refused connections, and the drain on SIGTERM empties it anyway.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile

import uvicorn

from . import lifecycle
from .observe import log_config
from .settings import Settings


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Settings from the environment, overridden by command-line flags (exported for the workers)."""
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__.split("\n\n")[0])
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description or ''} (env ACTIVATION_{name.upper()})".strip()
        if name in ("api_keys", "cors_origins"):
            parser.add_argument(flag, help=f"comma-separated; {help_text}")
        else:
            parser.add_argument(flag, help=help_text)
    args = parser.parse_args(argv)
    for name in Settings.model_fields:
        value = getattr(args, name)
        if value is not None:
            os.environ[f"ACTIVATION_{name.upper()}"] = str(value)
    return Settings()  # validates the environment and the flags together


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    metrics_dir = shared_metrics_dir() if settings.workers > 1 else None
    config = lifecycle.ServiceConfig(
        "service.app:create_app",
        limits=lifecycle.ConnectionLimits.of(settings),  # idle_timeout becomes timeout_keep_alive
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        root_path=settings.root_path,
        log_config=log_config(settings.log_level, settings.log_format),
        access_log=False,  # service.observe writes one structured line per request instead
        http=lifecycle.DrainingHttpProtocol,
        # On SIGTERM in-flight requests finish (service.lifecycle turns /readyz to 503 meanwhile);
        # with workers, the supervisor also restarts a worker that dies, even by SIGKILL (and
        # drops its in-flight gauge), and a worker exits when the supervisor dies.
        timeout_graceful_shutdown=settings.drain_seconds,
    )
    # The socket is bound here, so that the process owning it drains its accept queue on SIGTERM:
    # uvicorn's supervisor with --workers, else the server itself.
    sock = config.bind_socket()
    if settings.workers > 1:
        try:
            supervisor = lifecycle.Supervisor(config, sockets=[sock])
            signal.signal(signal.SIGTERM, lifecycle.on_sigterm(signal.getsignal(signal.SIGTERM), [sock]))
            supervisor.run()
        finally:
            if metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    lifecycle.LISTENERS.append(sock)
    # uvicorn drains on SIGTERM, then restores the handler it found and raises the
    # signal again: finding this one, the process exits 0 once it has drained.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(3)  # as uvicorn.run: the application failed to start


def shared_metrics_dir() -> str | None:
    """Where the workers write their metrics (/metrics in any worker sums them all).

    PROMETHEUS_MULTIPROC_DIR if set; else a new temp directory, returned so it is removed at exit.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    try:
        path = tempfile.mkdtemp(prefix="activation-metrics-")
    except OSError:
        sys.exit(
            "python -m service: with --workers, the workers' metrics need a writable directory "
            "and the temp directory is not (read-only root?): set PROMETHEUS_MULTIPROC_DIR to one"
        )
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


if __name__ == "__main__":
    main()
