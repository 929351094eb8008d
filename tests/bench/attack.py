"""Attack script (not a test): hostile and oversized requests against the real server, on loopback.

    python -m tests.bench.attack              # about 4 minutes (at most 6)
    python -m tests.bench.attack --only 2,7   # some attacks only (0 is the quiet baseline)

Starts ``python -m service`` on a free 127.0.0.1 port (single process,
default settings; attack 2 gets its own server with ``--write-timeout 5``)
and runs each attack against it while a probe thread sends ``GET /healthz``
every 20 ms on its own keep-alive connection (the thread runs in a child
process, so that the attack's client threads never hold it back by the GIL):

0. quiet baseline: the probe alone, 5 s;
1. 200 concurrent ``POST /activate`` of 1M float64 as JSON (~20 MB each), once;
2. 6 clients ask for a 2000x2000 softmax Jacobian (~100 MB of JSON) and never
   read it, for 20 s: does the server close them, does its RSS come back down;
3. ``.npz`` bodies whose ``x.npy`` declares a 1 GiB .npy v2.0 header, 3 at once, 10 s;
4. JSON with 1,000,000 unknown fields, 3 at once, 10 s;
5. a 10 KB softmax request for a 25M-element Jacobian (n=5000), 4 at once, 10 s;
6. a compressed .npz that expands to 16M float64 zeros, 4 at once, 10 s;
7. slow clients: 64 partial bodies (Content-Length 100000, 1 byte sent), 1000
   silent connections, 16 partial bodies declaring 64 MiB; held 20 s while a
   fresh client sends a small valid request every 100 ms;
8. a 128 KB header and a request with 500 header fields, 4 at once, 10 s;
11. vector functions on the exact route: 4 clients for 15 s, softmax and log_softmax VJPs of
    x, grad (1000, 1000) of mixed magnitudes (some x at +-700), as JSON and as .npz.

For each: requests sent, answers by exact status code (500 apart from 503),
connections reset or closed by the server, client timeouts, probe count and
p50/p99/max latency, the server's peak RSS (VmHWM, reset before each attack
through /proc/PID/clear_refs) and RSS after, duration.  Then one verdict line
per target and a Markdown summary table.  Every socket talks to 127.0.0.1
only, every loop has a deadline, and the servers started here are stopped
here, by their PID.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import zipfile
import zlib
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO

import numpy as np
import orjson

from tests import servers

HOST = "127.0.0.1"
MIB = 2**20
GIB = 2**30
PROBE_EVERY = 0.020  # s between two /healthz probes
PROBE_TIMEOUT = 10.0  # s a probe may wait for its answer
BUDGET = 330.0  # s: attacks not started by then are skipped (the whole run stays under 6 minutes)
TARGET_P99_MS = 100.0
TARGET_MAX_MS = 500.0
TARGET_RSS = GIB
TCP_ESTABLISHED = 1
TCP_STATE_NAMES = {
    1: "ESTABLISHED",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
}


# ---------------------------------------------------------------- server


class Server:
    """``python -m service ARGS`` on a free loopback port; its logs drained (a full pipe would stall it)."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc, self.base = servers.start(*args, stdout=subprocess.PIPE)
        self.port = int(self.base.rsplit(":", 1)[1])
        self.pid = self.proc.pid
        self.lines: deque[str] = deque(maxlen=2000)
        self.problems: list[str] = []  # error/critical log lines and tracebacks, in order
        self._lock = threading.Lock()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                with self._lock:
                    self.lines.append(line)
                    if re.search(r'"level": "(error|critical)"|Traceback|^\w*Error\b|ERROR|CRITICAL', line):
                        self.problems.append(line)
        except (OSError, ValueError):
            pass  # the pipe was closed by stop()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM of the server process, bytes (empty once it is gone)."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return {}
        return {key: int(kb) * 1024 for key, kb in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}

    def rss(self) -> int:
        return self.memory().get("VmRSS", 0)

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux, as root or the process's owner)."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        servers.stop(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()


# ---------------------------------------------------------------- HTTP over raw sockets


def request(
    method: str,
    target: str,
    body: bytes = b"",
    content_type: str = "application/json",
    close: bool = True,
    extra: bytes = b"",
) -> bytes:
    """One HTTP/1.1 request, head and body, as bytes (built once, sent many times)."""
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), target.encode(), HOST.encode())
    if method != "GET":
        head += b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type.encode(), len(body))
    if close:
        head += b"Connection: close\r\n"
    return head + extra + b"\r\n" + body


class Reply:
    """Parses an HTTP/1.1 response as it arrives, keeping the head and only counting the body."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.status: int | None = None
        self.length: int | None = None  # Content-Length, if given
        self.chunked = False
        self.keep_alive = True
        self.body = 0  # body bytes received
        self.tail = b""  # last bytes received (the end of a chunked body)
        self.retry_after: str | None = None

    def feed(self, data: memoryview | bytes) -> bool:
        """True once the whole response has arrived (by Content-Length or the chunked terminator)."""
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 1 << 20:
                    raise ValueError("response head over 1 MiB")
                return False
            self._parse(bytes(self.head[:end]))
            rest = bytes(self.head[end + 4 :])
            del self.head[end:]
            self.body = len(rest)
            self.tail = rest[-5:]
        else:
            self.body += len(data)
            self.tail = (self.tail + bytes(data[-5:]))[-5:]
        return self.complete()

    def complete(self) -> bool:
        if self.status is None:
            return False
        if self.length is not None:
            return self.body >= self.length
        if self.chunked:
            return self.tail == b"0\r\n\r\n"
        return False  # framed by the end of the connection

    def _parse(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                self.length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
            elif name == b"connection" and value.lower() == b"close":
                self.keep_alive = False
            elif name == b"retry-after":
                self.retry_after = value.decode("latin-1")


@dataclass
class Outcome:
    kind: str  # "response", "reset", "closed" (EOF before any answer), "timeout", "refused", "error"
    status: int | None = None
    complete: bool = False
    latency: float = 0.0
    early: bool = False  # answered before the whole request was sent
    retry_after: str | None = None
    detail: str = ""


def exchange(port: int, payload: bytes, deadline: float, bufsize: int = 256 * 1024) -> Outcome:
    """Send one request on a new connection and read its answer (discarding the body), by ``deadline``.

    Sends and reads at once (poll), so that an answer the server gives before it
    has read the whole body (413, 503) is seen, and sending stops there.
    """
    started = time.monotonic()

    def done(kind: str, reply: Reply | None = None, **kw: object) -> Outcome:
        status = reply.status if reply is not None else None
        if status is not None and kind in ("reset", "closed", "timeout"):
            kw.setdefault("detail", kind)
            kind = "response"  # answered, then the connection ended before the whole body
        complete = reply.complete() if reply else False
        retry = reply.retry_after if reply else None
        return Outcome(kind, status, complete, time.monotonic() - started, retry_after=retry, **kw)  # type: ignore[arg-type]

    try:
        sock = socket.create_connection((HOST, port), timeout=max(0.05, deadline - time.monotonic()))
    except ConnectionRefusedError:
        return done("refused")
    except TimeoutError:
        return done("timeout", detail="connect")
    except OSError as exc:
        return done("error", detail=f"connect: {exc}")
    reply = Reply()
    with sock:
        sock.setblocking(False)
        view = memoryview(payload)
        sent = 0
        buf = bytearray(bufsize)
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLOUT)
        sending = True
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return done("timeout", reply)
            events = poller.poll(min(left, 1.0) * 1000)
            if not events:
                continue
            mask = events[0][1]
            if sending and mask & select.POLLOUT:
                try:
                    sent += sock.send(view[sent : sent + MIB])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    sending = False  # the server stopped reading: its answer may still be there
                    poller.modify(sock, select.POLLIN)
                else:
                    if sent >= len(view):
                        sending = False
                        poller.modify(sock, select.POLLIN)
            if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    n = sock.recv_into(buf)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    return done("reset", reply, early=sent < len(view))
                except OSError as exc:
                    return done("error", reply, detail=str(exc))
                if n == 0:
                    if reply.status is not None and reply.length is None and not reply.chunked:
                        return done("response", reply, early=sent < len(view))  # framed by EOF
                    return done("closed", reply, early=sent < len(view))
                try:
                    finished = reply.feed(memoryview(buf)[:n])
                except ValueError as exc:
                    return done("error", reply, detail=str(exc))
                if reply.status is not None and sending:
                    sending = False  # answered early: stop sending the rest
                    poller.modify(sock, select.POLLIN)
                if finished:
                    return done("response", reply, early=sent < len(view))


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of a client socket (1 established; 8 close-wait: the server closed)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 0


def read_pending(sock: socket.socket, limit: int = 65536) -> tuple[int | None, str]:
    """The status of an answer already waiting on a socket, without blocking; and what ended it."""
    try:
        data = sock.recv(limit, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None, "open"
    except ConnectionResetError:
        return None, "reset"
    except OSError as exc:
        return None, str(exc)
    if not data:
        return None, "eof"
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(match.group(1)) if match else None), "data"


# ---------------------------------------------------------------- probe


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class Probe(threading.Thread):
    """GET /healthz every 20 ms on one keep-alive connection (reconnecting if it ends): latencies."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self._halt = threading.Event()
        self._request = request("GET", "/healthz", close=False)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=PROBE_TIMEOUT + 5)

    def run(self) -> None:
        sock: socket.socket | None = None
        tick = time.monotonic()
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                if sock is None:
                    sock = socket.create_connection((HOST, self.port), timeout=PROBE_TIMEOUT)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(PROBE_TIMEOUT)
                sock.sendall(self._request)
                reply = Reply()
                while not reply.feed(chunk := sock.recv(65536)):
                    if not chunk:
                        raise ConnectionError("closed by the server")
                assert reply.status is not None
                self.statuses[reply.status] += 1
                if not reply.keep_alive:
                    sock.close()
                    sock = None
            except (OSError, ValueError) as exc:
                self.errors[type(exc).__name__] += 1
                if sock is not None:
                    sock.close()
                sock = None
            self.latencies.append(time.monotonic() - started)
            tick += PROBE_EVERY
            delay = tick - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
            else:
                tick = time.monotonic()  # late: no burst to catch up
        if sock is not None:
            sock.close()


def _probe_process(port: int, conn: Connection) -> None:
    """The probe in a process of its own, so that the attack's client threads never delay it (GIL)."""
    probe = Probe(port)
    probe.start()
    conn.send("started")
    conn.poll(600)  # until told to stop (bounded)
    probe.stop()
    conn.send((probe.latencies, dict(probe.statuses), dict(probe.errors)))
    conn.close()


class ProbeProcess:
    """Runs :class:`Probe` in a child process (started and stopped here, by its PID)."""

    def __init__(self, port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_probe_process, args=(port, child), daemon=True)
        self._proc.start()
        child.close()
        if not self._conn.poll(30):
            raise RuntimeError("the probe process did not start")
        self._conn.recv()

    def stop(self) -> tuple[list[float], Counter[int], Counter[str]]:
        result: tuple[list[float], Counter[int], Counter[str]] = ([], Counter(), Counter({"probe lost": 1}))
        try:
            self._conn.send("stop")
            if self._conn.poll(PROBE_TIMEOUT + 10):
                latencies, statuses, errors = self._conn.recv()
                result = latencies, Counter(statuses), Counter(errors)
        except (OSError, EOFError):
            pass
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()  # by its PID: the process started just above
            self._proc.join(timeout=5)
        self._conn.close()
        return result


# ---------------------------------------------------------------- one attack's figures


@dataclass
class Row:
    name: str
    sent: int = 0
    codes: Counter[str] = field(default_factory=Counter)  # "200", "503", ... and "reset", "closed", ...
    server_closed: int = 0  # held connections (attacks 2, 7) the server closed
    latencies: list[float] = field(default_factory=list)  # of the attack's own requests
    probes: int = 0
    probe_ms: tuple[float, float, float] = (float("nan"),) * 3
    probe_errors: Counter[str] = field(default_factory=Counter)
    probe_statuses: Counter[int] = field(default_factory=Counter)
    rss_start: int = 0
    peak: int = 0
    peak_is_since_start: bool = False
    rss_after: int = 0
    duration: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    server_problems: list[str] = field(default_factory=list)
    server_died: bool = False
    checks: dict[str, bool] = field(default_factory=dict)  # attack-specific targets
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, out: Outcome) -> None:
        with self.lock:
            self.sent += 1
            self.latencies.append(out.latency)
            if out.status is not None:
                self.codes[str(out.status)] += 1
                if not out.complete:
                    self.codes["truncated"] += 1
                if out.status == 503 and not out.retry_after:
                    self.codes["503 without Retry-After"] += 1
            else:
                self.codes[out.kind] += 1
                if out.kind == "error" and self.codes["error"] <= 3:
                    self.notes.append(f"client error: {out.detail[:200]}")

    def count(self, prefix: str) -> int:
        return sum(n for code, n in self.codes.items() if code.startswith(prefix))

    @property
    def status_counts(self) -> dict[str, int]:
        return {c: n for c, n in sorted(self.codes.items()) if c.isdigit() and n}

    @property
    def cut(self) -> int:
        """Connections reset or closed by the server before an answer, answers cut short, held ones closed."""
        return self.codes["reset"] + self.codes["closed"] + self.codes["truncated"] + self.server_closed


def run_clients(clients: int, work: Callable[[int], None], join_by: float) -> int:
    """``clients`` threads running ``work(i)``; joined by ``join_by`` (monotonic); how many still run."""
    pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=max(0.0, join_by - time.monotonic()))
    return sum(t.is_alive() for t in pool)


def repeat(
    server: Server, row: Row, payloads: Sequence[bytes], clients: int, seconds: float, grace: float
) -> None:
    """``clients`` threads sending ``payloads`` in turn on new connections for ``seconds``.

    A request in flight when the time is up may finish within ``grace`` more seconds, then is abandoned.
    """
    window = time.monotonic() + seconds
    hard = window + grace

    def work(i: int) -> None:
        k = i
        while time.monotonic() < window:
            out = exchange(server.port, payloads[k % len(payloads)], hard)
            k += 1
            row.record(out)
            if out.kind in ("refused", "error"):
                time.sleep(0.05)  # nobody listens: do not spin

    stuck = run_clients(clients, work, hard + 5)
    if stuck:
        row.notes.append(f"{stuck} client threads still running at the deadline")


# ---------------------------------------------------------------- bodies (each built once)


@cache
def gzip_bomb() -> bytes:
    """A JSON inference request whose gzip body inflates to 1 GiB (of spaces after the object)."""
    out = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [out.compress(b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}')]
    block = b" " * MIB
    parts += [out.compress(block) for _ in range(1024)]
    return b"".join([*parts, out.flush()])


@cache
def small_activate() -> bytes:
    return b'{"activation": "gelu", "x": [[-1.5, 0, 0.5, 2], [3, -3, 1, 0.25]]}'


@cache
def million_floats_json() -> bytes:
    x = np.random.default_rng(0).standard_normal(1_000_000)
    return orjson.dumps({"activation": "sigmoid", "x": x}, option=orjson.OPT_SERIALIZE_NUMPY)


@cache
def softmax_2000_json() -> bytes:
    x = np.round(np.random.default_rng(1).standard_normal(2000), 3)
    return orjson.dumps({"activation": "softmax", "x": x}, option=orjson.OPT_SERIALIZE_NUMPY)


@cache
def huge_npy_header_npz() -> bytes:
    member = b"\x93NUMPY" + bytes([2, 0]) + struct.pack("<I", 2**30) + b" " * MIB
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("x.npy", member)
    return out.getvalue()


@cache
def million_fields_json() -> bytes:
    return b'{"activation":"relu","x":[1],' + b",".join(b'"f%d":0' % i for i in range(1_000_000)) + b"}"


@cache
def softmax_5000_json() -> bytes:
    return b'{"activation":"softmax","x":[' + b",".join(str(i % 10).encode() for i in range(5000)) + b"]}"


@cache
def zeros_npz() -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, x=np.zeros(16_000_000))
    return out.getvalue()


# ---------------------------------------------------------------- the attacks


def attack_baseline(server: Server, row: Row) -> None:
    time.sleep(5.0)


def attack_big_json(server: Server, row: Row) -> None:
    body = million_floats_json()
    payload = request("POST", "/activate", body)
    row.notes.append(f"body {len(body) / MIB:.1f} MiB, 200 connections at once")
    start = threading.Barrier(200, timeout=20)
    hard = time.monotonic() + 30

    retry_after: Counter[str] = Counter()

    def work(i: int) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait()
        out = exchange(server.port, payload, hard)
        row.record(out)
        if out.early and out.status is not None:
            with row.lock:
                retry_after[f"{out.status} before the whole body was sent"] += 1

    stuck = run_clients(200, work, hard + 5)
    if stuck:
        row.notes.append(f"{stuck} client threads still running at the deadline")
    for what, n in retry_after.items():
        row.notes.append(f"{n} answered {what}")


def attack_unread_jacobian(server: Server, row: Row) -> None:
    body = softmax_2000_json()
    payload = request("POST", "/derivative", body, close=False)
    row.notes.append(f"body {len(body) / 1024:.1f} KiB, reply ~100 MB of JSON never read, 6 clients, 20 s")
    start_rss = server.rss()
    socks: list[socket.socket] = []
    timeline: list[tuple[float, int]] = []
    try:
        for _ in range(6):
            s = socket.create_connection((HOST, server.port), timeout=5)
            s.sendall(payload)
            socks.append(s)
            row.sent += 1
        t0 = time.monotonic()
        closed_at: dict[int, float] = {}
        while (now := time.monotonic()) - t0 < 20:
            timeline.append((now - t0, server.rss()))
            for i, s in enumerate(socks):
                if i not in closed_at and tcp_state(s) != TCP_ESTABLISHED:
                    closed_at[i] = now - t0
            time.sleep(0.25)
        rss_held = server.rss()
        states = [tcp_state(s) for s in socks]
        # Now read what each got: the answer's status, how much of it, and whether the server ended it.
        verdicts: Counter[str] = Counter()
        big = big_closed = 0
        drain_deadline = time.monotonic() + 12
        for i, s in enumerate(socks):
            reply, end = Reply(), "open"
            s.settimeout(0.5)
            per_socket = min(drain_deadline, time.monotonic() + 4)
            buf = bytearray(MIB)
            while time.monotonic() < per_socket:
                try:
                    n = s.recv_into(buf)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    end = "reset"
                    break
                if n == 0:
                    end = "eof"
                    break
                if reply.feed(memoryview(buf)[:n]):
                    end = "complete"
                    break
            status = reply.status
            if status is not None:
                row.codes[str(status)] += 1
            got = (
                f"{reply.body} of {reply.length} body bytes"
                if reply.length is not None
                else f"{reply.body} B"
            )
            closed = states[i] != TCP_ESTABLISHED or end in ("eof", "reset")
            if closed and end != "complete":
                row.server_closed += 1
            if status == 200 or (status is None and end != "complete"):
                big += 1  # a large reply was on its way and was not read
                big_closed += closed and end != "complete"
            verdicts[
                f"status {status}, "
                + ("closed by the server" if closed else "still open")
                + (f" at ~{closed_at[i]:.1f} s" if i in closed_at else "")
                + f" ({TCP_STATE_NAMES.get(states[i], states[i])} at 20 s; read after: {got}, {end})"
            ] += 1
        for what, n in verdicts.items():
            row.notes.append(f"{n} x {what}")
    finally:
        for s in socks:
            s.close()
    time.sleep(2)
    rss_end = server.rss()
    peak = max((r for _, r in timeline), default=0)
    marks = " ".join(f"{t:.0f}s:{r / MIB:.0f}" for t, r in timeline[::8])
    row.notes.append(f"VmRSS MiB over time: {marks}")
    row.notes.append(
        f"VmRSS {start_rss / MIB:.0f} MiB before, sampled peak {peak / MIB:.0f} MiB, "
        f"{rss_held / MIB:.0f} MiB at 20 s with the clients still connected, "
        f"{rss_end / MIB:.0f} MiB 2 s after they closed"
    )
    back_down = rss_held <= start_rss + 0.25 * max(0, peak - start_rss) + 32 * MIB
    if big:
        row.checks[f"write timeout: server closed the {big} connections whose large reply went unread"] = (
            big_closed == big
        )
        row.checks["write timeout: VmRSS came back down while the clients stayed connected"] = back_down
    else:
        row.notes.append("NOT TESTED: no 200 reply was pending on any of the 6 connections")
        row.checks["write timeout tested (a 200 reply was pending on some connection)"] = False


def attack_npy_header(server: Server, row: Row) -> None:
    body = huge_npy_header_npz()
    row.notes.append(f"body {len(body) / MIB:.2f} MiB; x.npy declares a {2**30} B header")
    payload = request("POST", "/derivative?activation=relu", body, content_type="application/x-npz")
    repeat(server, row, [payload], clients=3, seconds=10, grace=10)


def attack_many_fields(server: Server, row: Row) -> None:
    body = million_fields_json()
    row.notes.append(f"body {len(body) / MIB:.1f} MiB with 1,000,000 unknown fields")
    repeat(server, row, [request("POST", "/activate", body)], clients=3, seconds=10, grace=10)


def attack_jacobian_5000(server: Server, row: Row) -> None:
    body = softmax_5000_json()
    row.notes.append(f"body {len(body) / 1024:.1f} KiB asking for a 5000x5000 Jacobian (25M elements)")
    repeat(server, row, [request("POST", "/derivative", body)], clients=4, seconds=10, grace=15)


def attack_zip_bomb(server: Server, row: Row) -> None:
    body = zeros_npz()
    row.notes.append(
        f"body {len(body) / 1024:.1f} KiB expanding to {16_000_000 * 8 / MIB:.0f} MiB (16M float64)"
    )
    payload = request("POST", "/derivative?activation=relu", body, content_type="application/x-npz")
    repeat(server, row, [payload], clients=4, seconds=10, grace=15)


def attack_inference_gzip_bomb(server: Server, row: Row) -> None:
    body = gzip_bomb()
    row.notes.append(f"body {len(body) / 1024:.1f} KiB of gzip inflating to 1 GiB, to /v2/models/relu/infer")
    payload = request("POST", "/v2/models/relu/infer", body, extra=b"Content-Encoding: gzip\r\n")
    repeat(server, row, [payload], clients=4, seconds=10, grace=15)


@cache
def hard_to_round_npy() -> bytes:
    """200,000 odd subnormals: gelu(x) = x/2 + ... is a float64 midpoint plus a hair at each, so
    the rounding test decides none of them and every one would go to the exact route."""
    x = (np.arange(200_000, dtype=np.float64) * 2 + 1) * 5e-324
    out = io.BytesIO()
    np.save(out, x)
    return out.getvalue()


def attack_hard_to_round(server: Server, row: Row) -> None:
    body = hard_to_round_npy()
    row.notes.append(
        f"body {len(body) / MIB:.1f} MiB: 200,000 gelu inputs that the rounding test cannot decide "
        "(the exact route takes at most 65,536 + 5% of them, then 422)"
    )
    payload = request("POST", "/activate/npy?activation=gelu", body, content_type="application/octet-stream")
    repeat(server, row, [payload], clients=2, seconds=10, grace=30)


def attack_slow_clients(server: Server, row: Row) -> None:
    groups = {
        "partial body, Content-Length 100000": (
            64,
            request("POST", "/activate", b"{", extra=b"")
            .replace(b"Content-Length: 1\r\n", b"Content-Length: 100000\r\n")
            .replace(b"Connection: close\r\n", b""),
        ),
        "silent connection": (1000, b""),
        "partial body, Content-Length 67108864": (
            16,
            request("POST", "/activate", b"{")
            .replace(b"Content-Length: 1\r\n", b"Content-Length: 67108864\r\n")
            .replace(b"Connection: close\r\n", b""),
        ),
    }
    held: list[tuple[str, socket.socket]] = []
    fresh = Row("fresh client")
    try:
        t_open = time.monotonic()
        failures: Counter[str] = Counter()
        for name, (count, prefix) in groups.items():
            for _ in range(count):
                try:
                    s = socket.create_connection((HOST, server.port), timeout=5)
                    if prefix:
                        s.sendall(prefix)
                except OSError as exc:
                    failures[f"{name}: {type(exc).__name__}"] += 1
                    continue
                held.append((name, s))
                row.sent += 1
        row.notes.append(
            f"opened {len(held)} stalled connections in {time.monotonic() - t_open:.1f} s"
            + (f"; failed: {dict(failures)}" if failures else "")
        )
        t0 = time.monotonic()
        halt = threading.Event()
        small = request("POST", "/activate", small_activate())

        def fresh_client() -> None:
            tick = time.monotonic()
            while not halt.is_set():
                fresh.record(exchange(server.port, small, time.monotonic() + 10))
                tick += 0.1
                halt.wait(max(0.0, tick - time.monotonic()))

        client = threading.Thread(target=fresh_client, daemon=True)
        client.start()
        first_close: dict[str, float] = {}
        closed_by_time: list[tuple[float, int]] = []
        while (now := time.monotonic()) - t0 < 20:
            closed = 0
            for name, s in held:
                if tcp_state(s) != TCP_ESTABLISHED:
                    closed += 1
                    first_close.setdefault(name, now - t0)
            closed_by_time.append((now - t0, closed))
            time.sleep(1.0)
        halt.set()
        client.join(timeout=15)
        # The end: which did the server close, and what did it answer them?
        by_group: dict[str, Counter[str]] = {name: Counter() for name in groups}
        for name, s in held:
            state = tcp_state(s)
            status, how = read_pending(s)
            if status is not None:
                row.codes[str(status)] += 1
            if state != TCP_ESTABLISHED or how in ("eof", "reset"):
                row.server_closed += 1
                by_group[name]["closed"] += 1
            else:
                by_group[name]["open"] += 1
            by_group[name][f"answered {status}" if status else "no answer"] += 1
        for name, counts in by_group.items():
            when = f", first closed at ~{first_close[name]:.0f} s" if name in first_close else ""
            row.notes.append(f"{groups[name][0]} x {name}: {dict(counts)}{when}")
        row.notes.append(
            "closed by the server over time: " + " ".join(f"{t:.0f}s:{n}" for t, n in closed_by_time[::2])
        )
    finally:
        for _, s in held:
            s.close()
    lat = [v * 1000 for v in fresh.latencies]
    ok = fresh.codes["200"]
    row.notes.append(
        f"fresh client (small POST /activate every 100 ms): {fresh.sent} sent, codes {dict(fresh.codes)}, "
        f"latency p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms, max {max(lat, default=float('nan')):.1f} ms"
    )
    row.checks["slow clients: the fresh client got 200 every time"] = fresh.sent > 0 and ok == fresh.sent
    row.checks[f"slow clients: the server closed all {len(held)} stalled connections by 20 s"] = (
        row.server_closed == len(held) and len(held) > 0
    )
    for code, n in fresh.codes.items():
        row.codes[code] += n
    row.sent += fresh.sent


def attack_big_headers(server: Server, row: Row) -> None:
    body = small_activate()
    big = request("POST", "/activate", body, extra=b"X-Big: " + b"a" * (128 * 1024) + b"\r\n")
    many = request("POST", "/activate", body, extra=b"".join(b"X-F%d: v\r\n" % i for i in range(500)))
    row.notes.append(
        f"requests of {len(big) / 1024:.0f} KiB (one 128 KiB header) and 500 header fields, alternating"
    )
    repeat(server, row, [big, many], clients=4, seconds=10, grace=10)


@cache
def vector_exact_bodies() -> list[tuple[str, bytes]]:
    """softmax and log_softmax VJPs of x, grad (1000, 1000), as JSON and as .npz: labels and requests.

    x = N(0,1) e^U(-3,4) with 40 values at +-700 (magnitudes from ~0.05 to ~5000 within a vector);
    grad likewise.  Both spread the bounded evaluation wide enough that some elements of most
    vectors go to the exact route (a whole-vector MPFR evaluation each)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1000, 1000)) * np.exp(rng.uniform(-3, 4, (1000, 1000)))
    x.flat[rng.integers(0, x.size, 40)] = np.where(np.arange(40) % 2, 700.0, -700.0)
    g = rng.standard_normal((1000, 1000)) * np.exp(rng.uniform(-3, 4, (1000, 1000)))
    out = io.BytesIO()
    np.savez(out, x=x, grad=g)
    npz = out.getvalue()
    bodies = []
    for act in ("softmax", "log_softmax"):
        body = orjson.dumps({"activation": act, "x": x, "grad": g}, option=orjson.OPT_SERIALIZE_NUMPY)
        bodies.append((f"{act} JSON", request("POST", "/derivative", body)))
        bodies.append(
            (f"{act} npz", request("POST", f"/derivative/npy?activation={act}", npz, content_type=NPZ))
        )
    return bodies


NPZ = "application/x-npz"


def attack_vector_exact(server: Server, row: Row) -> None:
    bodies = vector_exact_bodies()
    row.notes.append(
        "softmax/log_softmax VJP, x and grad (1000, 1000), N(0,1) e^U(-3,4) and 40 x at +-700; "
        f"JSON {len(bodies[0][1]) / MIB:.0f} MiB, npz {len(bodies[1][1]) / MIB:.0f} MiB; 4 clients, 15 s"
    )
    window = time.monotonic() + 15
    hard = window + 60  # a request in flight at 15 s may take 60 s more, then is abandoned
    per: dict[str, list[tuple[float, str]]] = {label: [] for label, _ in bodies}
    timeline: list[tuple[float, int]] = []
    halt = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not halt.is_set() and time.monotonic() < hard + 5:
            timeline.append((time.monotonic() - t0, server.rss()))
            halt.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def work(i: int) -> None:
        k = i
        while time.monotonic() < window:
            label, payload = bodies[k % len(bodies)]
            out = exchange(server.port, payload, hard)
            k += 1
            row.record(out)
            with row.lock:
                per[label].append((out.latency, str(out.status) if out.status is not None else out.kind))
            if out.kind in ("refused", "error"):
                time.sleep(0.05)

    stuck = run_clients(4, work, hard + 5)
    halt.set()
    sampler.join(timeout=2)
    if stuck:
        row.notes.append(f"{stuck} client threads still running at the deadline")
    for label, got in per.items():
        if got:
            codes = Counter(code for _, code in got)
            lat = sorted(v for v, _ in got)
            row.notes.append(
                f"{label}: {len(got)} sent, codes {dict(codes)}, latency min {lat[0]:.1f} s, "
                f"max {lat[-1]:.1f} s"
            )
    slowest = max(((v, label, code) for label, got in per.items() for v, code in got), default=None)
    if slowest:
        row.notes.append(f"slowest request: {slowest[1]} ({slowest[2]}) in {slowest[0]:.1f} s")
    marks = " ".join(f"{t:.0f}s:{r / MIB:.0f}" for t, r in timeline[::6])
    row.notes.append(f"VmRSS MiB over time: {marks}")
    unexpected = {c: n for c, n in row.codes.items() if c not in ("200", "422", "503") and n}
    row.checks["vector exact route: only 200, 422 or 503 answers"] = not unexpected and row.sent > 0
    if unexpected:
        row.notes.append(f"unexpected answers: {unexpected}")


ATTACKS: list[tuple[str, Callable[[Server, Row], None], tuple[str, ...]]] = [
    ("0 quiet baseline", attack_baseline, ()),
    ("1 200x 1M-float JSON", attack_big_json, ()),
    ("2 unread 100 MB Jacobians", attack_unread_jacobian, ("--write-timeout", "5")),
    ("3 npz, 1 GiB npy header", attack_npy_header, ()),
    ("4 1M unknown JSON fields", attack_many_fields, ()),
    ("5 softmax n=5000 Jacobian", attack_jacobian_5000, ()),
    ("6 npz 16M zeros (bomb)", attack_zip_bomb, ()),
    ("7 1080 slow/idle clients", attack_slow_clients, ()),
    ("8 128 KB header, 500 fields", attack_big_headers, ()),
    ("9 gzip bomb to /v2 infer", attack_inference_gzip_bomb, ()),
    ("10 200k hard-to-round inputs", attack_hard_to_round, ()),
    ("11 vector functions, exact route", attack_vector_exact, ()),
]


# ---------------------------------------------------------------- running and printing


def measure(name: str, server: Server, attack: Callable[[Server, Row], None]) -> Row:
    row = Row(name)
    problems_before = len(server.problems)
    row.peak_is_since_start = not server.reset_peak()
    row.rss_start = server.rss()
    try:
        probe = ProbeProcess(server.port)
    except Exception as exc:
        row.error = f"probe: {type(exc).__name__}: {exc}"
        return row
    started = time.monotonic()
    try:
        attack(server, row)
    except Exception as exc:  # a failed attack is reported, and the others still run
        row.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(limit=4)
    row.duration = time.monotonic() - started
    memory = server.memory()
    row.peak, row.rss_after = memory.get("VmHWM", 0), memory.get("VmRSS", 0)
    latencies, row.probe_statuses, row.probe_errors = probe.stop()
    lat = [v * 1000 for v in latencies]
    row.probes = len(lat)
    row.probe_ms = (percentile(lat, 50), percentile(lat, 99), max(lat, default=float("nan")))
    row.server_died = not server.alive()
    row.server_problems = server.problems[problems_before:]
    return row


def codes_text(row: Row) -> str:
    parts = [f"{code}x{n}" for code, n in row.status_counts.items()]
    parts += [f"{k}x{n}" for k, n in sorted(row.codes.items()) if not k.isdigit() and n]
    return " ".join(parts) or "-"


def print_row(row: Row) -> None:
    print(f"\n## {row.name}")
    for note in row.notes:
        print(f"- {note}")
    if row.error:
        print(f"- ATTACK FAILED: {row.error}")
    print(
        f"sent {row.sent}; answers {codes_text(row)}; "
        f"2xx {row.count('2')}, 4xx {row.count('4')}, 500 {row.codes['500']}, 503 {row.codes['503']}, "
        f"other 5xx {row.count('5') - row.codes['500'] - row.codes['503']}; "
        f"reset/closed by the server {row.cut}; client timeouts {row.codes['timeout']}"
    )
    lat = [v * 1000 for v in row.latencies]
    if lat:
        print(f"attack requests: latency p50 {percentile(lat, 50):.0f} ms, max {max(lat):.0f} ms")
    p50, p99, worst = row.probe_ms
    print(
        f"/healthz probes {row.probes}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms; "
        f"statuses {dict(row.probe_statuses)}"
        + (f"; errors {dict(row.probe_errors)}" if row.probe_errors else "")
    )
    print(
        f"server VmRSS {row.rss_start / MIB:.0f} MiB before, peak (VmHWM{' since start' if row.peak_is_since_start else ''}) "
        f"{row.peak / MIB:.0f} MiB, VmRSS after {row.rss_after / MIB:.0f} MiB; {row.duration:.1f} s"
    )
    if row.server_died:
        print("- SERVER PROCESS DIED during this attack")
    if row.server_problems:
        print(f"- server logged {len(row.server_problems)} error lines, first: ")
        for line in row.server_problems[:3]:
            print(f"    {line[:300]}")
    sys.stdout.flush()


def verdicts(rows: list[Row]) -> None:
    print("\n## Verdicts")
    ran = [r for r in rows if r.probes]

    def line(ok: bool, text: str, failing: list[str]) -> None:
        print(
            f"- {'PASS' if ok else 'FAIL'}: {text}" + (f" (failing: {'; '.join(failing)})" if failing else "")
        )

    bad = [f"{r.name}: p99 {r.probe_ms[1]:.0f} ms" for r in ran if not r.probe_ms[1] <= TARGET_P99_MS]
    line(not bad and bool(ran), f"/healthz p99 <= {TARGET_P99_MS:.0f} ms under each attack", bad)
    bad = [f"{r.name}: max {r.probe_ms[2]:.0f} ms" for r in ran if not r.probe_ms[2] <= TARGET_MAX_MS]
    line(not bad and bool(ran), f"/healthz max <= {TARGET_MAX_MS:.0f} ms under each attack", bad)
    bad = [f"{r.name}: {dict(r.probe_errors)}" for r in ran if r.probe_errors]
    bad += [f"{r.name}: {dict(r.probe_statuses)}" for r in ran if set(r.probe_statuses) - {200}]
    line(not bad, "every /healthz probe answered 200", bad)
    bad = [f"{r.name}: {r.peak / MIB:.0f} MiB" for r in ran if not 0 < r.peak <= TARGET_RSS]
    line(not bad and bool(ran), "server peak RSS <= 1 GiB", bad)
    bad = [f"{r.name}: {r.codes['500']}" for r in rows if r.codes["500"]]
    line(not bad, "0 responses 500", bad)
    other5 = [f"{r.name}: {r.count('5') - r.codes['500'] - r.codes['503']}" for r in rows
              if r.count("5") - r.codes["500"] - r.codes["503"]]  # fmt: skip
    line(not other5, "no other 5xx than 503", other5)
    bad = [r.name for r in rows if r.server_died] + [f"{r.name}: {r.error}" for r in rows if r.error]
    line(not bad, "server alive after every attack, no attack crashed", bad)
    for r in rows:
        for text, ok in r.checks.items():
            line(ok, text, [])
    shed = {r.name: r.codes["503"] for r in rows if r.codes["503"]}
    bare = sum(r.codes["503 without Retry-After"] for r in rows)
    print(f"- load shedding, 503: {sum(shed.values())} in all {shed or ''}; without Retry-After: {bare}")
    for code in ("413", "408", "431", "400", "422"):
        got = {r.name: r.codes[code] for r in rows if r.codes[code]}
        print(f"- refusals {code}: {sum(got.values())} in all {got or ''}")
    logged = {r.name: len(r.server_problems) for r in rows if r.server_problems}
    print(f"- server error log lines: {sum(logged.values())} {logged or ''}")


def summary(rows: list[Row]) -> None:
    print("\n## Summary (Markdown)\n")
    print(
        "| attack | sent | answers by code | 500 | 503 | reset/closed | client timeouts | probes "
        "| p50 ms | p99 ms | max ms | peak RSS MiB | RSS after MiB | s |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        codes = " ".join(f"{c}×{n}" for c, n in r.status_counts.items()) or "-"
        if r.error:
            codes += f" (failed: {r.error[:60]})"
        p50, p99, worst = r.probe_ms
        print(
            f"| {r.name} | {r.sent} | {codes} | {r.codes['500']} | {r.codes['503']} | {r.cut} | "
            f"{r.codes['timeout']} | {r.probes} | {p50:.1f} | {p99:.1f} | {worst:.0f} | "
            f"{r.peak / MIB:.0f} | {r.rss_after / MIB:.0f} | {r.duration:.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.attack", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--only", help="comma-separated attack numbers (0 = baseline); default all")
    args = parser.parse_args(argv)
    chosen = {int(n) for n in args.only.split(",")} if args.only else set(range(len(ATTACKS)))
    began = time.monotonic()
    print("# Attacks on the real server (python -m service, single process, 127.0.0.1)")
    print(
        f"probe: GET /healthz every {PROBE_EVERY * 1000:.0f} ms on one keep-alive connection "
        "(from a process of its own); "
        f"peak RSS is VmHWM, reset before each attack through /proc/PID/clear_refs"
    )
    t = time.monotonic()
    for build in (million_floats_json, softmax_2000_json, huge_npy_header_npz, million_fields_json,
                  softmax_5000_json, zeros_npz):  # fmt: skip
        build()
    print(f"bodies built once in {time.monotonic() - t:.1f} s")
    rows: list[Row] = []
    default: Server | None = None
    try:
        for number, (name, attack, flags) in enumerate(ATTACKS):
            if number not in chosen:
                continue
            if time.monotonic() - began > BUDGET:
                rows.append(Row(name, error="skipped: the run's time budget is spent"))
                print_row(rows[-1])
                continue
            own: Server | None = None
            fresh_note = ""
            try:
                if flags:
                    own = server = Server(*flags)
                else:
                    if default is not None and not default.alive():
                        fresh_note = (
                            f"fresh server: the previous one had exited with {default.proc.returncode}"
                        )
                    elif default is not None and default.rss() > TARGET_RSS:
                        # Measured on its own: not on top of what an earlier attack left behind.
                        fresh_note = (
                            f"fresh server: the previous one was left at {default.rss() / MIB:.0f} MiB VmRSS"
                        )
                    if default is None or fresh_note:
                        if default is not None:
                            default.stop()
                        default = None
                        default = Server()
                    server = default
            except Exception as exc:
                rows.append(Row(name, error=f"server did not start: {str(exc)[:300]}"))
                print_row(rows[-1])
                continue
            try:
                rows.append(measure(name, server, attack))
                if flags:
                    rows[-1].notes.insert(0, f"own server: python -m service {' '.join(flags)}")
                if fresh_note:
                    rows[-1].notes.insert(0, fresh_note)
                print_row(rows[-1])
            finally:
                if own is not None:
                    own.stop()
            time.sleep(2.0)  # let the server settle before the next attack
    finally:
        if default is not None:
            default.stop()
    verdicts(rows)
    summary(rows)
    print(f"\ntotal {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
