# SPDX-License-Identifier: GPL-3.0-or-later
"""Scale-out benchmark: in-process SpectrumServer vs argos-gateway (1 and 2 workers) over ZeroMQ.

    .venv/bin/python -m benchmarks.gateway                      # N = 10 100 300 600 1000, ~3 min
    .venv/bin/python -m benchmarks.gateway --clients 10 300 --setups inproc gw1

Setups (2048 bins, 30 fps, clients choose ``--path``, default ``/?encoding=uint8``):

  inproc  ``bench_server.py argos``: the real SpectrumServer with a producer thread in the
          same process (as the sink with transport "websocket").
  gw1     a publisher process (a :class:`FramePublisher` bound on ``ipc://``, publishing the
          recorded frames from ``benchmarks/frames.py`` with the timestamp patched per frame,
          as the sink with transport "zmq") and ``argos-gateway --connect ipc://... --workers 1``.
  gw2     the same with ``--workers 2`` (two processes on one port, SO_REUSEPORT).

For each setup and N: delivered fraction, p50/p99 latency (publish timestamp -> client
receipt, so the ZeroMQ hop is included), server CPU (the in-process server, or the sum over
every gateway process read from /proc), publisher CPU, load-generator CPU. It also times
``FramePublisher.publish_frame`` (µs per call and process CPU per frame), flat out and at
30 fps. Everything runs on loopback; the load generator shares the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.frames import cache_dir, load_frames
from benchmarks.run import Proc, fmt, machine, stop_process

_PY = sys.executable
_REPO = Path(__file__).resolve().parent.parent
_CLK = os.sysconf("SC_CLK_TCK")
_URL = re.compile(r"connect to ws://[^:]+:(\d+)/")
FRAME_PERIOD_MS = 1000.0 / 30.0


# -- helpers --------------------------------------------------------------------------------

def _encoded(bins: int) -> list[bytearray]:
    from gr_argos.protocol import ENCODING_FLOAT32, encode_frame
    return [bytearray(encode_frame(f, center_freq_hz=100e6, span_hz=2e6, timestamp_ns=0,
                                   sequence=0, encoding=ENCODING_FLOAT32))
            for f in load_frames(bins)]


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


# -- publisher process (the flowgraph side) -------------------------------------------------

def publisher_main(endpoint: str, bins: int, **security: str) -> None:
    """A FramePublisher fed with the recorded frames; JSON lines on stdin/stdout.
    ``security``: its CURVE settings (``zmq_secret_key``, ``zmq_allowed_keys``), if any."""
    from gr_argos.protocol import StreamInfo
    from gr_argos.zmq_transport import FramePublisher
    from benchmarks.bench_server import paced

    frames = _encoded(bins)
    pub = FramePublisher(endpoint, **security)
    pub.add_stream(StreamInfo(bins=bins, center_freq_hz=100e6, span_hz=2e6, fps=30.0))
    print(json.dumps({"endpoint": pub.endpoint}), flush=True)
    seq = 0
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "usage":
            answer: dict[str, Any] = {"cpu_s": _self_cpu(), **pub.stats()}
        elif cmd["cmd"] == "run":  # paced, timing every publish_frame call
            calls = []
            c0 = _self_cpu()
            n = 0
            for i in paced(cmd["fps"], cmd["duration_s"]):
                frame = frames[seq % len(frames)]
                struct.pack_into("<Q", frame, 16, seq)
                struct.pack_into("<q", frame, 32, time.time_ns())
                data = bytes(frame)
                t0 = time.perf_counter_ns()
                pub.publish_frame(0, data)
                calls.append(time.perf_counter_ns() - t0)
                seq += 1
                n += 1
            time.sleep(0.2)  # the ZeroMQ I/O thread finishes sending
            cpu = _self_cpu() - c0
            us = np.array(calls, dtype=float) / 1000.0
            answer = {"published": n, "cpu_s": cpu,
                      "call_us_p50": float(np.percentile(us, 50)) if n else None,
                      "call_us_p99": float(np.percentile(us, 99)) if n else None,
                      "call_us_mean": float(us.mean()) if n else None, **pub.stats()}
        elif cmd["cmd"] == "flat":  # as fast as possible: µs and CPU per publish_frame
            count = cmd["count"]
            datas = [bytes(f) for f in frames]
            s0 = pub.stats()
            c0 = _self_cpu()
            t0 = time.perf_counter()
            for i in range(count):
                pub.publish_frame(0, datas[i % len(datas)])
            wall = time.perf_counter() - t0
            time.sleep(0.3)
            cpu = _self_cpu() - c0
            s1 = pub.stats()
            answer = {"count": count, "wall_us_per_frame": wall / count * 1e6,
                      "cpu_us_per_frame": cpu / count * 1e6,
                      "sent": s1["frames_sent"] - s0["frames_sent"],
                      "dropped": s1["frames_dropped"] - s0["frames_dropped"]}
        else:
            pub.close()
            print(json.dumps({"bye": True}), flush=True)
            return
        print(json.dumps(answer), flush=True)


def drain_main(endpoint: str, seconds: float) -> None:
    """A plain subscriber that receives and counts (for the flat-out publish timing)."""
    from gr_argos.zmq_transport import FrameSubscriber
    sub = FrameSubscriber([endpoint])
    print(json.dumps({"ready": True}), flush=True)
    frames = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ev = sub.receive(0.2)
        if ev is not None and ev[0] == "frame":
            frames += 1
    sub.close()
    print(json.dumps({"frames": frames}), flush=True)


# -- the setups -----------------------------------------------------------------------------

class InProc:
    name = "in-process SpectrumServer"

    def __init__(self, bins: int) -> None:
        self.server = Proc("-m", "benchmarks.bench_server", "argos", "--bins", str(bins))
        self.port = self.server.read()["port"]

    def server_cpu(self) -> float:
        return self.server.ask(cmd="usage")["cpu_s"]

    def publisher_cpu(self) -> float:
        return 0.0  # the producer thread is inside the server process

    def run(self, fps: float, seconds: float) -> dict[str, Any]:
        return self.server.ask(cmd="run", fps=fps, duration_s=seconds)

    def close(self) -> None:
        self.server.close()


class ViaGateway:
    def __init__(self, bins: int, workers: int) -> None:
        self.name = f"argos-gateway --workers {workers}"
        self.sock = Path(tempfile.mkdtemp(prefix="argos-gw-")) / "pub.sock"
        endpoint = f"ipc://{self.sock}"
        self.pub = Proc("-m", "benchmarks.gateway", "--role", "publisher",
                        "--endpoint", endpoint, "--bins", str(bins))
        self.pub.read()
        self.gw = subprocess.Popen(
            [_PY, "-m", "gr_argos.apps.gateway", "--connect", endpoint, "--port", "0",
             "--workers", str(workers), "--max-clients", "0", "--max-clients-per-ip", "0",
             "--max-pending-handshakes", "0", "--max-pending-handshakes-per-ip", "0",
             "--log-level", "warning"],
            cwd=_REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        self.port = None
        while time.monotonic() < deadline:
            line = self.gw.stdout.readline()
            if not line:
                break
            m = _URL.search(line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.close()
            raise RuntimeError("argos-gateway did not start")
        # wait for the workers to be up (they print their own connect line)
        deadline = time.monotonic() + 20
        while len(children(self.gw.pid)) < workers - 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5 if workers > 1 else 0.3)

    def pids(self) -> list[int]:
        return [self.gw.pid, *children(self.gw.pid)]

    def server_cpu(self) -> float:
        return sum(proc_cpu_s(p) for p in self.pids())

    def publisher_cpu(self) -> float:
        return proc_cpu_s(self.pub.p.pid)

    def run(self, fps: float, seconds: float) -> dict[str, Any]:
        return self.pub.ask(cmd="run", fps=fps, duration_s=seconds)

    def close(self) -> None:
        workers = children(self.gw.pid) if self.gw.poll() is None else []
        stop_process(self.gw)
        for pid in workers:  # normally already stopped by the first process
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.pub.close()
        try:
            self.sock.unlink()
            self.sock.parent.rmdir()
        except OSError:
            pass


def run_one(setup_name: str, bins: int, n: int, fps: float, steady_s: float, path: str,
            client_procs: int) -> dict[str, Any]:
    setup: Any = InProc(bins) if setup_name == "inproc" else \
        ViaGateway(bins, int(setup_name[2:]))
    k = max(1, min(client_procs, n // 50 or 1))
    clients = [Proc("-m", "benchmarks.load_client") for _ in range(k)]
    try:
        shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
        for c, share in zip(clients, shares):
            c.send(cmd="connect", port=setup.port, path=path, n=share, mode="ws")
        connected = sum(c.read()["connected"] for c in clients)
        time.sleep(1.0)
        c0 = [c.ask(cmd="reset", latency=True) for c in clients]
        s0, p0 = setup.server_cpu(), setup.publisher_cpu()
        t0 = time.monotonic()
        pub = setup.run(fps, steady_s)
        time.sleep(0.5)
        wall = time.monotonic() - t0
        s1, p1 = setup.server_cpu(), setup.publisher_cpu()
        c1 = [c.ask(cmd="stats") for c in clients]
        frames = sum(x["frames"] for x in c1)
        lat = np.array([v for x in c1 for v in x["latency_us"]], dtype=float) / 1000.0
        server_cpu = s1 - s0
        if setup_name == "inproc":
            pub_cpu = None
        else:
            pub_cpu = p1 - p0
        published = pub["published"]
        expected = published * connected
        return {
            "setup": setup_name, "name": setup.name, "bins": bins, "clients": n,
            "connected": connected, "path": path, "published": published,
            "achieved_fps": published / steady_s, "deliveries": frames,
            "delivered_fraction": frames / expected if expected else 0.0,
            "all_delivered": connected == n and frames == expected,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
            "server_cpu_core": server_cpu / wall,
            "cpu_s_per_1000": server_cpu / frames * 1000 if frames else None,
            "publisher_cpu_core": None if pub_cpu is None else pub_cpu / wall,
            "publish_call_us_p50": pub.get("call_us_p50"),
            "publish_call_us_p99": pub.get("call_us_p99"),
            "publisher_frames_dropped": pub.get("frames_dropped"),
            "client_cpu_core": sum(b["cpu_s"] - a["cpu_s"] for a, b in zip(c0, c1)) / wall,
            "wall_s": wall,
        }
    finally:
        for c in clients:
            c.close()
        setup.close()


def publish_cost(bins: int, count: int) -> dict[str, Any]:
    """publish_frame flat out, with no subscriber and with one draining subscriber process."""
    sock = Path(tempfile.mkdtemp(prefix="argos-pub-")) / "pub.sock"
    endpoint = f"ipc://{sock}"
    pub = Proc("-m", "benchmarks.gateway", "--role", "publisher", "--endpoint", endpoint,
               "--bins", str(bins))
    drain = None
    try:
        pub.read()
        none = pub.ask(cmd="flat", count=count)
        drain = Proc("-m", "benchmarks.gateway", "--role", "drain", "--endpoint", endpoint,
                     "--seconds", "8")
        drain.read()
        time.sleep(0.5)  # subscription reaches the publisher
        one = pub.ask(cmd="flat", count=count)
        paced_run = pub.ask(cmd="run", fps=30.0, duration_s=3.0)
        fast_run = pub.ask(cmd="run", fps=1000.0, duration_s=2.0)
        got = drain.read()
        return {"no_subscriber": none, "one_subscriber": one, "paced_30fps": paced_run,
                "paced_1000fps": fast_run, "drained_frames": got["frames"]}
    finally:
        if drain is not None and drain.p.poll() is None:
            drain.p.kill()
            drain.p.wait(5)
        pub.close()
        try:
            sock.unlink()
            sock.parent.rmdir()
        except OSError:
            pass


def table(results: list[dict[str, Any]]) -> str:
    cols = ("setup", "N", "fps sent", "delivered", "p50 ms", "p99 ms", "server core",
            "CPU s/1000 deliv", "publisher core", "client core")
    out = "| " + " | ".join(cols) + " |\n|---|" + "---:|" * (len(cols) - 1) + "\n"
    for r in results:
        out += (f"| {r['name']} | {r['connected']}/{r['clients']} | {r['achieved_fps']:.1f} | "
                f"{r['delivered_fraction']:.2%} | {fmt(r['p50_ms'], 1)} | {fmt(r['p99_ms'], 1)} | "
                f"{r['server_cpu_core']:.2f} | {fmt(r['cpu_s_per_1000'], 3)} | "
                f"{fmt(r['publisher_cpu_core'], 3)} | {r['client_cpu_core']:.2f} |\n")
    return out


def capacity(results: list[dict[str, Any]]) -> dict[str, int | None]:
    """Largest N per setup with every frame delivered and p99 within one frame period."""
    best: dict[str, int | None] = {}
    for r in results:
        best.setdefault(r["name"], None)
        ok = r["all_delivered"] and r["p99_ms"] is not None and r["p99_ms"] <= FRAME_PERIOD_MS
        if ok and (best[r["name"]] is None or r["clients"] > best[r["name"]]):
            best[r["name"]] = r["clients"]
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("bench", "publisher", "drain"), default="bench",
                        help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--zmq-secret-key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--zmq-allowed-keys", default="", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=8.0, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 300, 600, 1000])
    parser.add_argument("--setups", nargs="+", default=["inproc", "gw1", "gw2"],
                        choices=("inproc", "gw1", "gw2"))
    parser.add_argument("--bins", type=int, default=2048)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--steady-s", type=float, default=5.0)
    parser.add_argument("--path", default="/?encoding=uint8", help="client URL (format)")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--publish-count", type=int, default=20000,
                        help="frames for the flat-out publish_frame timing (0: skip)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    if args.role == "publisher":
        security = {"zmq_secret_key": args.zmq_secret_key,
                    "zmq_allowed_keys": args.zmq_allowed_keys} if args.zmq_secret_key else {}
        return publisher_main(args.endpoint, args.bins, **security)
    if args.role == "drain":
        return drain_main(args.endpoint, args.seconds)

    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
                        resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    load_frames(args.bins)
    out = args.out or cache_dir() / "results-gateway.json"
    info: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv),
                            "fps": args.fps, "steady_s": args.steady_s, "path": args.path,
                            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "results": []}
    t_start = time.monotonic()
    if args.publish_count:
        info["publish_cost"] = pc = publish_cost(args.bins, args.publish_count)
        print(f"publish_frame ({args.bins} bins float32, flat out, {args.publish_count} frames): "
              f"no subscriber {pc['no_subscriber']['wall_us_per_frame']:.1f} µs wall / "
              f"{pc['no_subscriber']['cpu_us_per_frame']:.1f} µs CPU; one subscriber "
              f"{pc['one_subscriber']['wall_us_per_frame']:.1f} µs wall / "
              f"{pc['one_subscriber']['cpu_us_per_frame']:.1f} µs CPU "
              f"(sent {pc['one_subscriber']['sent']}, dropped {pc['one_subscriber']['dropped']}); "
              f"at 30 fps: call p50 {pc['paced_30fps']['call_us_p50']:.1f} µs p99 "
              f"{pc['paced_30fps']['call_us_p99']:.1f} µs, process CPU "
              f"{pc['paced_30fps']['cpu_s'] / pc['paced_30fps']['published'] * 1e6:.0f} µs/frame; "
              f"at 1000 fps: call p50 {pc['paced_1000fps']['call_us_p50']:.1f} µs, process CPU "
              f"{pc['paced_1000fps']['cpu_s'] / pc['paced_1000fps']['published'] * 1e6:.0f} µs/frame "
              f"(dropped {pc['paced_1000fps']['frames_dropped']} so far)",
              flush=True)
        out.write_text(json.dumps(info, indent=1))
    for n in args.clients:
        for s in args.setups:
            t0 = time.monotonic()
            r = run_one(s, args.bins, n, args.fps, args.steady_s, args.path, args.client_procs)
            info["results"].append(r)
            print(f"[{time.monotonic() - t_start:5.0f}s] {r['name']:28s} N={n:5d}: "
                  f"delivered {r['delivered_fraction']:.2%}, p50 {fmt(r['p50_ms'], 1)} ms "
                  f"p99 {fmt(r['p99_ms'], 1)} ms, server {r['server_cpu_core']:.2f} core "
                  f"({fmt(r['cpu_s_per_1000'], 3)} s/1000), publisher "
                  f"{fmt(r['publisher_cpu_core'], 3)} core, clients "
                  f"{r['client_cpu_core']:.2f} core ({time.monotonic() - t0:.0f}s)", flush=True)
            out.write_text(json.dumps(info, indent=1))
    info["capacity"] = capacity(info["results"])
    info["elapsed_s"] = time.monotonic() - t_start
    out.write_text(json.dumps(info, indent=1))
    print(table(info["results"]))
    print(f"largest N with every frame delivered and p99 <= {FRAME_PERIOD_MS:.1f} ms "
          f"(among those tried; the load generator shares the {os.cpu_count()} cores):")
    for name, n in info["capacity"].items():
        print(f"  {name:28s} {n if n is not None else 'none'}")
    print(f"results: {out} ({info['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
