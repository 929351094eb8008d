"""Benchmark: this service against a naive baseline, side by side, on loopback.

    python -m tests.bench              # about 5 minutes; prints every figure and ratio
    python -m tests.bench --quick      # shorter runs, for a smoke test

Starts this service (``python -m service``) and the naive baseline
(``tests/bench/naive_app.py``, as a tutorial reader writes it) under uvicorn
on 127.0.0.1, measures them interleaved (A B A B ...) and prints medians:

- small requests: req/s and p50/p99 latency with wrk (Debian package ``wrk``)
  for POST /activate with 10 and 1,000 floats, against GET /healthz of the
  same server (the framework's ceiling);
- large requests: end-to-end latency for 100,000 and 1,000,000 float64 as
  JSON and .npy, against the in-process floor (parse + compute + serialise
  without HTTP, measured in this process in the same run) and the baseline;
- head-of-line blocking: GET /healthz latency while a 1M-element JSON
  request is in flight;
- memory: server peak RSS growth for one 1M-element request (fresh servers);
- core: each activation's NumPy core on 1M float64 against its one-line
  tutorial formula.

Every load is bounded in time and sent to 127.0.0.1 only; servers are
started here and stopped here, by their PID.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import orjson

from service import activations, binary, decode, encode
from service.operations import plan_activate
from service.pipeline import Pipeline
from service.schemas import ActivateRequest
from service.settings import Settings
from tests import servers
from tests.bench.tutorial import FORMULAS

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
TARGETS = {
    "json_floor": 1.3,
    "json_vs_naive": 10.0,
    "npy_vs_naive": 50.0,
    "small10": 0.75,
    "small1000": 0.5,
    "hol_p99_ms": 50.0,
    "rss_json": 4.0,
    "rss_npy": 3.0,
    "core": 3.0,
    "softmax": 1.5,
}


@contextmanager
def server(kind: str) -> Iterator[tuple[str, int]]:
    """The service or the naive baseline on a free loopback port; stopped by PID."""
    with servers.running(app=None if kind == "service" else "tests.bench.naive_app:app") as running:
        yield running


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def json_body(n: int, activation: str = "sigmoid", seed: int = 0) -> bytes:
    x = np.random.default_rng(seed).standard_normal(n) * 3
    return orjson.dumps({"activation": activation, "x": x}, option=orjson.OPT_SERIALIZE_NUMPY)


def npy_body(n: int, seed: int = 0) -> bytes:
    out = io.BytesIO()
    np.save(out, np.random.default_rng(seed).standard_normal(n) * 3, allow_pickle=False)
    return out.getvalue()


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


# -- small requests with wrk --------------------------------------------------------------


def wrk(url: str, seconds: int, body: bytes | None, workdir: Path) -> dict[str, float]:
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", url]
    if body is not None:
        script = workdir / f"post{len(body)}.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [[{body.decode()}]]\n"
        )
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rate,
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def bench_small(seconds: int, rounds: int) -> dict[tuple[str, str], dict[str, float]]:
    tests = {"healthz": None, "10 floats": json_body(10), "1000 floats": json_body(1000)}
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, server("service") as (svc, _), server("naive") as (naive, _):
        for _ in range(rounds):
            for kind, base in (("service", svc), ("naive", naive)):
                for name, body in tests.items():
                    url = f"{base}/healthz" if body is None else f"{base}/activate"
                    samples.setdefault((kind, name), []).append(wrk(url, seconds, body, Path(tmp)))
    return {key: {m: statistics.median(s[m] for s in runs) for m in runs[0]} for key, runs in samples.items()}


# -- large requests -----------------------------------------------------------------------------


LIMITS = Pipeline(Settings.model_construct()).limits


def json_floor(body: bytes) -> bytes:
    """The whole JSON pipeline in-process: parse, compute, serialise."""
    request = decode.parser_for(ActivateRequest, "application/json", [], LIMITS.max_elements)(body)
    return b"".join(encode.encode(plan_activate(request, LIMITS).run())[2])


def npy_floor(body: bytes) -> bytes:
    entry = activations.get("sigmoid")
    x, _ = binary.read_npy(body, "x", LIMITS.max_elements)
    return binary.write_npy(entry.value(x, entry.bind()))


def bench_large(sizes: list[int], rounds: int) -> dict[int, dict[str, float]]:
    results: dict[int, dict[str, list[float]]] = {n: {} for n in sizes}
    npy_headers = {"content-type": "application/x-npy", "accept": "application/x-npy"}
    with server("service") as (svc, _), server("naive") as (naive, _), httpx.Client(timeout=120) as client:
        for n in sizes:
            jbody, nbody = json_body(n), npy_body(n)
            json_headers = {"content-type": "application/json"}
            cases = {
                "floor json": partial(json_floor, jbody),
                "floor npy": partial(npy_floor, nbody),
                "service json": partial(_post, client, f"{svc}/activate", jbody, json_headers),
                "service npy": partial(
                    _post, client, f"{svc}/activate?activation=sigmoid", nbody, npy_headers
                ),
                "naive json": partial(_post, client, f"{naive}/activate", jbody, json_headers),
            }
            for fn in cases.values():  # warm up once
                fn()
            for _ in range(rounds):
                for name, fn in cases.items():
                    results[n].setdefault(name, []).append(median_time(fn, 1))
    return {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    response = client.post(url, content=body, headers=headers)
    response.raise_for_status()
    return response


# -- head-of-line blocking ------------------------------------------------------------------------


def bench_head_of_line(trials: int) -> dict[str, dict[str, float]]:
    big = json_body(1_000_000)
    out = {}
    for kind in ("service", "naive"):
        latencies: list[float] = []
        with (
            server(kind) as (base, _),
            httpx.Client(timeout=120) as probe,
            httpx.Client(timeout=120) as loader,
        ):
            probe.get(f"{base}/healthz")
            for _ in range(trials):
                done = threading.Event()
                thread = threading.Thread(target=_send_and_flag, args=(loader, f"{base}/activate", big, done))
                thread.start()
                time.sleep(0.01)
                while not done.is_set():
                    start = time.perf_counter()
                    probe.get(f"{base}/healthz")
                    latencies.append((time.perf_counter() - start) * 1e3)
                    time.sleep(0.005)
                thread.join()
        latencies.sort()
        out[kind] = {
            "count": len(latencies),
            "p50": latencies[len(latencies) // 2],
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "max": latencies[-1],
        }
    return out


def _send_and_flag(client: httpx.Client, url: str, body: bytes, done: threading.Event) -> None:
    client.post(url, content=body, headers={"content-type": "application/json"})
    done.set()


# -- memory ------------------------------------------------------------------------------------------


def bench_memory() -> dict[str, dict[str, float]]:
    out = {}
    cases = {
        "service json": ("service", json_body(1_000_000), {"content-type": "application/json"}, "/activate"),
        "service npy": ("service", npy_body(1_000_000), {"content-type": "application/x-npy", "accept": "application/x-npy"}, "/activate?activation=sigmoid"),
        "naive json": ("naive", json_body(1_000_000), {"content-type": "application/json"}, "/activate"),
    }  # fmt: skip
    for name, (kind, body, headers, path) in cases.items():
        with server(kind) as (base, pid), httpx.Client(timeout=120) as client:
            warm = json_body(1000) if "json" in name else npy_body(1000)
            client.post(f"{base}{path}", content=warm, headers=headers).raise_for_status()
            time.sleep(0.2)
            before = peak_rss_mb(pid)
            client.post(f"{base}{path}", content=body, headers=headers).raise_for_status()
            after = peak_rss_mb(pid)
        out[name] = {
            "body_mb": len(body) / 2**20,
            "growth_mb": after - before,
            "ratio": (after - before) / (len(body) / 2**20),
        }
    return out


# -- core ----------------------------------------------------------------------------------------------


def bench_core(runs: int) -> dict[str, tuple[float, float]]:
    x = np.random.default_rng(0).standard_normal(1_000_000) * 3
    out = {}
    for entry in activations.entries():
        params = entry.bind()
        tutorial = FORMULAS[entry.name]
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(runs):
            ours.append(median_time(partial(entry.value, x, params), 1))
            with np.errstate(all="ignore"):
                theirs.append(median_time(partial(tutorial, x), 1))
        out[entry.name] = (statistics.median(ours), statistics.median(theirs))
    return out


# -- report ----------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test, not for quoting")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (bash .ci/bench does it)", file=sys.stderr)
        return 2
    seconds, rounds = (2, 1) if args.quick else (5, 3)
    started = time.monotonic()
    print(
        f"# activation-service benchmark  ({os.cpu_count()} cores, numpy {np.__version__}, Python {sys.version.split()[0]})"
    )
    print(
        f"# medians of interleaved runs; {'QUICK MODE: not for quoting' if args.quick else f'{rounds} rounds'}\n"
    )

    small = bench_small(seconds, rounds)
    print(f"## Small requests (wrk -t1 -c32, {seconds} s each, {rounds} rounds)\n")
    print("| server | request | req/s | p50 ms | p99 ms | vs its /healthz | target |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("service", "naive"):
        ceiling = small[(kind, "healthz")]["rps"]
        for name in ("healthz", "10 floats", "1000 floats"):
            s = small[(kind, name)]
            ratio = s["rps"] / ceiling
            target = {"10 floats": TARGETS["small10"], "1000 floats": TARGETS["small1000"]}.get(name)
            mark = f">= {target}: {verdict(ratio >= target)}" if target and kind == "service" else ""
            print(
                f"| {kind} | {name} | {s['rps']:.0f} | {s['p50']:.2f} | {s['p99']:.2f} | {ratio:.2f} | {mark} |"
            )

    large = bench_large([100_000, 1_000_000], 2 if args.quick else 5)
    print("\n## Large requests (sigmoid, end-to-end latency in ms)\n")
    print(
        "| floats | floor json | service json | naive json | service/floor | naive/service | floor npy | service npy | naive json / service npy |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, r in large.items():
        print(
            f"| {n:,} | {r['floor json'] * 1e3:.1f} | {r['service json'] * 1e3:.1f} | {r['naive json'] * 1e3:.1f} | "
            f"{r['service json'] / r['floor json']:.2f} | {r['naive json'] / r['service json']:.1f} | "
            f"{r['floor npy'] * 1e3:.1f} | {r['service npy'] * 1e3:.1f} | {r['naive json'] / r['service npy']:.0f} |"
        )
    big = large[1_000_000]
    print(
        f"\n1M JSON: service/floor {big['service json'] / big['floor json']:.2f} (target <= {TARGETS['json_floor']}: "
        f"{verdict(big['service json'] / big['floor json'] <= TARGETS['json_floor'])}), "
        f"naive/service {big['naive json'] / big['service json']:.1f}x (target >= {TARGETS['json_vs_naive']}: "
        f"{verdict(big['naive json'] / big['service json'] >= TARGETS['json_vs_naive'])}); "
        f"1M npy: naive json/service npy {big['naive json'] / big['service npy']:.0f}x (target >= {TARGETS['npy_vs_naive']}: "
        f"{verdict(big['naive json'] / big['service npy'] >= TARGETS['npy_vs_naive'])})"
    )

    hol = bench_head_of_line(1 if args.quick else 3)
    print("\n## Head-of-line blocking: GET /healthz while a 1M-float JSON request is in flight (ms)\n")
    print("| server | probes | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    for kind, h in hol.items():
        print(f"| {kind} | {h['count']:.0f} | {h['p50']:.1f} | {h['p99']:.1f} | {h['max']:.1f} |")
    print(
        f"\nservice p99 {hol['service']['p99']:.1f} ms (target <= {TARGETS['hol_p99_ms']}: {verdict(hol['service']['p99'] <= TARGETS['hol_p99_ms'])})"
    )

    memory = bench_memory()
    print("\n## Memory: server peak RSS growth for one 1M-float request\n")
    print("| request | body MiB | peak RSS growth MiB | growth / body | target |")
    print("|---|---|---|---|---|")
    for name, m in memory.items():
        target = {"service json": TARGETS["rss_json"], "service npy": TARGETS["rss_npy"]}.get(name)
        mark = f"<= {target}: {verdict(m['ratio'] <= target)}" if target else ""
        print(f"| {name} | {m['body_mb']:.1f} | {m['growth_mb']:.1f} | {m['ratio']:.2f} | {mark} |")

    core = bench_core(3 if args.quick else 7)
    print("\n## Core: accurate NumPy core vs the one-line tutorial formula, 1M float64 (ms)\n")
    print("| activation | service | tutorial | ratio | target |")
    print("|---|---|---|---|---|")
    for name, (ours, theirs) in core.items():
        entry = activations.get(name)
        target = (
            TARGETS["softmax"]
            if name == "softmax"
            else TARGETS["core"]
            if entry.kind == "elementwise"
            else None
        )
        mark = f"<= {target}: {verdict(ours / theirs <= target)}" if target else ""
        print(f"| {name} | {ours * 1e3:.2f} | {theirs * 1e3:.2f} | {ours / theirs:.2f} | {mark} |")
    print(f"\n# finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
