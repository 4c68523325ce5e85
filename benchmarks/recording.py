# SPDX-License-Identifier: GPL-3.0-or-later
"""Recording: what the recorder costs, and whether it ever delays publishing.

    .venv/bin/python -m benchmarks.recording                      # ~2 min
    .venv/bin/python -m benchmarks.recording --seconds 20         # quicker

A producer thread publishes 4096-bin float32 frames (the ``sim`` frames of
``benchmarks.frames``, recorded once through GNU Radio's FFT chain) at 30 frames/s to a real
``SpectrumServer`` with one client connected, as a sink's ``work()`` would, in two runs of
``--seconds`` each:

- ``off``: no recording;
- ``on``: ``record_dir`` on ``--dir`` (default: a temporary directory under /var/tmp, on
  disk), ``record_encoding`` uint8, ``record_compress`` on, the default fsync every second.

Per run: the recorder thread's CPU (utime + stime of its task in /proc, over the run) as a
share of one core; the time each ``publish_frame`` call took (what the producer, the radio's
thread, waits: mean, p99, max); the client's frames (every one received?) and its latency
(publish to receipt); the recorder's counts (frames written, dropped, bytes per frame); and
``uptime``'s load before and after. Results: ``$ARGOS_BENCH_CACHE/recording.json`` and
docs/performance.md, "Recording".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import connect

from benchmarks.frames import cache_dir, load_frames
from gr_argos.protocol import StreamInfo, encode_frame
from gr_argos.server import ServerConfig, SpectrumServer

BINS = 4096
FPS = 30.0


def thread_cpu_s(native_id: int) -> float:
    """utime + stime of one thread of this process, in seconds."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def receive(url: str, stop: asyncio.Event, latencies: list[float],
                  sequences: list[int]) -> None:
    async with connect(url, max_size=None) as ws:
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            if isinstance(message, bytes):
                sent_ns = int.from_bytes(message[32:40], "little", signed=True)
                latencies.append((time.time_ns() - sent_ns) / 1e6)
                sequences.append(int.from_bytes(message[16:24], "little"))


def run(record_dir: str, seconds: float, frames: np.ndarray, encoding: str = "uint8",
        compress: bool = True) -> dict[str, Any]:
    config = ServerConfig(port=0, record_dir=record_dir, record_encoding=encoding,
                          record_compress=compress)
    server = SpectrumServer(config)
    server.add_stream(StreamInfo(stream_id=0, bins=BINS, center_freq_hz=100e6, span_hz=8e6,
                                 fps=FPS))
    server.start()
    publish_s: list[float] = []
    latencies: list[float] = []
    sequences: list[int] = []
    load_before = uptime()
    try:
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        receiver = threading.Thread(target=loop.run_until_complete, args=(
            receive(server.url, stop, latencies, sequences),), daemon=True)
        receiver.start()
        time.sleep(1.0)
        recorder = server.recorder
        recorder_thread = next((t for t in threading.enumerate()
                                if t.name == "argos-recorder"), None)
        cpu_before = (thread_cpu_s(recorder_thread.native_id)  # type: ignore[arg-type]
                      if recorder_thread else 0.0)
        started = time.monotonic()
        count = round(seconds * FPS)
        for sequence in range(count):
            due = started + sequence / FPS
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            data = encode_frame(frames[sequence % len(frames)], center_freq_hz=100e6,
                                span_hz=8e6, timestamp_ns=time.time_ns(), sequence=sequence)
            before = time.perf_counter()
            server.publish_frame(0, data)
            publish_s.append(time.perf_counter() - before)
        wall_s = time.monotonic() - started
        cpu_s = (thread_cpu_s(recorder_thread.native_id)  # type: ignore[arg-type]
                 - cpu_before) if recorder_thread else 0.0
        time.sleep(1.0)
        status = recorder.status() if recorder else None
        loop.call_soon_threadsafe(stop.set)
        receiver.join(10)
    finally:
        server.stop()
    publish_us = np.array(publish_s) * 1e6
    result: dict[str, Any] = {
        "recording": bool(record_dir) and config.record_encoding
        + ("+deflate" if config.record_compress else ""), "frames": count, "wall_s": round(wall_s, 2),
        "publish_us": {"mean": round(float(publish_us.mean()), 1),
                       "p99": round(float(np.percentile(publish_us, 99)), 1),
                       "max": round(float(publish_us.max()), 1)},
        "client_frames": len(sequences),
        "client_missing": count - len(set(sequences)),
        "client_latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 2),
                              "p99": round(float(np.percentile(latencies, 99)), 2)},
        "load_before": load_before, "load_after": uptime(),
    }
    if status is not None:
        result["recorder"] = {
            "cpu_share_of_a_core": round(cpu_s / wall_s, 4),
            "frames_written": status["frames"], "dropped_frames": status["dropped_frames"],
            "bytes_per_frame": round(status["bytes"] / max(1, status["frames"]), 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--encoding", default="uint8", choices=("float32", "int16", "uint8"))
    parser.add_argument("--no-compress", dest="compress", action="store_false")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to record (default: a temporary directory in /var/tmp)")
    args = parser.parse_args()
    frames = load_frames(BINS)
    results = []
    with tempfile.TemporaryDirectory(dir=args.dir or "/var/tmp") as directory:
        for record_dir in ("", directory):
            result = run(record_dir, args.seconds, frames, args.encoding, args.compress)
            print(json.dumps(result), flush=True)
            results.append(result)
    out = cache_dir() / "recording.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
