# SPDX-License-Identifier: GPL-3.0-or-later
"""Control of the radio by clients: how fast a retune shows, and whether a control storm
touches the watchers.

1. **Retune latency**: argos-spectrum (``--source sim``, then an IQ recording through
   gr-osmosdr's file source) and one client holding the control lease retune ``--retunes``
   times, alternately between two centres 25 bins apart. For each, the time from sending
   ``tune`` to the first frame labelled with the new centre, and whether its strongest carrier
   is where that label puts it. Target: 2 frame periods plus the source's settle time (0 for
   these two: the rotator tags the exact sample). Also: which frame after the last one the
   client had when it asked is the first with the new label (``first_new_frame_after``),
   and the frames' own pace at the client, from a frame's arrival to the next-but-one's
   (``two_frames_apart``), the same span with no retune.
2. **Control storm**: ``--watchers`` clients (a load process counting frames) watch for
   ``--phase-s`` seconds; then for as long again ``--stormers`` clients each send ``control``
   and ``tune`` messages as fast as the server's message limit lets them stay connected
   (one holds the lease and is held to max_tunes_per_s, the others are refused). The
   watchers' frames per second over 2-s windows, in both phases, and the frames the stream
   withheld because their samples span one of the holder's retunes (``frames_retuning`` of
   its status: none, since a rotator's shift takes effect at a frame's first sample; a
   device's retune costs about a frame, so that no frame is mislabelled).

    .venv/bin/python -m benchmarks.control            # ~2 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.run import Proc, cache_dir, machine
from gr_argos.protocol import SpectrumFrame, decode_frame

BINS = 2048
SAMP_RATE = 8e6
BIN_HZ = SAMP_RATE / BINS
START_HZ = 100e6
RETUNE_SPACING_S = 0.55  # max_tunes_per_s is 2 by default
STEP_BINS = 25
URL = re.compile(r"(ws://127\.0\.0\.1:\d+/)")


class App:
    """argos-spectrum in a child process, with the URL it serves."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-u", "-m", "gr_argos.apps.spectrum", "--port", "0", "--bins",
             str(BINS), "--samp-rate", str(SAMP_RATE), "--center-freq", str(START_HZ),
             "--no-detect", "--max-messages-per-s", "50", "--max-messages-burst", "50", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.p.stdout is not None
        deadline = time.monotonic() + 120
        self.url = ""
        for line in self.p.stdout:
            match = URL.search(line)
            if match:
                self.url = match.group(1)
                break
            if time.monotonic() > deadline:
                break
        if not self.url:
            self.close()
            raise RuntimeError("argos-spectrum printed no URL")
        # Keep reading its log (the audit lines of a storm): a full pipe would block the app.
        self.lines = 0
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.p.stdout is not None
        for _ in self.p.stdout:
            self.lines += 1

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    def close(self) -> None:
        self.p.terminate()
        try:
            self.p.wait(20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)


_last_text: dict[int, str] = {}


async def next_frame(ws: ClientConnection) -> SpectrumFrame:
    while True:
        message = await ws.recv()
        if isinstance(message, bytes):
            return decode_frame(message)
        if '"status"' not in message:
            _last_text[id(ws)] = message  # said if the retune never shows


async def retune_latency(url: str, carrier_hz: float, retunes: int) -> dict[str, Any]:
    """Retune ``retunes`` times; the latency of each to its first frame of the new label,
    and the frames whose strongest bin is not the carrier's under their label."""
    latencies_ms: list[float] = []
    frames_later: list[int] = []  # the first new frame is the n-th after the last one seen
    arrivals: dict[int, float] = {}  # sequence -> when it came, for the frames' own pace
    wrong = checked = 0
    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "control", "action": "acquire", "name": "bench"}))
        for _ in range(10):
            frame = await next_frame(ws)
        for index in range(retunes):
            target = START_HZ + (STEP_BINS * BIN_HZ if index % 2 == 0 else 0.0)
            last_seen = frame.sequence
            sent = time.monotonic()
            await ws.send(json.dumps({"type": "tune", "center_freq": target}))
            try:
                async with asyncio.timeout(10):
                    while True:
                        frame = await next_frame(ws)
                        arrivals[frame.sequence] = time.monotonic()
                        expected = (round((carrier_hz - frame.center_freq_hz) / BIN_HZ)
                                    + BINS // 2)
                        checked += 1
                        wrong += abs(int(np.argmax(frame.power_db)) - expected) > 1
                        if frame.center_freq_hz == target:
                            latencies_ms.append((time.monotonic() - sent) * 1000)
                            frames_later.append(frame.sequence - last_seen)
                            break
            except TimeoutError:
                raise RuntimeError(f"retune {index} to {target} Hz: no frame with that label in "
                                   f"10 s; last message: {_last_text.get(id(ws))}") from None
            # Frames at the new centre until the next retune is within the server's rate
            # limit (max_tunes_per_s: 2 a second by default), and at least 5 of them.
            after = 0
            while after < 5 or time.monotonic() - sent < RETUNE_SPACING_S:
                frame = await next_frame(ws)
                arrivals[frame.sequence] = time.monotonic()
                expected = round((carrier_hz - frame.center_freq_hz) / BIN_HZ) + BINS // 2
                checked += 1
                after += 1
                wrong += abs(int(np.argmax(frame.power_db)) - expected) > 1
    period_ms = 1000 * 130 * BINS / SAMP_RATE  # 130 FFTs a frame at 30 fps (the app's)
    # The frames' own pace at the client: from a frame's arrival to the next-but-one's.
    two_frames_ms = [1000 * (arrivals[s + 2] - arrivals[s]) for s in arrivals
                     if s + 2 in arrivals and s + 1 in arrivals]
    return {"retunes": retunes, "p50_ms": float(np.percentile(latencies_ms, 50)),
            "p99_ms": float(np.percentile(latencies_ms, 99)), "max_ms": max(latencies_ms),
            "frame_period_ms": period_ms, "target_ms": 2 * period_ms,
            "first_new_frame_after": {str(n): frames_later.count(n)
                                      for n in sorted(set(frames_later))},
            "two_frames_apart_p50_ms": float(np.percentile(two_frames_ms, 50)),
            "two_frames_apart_p99_ms": float(np.percentile(two_frames_ms, 99)),
            "frames_checked": checked, "frames_mislabelled": wrong}


async def storm(url: str, stormers: int, seconds: float) -> dict[str, int]:
    """``stormers`` clients send control and tune messages for ``seconds``; what they got."""
    answers = {"applied": 0, "refused": 0, "sent": 0}

    async def one(index: int) -> None:
        async with connect(url, max_size=None) as ws:
            async def read() -> None:
                async for message in ws:
                    if isinstance(message, str):
                        kind = json.loads(message)
                        if kind["type"] == "tuned" and index == 0:  # a broadcast
                            answers["applied"] += 1
                        elif kind["type"] == "status" and index == 0:
                            # Frames computed across a retune are withheld and counted.
                            answers.setdefault("retuning_before", kind["frames_retuning"])
                            answers["retuning_after"] = kind["frames_retuning"]
                        elif kind["type"] == "error":
                            answers["refused"] += 1
            reader = asyncio.ensure_future(read())
            end = time.monotonic() + seconds
            step = 0
            while time.monotonic() < end:
                await ws.send(json.dumps({"type": "control", "action": "acquire",
                                          "name": f"storm {index}"}))
                await ws.send(json.dumps({"type": "tune",
                                          "center_freq": START_HZ + (step % 7) * BIN_HZ}))
                answers["sent"] += 2
                step += 1
                await asyncio.sleep(0.05)  # 40 messages/s: under the app's limit of 50
            reader.cancel()

    await asyncio.gather(*(one(index) for index in range(stormers)))
    return answers


def watch_rates(watchers: Proc, seconds: float) -> list[float]:
    """The watchers' frames per second per client over 2-s windows."""
    rates = []
    last = watchers.ask(cmd="stats")["frames"]
    for _ in range(int(seconds / 2)):
        time.sleep(2.0)
        now = watchers.ask(cmd="stats")["frames"]
        rates.append((now - last) / 2.0)
        last = now
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retunes", type=int, default=60)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--stormers", type=int, default=10)
    parser.add_argument("--phase-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=cache_dir() / "results-control.json")
    args = parser.parse_args(argv)
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    results: dict[str, Any] = {"machine": machine()}
    recording = cache_dir() / "control-tone.cf32"
    if not recording.exists():
        samples = np.arange(BINS * 256)
        tone = np.exp(2j * np.pi * 300 / BINS * samples).astype(np.complex64)
        noise = (np.random.default_rng(3).standard_normal((samples.size, 2)) * 0.01)
        (tone + noise.astype(np.float32).view(np.complex64)[:, 0]).astype(
            np.complex64).tofile(recording)
    for name, source, carrier_hz in (
            ("sim", "sim", START_HZ + STRONGEST_CARRIER[0] * SAMP_RATE),
            ("file", f"file={recording}", START_HZ + 300 * BIN_HZ)):
        app = App("--source", source)
        try:
            results[f"latency_{name}"] = asyncio.run(
                retune_latency(app.url, carrier_hz, args.retunes))
        finally:
            app.close()
        print(name, json.dumps(results[f"latency_{name}"]), flush=True)

    # 100 watchers and 10 stormers from 127.0.0.1: no per-address limit here.
    app = App("--source", "sim", "--max-clients", "0", "--max-clients-per-ip", "0",
              "--max-pending-handshakes-per-ip", "0")
    watchers = Proc("-m", "benchmarks.load_client")
    try:
        connected = watchers.ask(cmd="connect", port=app.port,
                                 path="/?encoding=uint8&compress=1", n=args.watchers)
        if connected["connected"] != args.watchers:
            raise RuntimeError(f"watchers: {connected}")
        time.sleep(2.0)
        quiet = watch_rates(watchers, args.phase_s)
        loop_result: dict[str, Any] = {}

        def run_storm() -> None:
            loop_result.update(asyncio.run(storm(app.url, args.stormers, args.phase_s)))

        stormer = threading.Thread(target=run_storm)
        stormer.start()
        stormy = watch_rates(watchers, args.phase_s)
        stormer.join()
        per_client = lambda rates: [r / args.watchers for r in rates]  # noqa: E731
        results["storm"] = {
            "watchers": args.watchers, "stormers": args.stormers,
            "quiet_fps_min": min(per_client(quiet)), "quiet_fps_mean": float(np.mean(per_client(quiet))),
            "storm_fps_min": min(per_client(stormy)),
            "storm_fps_mean": float(np.mean(per_client(stormy))), "storm_messages": loop_result,
            "withheld_per_s": (loop_result.get("retuning_after", 0)
                               - loop_result.get("retuning_before", 0)) / args.phase_s}
        print("storm", json.dumps(results["storm"]), flush=True)
    finally:
        watchers.close()
        app.close()
    args.out.write_text(json.dumps(results, indent=1))
    print("results in", args.out)


if __name__ == "__main__":
    main()
