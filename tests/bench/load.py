"""Load and fault script (not a test): the real server under wrk, on loopback, bounded in time.

    python -m tests.bench.load            # about 90 s
    python -m tests.bench.load --seconds 10

1. Mixed load: 64 connections for 30 s, alternating valid and invalid
   requests (unknown activation, a string in x, malformed JSON, an axis out of
   range); counts responses by class (the valid ones must all be 2xx, the
   invalid ones 4xx, none 5xx), p50/p99 latency, server RSS before and after.
2. SIGTERM under load: the server is told to stop 3 s in; every request it
   accepted must be answered (refused connections afterwards are expected).
   Once with a new connection per request, so that a refused connect (never
   accepted) is told apart from a request that was accepted and lost; once
   with keep-alive connections, which the server must not close under a
   request on its way.
3. A worker killed by SIGKILL under load (--workers 2): the requests it took
   down with it, and how long until its replacement runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from tests import servers
from tests.bench.__main__ import server

HOST = "127.0.0.1"

LUA = r"""
local bodies = {
  {200, '{"activation": "gelu", "x": [[-1.5, 0, 0.5, 2], [3, -3, 1, 0.25]]}'},
  {422, '{"activation": "rleu", "x": [1, 2]}'},
  {200, '{"activation": "softmax", "x": [1, 2, 3, 4], "axis": -1}'},
  {422, '{"activation": "relu", "x": [1, "two"]}'},
  {200, '{"activation": "sigmoid", "x": 0.5}'},
  {400, '{"activation": "relu", "x": [1,'},
  {200, '{"activation": "leaky_relu", "x": [-2, 0, 2], "params": {"negative_slope": 0.1}}'},
  {422, '{"activation": "softmax", "x": [1, 2], "axis": 3}'},
}
local counter = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok2 = 0; c4 = 0; c5 = 0; other = 0 end
function request()
  counter = counter + 1
  local pick = bodies[(counter % #bodies) + 1]
  return wrk.format("POST", "/activate", {["Content-Type"] = "application/json"}, pick[2])
end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok2 = ok2 + 1
  elseif status >= 400 and status < 500 then c4 = c4 + 1
  elseif status >= 500 then c5 = c5 + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local t = {ok2 = 0, c4 = 0, c5 = 0, other = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (thread:get(k) or 0) end
  end
  io.write(string.format("CLASSES 2xx=%d 4xx=%d 5xx=%d other=%d\n", t.ok2, t.c4, t.c5, t.other))
  io.write(string.format("LATENCY p50=%.2fms p99=%.2fms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
  local e = summary.errors
  io.write(string.format("SOCKET connect=%d read=%d write=%d timeout=%d\n", e.connect, e.read, e.write, e.timeout))
  io.write(string.format("TOTAL %d\n", summary.requests))
end
"""


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (workers), MiB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


def other_statuses(outcome: Counter[str]) -> int:
    """How many answers of servers.hammer were not 200."""
    return sum(n for key, n in outcome.items() if key.startswith("status"))


def run_wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, int | float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 60, check=False,
    ).stdout  # fmt: skip
    result: dict[str, int | float] = {}
    for key, value in re.findall(
        r"(\w+)=([\d.]+)", " ".join(line for line in out.splitlines() if line.isupper() or "=" in line)
    ):
        result[key] = float(value) if "." in value else int(value)
    total = re.search(r"TOTAL (\d+)", out)
    result["total"] = int(total.group(1)) if total else 0
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="length of the mixed load (default 30)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "mix.lua"
        script.write_text(LUA)

        print(f"## 1. Mixed valid/invalid load: 64 connections, {args.seconds} s")
        with server("service") as (base, pid):
            before = rss_mb(pid)
            r = run_wrk(f"{base}/activate", args.seconds, 64, script)
            after = rss_mb(pid)
        print(f"requests {r['total']}: 2xx {r.get('2xx', 0)}, 4xx {r.get('4xx', 0)}, 5xx {r.get('5xx', 0)}, "
              f"other {r.get('other', 0)} (half the bodies are valid, half invalid: 2xx must equal 4xx, "
              f"{'they do' if abs(r.get('2xx', 0) - r.get('4xx', 0)) <= 64 else 'THEY DO NOT'})")  # fmt: skip
        print(
            f"socket errors: connect {r.get('connect')}, read {r.get('read')}, write {r.get('write')}, timeout {r.get('timeout')}"
        )
        print(f"latency p50 {r.get('p50')} ms, p99 {r.get('p99')} ms")
        print(
            f"server RSS {before:.1f} MiB at start, {after:.1f} MiB at end ({(after - before) / before * 100:+.1f}%)"
        )

        print("\n## 2. SIGTERM 3 s into the load (single process, 8 client threads)")
        for keepalive in (False, True):
            proc, base = servers.start("--drain-seconds", "20")
            threading.Timer(3.0, proc.send_signal, args=(signal.SIGTERM,)).start()
            outcome = servers.hammer(
                base, until=lambda proc=proc: proc.poll() is not None, limit=15.0, keepalive=keepalive
            )
            code = proc.wait(timeout=30)
            label = "keep-alive connections" if keepalive else "a new connection per request"
            print(f"{label}: answered {outcome['ok']}; other statuses "
                  f"{other_statuses(outcome)}; "
                  f"failed after being accepted: {outcome['failed']}; "
                  f"refused (never accepted, expected): {outcome['refused']}; exit code {code}")  # fmt: skip

        print("\n## 3. A worker killed by SIGKILL 3 s into a 10 s load (--workers 2)")
        proc, base = servers.start("--workers", "2")
        try:
            victim = min(servers.workers(proc.pid))
            gap: list[float] = []

            def kill_and_time_the_replacement() -> None:
                os.kill(victim, signal.SIGKILL)
                killed = time.monotonic()
                while time.monotonic() - killed < 10:
                    now = servers.workers(proc.pid)
                    if len(now) == 2 and victim not in now:
                        gap.append(time.monotonic() - killed)
                        return
                    time.sleep(0.01)

            threading.Timer(3.0, kill_and_time_the_replacement).start()
            started = time.monotonic()
            outcome = servers.hammer(base, until=lambda: time.monotonic() - started > 10, limit=15.0)
            print(f"answered {outcome['ok']}; failed (accepted, then the worker died): {outcome['failed']}; "
                  f"refused: {outcome['refused']}; other than 200: "
                  f"{other_statuses(outcome)}; "
                  f"replacement process spawned {gap[0] if gap else float('nan'):.2f} s after the kill "
                  "(the other worker serves while it starts up)")  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
