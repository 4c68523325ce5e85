# SPDX-License-Identifier: GPL-3.0-or-later
"""Real time at a HackRF's full rate: argos-spectrum on gr-osmosdr's file source at 20 MS/s,
every sample through the spectrum chain (peak, and the average as a second trace), served to
100 clients, watched for minutes.

    .venv/bin/python -m benchmarks.realtime --bins 2048 --minutes 10
    .venv/bin/python -m benchmarks.realtime --bins 4096 --minutes 10
    .venv/bin/python -m benchmarks.realtime --bins 2048 --minutes 1 --clients 10   # a quick look

The app is started as a user would: ``argos-spectrum --source file=REC --samp-rate 20e6
--bins B`` (the burst recording of benchmarks/every_sample.py, replayed with ``repeat`` and
``throttle``: the osmosdr code path of a HackRF, paced at the device's rate). A load process
(benchmarks/load_client.py) holds ``--clients`` WebSocket clients asking for uint8 frames
deflated once with both traces, as the viewer does; an observer client here reads every
frame and every ``status`` message.

Each minute the report says, and the run passes only if after the warm-up:

- the source kept real time: ``samp_rate_measured`` (GNU Radio's probe_rate on the source
  output, in every status) never below 99 % of 20 MS/s. A flowgraph that cannot keep up
  slows a throttled file source down, as a HackRF would overflow (lose samples) instead;
- ``fft_sample_fraction`` is 1.0 (every sample reached an FFT) and ``frames_skipped`` 0;
- the observer got every frame: no ``missed`` and no gap in ``sequence``;
- the load clients got ``clients x frames`` frames within 1 % (drop-oldest may drop a frame
  for a client that is descheduled; it is counted, never silent).

Results: stdout and ``$ARGOS_BENCH_CACHE/realtime-BINS.json``. Bounded: every process stops
after ``--minutes`` plus about a minute, and dies with this one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from benchmarks.every_sample import recording_path
from benchmarks.frames import cache_dir
from benchmarks.soak import _PY, _REPO, _SPECTRUM, _URL, Child, _die_with_parent, machine
from gr_argos.protocol import decode_frame, decode_message

RATE = 20e6


class Observer:
    """One client that reads every frame and status message of the app (on a thread)."""

    def __init__(self, url: str) -> None:
        self.frames = 0
        self.missed = 0
        self.gaps = 0
        self.statuses: list[dict[str, Any]] = []
        self.error: str | None = None
        self._last_sequence: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        try:
            with connect(url + "?encoding=uint8&compress=1&second_trace=1",
                         open_timeout=30, max_size=None) as ws:
                while not self._stop.is_set():
                    try:
                        message = ws.recv(timeout=1.0)
                    except TimeoutError:
                        continue
                    if isinstance(message, str):
                        body = decode_message(message)
                        if body["type"] == "status":
                            self.statuses.append({"t": time.monotonic(), **body})
                        continue
                    frame = decode_frame(message)
                    self.frames += 1
                    self.missed += frame.missed
                    if self._last_sequence is not None and (
                            frame.sequence != self._last_sequence + 1 + frame.missed):
                        self.gaps += 1
                    self._last_sequence = frame.sequence
        except Exception as exc:  # reported with the results, not raised in a thread
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def load_command(load: subprocess.Popen[str], command: dict[str, Any]) -> dict[str, Any]:
    assert load.stdin is not None and load.stdout is not None
    load.stdin.write(json.dumps(command) + "\n")
    load.stdin.flush()
    answer: dict[str, Any] = json.loads(load.stdout.readline())
    return answer


def run(args: argparse.Namespace) -> int:
    recording = recording_path()
    server_cmd = [_SPECTRUM, "--source", f"file={recording}", "--samp-rate", f"{RATE:g}",
                  "--bins", str(args.bins), "--fps", "30", "--port", "0",
                  "--max-clients", "0", "--max-clients-per-ip", "0",
                  "--max-pending-handshakes-per-ip", "0", "--log-level", "warning"]
    info: dict[str, Any] = {
        "command": " ".join([Path(_PY).name, "-m", "benchmarks.realtime", *sys.argv[1:]]),
        "server_command": " ".join(server_cmd), "bins": args.bins, "clients": args.clients,
        "minutes": args.minutes, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(), "load_average_start": os.getloadavg()}
    print(f"realtime: {' '.join(server_cmd)}", flush=True)
    server = Child(server_cmd, log=cache_dir() / f"realtime-{args.bins}-server.log")
    load = subprocess.Popen([_PY, "-m", "benchmarks.load_client"], cwd=_REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            preexec_fn=_die_with_parent)
    observer: Observer | None = None
    minutes: list[dict[str, Any]] = []
    try:
        match = server.wait_line(_URL, 120)
        if match is None:
            raise RuntimeError(f"argos-spectrum did not start (rc {server.p.poll()})")
        url = match.group(1)
        port = int(url.rsplit(":", 1)[1].strip("/"))
        connected = load_command(load, {
            "cmd": "connect", "port": port, "n": args.clients,
            "path": "/?encoding=uint8&compress=1&second_trace=1"})
        info["load_connected"] = connected
        observer = Observer(url)
        time.sleep(args.warmup_s)
        start = load_command(load, {"cmd": "reset"})
        frames0, statuses0 = observer.frames, len(observer.statuses)
        missed0, gaps0 = observer.missed, observer.gaps
        t0 = time.monotonic()
        for minute in range(1, int(args.minutes) + 1):
            while time.monotonic() < t0 + 60 * minute:
                if server.p.poll() is not None:
                    raise RuntimeError(f"the app exited (rc {server.p.returncode})")
                time.sleep(1.0)
            stats = load_command(load, {"cmd": "stats"})
            statuses = [s for s in observer.statuses[statuses0:] if s["t"] >= t0]
            rates = [s.get("samp_rate_measured", 0.0) for s in statuses]
            point = {
                "minute": minute,
                "observer_frames": observer.frames - frames0,
                "observer_missed": observer.missed - missed0,
                "observer_gaps": observer.gaps - gaps0,
                "load_frames": stats["frames"],
                "load_cpu_s": round(stats["cpu_s"] - start["cpu_s"], 1),
                "samp_rate_min": min(rates, default=0.0),
                "seconds_below_99": sum(rate < 0.99 * RATE for rate in rates),
                "seconds": len(rates),
                "samp_rate_median": statistics.median(rates) if rates else 0.0,
                "fps_min": min((s.get("fps", 0.0) for s in statuses), default=0.0),
                "fraction": sorted({s.get("fft_sample_fraction") for s in statuses},
                                   key=str),
                "frames_skipped": max((s.get("frames_skipped", 0) for s in statuses),
                                      default=0),
                "load_average": os.getloadavg()[0],
            }
            minutes.append(point)
            print(f"[{minute:2d} min] source {point['samp_rate_min'] / 1e6:6.3f} MS/s min "
                  f"({point['samp_rate_median'] / 1e6:.3f} median; "
                  f"{point['seconds_below_99']}/{point['seconds']} s below 99 %), fps min "
                  f"{point['fps_min']:5.2f}, fraction {point['fraction']}, skipped "
                  f"{point['frames_skipped']}, observer {point['observer_frames']} frames "
                  f"missed {point['observer_missed']} gaps {point['observer_gaps']}, clients "
                  f"{point['load_frames']} frames, load {point['load_average']:.1f}",
                  flush=True)
    except Exception as exc:
        info["failure"] = str(exc)
    finally:
        if observer is not None:
            observer.stop()
            info["observer_error"] = observer.error
        try:
            load_command(load, {"cmd": "quit"})
        except (OSError, ValueError):
            pass
        load.kill()
        load.wait(10)
        info["server_rc"] = server.stop(signal.SIGINT, 20)
    info["minutes_measured"] = minutes
    ok = evaluate(info, minutes, args.clients)
    out = cache_dir() / f"realtime-{args.bins}.json"
    out.write_text(json.dumps(info, indent=1))
    print(f"{'PASS' if ok else 'FAIL'}; results: {out}")
    return 0 if ok else 1


def evaluate(info: dict[str, Any], minutes: list[dict[str, Any]], clients: int) -> bool:
    if not minutes or info.get("failure") or info.get("observer_error"):
        print(f"failed: {info.get('failure') or info.get('observer_error') or 'no data'}")
        return False
    last = minutes[-1]
    expected = last["observer_frames"] * clients
    checks = {
        "source kept real time (>= 99 % of 20 MS/s)":
            min(m["samp_rate_min"] for m in minutes) >= 0.99 * RATE,
        "every sample reached an FFT": all(m["fraction"] == [1.0] for m in minutes),
        "no frame skipped by the sink": last["frames_skipped"] == 0,
        "observer: no frame missed, no gap": last["observer_missed"] == 0
        and last["observer_gaps"] == 0,
        "clients got their frames (within 1 %)":
            abs(last["load_frames"] - expected) <= 0.01 * expected,
    }
    info["checks"] = checks
    for name, passed in checks.items():
        print(f"  {'ok  ' if passed else 'FAIL'} {name}")
    return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bins", type=int, default=2048)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--warmup-s", type=float, default=10.0)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
