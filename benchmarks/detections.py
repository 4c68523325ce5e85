# SPDX-License-Identifier: GPL-3.0-or-later
"""Detections: probability of detection on bursts of known frequency, length and level, false
events on noise alone, and the stage's CPU per frame.

    .venv/bin/python -m benchmarks.detections                 # ~4 min
    .venv/bin/python -m benchmarks.detections --noise-minutes 1   # quicker
    .venv/bin/python -m benchmarks.detections --parts noise --noise-minutes 60   # an hour of noise

- ``bursts``: the burst recording of ``benchmarks.every_sample`` (8 MS/s; noise plus ten
  tone bursts a second of ``--burst-us`` each, at known times, frequencies and amplitudes),
  replayed through gr-osmosdr's file source (a HackRF's code path) into the real
  ``spectrum_detector`` (peak, 2048 bins, 30 frames/s) and a vector sink; the frames then go
  through the detection stage (:class:`gr_argos.detections.SignalFinder`, the defaults). A
  burst is detected when an event starts within 1 bin of its frequency in a frame its
  samples are in. Its SNR is the level a steady tone of its amplitude reads over the median
  of its frame (the floor a person sees). The duration error of an event is its
  ``duration_s`` less the frames the burst touches times the frame period. Bursts within 8
  bins and the tracker's hold (3 frames) of another are not judged: the tracker makes them
  one event by design (a signal that blinks).
- ``noise``: ``--noise-minutes`` of fastnoise (8 MS/s, unthrottled: faster than real time)
  through the same chain and stage, run a minute of signal at a time (a new seed each, one
  detection stage across all, so memory stays at one minute's frames): the events are false
  ones, counted per hour, with the speed against real time.
- ``cpu``: the stage's CPU per frame (``time.process_time``) at 2048, 4096 and 65,536 bins.

Results: ``$ARGOS_BENCH_CACHE/detections.json`` and docs/detections.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

import numpy as np
from gnuradio import analog, blocks, gr

from benchmarks.every_sample import (FRAME_RATE, POI_SAMP_RATE, Burst,
                                     argument_parser as poi_parser,
                                     recording_bursts, recording_path, replay,
                                     steady_tone_level_db)
from benchmarks.frames import cache_dir
from gr_argos.detections import SignalFinder
from gr_argos.spectrum_detector import spectrum_detector

BINS = 2048


def events_of(frames: np.ndarray, span_hz: float, finder: SignalFinder | None = None,
              first: int = 0) -> list[dict[str, Any]]:
    """The detection events of ``frames`` (frame i at i frame periods, counted from
    ``first``), each with its frame; ``finder`` goes on from earlier frames if given."""
    period = 1.0 / FRAME_RATE
    finder = finder or SignalFinder(period)
    events = []
    for index, frame in enumerate(frames, start=first):
        for event in finder.process(frame, 0.0, span_hz, round(index * period * 1e9)):
            events.append({**event, "frame": index})
    return events


def burst_results(args: argparse.Namespace) -> dict[str, Any]:
    poi_args = poi_parser().parse_args(["poi", "--burst-us", str(args.burst_us),
                                        "--seconds", str(args.seconds),
                                        "--noise-rms", str(args.noise_rms)])
    bursts: list[Burst] = recording_bursts(poi_args)
    chain = spectrum_detector(samp_rate=POI_SAMP_RATE, bins=BINS, fps=FRAME_RATE,
                              detector="peak")
    per_frame = BINS * chain.vectors_per_frame
    lead = per_frame // 2
    frames = replay(recording_path(poi_args), chain, BINS)
    bin_hz = POI_SAMP_RATE / BINS
    starts = [e for e in events_of(frames, POI_SAMP_RATE) if e["event"] == "start"]
    ends = {e["id"]: e for e in events_of(frames, POI_SAMP_RATE) if e["event"] == "end"}
    rows = []
    placed = [((b.start + lead) // per_frame, (b.start + b.length - 1 + lead) // per_frame, b)
              for b in bursts]
    hold = SignalFinder(1.0).settings.hold_frames
    for first, last, burst in placed:
        if last >= len(frames) - 5 or any(
                other is not burst and abs(other.bin_2048 - burst.bin_2048) <= 8
                and other_first - hold - 1 <= last and first <= other_last + hold + 1
                for other_first, other_last, other in placed):
            continue  # a burst this close to another in time and frequency is its event
        centre_bin = BINS // 2 + burst.bin_2048 * BINS // 2048
        freq_hz = (centre_bin - BINS // 2) * bin_hz
        floor = float(np.median(frames[first:last + 1]))
        snr = steady_tone_level_db(burst.amplitude, BINS) - floor
        found = [e for e in starts if first <= e["frame"] <= last
                 and abs(e["center_freq_hz"] - freq_hz) <= 1.5 * bin_hz]
        row: dict[str, Any] = {"snr_db": round(snr, 2), "detected": bool(found)}
        if found:
            end = ends.get(found[0]["id"])
            row["freq_error_bins"] = round((found[0]["center_freq_hz"] - freq_hz) / bin_hz, 2)
            if end is not None:
                row["duration_error_s"] = round(end["duration_s"]
                                                - (last - first + 1) / FRAME_RATE, 4)
        rows.append(row)
    strong = [r for r in rows if r["snr_db"] >= 10.0]
    durations = [abs(r["duration_error_s"]) for r in strong if "duration_error_s" in r]
    return {
        "burst_us": args.burst_us, "burst_windows": args.burst_us * 1e-6 * POI_SAMP_RATE / BINS,
        "bursts": len(rows), "bursts_10db": len(strong),
        "detected_10db": sum(r["detected"] for r in strong),
        "probability_10db": sum(r["detected"] for r in strong) / max(1, len(strong)),
        "detected_all": sum(r["detected"] for r in rows),
        "snr_range_db": [min(r["snr_db"] for r in rows), max(r["snr_db"] for r in rows)],
        "worst_freq_error_bins": max((abs(r["freq_error_bins"]) for r in strong
                                      if "freq_error_bins" in r), default=None),
        "worst_duration_error_s": max(durations, default=None),
        "missed_snr_db": sorted(r["snr_db"] for r in strong if not r["detected"]),
    }


def noise_frames(minutes: float, seed: int) -> np.ndarray:
    """``minutes`` of fastnoise (seeded) through the real spectrum chain, unthrottled."""
    samples = int(minutes * 60 * POI_SAMP_RATE)
    top = gr.top_block("noise", catch_exceptions=False)
    source = analog.fastnoise_source_c(analog.GR_GAUSSIAN, 0.01, seed)
    chain = spectrum_detector(samp_rate=POI_SAMP_RATE, bins=BINS, fps=FRAME_RATE,
                              detector="peak")
    sink = blocks.vector_sink_f(BINS)
    top.connect(source, blocks.head(gr.sizeof_gr_complex, samples), chain, sink)
    top.run()
    return np.array(sink.data(), dtype=np.float32).reshape(-1, BINS)


def noise_results(minutes: float, chunk_minutes: float = 1.0) -> dict[str, Any]:
    """False events over ``minutes`` of noise, made a chunk at a time (see the module)."""
    finder = SignalFinder(1.0 / FRAME_RATE)
    frames = 0
    starts: list[dict[str, Any]] = []
    began = time.monotonic()
    for chunk in range(max(1, math.ceil(minutes / chunk_minutes - 1e-9))):
        made = noise_frames(min(chunk_minutes, minutes - chunk * chunk_minutes), seed=chunk + 1)
        starts += [e for e in events_of(made, POI_SAMP_RATE, finder, frames)
                   if e["event"] == "start"]
        frames += len(made)
        wall_s = time.monotonic() - began
        print(f"noise: {frames / FRAME_RATE / 60:.1f} of {minutes:g} min, {len(starts)} false "
              f"events, {frames / FRAME_RATE / wall_s:.1f}x real time", flush=True)
    hours = frames / FRAME_RATE / 3600
    wall_s = time.monotonic() - began
    return {"minutes": round(frames / FRAME_RATE / 60, 2), "frames": frames,
            "false_events": len(starts), "per_hour": round(len(starts) / hours, 2),
            "wall_s": round(wall_s, 1), "x_real_time": round(hours * 3600 / wall_s, 2),
            "first_events": [{k: e[k] for k in ("frame", "center_freq_hz", "bandwidth_hz",
                                                "snr_db")} for e in starts[:10]]}


def cpu_results() -> dict[str, float]:
    results = {}
    rng = np.random.default_rng(0)
    for bins in (2048, 4096, 65536):
        frames = (-100 + 10 * np.log10(-np.log1p(-rng.random((110, bins)) ** (1 / 130)))
                  ).astype(np.float32)
        finder = SignalFinder(1 / FRAME_RATE)
        for frame in frames[:10]:
            finder.process(frame, 100e6, 8e6, 0)
        start = time.process_time()
        for index, frame in enumerate(frames[10:]):
            finder.process(frame, 100e6, 8e6, index)
        results[str(bins)] = round((time.process_time() - start) / 100 * 1e3, 3)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst-us", type=float, default=300.0,
                        help="burst length (2048 bins at 8 MS/s: one FFT is 256 us)")
    parser.add_argument("--seconds", type=float, default=10.0, help="of the burst recording")
    parser.add_argument("--noise-minutes", type=float, default=10.0,
                        help="of noise alone (60: an hour, about 10 min on a quiet machine)")
    parser.add_argument("--parts", nargs="+", choices=("bursts", "noise", "cpu"),
                        default=["bursts", "noise", "cpu"], help="what to run (default: all)")
    parser.add_argument("--noise-rms", type=float, default=0.2,
                        help="of the burst recording's noise: 0.2 puts the bursts (amplitudes "
                             "0.03 to 0.3) at about 7 to 27 dB over the peak-detected floor")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    if "bursts" in args.parts:
        results["bursts"] = burst_results(args)
        print("bursts:", json.dumps(results["bursts"]), flush=True)
    if "noise" in args.parts:
        results["noise"] = noise_results(args.noise_minutes)
        print("noise:", json.dumps(results["noise"]), flush=True)
    if "cpu" in args.parts:
        results["cpu_ms_per_frame"] = cpu_results()
        print("cpu ms/frame:", json.dumps(results["cpu_ms_per_frame"]), flush=True)
    out = cache_dir() / "detections.json"
    out.write_text(json.dumps(results, indent=1))
    print("results in", out, "; load average", " ".join(f"{v:.1f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
