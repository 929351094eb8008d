"""Hostile input against one real ``python -m service``, as raw bytes over loopback sockets.

Every case is refused with a 4xx in the one problem+json shape naming the
field (with an ``X-Request-ID`` wherever the application answered, not the
connection layer), never a 5xx, never a hang, and the server answers
``/healthz`` afterwards.  Requests are written byte by byte because httpx
would normalise them (one Content-Length, bounded headers, one value per
query key, UTF-8 JSON).  The last test measures the server's peak resident
memory under the heavy attacks of ``tests/bench/attack.py`` against the
configured memory budget.

The limits are written out here (32 dimensions or levels, 64 keys, 20 errors,
100 characters): this file pins the contract, not the code's constants.
"""

from __future__ import annotations

import io
import json
import re
import select
import socket
import struct
import threading
import time
import zipfile
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service import budget
from service.codec import MAX_DEPTH
from tests import servers

MIB = 2**20
BUDGET = 128 * MIB  # --memory-budget-bytes
MAX_BODY = 32 * MIB  # --max-body-bytes
ARGS = ("--memory-budget-bytes", str(BUDGET), "--max-body-bytes", str(MAX_BODY))
#: Peak RSS growth allowed beyond the budget: the interpreter's own objects, allocator slack
#: and fragmentation, the kernel's view of freed-but-kept pages; none of it is budgeted.
ALLOWANCE = 160 * MIB
MAX_DIMS = MAX_DEPTH  # the most dimensions of an array, .npy shape or JSON nesting
MAX_KEYS = 64  # the most keys of one object of a request
EXCHANGE_LIMIT = 30.0  # s for one request and its whole answer; longer is a hang
TCP_ESTABLISHED = 1
MAGIC = b"\x93NUMPY"


# ---------------------------------------------------------------- the server


class Server:
    """``python -m service ARGS`` on a free port; its log lines kept (a full pipe would stall it)."""

    def __init__(self, *args: str) -> None:
        self.proc, self.base = servers.start(*args)
        host, port = self.base.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.pid = self.proc.pid
        self.lines: deque[str] = deque(maxlen=5000)
        self.errors: list[str] = []  # error-level log lines and tracebacks
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()

    def _read_log(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                self.lines.append(line)
                if re.search(r'"level": "(error|critical)"|Traceback|ERROR|CRITICAL', line):
                    self.errors.append(line)
        except (OSError, ValueError):
            pass  # closed by stop()

    def stop(self) -> None:
        servers.stop(self.proc)

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM, bytes."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        return {key: int(kb) * 1024 for key, kb in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}

    def reset_peak(self) -> None:
        """VmHWM back to the current RSS (Linux; root or the process's owner)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server(*ARGS)
    try:
        yield s
    finally:
        s.stop()


# ---------------------------------------------------------------- HTTP over raw sockets


def http(
    method: str,
    target: str,
    body: bytes = b"",
    content_type: str = "application/json",
    headers: bytes = b"",
    length: int | None = None,
) -> bytes:
    """One HTTP/1.1 request as bytes; ``length`` overrides the Content-Length (None: the body's)."""
    head = b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method.encode(), target.encode())
    if method != "GET":
        head += b"Content-Type: %s\r\n" % content_type.encode()
        if b"transfer-encoding" not in headers.lower():
            head += b"Content-Length: %d\r\n" % (len(body) if length is None else length)
    return head + headers + b"\r\n" + body


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # request bytes sent when the answer's head arrived
    total: int  # request bytes in all
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.status} {self.headers} {self.body[:600]!r} (sent {self.sent} of {self.total} B)"


def exchange(
    address: tuple[str, int], payload: bytes, limit: float = EXCHANGE_LIMIT, keep: bool = True
) -> Answer:
    """Send ``payload`` on a new connection and read the one answer, within ``limit`` seconds.

    Sends and reads at once, so that an answer the server gives before it has read
    the whole request is seen; sending stops there.  Fails (naming what arrived) on
    a hang or on a connection closed before a whole answer.  ``keep=False`` counts
    the body's bytes without keeping them.
    """
    started = time.monotonic()
    deadline = started + limit
    data = bytearray()
    head: bytes | None = None
    headers: dict[str, str] = {}
    status = 0
    received = 0  # body bytes
    sent = 0
    sent_at_answer = -1
    sock = socket.create_connection(address, timeout=10)

    def failure(what: str) -> AssertionError:
        return AssertionError(
            f"{what} after {time.monotonic() - started:.1f} s; sent {sent} of {len(payload)} B "
            f"(request starts {payload[:200]!r}); received {bytes(data[:400])!r}"
        )

    def complete() -> bool:
        if head is None:
            return False
        if "content-length" in headers:
            return received >= int(headers["content-length"])
        if "chunked" in headers.get("transfer-encoding", ""):
            return data.endswith(b"0\r\n\r\n")
        return False  # framed by the end of the connection

    with sock:
        sock.setblocking(False)
        view = memoryview(payload)
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLOUT)
        sending = True
        closed = False
        while not complete():
            left = deadline - time.monotonic()
            if left <= 0:
                raise failure("no whole answer (hang)")
            events = poller.poll(min(left, 1.0) * 1000)
            if not events:
                continue
            mask = events[0][1]
            if sending and mask & select.POLLOUT:
                try:
                    sent += sock.send(view[sent : sent + MIB])
                except BlockingIOError:
                    pass
                except OSError:  # the server stopped reading: its answer may be on its way
                    sending = False
                    poller.modify(sock, select.POLLIN)
                if sent >= len(view) and sending:
                    sending = False
                    poller.modify(sock, select.POLLIN)
            if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    chunk = sock.recv(MIB)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    closed = True
                    break
                if head is None:
                    data += chunk
                    end = data.find(b"\r\n\r\n")
                    if end >= 0:
                        head = bytes(data[:end])
                        rest = bytes(data[end + 4 :])
                        status_line, *lines = head.decode("latin-1").split("\r\n")
                        status = int(status_line.split()[1])
                        headers = {
                            n.strip().lower(): v.strip() for n, _, v in (ln.partition(":") for ln in lines)
                        }
                        del data[:]
                        data += rest if keep else rest[-5:]
                        received = len(rest)
                        sent_at_answer = sent
                        if sending:
                            sending = False
                            poller.modify(sock, select.POLLIN)
                else:
                    received += len(chunk)
                    if keep:
                        data += chunk
                    else:
                        data[:] = (bytes(data) + chunk)[-5:]
        framed = "content-length" in headers or "transfer-encoding" in headers
        if head is None or (closed and framed and not complete()):
            raise failure("the connection closed before a whole answer")
    body = bytes(data)
    if keep and "chunked" in headers.get("transfer-encoding", ""):
        body = dechunk(body)
    return Answer(status, headers, body, sent_at_answer, len(payload), time.monotonic() - started)


def dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def assert_alive(server: Server) -> None:
    answer = exchange(server.address, http("GET", "/healthz"), limit=10)
    assert answer.status == 200, f"/healthz after the case: {answer}"


def assert_refused(
    server: Server,
    payload: bytes,
    status: int,
    field: str,
    *words: str,
    request_id: bool = True,
    limit: float = EXCHANGE_LIMIT,
) -> Answer:
    """The one error shape, no error logged, and a server that still answers."""
    errors_before = len(server.errors)
    answer = exchange(server.address, payload, limit)
    context = f"request {payload[:300]!r} ({len(payload)} B) answered {answer}"
    assert answer.status < 500, context
    assert answer.status == status, context
    assert answer.headers.get("content-type") == "application/problem+json", context
    problem = answer.json()
    assert problem["status"] == status, context
    assert problem["title"], context
    assert problem["errors"], context
    assert problem["errors"][0]["field"] == field, context
    reason = problem["errors"][0]["reason"]
    for word in words:
        assert word in reason, context
    assert "Traceback" not in answer.body.decode("utf-8", "replace"), context
    if request_id:
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers.get("x-request-id", "")), context
    assert server.errors[errors_before:] == [], context
    assert_alive(server)
    return answer


# ---------------------------------------------------------------- bodies


def npy_header(text: str, version: tuple[int, int] = (1, 0), length: int | None = None) -> bytes:
    raw = text.encode("latin-1")
    fmt = "<H" if version == (1, 0) else "<I"
    return MAGIC + bytes(version) + struct.pack(fmt, len(raw) if length is None else length) + raw


def npy_dict(shape: str) -> str:
    return f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"


def npy(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, arr, allow_pickle=False)
    return out.getvalue()


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def archive(*members: tuple[str, bytes] | tuple[str, bytes, bytes]) -> bytes:
    """A zip written by hand, deflated: (name, content) or (name, content, the bytes stored)."""
    out, central = bytearray(), bytearray()
    for name_text, content, *stored in members:
        name = name_text.encode()
        data = stored[0] if stored else deflate(content)
        fields = (0, 8, 0, 0, zlib.crc32(content), len(data), len(content), len(name))
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, *fields, 0) + name + data
        central += struct.pack("<4sHH", b"PK\x01\x02", 20, 20)
        central += struct.pack("<HHHHIIIHHHHHII", *fields, 0, 0, 0, 0, 0, offset) + name
    n = len(members)
    return bytes(
        out + central + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    )


def patched(body: bytes, local: int, central: int, value: int, fmt: str = "<H", mask: bool = False) -> bytes:
    """``body`` with a field of the (first) local header and of the central directory set (or OR-ed)."""
    out = bytearray(body)
    for offset in (local, out.index(b"PK\x01\x02") + central):
        old = struct.unpack_from(fmt, out, offset)[0]
        struct.pack_into(fmt, out, offset, old | value if mask else value)
    return bytes(out)


ONES = npy(np.ones(2))


def npz_header_bomb() -> bytes:
    """An .npz whose x.npy (stored, 1 MiB) declares a 1 GiB .npy v2.0 header (attack 3)."""
    member = MAGIC + bytes([2, 0]) + struct.pack("<I", 2**30) + b" " * MIB
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("x.npy", member)
    return out.getvalue()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def numbers(n: int) -> bytes:
    return b",".join(b"%d.25" % (i % 10) for i in range(n))


LARGE = 300_000  # numbers: a body over 1 MiB, which only the fast path reads


def large_pad() -> bytes:
    return b', "pad": [' + numbers(LARGE) + b"]"


def million_fields() -> bytes:
    return b'{"activation":"relu","x":[1],' + b",".join(b'"f%d":0' % i for i in range(1_000_000)) + b"}"


def json_post(body: bytes, path: str = "/activate") -> bytes:
    return http("POST", path, body)


def npy_post(body: bytes, query: str = "activation=relu") -> bytes:
    return http("POST", f"/activate?{query}", body, "application/x-npy")


def npz_post(body: bytes) -> bytes:
    return http("POST", "/derivative?activation=relu", body, "application/x-npz")


Case = tuple[Callable[[], bytes], int, str, tuple[str, ...]]


def case(build: Callable[[], bytes], status: int, field: str, *words: str, id: str) -> Any:
    return pytest.param(build, status, field, words, id=id)


# ---------------------------------------------------------------- the cases


def test_the_raw_client_is_served(server: Server) -> None:
    # The helpers send what the server accepts; the limits themselves pass.
    answer = exchange(server.address, json_post(b'{"activation": "relu", "x": [-1, 2]}'))
    assert answer.status == 200, answer
    assert answer.json()["y"] == [0.0, 2.0]
    answer = exchange(server.address, npy_post(npy(np.ones((1,) * MAX_DIMS))))
    assert answer.status == 200, answer
    answer = exchange(server.address, json_post(b'{"activation": "relu", "x": ' + nested(MAX_DIMS) + b"}"))
    assert answer.status == 200, answer
    big = b'{"activation": "relu", "x": [' + numbers(LARGE) + b"]}"
    assert len(big) > MIB
    answer = exchange(server.address, json_post(big), keep=False)
    assert answer.status == 200, answer
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b'{"activation": "', b'relu", "x": [3]}', b""))
    answer = exchange(
        server.address, http("POST", "/activate", chunked, headers=b"Transfer-Encoding: chunked\r\n")
    )
    assert answer.status == 200, answer


@pytest.mark.parametrize(
    ("build", "status", "field", "words"),
    [
        case(lambda: npy_post(npy_header(npy_dict("(-2, -1)")) + bytes(16)), 400, "x", "negative", id="dims-negative"),
        case(lambda: npy_post(npy_header(npy_dict("(3, -0, -4)")) + bytes(16)), 400, "x", "negative", id="dims-negative-zero"),
        case(lambda: npy_post(npy_header(npy_dict("(" + "1, " * 33 + ")")) + bytes(8)), 422, "x", "33 dimensions", id="dims-33"),
        case(lambda: npy_post(npy_header(npy_dict("(" + "1, " * 1000 + ")")) + bytes(8)), 422, "x", "1000 dimensions", id="dims-1000"),
        case(lambda: npy_post(npy_header(npy_dict("(" + "-" * 3000 + "1,)")) + bytes(8)), 400, "x", "not a valid .npy header", id="3000-minus-signs"),
        case(lambda: npy_post(npy_header(npy_dict("(2,)"), (2, 0), length=2**30) + bytes(1000)), 400, "x", "1073741824", id="v2-header-1-GiB"),
        case(lambda: json_post(b'{"activation": "relu", "x": ' + nested(MAX_DIMS + 1) + b"}"), 422, "x" + "[0]" * MAX_DIMS, f"nested more than {MAX_DIMS} levels", id="json-nested-too-deep"),
    ],
)  # fmt: skip
def test_npy_shapes_and_nesting_are_refused(
    server: Server, build: Callable[[], bytes], status: int, field: str, words: tuple[str, ...]
) -> None:
    assert_refused(server, build(), status, field, *words)


def test_npy_with_33_to_64_dimensions_is_a_422(server: Server) -> None:
    for ndim in range(MAX_DIMS + 1, 65):
        body = npy_header(npy_dict("(" + "1, " * ndim + ")")) + bytes(8)
        assert_refused(server, npy_post(body), 422, "x", f"has {ndim} dimensions", f"limit is {MAX_DIMS}")


def _encrypted() -> bytes:
    return patched(archive(("x.npy", ONES)), 6, 8, 1, mask=True)  # general-purpose flag bit 0


def _method_14() -> bytes:
    return patched(archive(("x.npy", ONES)), 8, 10, 14)


@pytest.mark.parametrize(
    ("build", "status", "field", "words"),
    [
        case(lambda: npz_post(archive(("x", ONES))), 422, "body", "found ['x']", id="member-x-without-npy"),
        case(lambda: npz_post(archive(("x.npy", ONES), ("x.npy", ONES))), 422, "body", "['x.npy', 'x.npy']", id="x-npy-twice"),
        case(lambda: npz_post(archive(("x.npy", ONES), ("grad", ONES))), 422, "body", "['x.npy', 'grad']", id="member-grad-without-npy"),
        case(lambda: npz_post(_encrypted()), 400, "x", "encrypted", id="encrypted"),
        case(lambda: npz_post(_method_14()), 400, "x", "compression method 14", id="method-14"),
        case(lambda: npz_post(archive(("grad.npy", ONES), ("x.npy", ONES, b"\xff" * 40))), 400, "x", "damaged", id="corrupt-deflate"),
        case(lambda: npz_post(npz_header_bomb()), 400, "x", "not a valid .npy header", id="member-header-1-GiB"),
    ],
)  # fmt: skip
def test_npz_archives_are_refused(
    server: Server, build: Callable[[], bytes], status: int, field: str, words: tuple[str, ...]
) -> None:
    assert_refused(server, build(), status, field, *words)


RELU = b'"activation": "relu", "x": [1]'


@pytest.mark.parametrize(
    ("build", "status", "field", "words"),
    [
        case(lambda: json_post(b'{%s, "params": {"\\udc00": 1}}' % RELU), 400, "body", "surrogate", id="lone-surrogate-key"),
        case(lambda: json_post(('{"activation": "relu", "x": [1]}').encode("utf-16")), 400, "body", "UTF-8", id="utf-16"),
        case(lambda: json_post(('{"activation": "relu", "x": [1]}').encode("utf-16-le")), 400, "body", "not valid JSON", id="utf-16-le-no-bom"),
        case(lambda: json_post(('{"activation": "relu", "x": [1]}').encode("utf-32")), 400, "body", "UTF-8", id="utf-32"),
        case(lambda: json_post(b'{"activation": "relu", "x": [' + numbers(LARGE) + b",]}"), 400, "body", "not valid JSON", id="large-trailing-comma"),
        case(lambda: json_post(b'{%s, "x": [2, 3]}' % RELU), 422, "x", "twice", id="x-twice"),
        case(lambda: json_post(b'{%s, "\\u0078": [2, 3]}' % RELU), 422, "x", "twice", id="x-and-escaped-x"),
        case(lambda: json_post(b'{%s, "x": [2, 3]%s}' % (RELU, large_pad())), 422, "x", "twice", id="x-twice-large"),
        case(lambda: json_post(b'{%s, "\\u0078": [2, 3]%s}' % (RELU, large_pad())), 422, "x", "twice", id="x-and-escaped-x-large"),
        case(lambda: json_post(b'{"activation": "relu", "x": [' + numbers(LARGE) + b'], "x": [1]}'), 422, "x", "twice", id="large-x-twice"),
        case(lambda: json_post(b'{%s, "order": true}' % RELU, "/derivative"), 422, "order", id="order-true"),
        case(lambda: json_post(b'{%s, "order": 2.0}' % RELU, "/derivative"), 422, "order", id="order-float"),
        case(lambda: json_post(million_fields()), 422, "body", "1000002 keys", id="1M-unknown-fields"),
        case(lambda: json_post(b'{%s, "params": {%s}}' % (RELU, b",".join(b'"k%d": 1' % i for i in range(1000)))), 422, "params", "1000 keys", id="params-1000-keys"),
    ],
)  # fmt: skip
def test_json_bodies_are_refused_not_guessed(
    server: Server, build: Callable[[], bytes], status: int, field: str, words: tuple[str, ...]
) -> None:
    answer = assert_refused(server, build(), status, field, *words)
    assert len(answer.body) < 3000  # however large the body, the report is short


def test_an_error_report_is_capped(server: Server) -> None:
    # 60 unknown fields with 302-character names: an error each, 20 reported, names cut to 100.
    fields = b",".join(b'"f%d%s": 1' % (i, b"q" * 300) for i in range(60))
    answer = assert_refused(server, json_post(b"{%s, %s}" % (RELU, fields)), 422, "f0" + "q" * 97 + "\u2026")
    errors = answer.json()["errors"]
    assert len(errors) == 21, errors
    assert errors[-1] == {"field": "", "reason": "more errors not shown; at most 20 are reported"}
    assert all(len(e["field"]) <= 100 and len(e["reason"]) <= 1000 for e in errors), errors
    assert len(answer.body) < 10_000
    # As many unknown parameters: one error, the name cut to 100 characters.
    params = b",".join(b'"p%d%s": 1' % (i, b"q" * 300) for i in range(60))
    payload = json_post(b'{%s, "params": {%s}}' % (RELU, params))
    answer = assert_refused(server, payload, 422, "params.p0" + "q" * 90 + "\u2026")
    assert len(answer.json()["errors"]) <= 21


def test_a_repeated_query_parameter_is_refused(server: Server) -> None:
    payload = npy_post(
        npy(np.array([-1.0, 2.0])), "activation=leaky_relu&negative_slope=0.1&negative_slope=0.2"
    )
    assert_refused(server, payload, 422, "query.negative_slope", "more than once")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (b"X-Big: " + b"a" * (128 * 1024) + b"\r\n", ("ACTIVATION_MAX_HEADER_BYTES",)),
        (b"".join(b"X-Field-%d: v\r\n" % i for i in range(200)), ("ACTIVATION_MAX_HEADERS",)),
    ],
    ids=["header-128-KB", "200-header-fields"],
)
def test_oversized_heads_get_431(server: Server, extra: bytes, words: tuple[str, ...]) -> None:
    payload = http("POST", "/activate", b'{"activation": "relu", "x": [1]}', headers=extra)
    answer = assert_refused(server, payload, 431, "headers", *words, request_id=False)
    assert answer.headers.get("connection") == "close"


def test_a_declared_length_over_the_limit_gets_413_without_the_body(server: Server) -> None:
    # The head alone: a server waiting for the body would answer 408 after the body timeout.
    payload = http("POST", "/activate", b"", length=MAX_BODY + 1)
    answer = assert_refused(server, payload, 413, "body", f"is {MAX_BODY + 1} bytes", limit=5)
    assert answer.elapsed < 2, answer.elapsed
    # With the body on its way: answered before the server read it all.
    body = b'{"activation": "relu", "x": [' + b" " * (MAX_BODY + MIB) + b"1]}"
    answer = assert_refused(server, http("POST", "/activate", body), 413, "body", "ACTIVATION_MAX_BODY_BYTES")
    assert answer.sent < answer.total, answer


def test_a_chunked_body_over_the_limit_gets_413(server: Server) -> None:
    piece = b"100000\r\n" + b" " * MIB + b"\r\n"  # 1 MiB chunks, 80 of them: more than the buffers hold
    body = b"5\r\n[1, 2\r\n" + piece * 80 + b"2\r\n3]\r\n0\r\n\r\n"
    payload = http("POST", "/activate", body, headers=b"Transfer-Encoding: chunked\r\n")
    answer = assert_refused(server, payload, 413, "body", f"limit of {MAX_BODY} bytes")
    assert answer.sent < answer.total, answer


def test_another_method_is_405(server: Server) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = assert_refused(server, http(method, "/activate"), 405, "", "POST")
        assert answer.headers.get("allow") == "POST"


def test_an_unknown_path_is_404(server: Server) -> None:
    assert_refused(server, http("GET", "/no-such-path"), 404, "")
    assert_refused(server, http("POST", "/activate/../../etc/passwd", b"{}"), 404, "")


def test_concurrent_large_bodies_are_served_without_waiting_out_the_queue(server: Server) -> None:
    # 8 x 500k-element JSON (9.8 MB each; ~40 MiB reserved each at its peak) against a 128 MiB
    # budget: they cannot all be worked on at once, but each takes ~0.1 s alone, so those that
    # wait get room soon.  A 503 here, or answers near ACTIVATION_QUEUE_TIMEOUT (10 s), means
    # requests held part of the budget while waiting for more of it, and only the queue timeout
    # freed them (seen: six requests holding 20.8 MiB each, 124.8 of 128 MiB, each waiting for the
    # 18.9 MiB of its result).  relu: its results are exact in NumPy, so the computation is the
    # plain pass this timing assumes.  (With the correctly rounded sigmoid, 0.25 s and some 60 MiB
    # reserved each, one of the eight gets a 503 after 1.9 s: an open question for the budget.)
    x = np.random.default_rng(0).standard_normal(500_000)
    payload = json_post(orjson.dumps({"activation": "relu", "x": x}, option=orjson.OPT_SERIALIZE_NUMPY))
    started = time.monotonic()
    counts = concurrently(server.address, payload, 8, 30)
    elapsed = time.monotonic() - started
    print(f"\n8 x 500k-element JSON at once: {dict(counts)} in {elapsed:.1f} s")
    assert counts == {"200": 8}, (dict(counts), f"{elapsed:.1f} s")
    assert elapsed < 5, f"{elapsed:.1f} s"
    assert server.errors == []
    assert_alive(server)


# ---------------------------------------------------------------- memory


def tcp_state(sock: socket.socket) -> int:
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 0


def concurrently(address: tuple[str, int], payload: bytes, clients: int, limit: float) -> Counter[str]:
    """``clients`` threads sending ``payload`` at once, each on its own connection: statuses counted."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients, timeout=30)

    def one() -> None:
        try:
            start.wait()
            outcome = str(exchange(address, payload, limit, keep=False).status)
        except (AssertionError, OSError, threading.BrokenBarrierError) as exc:
            outcome = f"failed: {str(exc)[:200]}"
        with lock:
            counts[outcome] += 1

    pool = [threading.Thread(target=one, daemon=True) for _ in range(clients)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=limit + 35)
    counts["still running"] = sum(t.is_alive() for t in pool)
    return +counts


def unread_jacobians(address: tuple[str, int], clients: int, limit: float) -> Counter[str]:
    """``clients`` ask for a softmax Jacobian of n=1500 as JSON (~50 MB) and never read it.

    Waits (at most ``limit`` s) for the server to close each connection; then reads
    what status line reached each socket, if any.
    """
    x = b",".join(b"%d.5" % (i % 7) for i in range(1500))
    payload = http("POST", "/derivative", b'{"activation": "softmax", "x": [' + x + b"]}")
    socks = []
    counts: Counter[str] = Counter()
    try:
        for _ in range(clients):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
            sock.settimeout(10)
            sock.connect(address)
            sock.sendall(payload)
            socks.append(sock)
        deadline = time.monotonic() + limit
        while any(tcp_state(s) == TCP_ESTABLISHED for s in socks) and time.monotonic() < deadline:
            time.sleep(0.1)
        for sock in socks:
            closed = tcp_state(sock) != TCP_ESTABLISHED
            try:
                data = sock.recv(4096, socket.MSG_DONTWAIT)
            except (BlockingIOError, ConnectionResetError):
                data = b""
            match = re.match(rb"HTTP/1\.1 (\d{3})", data)
            status = match.group(1).decode() if match else "no status line read"
            counts[f"{status}, {'closed by the server' if closed else 'STILL OPEN'}"] += 1
    finally:
        for sock in socks:
            sock.close()
    return counts


def test_peak_memory_stays_within_the_budget_under_attack() -> None:
    # A server of its own: a short write timeout for the unread replies, and a history of its own.
    server = Server(*ARGS, "--write-timeout", "2")
    try:
        bomb = npz_post(npz_header_bomb())
        fields = json_post(million_fields())
        x = np.random.default_rng(0).standard_normal(500_000)
        big = json_post(orjson.dumps({"activation": "sigmoid", "x": x}, option=orjson.OPT_SERIALIZE_NUMPY))
        phases: list[tuple[str, Callable[[], Counter[str]], set[str]]] = [
            ("3 npz header bombs at once", lambda: concurrently(server.address, bomb, 3, 20), {"400"}),
            ("1M unknown JSON fields", lambda: concurrently(server.address, fields, 1, 20), {"422"}),
            (
                "3 unread n=1500 softmax Jacobians",
                lambda: unread_jacobians(server.address, 3, 25),
                {
                    "200, closed by the server",
                    "503, closed by the server",
                    "no status line read, closed by the server",
                },
            ),
            (
                "20 x 500k-element JSON at once",
                lambda: concurrently(server.address, big, 20, 40),
                {"200", "503"},
            ),
        ]
        print(
            f"\nmemory budget {BUDGET / MIB:.0f} MiB, allowance {ALLOWANCE / MIB:.0f} MiB, body limit {MAX_BODY / MIB:.0f} MiB"
        )
        results = []
        time.sleep(0.5)
        start_rss = server.memory()["VmRSS"]
        overall_peak = start_rss
        for name, run, allowed in phases:
            time.sleep(0.5)
            server.reset_peak()
            before = server.memory()["VmRSS"]
            started = time.monotonic()
            counts = run()
            elapsed = time.monotonic() - started
            memory = server.memory()
            growth = memory["VmHWM"] - before
            overall_peak = max(overall_peak, memory["VmHWM"])
            results.append((name, growth, counts, allowed))
            print(
                f"{name}: VmRSS before {before / MIB:.0f} MiB, peak (VmHWM) {memory['VmHWM'] / MIB:.0f} MiB, "
                f"growth {growth / MIB:.0f} MiB, after {memory['VmRSS'] / MIB:.0f} MiB; "
                f"answers {dict(counts)}; {elapsed:.1f} s"
            )
            assert_alive(server)
        overall = overall_peak - start_rss
        print(
            f"all phases: VmRSS {start_rss / MIB:.0f} MiB at the start, highest peak {overall_peak / MIB:.0f} MiB: "
            f"growth {overall / MIB:.0f} MiB (limit {(BUDGET + ALLOWANCE) / MIB:.0f} MiB)"
        )
        errors = server.errors
    finally:
        server.stop()
    assert errors == [], errors[:5]
    assert overall <= BUDGET + ALLOWANCE, f"peak RSS grew {overall / MIB:.0f} MiB over the whole run"
    for name, growth, counts, allowed in results:
        assert set(counts) <= allowed, (name, dict(counts))
        assert not any(code.startswith("500") for code in counts), (name, dict(counts))
        assert growth <= BUDGET + ALLOWANCE, f"{name}: peak RSS grew {growth / MIB:.0f} MiB"


def test_memory_a_large_computation_freed_goes_back_to_the_system() -> None:
    # Each function twice on a small array first (what the first calls load and keep), then
    # twice on 2M elements (2000 x 1000); once the server is idle again its RSS is back near where
    # it was. With glibc's own mmap threshold (MALLOC_MMAP_THRESHOLD_ unset and mallopt not
    # called) it stayed 26-44 MiB above.
    server = Server()
    names = ("snake", "gelu", "sigmoid", "softmax", "geglu", "tanh")
    headers = {"content-type": "application/x-npy", "accept": "application/x-npy"}

    def npy(n: int) -> bytes:
        out = io.BytesIO()
        np.save(out, np.random.default_rng(n).normal(0, 3, (n // 1000, 1000)))
        return out.getvalue()

    def idle_rss() -> int:
        time.sleep(0.3)
        return server.memory()["VmRSS"]

    try:
        with httpx.Client(base_url=server.base, timeout=120) as client:
            for size in (1000, 1000):
                for name in names:
                    r = client.post(f"/activate/npy?activation={name}", content=npy(size), headers=headers)
                    assert r.status_code == 200, r.text
            warm = idle_rss()
            after = []
            for _ in range(2):
                for name in names:
                    r = client.post(
                        f"/activate/npy?activation={name}", content=npy(2_000_000), headers=headers
                    )
                    assert r.status_code == 200, r.text
                after.append(idle_rss())
        peak = server.memory()["VmHWM"]
        errors = server.errors
    finally:
        server.stop()
    print(
        f"\nVmRSS warm {warm / MIB:.0f} MiB, after each round of 2M-element requests "
        f"{', '.join(f'{a / MIB:.0f}' for a in after)} MiB, peak {peak / MIB:.0f} MiB"
    )
    assert errors == [], errors[:5]
    assert peak - warm > 24 * MIB, "the requests were large enough to show what is kept"
    assert max(after) - warm <= 12 * MIB


def test_the_mmap_threshold_is_set_unless_the_operator_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert not budget.give_back_freed_memory()
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert budget.give_back_freed_memory()  # (glibc: this machine's and the image's)
