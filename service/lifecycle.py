"""Graceful operation: a drain flag raised on SIGTERM, read by /readyz.

uvicorn finishes in-flight requests on SIGTERM (within ACTIVATION_DRAIN_SECONDS)
and stops accepting connections.  At startup, in every worker process, the
application chains a handler in front of uvicorn's that also raises DRAINING,
so /readyz answers 503 on connections that are still open and a load balancer
polling readiness stops routing here before the process exits.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

DRAINING = threading.Event()


def _chain_sigterm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (in-process test clients are not servers)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        DRAINING.set()
        if callable(previous):
            previous(sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    _chain_sigterm()
    yield
