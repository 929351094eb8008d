"""Connection limits (service.lifecycle): silent, slow, oversized and non-reading clients.

Raw sockets against a real `python -m service`, with one-second timeouts; each
timeout must close its connection within the timeout and one second more.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import servers

TIMEOUT = 1.0  # --header-timeout, --idle-timeout and --write-timeout of the server below
SLACK = 1.0  # how late after its timeout a connection may close
EARLY = 0.2  # how early (timers, scheduling) it may close
ARGS = ("--header-timeout", "1", "--idle-timeout", "1", "--write-timeout", "1", "--body-timeout", "1")
MAX_HEADER_BYTES = 32 * 1024  # the defaults
MAX_HEADERS = 100

Address = tuple[str, int]


@pytest.fixture(scope="module")
def limited() -> Iterator[tuple[Address, int]]:
    """A server with short timeouts: its address and PID."""
    # glibc's malloc otherwise raises its mmap threshold as large blocks are freed and then
    # keeps them in its heap: resident memory would not tell whether a reply was freed.
    with servers.running(*ARGS, env={"MALLOC_MMAP_THRESHOLD_": "131072"}) as (base, pid):
        host, port = base.removeprefix("http://").split(":")
        yield (host, int(port)), pid


def connect(address: Address, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:  # before connecting, so that the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(address)
    return sock


def until_closed(sock: socket.socket, limit: float = TIMEOUT + SLACK + 3) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it (monotonic).

    Fails if it is still open after ``limit`` seconds.
    """
    data = b""
    deadline = time.monotonic() + limit
    with sock:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                return data, time.monotonic()
            if not chunk:
                return data, time.monotonic()
            data += chunk
    raise AssertionError(f"the server left the connection open for {limit} s (got {data[:200]!r})")


def response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one HTTP response in ``data``."""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    assert len(body) == int(headers["content-length"]), data[:300]
    return int(status_line.split()[1]), headers, body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response from a kept-alive connection (by its Content-Length)."""
    data = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        data += sock.recv(65536)
    head = data.partition(b"\r\n\r\n")[0].lower()
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    while len(data.partition(b"\r\n\r\n")[2]) < length and time.monotonic() < deadline:
        data += sock.recv(65536)
    return response(data)


def assert_headers_problem(data: bytes, status: int, *words: str) -> None:
    code, headers, body = response(data)
    assert code == status
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["errors"][0]["field"] == "headers"
    for word in words:
        assert word in problem["detail"]


def assert_closed_on_time(opened: float, closed: float, timeout: float = TIMEOUT) -> None:
    assert timeout - EARLY <= closed - opened <= timeout + SLACK, closed - opened


def get(path: str = "/healthz") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def post_head(body: bytes, *extra: str) -> bytes:
    lines = [
        "POST /activate HTTP/1.1",
        "Host: test",
        "Content-Type: application/json",
        "Accept: application/json",
        f"Content-Length: {len(body)}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


SMALL = b'{"activation": "relu", "x": [-1.0, 2.0]}'


# -- timeouts ----------------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(limited: tuple[Address, int]) -> None:
    sock = connect(limited[0])
    opened = time.monotonic()
    data, closed = until_closed(sock)
    assert data == b""  # nothing asked, nothing answered
    assert_closed_on_time(opened, closed)


def test_an_idle_kept_alive_connection_is_closed(limited: tuple[Address, int]) -> None:
    sock = connect(limited[0])
    sock.sendall(get())
    assert read_response(sock)[0] == 200
    answered = time.monotonic()
    data, closed = until_closed(sock)
    assert data == b""
    assert_closed_on_time(answered, closed)


def test_a_head_that_stops_arriving_gets_408(limited: tuple[Address, int]) -> None:
    sock = connect(limited[0])
    sock.sendall(post_head(SMALL)[:-2])  # all but the blank line that ends the head
    sent = time.monotonic()
    data, closed = until_closed(sock)
    assert_headers_problem(data, 408, "ACTIVATION_HEADER_TIMEOUT")
    assert_closed_on_time(sent, closed)


@pytest.mark.parametrize("after_a_response", [False, True], ids=["fresh", "kept-alive"])
def test_a_trickled_head_gets_408_at_the_deadline(
    limited: tuple[Address, int], after_a_response: bool
) -> None:
    # A byte every 50 ms keeps the connection busy, but the head is due within the
    # header timeout of the connection opening or of the previous response ending.
    sock = connect(limited[0])
    started = time.monotonic()
    if after_a_response:
        sock.sendall(get())
        assert read_response(sock)[0] == 200
        started = time.monotonic()
    head = get() + b"X-Padding: " + b"a" * 1000
    sock.settimeout(0.05)
    data = b""
    deadline = started + TIMEOUT + SLACK + 3
    for byte in head:
        if time.monotonic() > deadline:
            break
        try:
            sock.send(bytes([byte]))
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # the server closed while this byte was on its way
            break
        data += chunk
        break
    rest, closed = until_closed(sock)
    assert_headers_problem(data + rest, 408, "ACTIVATION_HEADER_TIMEOUT")
    assert_closed_on_time(started, closed)


# -- header size and count ---------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A GET /healthz whose head is ``size`` bytes."""
    start, end = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Padding: ", b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def test_a_head_over_max_header_bytes_gets_431(limited: tuple[Address, int]) -> None:
    sock = connect(limited[0])
    sent = time.monotonic()
    sock.sendall(padded(MAX_HEADER_BYTES + 1))
    data, closed = until_closed(sock)
    assert_headers_problem(data, 431, str(MAX_HEADER_BYTES), "ACTIVATION_MAX_HEADER_BYTES")
    assert closed - sent < 0.5  # at once, not at a timeout


def test_a_head_of_max_header_bytes_and_a_large_body_are_served(limited: tuple[Address, int]) -> None:
    # Exactly the limit passes; and a small head with a large body, arriving in large
    # reads, is not mistaken for a large head.
    sock = connect(limited[0])
    sock.sendall(padded(MAX_HEADER_BYTES))
    assert read_response(sock)[0] == 200
    body = json.dumps({"activation": "relu", "x": list(range(200_000))}).encode()  # 1.3 MB
    sock.sendall(post_head(body) + body)
    status, _, reply = read_response(sock)
    assert status == 200
    assert json.loads(reply)["y"][-1] == 199_999
    sock.close()


def test_a_huge_head_is_cut_off_without_holding_up_others(limited: tuple[Address, int]) -> None:
    # 64 MB of header: the server stops reading at the limit instead of buffering it all.
    address = limited[0]
    sock = connect(address)
    outcome: dict[str, float] = {}

    def send() -> None:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Huge: " + b"a" * 64 * 2**20)
        except OSError:
            outcome["cut"] = time.monotonic()

    started = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    time.sleep(0.1)
    r = httpx.get(f"http://{address[0]}:{address[1]}/healthz", timeout=5)
    assert r.status_code == 200
    assert r.elapsed.total_seconds() < 1
    sender.join(timeout=10)
    sock.close()
    assert "cut" in outcome, "the server read the whole 64 MB header"
    assert outcome["cut"] - started < TIMEOUT / 2  # at the size limit, not at the header timeout


def test_more_than_max_headers_fields_get_431(limited: tuple[Address, int]) -> None:
    def head(fields: int) -> bytes:  # Host and fields - 1 more
        return get()[:-2] + b"".join(b"X-Field-%d: 1\r\n" % i for i in range(fields - 1)) + b"\r\n"

    sock = connect(limited[0])
    sock.sendall(head(MAX_HEADERS))
    assert read_response(sock)[0] == 200  # exactly the limit passes
    sock.sendall(head(MAX_HEADERS + 1))
    sent = time.monotonic()
    data, closed = until_closed(sock)
    assert_headers_problem(data, 431, str(MAX_HEADERS), "ACTIVATION_MAX_HEADERS")
    assert closed - sent < 0.5


# -- a client that stops reading ---------------------------------------------------------------


def rss(pid: int) -> int:
    """Resident memory of process ``pid``, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def tcp_state(sock: socket.socket) -> int:
    return int(struct.unpack_from("=B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104))[0])


TCP_ESTABLISHED = 1


def test_a_client_that_stops_reading_is_cut_off_and_its_reply_freed(limited: tuple[Address, int]) -> None:
    address, pid = limited
    body = json.dumps({"activation": "sigmoid", "x": [i % 1000 / 100 - 5 for i in range(1_000_000)]}).encode()
    request = post_head(body) + body
    # Once read in full, to know the reply's size and how much the process keeps after one.
    with connect(address) as sock:
        sock.sendall(request)
        reply_bytes = len(read_response(sock)[2])
    assert reply_bytes > 16 * 2**20  # far more than the kernel's socket buffers hold
    time.sleep(0.3)
    baseline = rss(pid)

    sock = connect(address, rcvbuf=4096)
    sock.sendall(request)
    sent = time.monotonic()
    peak = baseline
    deadline = sent + 15  # computing and encoding the reply takes a while on a busy machine
    while tcp_state(sock) == TCP_ESTABLISHED and time.monotonic() < deadline:
        peak = max(peak, rss(pid))
        time.sleep(0.05)
    closed = time.monotonic()
    state = tcp_state(sock)
    sock.close()
    assert state != TCP_ESTABLISHED, "the server kept writing to a client that reads nothing"
    assert peak > baseline + reply_bytes // 2  # the reply was held while the client stalled ...
    deadline = time.monotonic() + 5
    while rss(pid) > baseline + reply_bytes // 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rss(pid) <= baseline + reply_bytes // 4, (baseline, peak, rss(pid))  # ... and freed after
    assert closed - sent < 5


# -- many at once ------------------------------------------------------------------------------


def test_stalled_and_silent_connections_do_not_hold_up_others(limited: tuple[Address, int]) -> None:
    address = limited[0]
    base = f"http://{address[0]}:{address[1]}"
    silent: list[tuple[socket.socket, float]] = []
    stalled: list[tuple[socket.socket, float]] = []  # the head of a POST, without the blank line ending it
    body_stalled: list[socket.socket] = []  # the head of a POST, and no body
    try:
        for _ in range(100):
            silent.append((connect(address), time.monotonic()))
        for _ in range(64):
            sock = connect(address)
            stalled.append((sock, time.monotonic()))
            sock.sendall(post_head(SMALL)[:-2])
        for _ in range(64):
            body_stalled.append(connect(address))
            body_stalled[-1].sendall(post_head(SMALL))

        with httpx.Client(base_url=base, timeout=5) as client:
            for _ in range(3):
                r = client.get("/healthz", headers={"connection": "close"})
                assert r.status_code == 200
                assert r.elapsed.total_seconds() < 0.5
                r = client.post("/activate", content=SMALL, headers={"content-type": "application/json"})
                assert r.status_code == 200
                assert r.json()["y"] == [0.0, 2.0]
                assert r.elapsed.total_seconds() < 0.5

        watched = silent + stalled
        results: list[tuple[bytes, float] | None] = [None] * len(watched)

        def watch(i: int) -> None:
            results[i] = until_closed(watched[i][0])

        threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(len(watched))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=TIMEOUT + SLACK + 5)
        for i, (_, opened) in enumerate(watched):
            outcome = results[i]
            assert outcome is not None, "still open"
            data, closed = outcome
            if i < len(silent):
                assert data == b""
            else:
                assert_headers_problem(data, 408, "ACTIVATION_HEADER_TIMEOUT")
            assert_closed_on_time(opened, closed)
        # A stalled body is the application's to time out (ACTIVATION_BODY_TIMEOUT), not the protocol's.
    finally:
        for sock in [s for s, _ in silent + stalled] + body_stalled:
            sock.close()
