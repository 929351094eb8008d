"""Graceful operation: drain on SIGTERM without dropping a request the server accepted.

uvicorn finishes in-flight requests on SIGTERM (within ACTIVATION_DRAIN_SECONDS)
and stops accepting connections.  Left alone it loses two kinds of requests a
client has already sent:

* connections in the kernel's accept queue when the listener closes: the
  kernel resets them.  So the process that owns the listening socket first
  closes a gate (a socket filter that drops new connection attempts, which the
  client retries and then sees refused), waits until the queue is empty
  (:func:`drain_listeners`), and only then lets uvicorn close the listener;
* accepted connections whose request has not been read yet: uvicorn closes
  them at once.  :class:`DrainingHttpProtocol` gives such a connection
  ``IDLE_GRACE`` seconds for its request, answers it with ``Connection: close``,
  and closes the connection only if nothing arrives.

Meanwhile DRAINING is set, so /readyz answers 503 and a load balancer polling
readiness stops routing here.  The gate needs Linux; elsewhere it is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, TypeVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DRAINING = threading.Event()
IDLE_GRACE = 1.0  # seconds an open connection without a request gets once draining starts
QUEUE_WAIT = 2.0  # seconds at most to wait for the accept queue to empty

# Listening sockets owned by this process: set by `python -m service` when it serves
# in a single process (with --workers, the supervisor owns them and drains itself).
LISTENERS: list[socket.socket] = []

Handler = Callable[[int, FrameType | None], Any]
T = TypeVar("T")

_SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>
# Classic BPF over the TCP header (struct sock_filter {u16 code; u8 jt, jf; u32 k}): keep
# every segment with ACK set, drop the rest, that is the SYNs that open new connections.
# A handshake already under way completes (its last ACK passes), and the connections
# that inherit this filter from the listener are unaffected: all their segments carry ACK.
_ACK_ONLY = b"".join(
    struct.pack("=HBBI", *insn)
    for insn in (
        (0x30, 0, 0, 13),  # BPF_LD | BPF_B | BPF_ABS: the flags byte
        (0x45, 0, 1, 0x10),  # BPF_JMP | BPF_JSET | BPF_K: ACK set?
        (0x06, 0, 0, 0xFFFFFFFF),  # BPF_RET: keep the segment
        (0x06, 0, 0, 0),  # BPF_RET: drop it
    )
)
_TCP_LISTEN = 10


def close_gate(sock: socket.socket) -> bool:
    """Drop every new connection attempt on a listening socket; queued connections stay.

    A client's SYN is dropped, it retries about a second later and, the listener
    closed by then, is refused: it never counts as accepted.  False where the
    platform has no socket filters (Linux has them).
    """
    program = ctypes.create_string_buffer(_ACK_ONLY)
    fprog = struct.pack("@HP", len(_ACK_ONLY) // 8, ctypes.addressof(program))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)  # the kernel copies the program
    except OSError:
        return False
    return True


def accept_queue(sock: socket.socket) -> int | None:
    """Connections waiting in a listening socket's accept queue (Linux TCP_INFO), or None if unknown."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, AttributeError):
        return None
    state, *_, queued = struct.unpack_from("=B7x5I", info)  # tcpi_unacked is the queue on a listener
    return int(queued) if state == _TCP_LISTEN else None


def drain_listeners(sockets: list[socket.socket], timeout: float = QUEUE_WAIT) -> None:
    """Close the gate on each socket, then wait (at most ``timeout``) until nothing waits to be accepted."""
    gated = [sock for sock in sockets if close_gate(sock)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(accept_queue(sock) for sock in gated):
        time.sleep(0.005)


def on_sigterm(previous: Handler | int | None, listeners: list[socket.socket]) -> Handler:
    """A SIGTERM handler: raise DRAINING, drain ``listeners`` in a thread, then hand over to ``previous``."""

    def handler(sig: int, frame: FrameType | None) -> None:
        DRAINING.set()

        def hand_over() -> None:
            drain_listeners(listeners)
            if callable(previous):
                previous(sig, frame)

        if listeners:  # the event loop keeps accepting meanwhile, so this must not block it
            threading.Thread(target=hand_over, name="drain", daemon=True).start()
        else:
            hand_over()

    return handler


async def in_daemon_thread(work: Callable[[], T]) -> T:
    """``work()`` in a new daemon thread, awaited.

    When the drain runs out of time (ACTIVATION_DRAIN_SECONDS) uvicorn cancels the
    requests still in progress; a computation in a pool thread would then hold the
    process until it finished, as the interpreter joins such threads at exit.  A
    daemon thread is abandoned instead, so the process exits on time.  One thread
    per request is affordable: only bodies over api.INLINE_BODY_BYTES come here,
    and ACTIVATION_MAX_CONCURRENCY bounds how many.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the request was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = work(), None
        except BaseException as exc:  # handed to the awaiting request, which reports it
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the event loop has closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="compute", daemon=True).start()
    return await future


class DrainingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, except that draining does not close a connection a request is on its way to."""

    draining = False

    def shutdown(self) -> None:
        self.draining = True
        if self.cycle is None or self.cycle.response_complete:
            # Idle: the client may have sent a request already.  Reuse the keep-alive
            # timer, which data_received cancels, to close the connection if none comes.
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(IDLE_GRACE, self.timeout_keep_alive_handler)
        else:
            self.cycle.keep_alive = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with Connection: close, then closed


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    # At startup, in every process that serves, chain in front of uvicorn's SIGTERM
    # handler; only the main thread may set handlers (in-process test clients are not servers).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm(signal.getsignal(signal.SIGTERM), LISTENERS))
    yield
