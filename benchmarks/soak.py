# SPDX-License-Identifier: GPL-3.0-or-later
"""Soak test: the real ``argos-spectrum --source sim`` under 100 clients that keep coming and
going, watched for leaks (RSS, file descriptors, threads, asyncio tasks).

    .venv/bin/python -m benchmarks.soak --minutes 10        # the documented run (~11 min)
    .venv/bin/python -m benchmarks.soak --minutes 2 --warmup-minutes 0.5

Three processes: this one (the sampler), the server under test (``argos-spectrum --source sim
--port 0 --fps 30`` with the client limits lifted, since every client comes from 127.0.0.1)
and one load process (``--role load``: lean asyncio clients reusing ``load_client.WsClient``).
Each of the ``--clients`` slots connects, stays a random 1-10 s and leaves: most by a clean
close handshake, some by an abrupt socket close (RST), some in the middle of the WebSocket
handshake; then it reconnects, so about ``--clients`` connections exist at any time.

Every ``--sample-s`` seconds the sampler reads the server's RSS (/proc/PID/status), open fds
(/proc/PID/fd), threads (/proc/PID/task) and scrapes /metrics (``argos_event_loop_tasks``,
clients, frames). Before the load starts and after it ends (once the server has settled)
it takes an idle sample too. Criteria, measured after the warm-up:

- RSS growth (mean of the last 3 samples - mean of the first 3 after warm-up) < 5 MB;
- fds, tasks: the same growth within ``--tolerance`` (the instantaneous population moves by a
  few connections), and the idle server after the load has no more fds and tasks than the idle
  server before it;
- threads: no growth after warm-up;
- the server stays up and fewer than 1 % of connection attempts fail.

Results: a summary on stdout and ``$ARGOS_BENCH_CACHE/soak.json`` (default
/tmp/gr-argos-bench/soak.json). Exit status 1 if a criterion fails. Bounded: the load stops
after ``--minutes``; start, settle and stop add at most about two minutes; every process
started is stopped (and dies with this one, via PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.frames import cache_dir
from benchmarks.load_client import Counters, WsClient, upgrade_request

_PY = sys.executable
_REPO = Path(__file__).resolve().parent.parent
_SPECTRUM = str(Path(_PY).with_name("argos-spectrum"))
_PATHS = ("/", "/?encoding=uint8", "/?encoding=int16", "/?encoding=uint8&compress=1")
_CLOSE_1000 = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # masked (zero mask) close frame, code 1000
_URL = re.compile(r"connect to (wss?://\S+)")


# -- load process ----------------------------------------------------------------------------

class SoakClient(WsClient):
    """A load_client.WsClient that also reports when its connection is gone."""

    def __init__(self, counters: Counters, request: bytes, ready: asyncio.Future[bool],
                 lost: asyncio.Future[None]) -> None:
        super().__init__(counters, request, "ws", ready)
        self.lost = lost

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


class Load:
    def __init__(self, port: int, clients: int, seconds: float, seed: int) -> None:
        self.port = port
        self.clients = clients
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.counters = Counters()
        self.attempts = 0
        self.sessions = 0          # handshakes completed (101)
        self.open_now = 0
        self.disconnects = {"clean": 0, "abrupt": 0, "mid_handshake": 0}
        self.errors: dict[str, int] = {}
        self.transports: set[Any] = set()

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def stats(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "sessions": self.sessions, "open": self.open_now,
                "frames": self.counters.frames, "bytes": self.counters.bytes,
                "disconnects": dict(self.disconnects), "errors": dict(self.errors),
                "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}

    async def mid_handshake(self, loop: asyncio.AbstractEventLoop) -> None:
        request = upgrade_request(self.port, self.rng.choice(_PATHS))
        cut = self.rng.randrange(0, len(request) - 4)  # 0: TCP connect, nothing sent
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", self.port)
        self.transports.add(transport)
        try:
            if cut:
                transport.write(request[:cut])
            await asyncio.sleep(self.rng.uniform(0.0, 0.5))
        finally:
            transport.abort()
            self.transports.discard(transport)
        self.disconnects["mid_handshake"] += 1

    async def session(self, loop: asyncio.AbstractEventLoop, clean: bool) -> None:
        ready: asyncio.Future[bool] = loop.create_future()
        lost: asyncio.Future[None] = loop.create_future()
        request = upgrade_request(self.port, self.rng.choice(_PATHS))
        transport, _ = await loop.create_connection(
            lambda: SoakClient(self.counters, request, ready, lost), "127.0.0.1", self.port)
        self.transports.add(transport)
        try:
            try:
                ok = await asyncio.wait_for(asyncio.shield(ready), 20)
            except asyncio.TimeoutError:
                self.error("handshake_timeout")
                return
            if not ok:
                self.error("handshake_refused")
                return
            self.sessions += 1
            self.open_now += 1
            try:
                done, _ = await asyncio.wait([lost], timeout=self.rng.uniform(1.0, 10.0))
                if done:
                    self.error("closed_by_server")
                    return
                if clean:
                    transport.write(_CLOSE_1000)
                    done, _ = await asyncio.wait([lost], timeout=10)
                    if not done:
                        self.error("close_timeout")
                        return
                    self.disconnects["clean"] += 1
                else:
                    transport.abort()
                    self.disconnects["abrupt"] += 1
            finally:
                self.open_now -= 1
        finally:
            transport.abort()
            self.transports.discard(transport)

    async def slot(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            self.attempts += 1
            kind = self.rng.random()
            try:
                if kind < 0.10:
                    await self.mid_handshake(loop)
                else:
                    await self.session(loop, clean=kind >= 0.35)  # 65 % clean, 25 % abrupt
            except OSError as exc:
                self.error(f"connect_{type(exc).__name__}")
                await asyncio.sleep(0.5)
            await asyncio.sleep(self.rng.uniform(0.0, 0.2))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds

        async def report() -> None:
            while True:
                print(json.dumps(self.stats()), flush=True)
                await asyncio.sleep(2.0)

        reporter = asyncio.create_task(report())
        slots = [asyncio.create_task(self.slot(deadline)) for _ in range(self.clients)]
        # Each slot ends its current connection at most ~20 s after the deadline; then cut.
        await asyncio.wait(slots, timeout=max(0.0, deadline - loop.time()) + 25)
        for task in (*slots, reporter):
            task.cancel()
        await asyncio.gather(*slots, reporter, return_exceptions=True)
        for transport in list(self.transports):
            transport.abort()
        print(json.dumps({**self.stats(), "final": True}), flush=True)


def run_load(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    asyncio.run(Load(args.port, args.clients, args.seconds, args.seed).run())


# -- sampler (main process) ------------------------------------------------------------------

def _die_with_parent() -> None:
    try:  # PR_SET_PDEATHSIG = 1: SIGKILL this child if the soak process dies
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _scrape(port: int) -> dict[str, float]:
    wanted = {"argos_event_loop_tasks", "argos_clients_connected", "argos_clients_total",
              "argos_frames_in_total", "argos_frames_sent_total", "argos_bytes_sent_total",
              "argos_queue_depth"}
    found: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            name, _, rest = line.partition(" ")
            if name in wanted:
                found[name] = float(rest)
            elif name.startswith("argos_frames_dropped_total{"):
                key = "dropped_" + name.split('"')[1]
                found[key] = float(rest)
    return found


def sample(pid: int, port: int, t0: float) -> dict[str, Any]:
    point: dict[str, Any] = {
        "t_s": round(time.monotonic() - t0, 1),
        "rss_kb": _rss_kb(pid),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
    }
    try:
        metrics = _scrape(port)
        point["tasks"] = int(metrics.get("argos_event_loop_tasks", -1))
        point["metrics"] = metrics
    except OSError as exc:
        point["tasks"] = None
        point["scrape_error"] = str(exc)
    return point


class Child:
    """A child process whose stdout lines are read by a thread (the last JSON one kept)."""

    def __init__(self, args: list[str], log: Path | None = None) -> None:
        self.lines: list[str] = []
        self.last: dict[str, Any] = {}
        self.log = open(log, "w") if log else subprocess.DEVNULL
        self.p = subprocess.Popen(args, cwd=_REPO, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=self.log, text=True,
                                  bufsize=1, preexec_fn=_die_with_parent)
        self.seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.p.stdout:
            with self.seen:
                self.lines.append(line.rstrip("\n"))
                if line.startswith("{"):
                    try:
                        self.last = json.loads(line)
                    except ValueError:
                        pass
                self.seen.notify_all()

    def wait_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        with self.seen:
            while True:
                for line in self.lines:
                    if match := pattern.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or self.p.poll() is not None:
                    return None
                self.seen.wait(min(left, 0.5))

    def stop(self, sig: int = signal.SIGINT, grace_s: float = 20.0) -> int | None:
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                self.p.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        if self.log is not subprocess.DEVNULL:
            self.log.close()
        return self.p.returncode


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def summarize(name: str, points: list[dict[str, Any]]) -> dict[str, Any]:
    values = [p[name] for p in points if p.get(name) is not None]
    if not values:
        return {}
    return {"first": values[0], "last": values[-1], "min": min(values), "max": max(values),
            "growth": _mean(values[-3:]) - _mean(values[:3])}


def _slope_per_min(points: list[dict[str, Any]], name: str) -> float | None:
    xs = [p["t_s"] / 60 for p in points]
    ys = [p[name] for p in points]
    if len(xs) < 3:
        return None
    mx, my = _mean(xs), _mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else None


def machine() -> dict[str, Any]:
    from benchmarks.run import machine as bench_machine
    info = bench_machine()
    info["loadavg"] = os.getloadavg()
    return info


def run_soak(args: argparse.Namespace) -> int:
    out = args.out or cache_dir() / "soak.json"
    load_s = args.minutes * 60
    warmup_s = min(args.warmup_minutes * 60, load_s / 5)
    server_cmd = [_SPECTRUM, "--source", "sim", "--port", "0", "--fps", str(args.fps),
                  "--max-clients", "0", "--max-clients-per-ip", "0", "--max-pending-handshakes", "0",
                  "--max-pending-handshakes-per-ip", "0", "--log-level", "warning",
                  *args.server_arg]
    info: dict[str, Any] = {
        "command": " ".join([Path(_PY).name, "-m", "benchmarks.soak", *sys.argv[1:]]),
        "server_command": " ".join(server_cmd), "clients": args.clients, "fps": args.fps,
        "minutes": args.minutes, "warmup_s": warmup_s, "sample_s": args.sample_s,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine()}
    print(f"soak: {args.minutes:g} min, {args.clients} clients, {args.fps:g} fps, warm-up "
          f"{warmup_s:.0f} s; server: {' '.join(server_cmd)}", flush=True)
    server = Child(server_cmd, log=cache_dir() / "soak-server.log")
    load: Child | None = None
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    points: list[dict[str, Any]] = []
    try:
        match = server.wait_line(_URL, 120)
        if match is None:
            raise RuntimeError(f"argos-spectrum did not print its URL (rc {server.p.poll()}); "
                               f"see {cache_dir() / 'soak-server.log'}")
        port = int(match.group(1).rsplit(":", 1)[1].strip("/"))
        pid = server.p.pid
        time.sleep(5.0)  # the flowgraph is up and publishing
        t0 = time.monotonic()
        info["idle_before"] = sample(pid, port, t0)
        load = Child([_PY, "-m", "benchmarks.soak", "--role", "load", "--port", str(port),
                      "--clients", str(args.clients), "--seconds", str(load_s),
                      "--seed", str(args.seed)])
        t_load = time.monotonic()
        next_at = t_load + args.sample_s
        while time.monotonic() < t_load + load_s:
            time.sleep(max(0.0, min(next_at, t_load + load_s) - time.monotonic()))
            if server.p.poll() is not None:
                raise RuntimeError(f"the server exited (rc {server.p.returncode})")
            if time.monotonic() >= next_at:
                point = sample(pid, port, t_load)
                point["load"] = {k: load.last.get(k) for k in ("open", "sessions", "frames")}
                points.append(point)
                print(f"[{point['t_s']:6.0f}s] rss {point['rss_kb'] / 1024:7.1f} MB  fds "
                      f"{point['fds']:4d}  threads {point['threads']:3d}  tasks "
                      f"{point['tasks']}  clients "
                      f"{int(point.get('metrics', {}).get('argos_clients_connected', -1)):3d}"
                      f"  sessions {load.last.get('sessions', 0)}", flush=True)
                next_at += args.sample_s
        load.p.wait(60)  # the load stops its slots and prints its final line
        # Settle: every connection gone, fds and tasks back to the idle level (or a deadline).
        before = info["idle_before"]
        deadline = time.monotonic() + args.settle_s
        while True:
            after = sample(pid, port, t_load)
            settled = (after.get("metrics", {}).get("argos_clients_connected") == 0
                       and after["fds"] <= before["fds"]
                       and (after["tasks"] or 0) <= (before["tasks"] or 0))
            if settled or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        info["idle_after"] = after
        info["server_alive"] = server.p.poll() is None
    except KeyboardInterrupt:
        info["interrupted"] = True
        info["server_alive"] = server.p.poll() is None
    except Exception as exc:
        info["failure"] = str(exc)
        info["server_alive"] = server.p.poll() is None
    finally:
        if load is not None:
            load.stop(signal.SIGTERM, 10)
        info["server_rc"] = server.stop(signal.SIGINT, 20)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    info["load"] = load.last if load is not None else {}
    info["samples"] = points
    ok = evaluate(info, points, warmup_s, args.tolerance)
    info["elapsed_s"] = round(time.monotonic() - t0, 1) if "idle_before" in info else None
    out.write_text(json.dumps(info, indent=1))
    print(f"results: {out}")
    return 0 if ok else 1


def evaluate(info: dict[str, Any], points: list[dict[str, Any]], warmup_s: float,
             tolerance: int) -> bool:
    steady = [p for p in points if p["t_s"] >= warmup_s]
    stats = {name: summarize(name, steady) for name in ("rss_kb", "fds", "threads", "tasks")}
    info["after_warmup"] = stats
    info["rss_slope_kb_per_min"] = _slope_per_min(steady, "rss_kb")
    load = info.get("load", {})
    errors = sum(load.get("errors", {}).values())
    attempts = load.get("attempts", 0)
    before, after = info.get("idle_before", {}), info.get("idle_after", {})
    metrics_end = points[-1].get("metrics", {}) if points else {}
    criteria: dict[str, tuple[bool, str]] = {}
    enough = len(steady) >= 3 and not info.get("failure") and not info.get("interrupted")
    criteria["completed"] = (enough and bool(info.get("server_alive")),
                             f"{len(steady)} samples after warm-up, server "
                             f"{'up' if info.get('server_alive') else 'DOWN'}"
                             + (f", {info['failure']}" if info.get("failure") else ""))
    if stats["rss_kb"]:
        growth_mb = stats["rss_kb"]["growth"] / 1024
        criteria["rss"] = (growth_mb < 5.0,
                           f"growth {growth_mb:+.2f} MB (< 5 MB), slope "
                           f"{(info['rss_slope_kb_per_min'] or 0) / 1024:+.3f} MB/min, "
                           f"{stats['rss_kb']['min'] / 1024:.1f}..{stats['rss_kb']['max'] / 1024:.1f} MB")
    for name, slack in (("fds", tolerance), ("tasks", tolerance), ("threads", 0)):
        s = stats[name]
        if not s:
            criteria[name] = (False, "not sampled")
            continue
        ok = s["growth"] <= slack
        text = (f"first {s['first']} last {s['last']} min {s['min']} max {s['max']}, "
                f"growth {s['growth']:+.1f} (<= {slack})")
        if name != "threads" and before.get(name) is not None and after.get(name) is not None:
            ok = ok and after[name] <= before[name]
            text += f"; idle before/after the load {before[name]}/{after[name]}"
        elif before.get(name) is not None and after.get(name) is not None:
            text += f"; idle before/after the load {before[name]}/{after[name]}"
        criteria[name] = (ok, text)
    criteria["errors"] = (attempts > 0 and errors <= 0.01 * attempts,
                          f"{errors} of {attempts} connection attempts "
                          f"({load.get('errors', {})})")
    info["criteria"] = {k: {"pass": v[0], "detail": v[1]} for k, v in criteria.items()}
    info["totals"] = {
        "attempts": attempts, "sessions": load.get("sessions"),
        "disconnects": load.get("disconnects"), "frames_received": load.get("frames"),
        "server_frames_sent": metrics_end.get("argos_frames_sent_total"),
        "server_frames_in": metrics_end.get("argos_frames_in_total"),
        "server_clients_total": metrics_end.get("argos_clients_total"),
        "dropped_client_queue": metrics_end.get("dropped_client_queue"),
        "dropped_ingress": metrics_end.get("dropped_ingress"),
        "load_cpu_s": load.get("cpu_s")}
    print("\nsoak summary")
    for key, val in info["totals"].items():
        print(f"  {key:22s} {val}")
    for key, (passed, detail) in criteria.items():
        print(f"  {'PASS' if passed else 'FAIL'} {key:9s} {detail}")
    return all(passed for passed, _ in criteria.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=2.0,
                        help="samples before this are not judged (at most 1/5 of the run)")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--settle-s", type=float, default=30.0,
                        help="after the load, wait at most this for the server to go idle")
    parser.add_argument("--tolerance", type=int, default=10,
                        help="fds/tasks growth allowed for the moving population")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra argos-spectrum argument (repeat; e.g. --server-arg=--samp-rate=2e6)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="results JSON (default: cache dir)")
    parser.add_argument("--role", choices=("soak", "load"), default="soak", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "load":
        run_load(args)
        return 0
    return run_soak(args)


if __name__ == "__main__":
    sys.exit(main())
