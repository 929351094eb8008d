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

Connections are bounded too (:class:`DrainingHttpProtocol`, flags in brackets):

* a request's head (request line and headers) must arrive within
  ``header_timeout`` of the connection opening or of the previous response
  ending; late, the connection gets ``408`` if part of a request had arrived,
  else it is closed silently.  A connection with no request in progress is
  closed after ``idle_timeout`` (fresh or kept alive; uvicorn's keep-alive timer);
* a head over ``max_header_bytes`` or with more than ``max_headers`` fields gets
  ``431``; the parser is fed no further, so nothing over the limit is buffered;
* a reply that makes no progress for ``write_timeout`` (a client that stopped
  reading) aborts the connection, which frees the reply's buffers.

408 and 431 are problem+json naming the field ``headers``, sent with
``Connection: close``; the server then stops sending (FIN) and drops what
still arrives for up to ``LINGER`` seconds, so the client reads the answer
instead of a reset.  The body's pace is bounded by the application
(``body_timeout``, ``request_timeout``), not here.

With ``--workers``, :class:`ServiceConfig` carries these limits to every worker
and makes each worker exit when its supervisor dies (``PR_SET_PDEATHSIG``);
:class:`Supervisor` tells prometheus_client when a worker is gone, so the
in-flight gauge forgets it.

This is the one module that relies on uvicorn's internals: the httptools
protocol's callbacks, attributes and timers, ``Config.load`` and the
supervisor's ``keep_subprocess_alive``/``handle_signals``.  pyproject.toml pins
uvicorn to the minor version this is tested with, and
tests/test_lifecycle.py::test_the_uvicorn_internals_relied_on_are_there
fails if they change.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from types import FrameType
from typing import Any, TypeVar

import httptools
import orjson
import uvicorn
from prometheus_client import multiprocess
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from .settings import Settings

DRAINING = threading.Event()
IDLE_GRACE = 1.0  # seconds an open connection without a request gets once draining starts
QUEUE_WAIT = 2.0  # seconds at most to wait for the accept queue to empty
LINGER = 1.0  # seconds a connection refused with 408 or 431 keeps reading (and dropping) before it closes
LINGER_BYTES = 2**20  # ... and bytes at most it drops meanwhile

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
            # Without its traceback and context: their frames hold the request's body and
            # buffers, and a traceback's frame cycle would keep them until a garbage collection.
            result, error = None, exc.with_traceback(None)
            error.__context__ = error.__cause__ = None
        with contextlib.suppress(RuntimeError):  # the event loop has closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)
        error = None

    threading.Thread(target=run, name="compute", daemon=True).start()
    return await future


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may take: the ACTIVATION_* settings of the same names."""

    header_timeout: float = 10.0
    idle_timeout: float = 5.0
    write_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.header_timeout,
            idle_timeout=settings.idle_timeout,
            write_timeout=settings.write_timeout,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
        )


class _TooManyHeaders(Exception):
    """Raised in the parser's on_header callback to stop the parser at once."""


class DrainingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the connection limits of :class:`ConnectionLimits`,
    and a drain that does not close a connection a request is on its way to.

    uvicorn creates one per connection as ``cls(config=, server_state=, app_state=, _loop=)``;
    the limits come from ``config.limits`` (see :class:`ServiceConfig`), the defaults without.
    Timers: uvicorn's keep-alive timer (``timeout_keep_alive_task``, cancelled by any data)
    closes an idle connection after ``config.timeout_keep_alive`` (the idle timeout) and,
    once draining, after IDLE_GRACE; the header timer runs from the connection opening or
    the end of a response until a request's head is complete; the write timer runs while
    the transport has paused writing.
    """

    draining = False

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "limits", None)
        self.limits = limits if isinstance(limits, ConnectionLimits) else ConnectionLimits()
        self.in_head = True  # reading a request's head (or waiting for one), not a body
        self.head_started = False  # a byte of that request has arrived
        self.head_bytes = 0  # bytes of that head so far
        self.heads_done = 0  # requests whose head was complete
        self.header_fields = 0
        self.refused = False  # answered 408 or 431: whatever still arrives is dropped
        self.dropped = 0
        self.header_timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.write_buffered = 0
        self.write_progress_at = 0.0

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms the keep-alive timer only after a response: a connection that never
        # sends anything would stay open for ever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for timer in (self.header_timer, self.write_timer, self.linger_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.write_timer = self.linger_timer = None

    def data_received(self, data: bytes) -> None:
        """uvicorn's, except that the bytes of a head are counted before the parser sees them."""
        if self.refused:  # dropped; and once the answer is out, enough of it ends the lingering
            self.dropped += len(data)
            if self.linger_timer is not None and self.dropped > LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        while data:
            piece = data
            if self.in_head:  # feed no more than the limit allows: the parser buffers a partial header
                room = self.limits.max_header_bytes - self.head_bytes
                piece, data = data[:room], data[room:]
            else:
                data = b""
            counting, heads_done = self.in_head, self.heads_done
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            except httptools.HttpParserError as exc:
                if isinstance(exc.__context__, _TooManyHeaders):
                    self.refuse(431, f"more than {self.limits.max_headers} fields (ACTIVATION_MAX_HEADERS)")
                    return
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
                return
            if counting and self.in_head and heads_done == self.heads_done:
                # The whole piece belongs to one unfinished head.  (A piece that ends a body
                # and starts the next head is not counted: that head may grow by one read.)
                self.head_bytes += len(piece)
                if self.head_bytes >= self.limits.max_header_bytes:
                    limit = self.limits.max_header_bytes
                    self.refuse(431, f"larger than {limit} bytes (ACTIVATION_MAX_HEADER_BYTES)")
                    return
            if self.transport.is_closing():
                return

    # -- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_started = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_fields += 1
        if self.header_fields > self.limits.max_headers:
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.heads_done += 1
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with Connection: close, then closed

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head, self.head_started, self.head_bytes, self.header_fields = True, False, 0, 0

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # then the next request, already read, starts now
        super().on_response_complete()  # arms the keep-alive timer when nothing is pipelined
        if not pipelined and not self.transport.is_closing():
            self._arm_header_timer()

    # -- timeouts ------------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
        self.header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)

    def _header_timeout(self) -> None:
        self.header_timer = None
        if self.transport.is_closing() or self.refused:
            return
        if self.head_started or not self.in_head:
            limit = self.limits.header_timeout
            self.refuse(408, f"not complete within {limit:g} s (ACTIVATION_HEADER_TIMEOUT)")
        else:
            self.transport.close()  # nothing sent: no answer owed

    def pause_writing(self) -> None:
        """The transport buffers more than its high-water mark: time how long the client reads nothing."""
        super().pause_writing()
        self.write_buffered = self.transport.get_write_buffer_size()
        self.write_progress_at = self.loop.time()
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(self._write_tick(), self._write_check)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _write_tick(self) -> float:
        return self.limits.write_timeout / 4

    def _write_check(self) -> None:
        self.write_timer = None
        now, buffered = self.loop.time(), self.transport.get_write_buffer_size()
        if buffered < self.write_buffered:  # the client took some: progress
            self.write_buffered, self.write_progress_at = buffered, now
        stalled = now - self.write_progress_at
        if stalled >= self.limits.write_timeout:
            # close() would wait to flush what the client does not read; abort() drops it,
            # and connection_lost releases the application's pending send.
            self.logger.info(
                "%s - reply stalled for %.3g s (ACTIVATION_WRITE_TIMEOUT): aborted", self._who(), stalled
            )
            self.abort()
            return
        wait = min(self._write_tick(), self.limits.write_timeout - stalled)
        self.write_timer = self.loop.call_later(wait, self._write_check)

    def abort(self) -> None:
        """Drop the connection and what is queued for it: in the transport and, as the socket
        lingers for 0 s (a reset instead of a FIN), in the kernel's send buffer too."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    # -- refusing ------------------------------------------------------------------------------

    def refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` (problem+json about the headers) and close; or, with a response
        under way on this connection (pipelining), close once it is sent."""
        self.refused = True
        self.logger.info("%s - %d: headers %s", self._who(), status, reason)
        self._unset_keepalive_if_required()
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        body = orjson.dumps(
            {
                "status": status,
                "title": HTTPStatus(status).phrase,
                "detail": f"headers: {reason}",
                "errors": [{"field": "headers", "reason": reason}],
            }
        )
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/problem+json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # Closing with unread data would reset the connection, and a client still sending
        # would lose the answer: stop sending (FIN), keep reading a while, then close.
        self.transport.write_eof()
        self.flow.resume_reading()
        self.linger_timer = self.loop.call_later(LINGER, self.transport.close)

    def _who(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"

    # -- drain ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.draining = True
        if self.cycle is None or self.cycle.response_complete:
            # Idle: the client may have sent a request already.  Reuse the keep-alive
            # timer, which data_received cancels, to close the connection if none comes.
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(IDLE_GRACE, self.timeout_keep_alive_handler)
        else:
            self.cycle.keep_alive = False


class ServiceConfig(uvicorn.Config):
    """uvicorn's Config with the connection limits; pickled to every worker with ``--workers``.

    ``limits.idle_timeout`` becomes uvicorn's ``timeout_keep_alive``.  :meth:`load` runs
    in each process that serves, before it starts listening: there a worker arranges
    to exit with its supervisor.
    """

    def __init__(self, app: Any, *, limits: ConnectionLimits | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits or ConnectionLimits()
        # uvicorn annotates it int; it only ever hands it to loop.call_later.
        self.timeout_keep_alive = self.limits.idle_timeout  # type: ignore[assignment]

    def load(self) -> None:
        super().load()
        exit_with_parent()


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_with_parent() -> bool:
    """In a worker process (a multiprocessing child): get SIGTERM when the supervisor dies.

    A worker otherwise outlives a supervisor killed by SIGKILL and goes on serving
    the port.  SIGTERM makes it drain and exit like any other.  False, and nothing
    done, outside a worker or off Linux.
    """
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent.pid:  # the supervisor died before the prctl: nobody will signal
        signal.raise_signal(signal.SIGTERM)
    return True


class Supervisor(Multiprocess):
    """uvicorn's ``--workers`` supervisor, which restarts a worker that dies; and then also
    tells prometheus_client (multiprocess mode) that the old one is gone, so that the
    ``livesum`` in-flight gauge drops what that worker held."""

    def keep_subprocess_alive(self) -> None:
        with self._forgetting_gone_workers():
            super().keep_subprocess_alive()

    def handle_signals(self) -> None:  # SIGHUP replaces every worker, SIGTTOU retires one
        with self._forgetting_gone_workers():
            super().handle_signals()

    @contextlib.contextmanager
    def _forgetting_gone_workers(self) -> Iterator[None]:
        before = {process.pid for process in self.processes}
        yield
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                forget_worker(pid)


def forget_worker(pid: int) -> None:
    """Drop the live gauges (in-flight requests) of worker ``pid`` from the multiprocess metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    # At startup, in every process that serves, chain in front of uvicorn's SIGTERM
    # handler; only the main thread may set handlers (in-process test clients are not servers).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm(signal.getsignal(signal.SIGTERM), LISTENERS))
    yield
