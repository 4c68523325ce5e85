# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the benchmark suite: JSON/websockets baseline, gr-argos per format, raw-socket ceiling.

    .venv/bin/python -m benchmarks.run --quick        # a few minutes
    .venv/bin/python -m benchmarks.run                # full: more formats, 4096 bins, longer
    .venv/bin/python -m benchmarks.run --deflate-tuning   # baseline permessage-deflate settings

Each server runs in its own process, the load clients in others (see bench_server.py and
load_client.py). Results go to a JSON file (``--out``) and a markdown table on stdout;
``benchmarks.report`` turns them into docs/performance.md and the plot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.frames import FRAME_SOURCES, cache_dir, load_frames

_PY = sys.executable
_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str                   # argos | json | tcp
    path: str = "/"             # argos: URL query choosing the format
    server_args: tuple[str, ...] = ()
    checkout: str | None = None  # another checkout's server (its own bench_server.py)


QUICK = (
    Scenario("json+pmd (baseline)", "json"),
    Scenario("argos float32", "argos", "/?encoding=float32"),
    Scenario("argos uint8", "argos", "/?encoding=uint8"),
    Scenario("argos uint8+deflate", "argos", "/?encoding=uint8&compress=1"),
    Scenario("tcp ceiling uint8+deflate", "tcp", server_args=("--tcp-format", "uint8+deflate")),
)
FULL = QUICK[:2] + (
    Scenario("argos float32+deflate", "argos", "/?encoding=float32&compress=1"),
    Scenario("argos int16", "argos", "/?encoding=int16"),
    Scenario("argos int16+deflate", "argos", "/?encoding=int16&compress=1"),
) + QUICK[2:] + (
    Scenario("tcp ceiling float32", "tcp", server_args=("--tcp-format", "float32")),
)
TUNING = tuple(
    Scenario(f"json+pmd wbits={w} memLevel={m}", "json",
             server_args=("--window-bits", str(w), "--mem-level", str(m)))
    for w, m in ((9, 1), (10, 4), (12, 5), (15, 8))
) + (Scenario("json, no compression", "json", server_args=("--no-compression",)),)


def boundary(baseline: str) -> tuple[Scenario, ...]:
    """The websockets boundary (docs/performance.md): the same uint8 clients served by the
    ``baseline`` checkout's server, by this one, and by this one sending only through
    ``websockets``' documented ``send()`` (no prebuilt frames written to the transport)."""
    return (
        Scenario("argos uint8 (baseline checkout)", "argos", "/?encoding=uint8",
                 checkout=baseline),
        Scenario("argos uint8", "argos", "/?encoding=uint8"),
        Scenario("argos uint8, documented send()", "argos", "/?encoding=uint8",
                 server_args=("--send", "documented")),
    )


class Proc:
    """A child speaking JSON lines on stdin/stdout; ``cwd`` is the checkout it runs from."""

    def __init__(self, *args: str, cwd: Path = _REPO) -> None:
        self.p = subprocess.Popen([_PY, *args], cwd=cwd, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)

    def read(self) -> dict[str, Any]:
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"child {self.p.args} died (rc {self.p.poll()})")
        return json.loads(line)

    def ask(self, **cmd: Any) -> dict[str, Any]:
        self.p.stdin.write(json.dumps(cmd) + "\n")
        return self.read()

    def send(self, **cmd: Any) -> None:
        self.p.stdin.write(json.dumps(cmd) + "\n")

    def close(self) -> None:
        try:
            self.ask(cmd="quit")
            self.p.wait(15)
        except Exception:
            self.p.kill()
            self.p.wait(5)


def stop_process(process: subprocess.Popen[Any], signum: int = signal.SIGTERM,
                 timeout_s: float = 20.0) -> int:
    """Send ``signum`` (the program stops cleanly), SIGKILL if it has not ended within
    ``timeout_s``; its exit status."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def phase(server: Proc, clients: list[Proc], fps: float, seconds: float, latency: bool,
          settle_s: float = 0.5) -> dict[str, Any]:
    """Publish at ``fps`` (0: as fast as possible) for ``seconds``, then wait ``settle_s``
    for queued frames: what the clients got, the server's CPU and the latencies (the
    server's usage before and after under ``usage``, e.g. for its stats)."""
    c0 = [c.ask(cmd="reset", latency=latency) for c in clients]
    s0 = server.ask(cmd="usage")
    t0 = time.monotonic()
    published = server.ask(cmd="run", fps=fps, duration_s=seconds)["published"]
    time.sleep(settle_s)  # let queued frames arrive
    wall = time.monotonic() - t0
    s1 = server.ask(cmd="usage")
    c1 = [c.ask(cmd="stats") for c in clients]
    frames = sum(x["frames"] for x in c1)
    lat = np.array([v for x in c1 for v in x["latency_us"]], dtype=float) / 1000.0
    return {
        "published": published,
        "deliveries": frames,
        "wall_s": wall,
        "bytes_per_frame": sum(x["bytes"] for x in c1) / frames if frames else None,
        "server_cpu_s": s1["cpu_s"] - s0["cpu_s"],
        "server_rss_kb": s1["rss_kb"],
        "client_cpu_s": sum(b["cpu_s"] - a["cpu_s"] for a, b in zip(c0, c1)),
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "usage": (s0, s1),
    }


def run_one(sc: Scenario, bins: int, n: int, fps: float, steady_s: float, sat_s: float,
            client_procs: int) -> dict[str, Any]:
    server = Proc("-m", "benchmarks.bench_server", sc.kind, "--bins", str(bins), *sc.server_args,
                  cwd=Path(sc.checkout) if sc.checkout else _REPO)
    port = server.read()["port"]
    k = max(1, min(client_procs, n // 50 or 1))
    clients = [Proc("-m", "benchmarks.load_client") for _ in range(k)]
    try:
        time.sleep(0.3)
        u0 = server.ask(cmd="usage")
        mode = "tcp" if sc.kind == "tcp" else "ws"
        shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
        for c, share in zip(clients, shares):
            c.send(cmd="connect", port=port, path=sc.path, n=share, mode=mode)
        conn = [c.read() for c in clients]
        connected = sum(x["connected"] for x in conn)
        time.sleep(1.0)
        u_idle = server.ask(cmd="usage")

        steady = phase(server, clients, fps, steady_s, True)
        sat = phase(server, clients, 0, sat_s, False)
        d = steady["deliveries"]
        return {
            "scenario": sc.name, "kind": sc.kind, "bins": bins, "clients": n,
            "connected": connected, "fps": fps,
            "bytes_per_frame": steady["bytes_per_frame"],
            "delivered_fraction": d / (steady["published"] * connected) if connected else 0,
            "achieved_fps": steady["published"] / steady_s,
            "deliveries_per_s": d / steady["wall_s"],
            "cpu_s_per_1000": steady["server_cpu_s"] / d * 1000 if d else None,
            "server_cpu_core": steady["server_cpu_s"] / steady["wall_s"],
            "client_cpu_core": steady["client_cpu_s"] / steady["wall_s"],
            "p50_ms": steady["p50_ms"], "p99_ms": steady["p99_ms"],
            "sat_deliveries_per_s": sat["deliveries"] / sat["wall_s"],
            "sat_cpu_s_per_1000": sat["server_cpu_s"] / sat["deliveries"] * 1000
            if sat["deliveries"] else None,
            "sat_server_cpu_core": sat["server_cpu_s"] / sat["wall_s"],
            "sat_client_cpu_core": sat["client_cpu_s"] / sat["wall_s"],
            "sat_published_per_s": sat["published"] / sat["wall_s"],
            "idle_kb_per_conn": (u_idle["rss_kb"] - u0["rss_kb"]) / max(connected, 1),
            "active_kb_per_conn": (steady["server_rss_kb"] - u0["rss_kb"]) / max(connected, 1),
            "steady": steady, "saturation": sat,
        }
    finally:
        for c in clients:
            c.close()
        server.close()


def machine() -> dict[str, Any]:
    import websockets
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    try:
        from gnuradio import gr
        gr_version = gr.version()
    except ImportError:
        gr_version = "n/a"
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "websockets": websockets.__version__, "numpy": np.__version__,
            "gnuradio": gr_version}


def fmt(v: Any, nd: int = 2) -> str:
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def table(results: list[dict[str, Any]]) -> str:
    columns = ("scenario", "bins", "N", "bytes/frame", "fps sent", "delivered",
               "CPU s/1000 deliv", "server core", "client core", "p50 ms", "p99 ms",
               "sat deliv/s", "sat CPU s/1000", "idle KiB/conn", "active KiB/conn")
    head = ("| " + " | ".join(columns) + " |\n|---|"
            + "---:|" * (len(columns) - 1) + "\n")
    rows = [
        f"| {r['scenario']} | {r['bins']} | {r['connected']}/{r['clients']} | "
        f"{fmt(r['bytes_per_frame'], 0)} | {r['achieved_fps']:.1f} | {r['delivered_fraction']:.0%} | "
        f"{fmt(r['cpu_s_per_1000'], 3)} | {r['server_cpu_core']:.2f} | "
        f"{r['client_cpu_core']:.2f} | {fmt(r['p50_ms'], 1)} | {fmt(r['p99_ms'], 1)} | "
        f"{r['sat_deliveries_per_s']:.0f} | {fmt(r['sat_cpu_s_per_1000'], 3)} | "
        f"{r['idle_kb_per_conn']:.1f} | {r['active_kb_per_conn']:.1f} |"
        for r in results
    ]
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="quick mode (a few minutes)")
    parser.add_argument("--deflate-tuning", action="store_true",
                        help="only the baseline, with several permessage-deflate settings")
    parser.add_argument("--boundary", metavar="CHECKOUT",
                        help="the websockets boundary: this server against the one of "
                             "CHECKOUT (e.g. a git worktree of an earlier commit) and against "
                             "documented send() only, N = 100 and 1000, twice each")
    parser.add_argument("--clients", type=int, nargs="+", help="client counts (N)")
    parser.add_argument("--bins", type=int, nargs="+", help="bins per frame")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--steady-s", type=float, help="seconds at --fps per run")
    parser.add_argument("--saturation-s", type=float, help="seconds publishing flat out")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="load client processes (N is split between them)")
    parser.add_argument("--only", help="run only scenarios whose name contains this")
    parser.add_argument("--out", type=Path, help="results JSON (default: cache dir)")
    parser.add_argument("--frames", choices=FRAME_SOURCES, default="sim",
                        help="spectra: the simulated band (sim) or the IQ recording replayed "
                             "through gr-osmosdr's file source (iq); both via logpwrfft_c")
    args = parser.parse_args(argv)

    if args.boundary:
        scenarios, clients, bins, steady_s, sat_s = (boundary(args.boundary) * 2, [100, 1000],
                                                     [2048], 4.0, 3.0)
    elif args.deflate_tuning:
        scenarios, clients, bins, steady_s, sat_s = TUNING, [100], [2048], 4.0, 2.0
    elif args.quick:
        scenarios, clients, bins, steady_s, sat_s = QUICK, [10, 100, 1000], [2048], 4.0, 3.0
    else:
        scenarios, clients, bins, steady_s, sat_s = FULL, [10, 100, 1000], [2048, 4096], 6.0, 4.0
    clients = args.clients or clients
    bins = args.bins or bins
    steady_s = args.steady_s or steady_s
    sat_s = args.saturation_s or sat_s
    if args.only:
        scenarios = tuple(s for s in scenarios if args.only in s.name)
    mode = ("boundary" if args.boundary else "tuning" if args.deflate_tuning
            else "quick" if args.quick else "full")
    out = args.out or cache_dir() / (f"results-{mode}.json" if args.frames == "sim"
                                     else f"results-{mode}-{args.frames}.json")
    os.environ["ARGOS_BENCH_FRAMES"] = args.frames  # the server processes load these frames

    for b in bins:
        load_frames(b)  # record once, before any timing
    info = {"machine": machine(), "mode": mode, "command": " ".join(sys.argv),
            "frames": args.frames,
            "fps": args.fps, "steady_s": steady_s, "saturation_s": sat_s,
            "client_procs": args.client_procs, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "results": []}
    t_start = time.monotonic()
    for b in bins:
        for n in clients:
            for sc in scenarios:
                t0 = time.monotonic()
                r = run_one(sc, b, n, args.fps, steady_s, sat_s, args.client_procs)
                info["results"].append(r)
                print(f"[{time.monotonic() - t_start:6.0f}s] {sc.name:32s} bins={b} N={n}: "
                      f"{fmt(r['bytes_per_frame'], 0)} B/frame, "
                      f"{fmt(r['cpu_s_per_1000'], 3)} CPU s/1000, "
                      f"p50 {fmt(r['p50_ms'], 1)} ms p99 {fmt(r['p99_ms'], 1)} ms, "
                      f"sat {r['sat_deliveries_per_s']:.0f}/s, "
                      f"delivered {r['delivered_fraction']:.0%} ({time.monotonic() - t0:.0f}s)",
                      flush=True)
                out.write_text(json.dumps(info, indent=1))
    info["elapsed_s"] = time.monotonic() - t_start
    out.write_text(json.dumps(info, indent=1))
    print(table(info["results"]))
    print(f"results: {out} ({info['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
