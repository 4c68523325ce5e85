# SPDX-License-Identifier: GPL-3.0-or-later
"""What CURVE costs on the publisher -> gateway link: publisher CPU and hop latency, plain vs
CURVE, 4096 bins at 30 fps with 4 gateways subscribed.

    .venv/bin/python -m benchmarks.curve                  # 3 rounds x 2 publishers x 2 modes, ~4 min
    .venv/bin/python -m benchmarks.curve --rounds 1 --seconds 10 --publishers bare

Two publishers, each run plain and with CURVE in alternation (plain, CURVE, plain, ...), so
that a change of the machine's load touches both modes alike:

  bare  ``benchmarks.gateway --role publisher``: a :class:`FramePublisher` alone, publishing
        the recorded float32 frames (16,468 B at 4096 bins) at ``--fps``, each frame's
        timestamp set just before ``publish_frame``. Its process CPU is the transport's own
        cost (the ZeroMQ I/O thread, which encrypts, included); the subscribers measure the
        hop latency: receipt time minus the frame's timestamp.
  app   ``argos-spectrum --source sim --transport zmq --bins 4096 --fps 30``: the publisher
        as deployed, a GNU Radio flowgraph (simulated band, FFT of every sample, zmq_sink).
        Its process CPU is what "the publisher costs" means on a radio host.

Each publisher binds ``tcp://127.0.0.1:0`` (CURVE runs over TCP as across a network; loopback
leaves the network out). ``--gateways`` subscriber processes (default 4) each receive with a
:class:`FrameSubscriber`, as argos-gateway's relay thread does, with an allowed key in CURVE
mode. Keys are made with ``argos-keys``' own function in a temporary directory.

Per run: publisher CPU (core, and µs per frame), frames published and received, hop latency
p50/p99/max (bare only). At the end: CURVE minus plain, as core and as a share of plain,
over the rounds. Results: ``$ARGOS_BENCH_CACHE/results-curve.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.frames import cache_dir, load_frames
from benchmarks.gateway import proc_cpu_s
from benchmarks.run import Proc, fmt, machine, stop_process

_PY = sys.executable
_REPO = Path(__file__).resolve().parent.parent
_TIMESTAMP_OFFSET = 32  # header bytes before timestamp_ns (docs/protocol.md)


# -- a gateway's receiving side ---------------------------------------------------------------

def subscriber_main(endpoint: str, secret_key: str, server_key: str) -> None:
    """A FrameSubscriber that notes each frame's latency (receipt - its timestamp); JSON
    lines on stdin/stdout: ``reset``, ``stats``, ``quit``."""
    from gr_argos.zmq_transport import FrameSubscriber

    security = {"zmq_secret_key": secret_key, "zmq_server_key": server_key} \
        if secret_key else {}
    subscriber = FrameSubscriber([endpoint], **security)
    latencies_us: list[float] = []
    heartbeat = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()

    def receive() -> None:
        while not stop.is_set():
            event = subscriber.receive(0.2)
            if event is None:
                continue
            if event[0] == "heartbeat":
                heartbeat.set()
            elif event[0] == "frame":
                sent_ns = int.from_bytes(event[2][_TIMESTAMP_OFFSET:_TIMESTAMP_OFFSET + 8],
                                         "little", signed=True)
                with lock:
                    latencies_us.append((time.time_ns() - sent_ns) / 1000.0)

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    print(json.dumps({"subscribed": heartbeat.wait(60)}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)["cmd"]
        if command == "reset":
            with lock:
                latencies_us.clear()
            answer: dict[str, Any] = {"ok": True}
        elif command == "stats":
            with lock:
                answer = {"latency_us": list(latencies_us),
                          "failures": sum(subscriber.handshake_failures.values())}
        else:
            break
        print(json.dumps(answer), flush=True)
    stop.set()
    thread.join()
    subscriber.close()
    print(json.dumps({"bye": True}), flush=True)


# -- the two publishers ---------------------------------------------------------------------------

class BarePublisher:
    """``benchmarks.gateway --role publisher`` on tcp://127.0.0.1:0."""

    def __init__(self, bins: int, security: list[str]) -> None:
        self.proc = Proc("-m", "benchmarks.gateway", "--role", "publisher", "--endpoint",
                         "tcp://127.0.0.1:0", "--bins", str(bins), *security)
        self.endpoint = self.proc.read()["endpoint"]

    def run(self, fps: float, seconds: float) -> dict[str, Any]:
        answer = self.proc.ask(cmd="run", fps=fps, duration_s=seconds)
        return {"cpu_s": answer["cpu_s"], "published": answer["published"],
                "wall_s": seconds, "frames_dropped": answer["frames_dropped"]}

    def close(self) -> None:
        self.proc.close()


class AppPublisher:
    """``argos-spectrum --source sim --transport zmq`` on tcp://127.0.0.1:0; CPU from /proc
    over the measured time, frames from its status messages (not needed: counted by the
    subscribers)."""

    def __init__(self, bins: int, fps: float, security: list[str]) -> None:
        self.process = subprocess.Popen(
            [_PY, "-u", "-m", "gr_argos.apps.spectrum", "--source", "sim", "--transport",
             "zmq", "--zmq-endpoint", "tcp://127.0.0.1:0", "--bins", str(bins), "--fps",
             str(fps), "--status-interval-s", "0", "--log-level", "warning", *security],
            cwd=_REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.endpoint = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            found = re.search(r"publishing on (tcp://\S+)", line)
            if found:
                self.endpoint = found.group(1)
                break
        if not self.endpoint:
            self.close()
            raise RuntimeError("argos-spectrum did not start publishing")

    def run(self, fps: float, seconds: float) -> dict[str, Any]:
        c0, t0 = proc_cpu_s(self.process.pid), time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        return {"cpu_s": proc_cpu_s(self.process.pid) - c0, "published": None, "wall_s": wall}

    def close(self) -> None:
        stop_process(self.process, signal.SIGINT)  # the app stops its flowgraph


def make_keys(directory: Path, gateways: int) -> dict[str, Any]:
    """The publisher's key pair, one per gateway, and the allowed directory."""
    from gr_argos.zmq_curve import generate_key_pair

    _, publisher_secret = generate_key_pair(directory / "publisher", "publisher")
    allowed = directory / "allowed"
    allowed.mkdir()
    secrets = []
    for index in range(gateways):
        public, secret = generate_key_pair(directory / "gateways", f"gateway-{index}")
        (allowed / public.name).write_bytes(public.read_bytes())
        secrets.append(str(secret))
    return {"publisher": ["--zmq-secret-key", str(publisher_secret),
                          "--zmq-allowed-keys", str(allowed)],
            "server_key": str(directory / "publisher" / "publisher.key"),
            "gateways": secrets}


def run_one(kind: str, curve: bool, keys: dict[str, Any], args: argparse.Namespace
            ) -> dict[str, Any]:
    security = keys["publisher"] if curve else []
    publisher: Any = (BarePublisher(args.bins, security) if kind == "bare"
                      else AppPublisher(args.bins, args.fps, security))
    subscribers: list[Proc] = []
    try:
        for index in range(args.gateways):
            subscribers.append(Proc(
                "-m", "benchmarks.curve", "--role", "subscriber", "--endpoint",
                publisher.endpoint, "--secret-key", keys["gateways"][index] if curve else "",
                "--server-key", keys["server_key"] if curve else ""))
        subscribed = [s.read()["subscribed"] for s in subscribers]
        if not all(subscribed):
            raise RuntimeError(f"{kind} {'CURVE' if curve else 'plain'}: a subscriber got no "
                               "heartbeat")
        time.sleep(1.0)
        for s in subscribers:
            s.ask(cmd="reset")
        result = publisher.run(args.fps, args.seconds)
        time.sleep(0.5)  # the last frames arrive
        stats = [s.ask(cmd="stats") for s in subscribers]
    finally:
        for s in subscribers:
            s.close()
        publisher.close()
    latency = np.array([v for s in stats for v in s["latency_us"]], dtype=float) / 1000.0
    received = [len(s["latency_us"]) for s in stats]
    frames = result["published"] or (min(received) if received else 0)
    return {
        "publisher": kind, "mode": "curve" if curve else "plain",
        "core": result["cpu_s"] / result["wall_s"],
        "cpu_us_per_frame": result["cpu_s"] / frames * 1e6 if frames else None,
        "published": result["published"], "received_per_gateway": received,
        "frames_dropped": result.get("frames_dropped"),
        "handshake_failures": sum(s["failures"] for s in stats),
        # the app's frame timestamps are capture times, not publish times: bare only
        "hop_p50_ms": float(np.percentile(latency, 50)) if kind == "bare" and latency.size
        else None,
        "hop_p99_ms": float(np.percentile(latency, 99)) if kind == "bare" and latency.size
        else None,
        "hop_max_ms": float(latency.max()) if kind == "bare" and latency.size else None,
        "load_1min": os.getloadavg()[0],
    }


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """CURVE minus plain per publisher: the means over rounds and each round's difference."""
    out: dict[str, Any] = {}
    for kind in sorted({r["publisher"] for r in results}):
        plain = [r for r in results if r["publisher"] == kind and r["mode"] == "plain"]
        curve = [r for r in results if r["publisher"] == kind and r["mode"] == "curve"]
        pairs = list(zip(plain, curve))
        entry: dict[str, Any] = {
            "plain_core": float(np.mean([r["core"] for r in plain])),
            "curve_core": float(np.mean([r["core"] for r in curve])),
            "extra_core_per_round": [c["core"] - p["core"] for p, c in pairs],
        }
        entry["extra_core"] = entry["curve_core"] - entry["plain_core"]
        entry["extra_percent"] = 100 * entry["extra_core"] / entry["plain_core"]
        if kind == "bare":
            entry["extra_us_per_frame"] = float(np.mean(
                [c["cpu_us_per_frame"] - p["cpu_us_per_frame"] for p, c in pairs]))
            for key in ("hop_p50_ms", "hop_p99_ms"):
                entry[key] = {"plain": [r[key] for r in plain], "curve": [r[key] for r in curve]}
            entry["extra_p99_ms"] = float(np.mean(
                [c["hop_p99_ms"] - p["hop_p99_ms"] for p, c in pairs]))
        out[kind] = entry
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("bench", "subscriber"), default="bench",
                        help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--secret-key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--server-key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--publishers", nargs="+", default=["bare", "app"],
                        choices=("bare", "app"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured per run")
    parser.add_argument("--bins", type=int, default=4096)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.role == "subscriber":
        return subscriber_main(args.endpoint, args.secret_key, args.server_key)

    load_frames(args.bins)
    out = args.out or cache_dir() / "results-curve.json"
    info: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                            "uptime_before": _uptime(), "results": []}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="argos-curve-") as directory:
        keys = make_keys(Path(directory), args.gateways)
        for round_index in range(args.rounds):
            for kind in args.publishers:
                for curve in (False, True):
                    r = run_one(kind, curve, keys, args)
                    r["round"] = round_index
                    info["results"].append(r)
                    print(f"[{time.monotonic() - t_start:5.0f}s] round {round_index} {kind:4s} "
                          f"{r['mode']:5s}: publisher {r['core']:.4f} core "
                          f"({fmt(r['cpu_us_per_frame'], 0)} µs/frame), received "
                          f"{r['received_per_gateway']}, hop p50 {fmt(r['hop_p50_ms'], 2)} ms "
                          f"p99 {fmt(r['hop_p99_ms'], 2)} ms max {fmt(r['hop_max_ms'], 1)} ms, "
                          f"load {r['load_1min']:.1f}", flush=True)
                    out.write_text(json.dumps(info, indent=1))
    info["summary"] = summary(info["results"])
    info["uptime_after"] = _uptime()
    info["elapsed_s"] = time.monotonic() - t_start
    out.write_text(json.dumps(info, indent=1))
    for kind, entry in info["summary"].items():
        line = (f"{kind}: plain {entry['plain_core']:.4f} core, CURVE {entry['curve_core']:.4f} "
                f"core: CURVE costs {entry['extra_core']:+.4f} core "
                f"({entry['extra_percent']:+.1f} % of plain; per round "
                f"{', '.join(f'{x:+.4f}' for x in entry['extra_core_per_round'])})")
        if kind == "bare":
            line += (f", {entry['extra_us_per_frame']:+.0f} µs CPU per frame "
                     f"({args.gateways} gateways); hop p99 plain "
                     f"{', '.join(fmt(x, 2) for x in entry['hop_p99_ms']['plain'])} ms, CURVE "
                     f"{', '.join(fmt(x, 2) for x in entry['hop_p99_ms']['curve'])} ms: "
                     f"{entry['extra_p99_ms']:+.2f} ms")
        print(line)
    print(f"uptime before: {info['uptime_before']}\nuptime after:  {info['uptime_after']}")
    print(f"results: {out} ({info['elapsed_s']:.0f} s)")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
