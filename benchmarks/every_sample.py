# SPDX-License-Identifier: GPL-3.0-or-later
"""Every-sample spectra: probability of intercept and CPU of ``spectrum_detector``.

Three measurements, each a subcommand (``all`` runs them in turn):

- ``poi``: probability of intercept. A raw complex64 IQ recording (8 MS/s, noise plus tone
  bursts of known start, length, frequency and level) is written once to the cache
  directory, replayed through gr-osmosdr's file source (``file=PATH,rate=8e6,repeat=false,
  throttle=true``: the code path of a HackRF) into the block and a vector sink. A burst
  counts as seen when a frame whose period it overlaps shows, within +-1 bin of its
  frequency, a level within 1 dB of what a steady tone of its amplitude reads.
- ``cpu``: process CPU time (``getrusage``, user + system) of the chain after the source:
  fastnoise -> throttle (20 MS/s) -> chain, minus fastnoise -> throttle -> null sink measured
  the same way; and unthrottled (fastnoise -> head -> chain, minus fastnoise -> head -> null),
  giving CPU seconds per million samples and the rate the whole flowgraph reached.
- ``threads``: where the CPU goes inside the chain at 20 MS/s: CPU time of each GNU Radio
  thread (one per block, named after it) from /proc/self/task, for each detector.
- ``designs``: the same throttled measurement for ways of reducing a frame period of FFTs
  (Python decim_block, stream_to_vector + Python, GNU Radio's integrate_ff, deinterleave +
  max_ff), with the Python forecast() calls per second that explain the difference.

Every CPU figure is the median of ``--repeats`` runs with the spread (min-max); the machine
may be shared, so CPU time, not wall time, is what counts. Results go to
``$ARGOS_BENCH_CACHE/every_sample.json`` (default /tmp/gr-argos-bench).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from gnuradio import analog, blocks, fft, gr
from gnuradio.fft import logpwrfft
from gnuradio.fft import window as fft_window

from benchmarks.frames import cache_dir
from gr_argos.spectrum_detector import spectrum_detector

POI_SAMP_RATE = 8e6
FRAME_RATE = 30.0


# -- probability of intercept -----------------------------------------------------------------

@dataclass(frozen=True)
class Burst:
    """One tone burst in the recording."""

    start: int  # first sample
    length: int  # samples
    bin_2048: int  # frequency as a bin offset from DC of a 2048-point FFT (even)
    amplitude: float


def make_bursts(seconds: float, rate_hz: float, length: int, seed: int) -> list[Burst]:
    """``rate_hz`` bursts a second, one at a random time in each slot of 1 / rate_hz s,
    at an even 2048-bin offset (a bin centre of 1024-, 2048- and 4096-point FFTs) and an
    amplitude between 0.03 and 0.3."""
    rng = np.random.default_rng(seed)
    slot = int(POI_SAMP_RATE / rate_hz)
    bursts = []
    for index in range(int(seconds * rate_hz)):
        start = index * slot + int(rng.integers(0, slot - length))
        bin_2048 = 2 * int(rng.integers(50, 450)) * int(rng.choice([-1, 1]))
        bursts.append(Burst(start, length, bin_2048, float(rng.uniform(0.03, 0.3))))
    return bursts


def write_recording(path: Path, seconds: float, bursts: list[Burst], noise_rms: float,
                    seed: int) -> None:
    """Complex64 noise of total power noise_rms^2 with the bursts added, written in 1 s
    chunks (the whole recording does not fit comfortably in memory)."""
    rng = np.random.default_rng(seed + 1)
    chunk = int(POI_SAMP_RATE)
    with path.open("wb") as out:
        for first in range(0, int(seconds * POI_SAMP_RATE), chunk):
            samples = (rng.standard_normal(chunk) + 1j * rng.standard_normal(chunk)) * (
                noise_rms / math.sqrt(2))
            for burst in bursts:
                lo, hi = max(burst.start, first), min(burst.start + burst.length, first + chunk)
                if lo < hi:
                    n = np.arange(lo, hi)
                    samples[lo - first:hi - first] += burst.amplitude * np.exp(
                        2j * np.pi * burst.bin_2048 / 2048 * n)
            samples.astype(np.complex64).tofile(out)


def steady_tone_level_db(amplitude: float, bins: int, window: str = "blackmanharris") -> float:
    """What a steady tone of ``amplitude`` on a bin centre reads (logpwrfft scaling,
    ref_scale 2): 20*log10(amplitude) minus the window's noise bandwidth in dB."""
    taps = np.array(getattr(fft_window, window)(bins))
    return 20 * math.log10(amplitude) - 10 * math.log10(bins * np.sum(taps ** 2)
                                                         / np.sum(taps) ** 2)


def window_loss_db(bins: int, hop: int, window: str = "blackmanharris") -> float:
    """Worst level loss of a burst exactly one window long when FFTs start every ``hop``
    samples: the best FFT misses hop / 2 samples of it."""
    taps = np.array(getattr(fft_window, window)(bins))
    return 20 * math.log10(np.sum(taps[hop // 2:]) / np.sum(taps))


def replay(path: Path, chain: Any, bins: int) -> np.ndarray:
    """Frames from the recording through osmosdr's file source and ``chain``."""
    import osmosdr

    top = gr.top_block("poi", catch_exceptions=False)
    source = osmosdr.source(f"file={path},rate={POI_SAMP_RATE:g},repeat=false,throttle=true")
    source.set_sample_rate(POI_SAMP_RATE)
    sink = blocks.vector_sink_f(bins)
    top.connect(source, chain, sink)
    top.run()
    return np.array(sink.data(), dtype=np.float32).reshape(-1, bins)


def intercepts(frames: np.ndarray, bursts: list[Burst], bins: int, samples_per_frame: int,
               lead: int) -> tuple[int, int, int, list[float]]:
    """(bursts seen within 1 dB, bursts that show at all, bursts judged, level error of each
    judged burst in dB).

    Frame i covers samples [i M - lead, (i + 1) M - lead), M = ``samples_per_frame``. A
    burst's reading is its best value (+-1 bin, any frame it overlaps); its level error is
    that minus a steady tone's level. It shows when the reading is 10 dB or more over the
    median of its frame (the noise floor). Bursts past the last frame, or sharing a frame
    with another burst within 2 bins (the stronger would set the reading), are not judged.
    """
    placed = []
    for burst in bursts:
        first = (burst.start + lead) // samples_per_frame
        last = (burst.start + burst.length - 1 + lead) // samples_per_frame
        placed.append((first, last, bins // 2 + burst.bin_2048 * bins // 2048, burst))
    seen, shows, judged, errors = 0, 0, 0, []
    for first, last, centre, burst in placed:
        if last >= len(frames) or any(
                other is not burst and other_first <= last and first <= other_last
                and abs(other_centre - centre) <= 2
                for other_first, other_last, other_centre, other in placed):
            continue
        covering = frames[first:last + 1]
        readings = covering[:, centre - 1:centre + 2].max(axis=1)
        error = float(readings.max()) - steady_tone_level_db(burst.amplitude, bins)
        judged += 1
        errors.append(error)
        seen += abs(error) <= 1.0
        shows += bool(np.any(readings - np.median(covering, axis=1) >= 10.0))
    return seen, shows, judged, errors


def recording_path(args: argparse.Namespace | None = None) -> Path:
    """The burst recording for ``args`` (default: the default arguments), written if new."""
    if args is None:
        args = argument_parser().parse_args(["poi"])
    noise = "" if args.noise_rms == 0.003 else f"-noise{args.noise_rms:g}"
    path = cache_dir() / (f"bursts-{args.seconds:g}s-{args.burst_us:g}us-"
                          f"{args.burst_rate:g}Hz-{args.seed}{noise}.cf32")
    if not path.exists():
        print(f"writing {path} ({args.seconds:g} s at 8 MS/s)", flush=True)
        write_recording(path, args.seconds, recording_bursts(args), args.noise_rms, args.seed)
    return path


def recording_bursts(args: argparse.Namespace) -> list[Burst]:
    length = round(args.burst_us * 1e-6 * POI_SAMP_RATE)
    return make_bursts(args.seconds, args.burst_rate, length, args.seed)


def run_poi(args: argparse.Namespace) -> list[dict[str, Any]]:
    bursts = recording_bursts(args)
    length = bursts[0].length
    path = recording_path(args)
    results = []
    for bins in args.bins:
        for detector, overlap in (("peak", 0.0), ("peak", 0.5), ("average", 0.0),
                                  ("sample", 0.0), ("logpwrfft", 0.0)):
            if detector == "logpwrfft":
                chain = logpwrfft.logpwrfft_c(POI_SAMP_RATE, bins, 2.0, FRAME_RATE, 1.0,
                                              False, shift=True)
                per_frame, lead = bins * chain.decimation(), 0
            else:
                chain = spectrum_detector(samp_rate=POI_SAMP_RATE, bins=bins,
                                          fps=FRAME_RATE, detector=detector, overlap=overlap)
                per_frame = bins * chain.vectors_per_frame
                lead = per_frame // 2  # its frames start half a period early
            frames = replay(path, chain, bins)
            seen, shows, judged, errors = intercepts(frames, bursts, bins, per_frame, lead)
            row = {
                "bins": bins, "detector": detector, "overlap": overlap,
                "burst_us": args.burst_us, "burst_windows": length / bins,
                "seen": seen, "shows": shows, "judged": judged,
                "poi": seen / max(judged, 1),
                "median_error_db": statistics.median(errors) if errors else None,
                "lowest_error_db": min(errors) if errors else None,
                "highest_error_db": max(errors) if errors else None,
                "window_loss_bound_db": (window_loss_db(bins, bins // 2) if overlap
                                         else window_loss_db(bins, bins)),
            }
            results.append(row)
            print(f"poi bins={bins} {detector:9s} overlap={overlap:<4} "
                  f"burst={length / bins:.2f} windows: {seen}/{judged} = "
                  f"{100 * row['poi']:5.1f} % (shows: {shows}); level error median "
                  f"{row['median_error_db']:+6.2f} dB, {row['lowest_error_db']:+6.2f} to "
                  f"{row['highest_error_db']:+6.2f} dB", flush=True)
    return results


# -- CPU --------------------------------------------------------------------------------------

def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu_seconds() -> dict[tuple[str, str], float]:
    """CPU seconds of each thread of this process, keyed by (thread id, thread name)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        seconds[(tid, name)] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return seconds


@dataclass
class Paced:
    """One paced run: cores of the process, cores of each thread, what ``build`` returned."""

    cores: float
    threads: dict[str, float]
    built: Any
    run_s: float


def paced_source(top: Any, kind: str, rate: float) -> Any:
    """The upstream of a paced run: fastnoise -> throttle, or osmosdr's file source
    replaying the poi recording (repeat, throttle) as a HackRF would deliver samples."""
    if kind == "file":
        import osmosdr

        source = osmosdr.source(f"file={recording_path()},rate={rate:g},repeat=true,"
                                f"throttle=true")
        source.set_sample_rate(rate)
        return source
    source = analog.fastnoise_source_c(analog.GR_GAUSSIAN, 0.1, 0, 8192)
    throttle = blocks.throttle(gr.sizeof_gr_complex, rate)
    top.connect(source, throttle)
    return throttle


def measure_throttled(build: Callable[[Any, Any], Any], rate: float, seconds: float,
                      source: str = "fastnoise") -> Paced:
    """CPU of paced_source(rate) -> build(top, upstream), measured for ``seconds`` after
    1 s of warm-up."""
    top = gr.top_block("cpu", catch_exceptions=False)
    built = build(top, paced_source(top, source, rate))  # Python blocks must outlive the run
    started = time.monotonic()
    top.start()
    time.sleep(1.0)
    cpu0, threads0, wall0 = cpu_seconds(), thread_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    cpu1, threads1, wall = cpu_seconds(), thread_cpu_seconds(), time.monotonic() - wall0
    top.stop()
    top.wait()
    threads: dict[str, float] = {}
    for (tid, name), used in sorted(threads1.items()):
        cores = (used - threads0.get((tid, name), 0.0)) / wall
        if cores >= 0.002:
            while name in threads:  # Linux cuts thread names to 15 characters
                name += "'"
            threads[name] = cores
    return Paced((cpu1 - cpu0) / wall, dict(sorted(threads.items(), key=lambda kv: -kv[1])),
                 built, time.monotonic() - started)


def measure_unthrottled(build: Callable[[Any, Any], Any], samples: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of fastnoise -> head(samples) -> build(top, head)."""
    top = gr.top_block("cpu", catch_exceptions=False)
    source = analog.fastnoise_source_c(analog.GR_GAUSSIAN, 0.1, 0, 8192)
    head = blocks.head(gr.sizeof_gr_complex, samples)
    top.connect(source, head)
    built = build(top, head)  # noqa: F841 (Python blocks must outlive the run)
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    top.run()
    return cpu_seconds() - cpu0, time.monotonic() - wall0


def null_chain(top: Any, upstream: Any) -> Any:
    top.connect(upstream, blocks.null_sink(gr.sizeof_gr_complex))


def chain_to_null(make: Callable[[], Any], bins: int) -> Callable[[Any, Any], Any]:
    def build(top: Any, upstream: Any) -> Any:
        chain = make()
        top.connect(upstream, chain, blocks.null_sink(gr.sizeof_float * bins))
        if getattr(chain, "second_detector", ""):
            top.connect((chain, 1), blocks.null_sink(gr.sizeof_float * bins))
        return chain
    return build


def spread(values: list[float], minus: float = 0.0) -> dict[str, float]:
    return {"median": statistics.median(values) - minus, "min": min(values) - minus,
            "max": max(values) - minus}


def detector_configs(bins: int, rate: float) -> dict[str, Callable[[], Any]]:
    """The chains compared by ``cpu``: the block's detectors and today's logpwrfft."""
    configs: dict[str, Callable[[], Any]] = {
        "logpwrfft (sample, today)": lambda: logpwrfft.logpwrfft_c(
            rate, bins, 2.0, FRAME_RATE, 1.0, False, shift=True),
    }
    for detector, overlap in (("sample", 0.0), ("peak", 0.0), ("average", 0.0),
                              ("peak", 0.5)):
        configs[f"{detector} overlap {overlap:g}"] = (
            lambda detector=detector, overlap=overlap: spectrum_detector(
                samp_rate=rate, bins=bins, fps=FRAME_RATE, detector=detector,
                overlap=overlap))
    configs["peak + average (second trace)"] = lambda: spectrum_detector(
        samp_rate=rate, bins=bins, fps=FRAME_RATE, detector="peak", second_detector="average")
    return configs


def run_cpu(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    rate = args.rate
    source_cores = [measure_throttled(null_chain, rate, args.cpu_seconds, args.source).cores
                    for _ in range(args.repeats)]
    samples = int(args.unthrottled_samples)
    source_unthrottled = [measure_unthrottled(null_chain, samples)[0]
                          for _ in range(args.repeats)]
    source_us_per_sample = statistics.median(source_unthrottled) / samples * 1e6
    print(f"source alone ({args.source}, paced) at {rate / 1e6:g} MS/s "
          f"{statistics.median(source_cores):.3f} cores; fastnoise+head "
          f"{source_us_per_sample:.4f} CPU s per MS", flush=True)
    for bins in args.bins:
        for name, make in detector_configs(bins, rate).items():
            build = chain_to_null(make, bins)
            throttled = [measure_throttled(build, rate, args.cpu_seconds, args.source).cores
                         for _ in range(args.repeats)]
            runs = [measure_unthrottled(build, samples) for _ in range(args.repeats)]
            per_ms = [cpu / samples * 1e6 - source_us_per_sample for cpu, _ in runs]
            row = {
                "bins": bins, "chain": name, "rate": rate,
                "cores_at_rate": spread(throttled, statistics.median(source_cores)),
                "cpu_s_per_ms_unthrottled": spread(per_ms),
                "unthrottled_ms_per_s": spread([samples / wall / 1e6 for _, wall in runs]),
            }
            results.append(row)
            at = row["cores_at_rate"]
            print(f"cpu bins={bins} {name:26s} at {rate / 1e6:g} MS/s: "
                  f"{at['median']:.3f} cores ({at['min']:.3f}-{at['max']:.3f}); "
                  f"unthrottled {row['cpu_s_per_ms_unthrottled']['median']:.4f} CPU s/MS, "
                  f"{row['unthrottled_ms_per_s']['median']:.0f} MS/s with the source",
                  flush=True)
    return results


def run_threads(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for detector, overlap in (("peak", 0.0), ("average", 0.0), ("sample", 0.0),
                              ("peak", 0.5)):
        build = chain_to_null(lambda detector=detector, overlap=overlap: spectrum_detector(
            samp_rate=args.rate, bins=2048, fps=FRAME_RATE, detector=detector,
            overlap=overlap), 2048)
        paced = measure_throttled(build, args.rate, args.cpu_seconds, args.source)
        row = {"detector": detector, "overlap": overlap, "bins": 2048, "rate": args.rate,
               "source": args.source, "cores": paced.cores, "cores_by_thread": paced.threads}
        results.append(row)
        print(f"threads {detector} overlap {overlap:g} ({paced.cores:.3f} cores): " +
              ", ".join(f"{name} {cores:.3f}" for name, cores in paced.threads.items()),
              flush=True)
    return results


# -- designs of the period reduction ----------------------------------------------------------

class decim_reduce(gr.decim_block):
    """The first design: a Python decim_block fed every |X|^2 vector, numpy per period."""

    def __init__(self, bins: int, per_period: int) -> None:
        gr.decim_block.__init__(self, "decim_reduce", [(np.float32, bins)],
                                [(np.float32, bins)], per_period)
        self.per_period, self.bins, self.forecasts = per_period, bins, 0

    def forecast(self, noutput_items: int, ninputs: int) -> list[int]:
        self.forecasts += 1  # the scheduler asks on every upstream FFT it is woken for
        return [noutput_items * self.per_period] * ninputs

    def work(self, input_items: Any, output_items: Any) -> int:
        out = output_items[0]
        vectors = input_items[0][:len(out) * self.per_period]
        np.maximum.reduce(vectors.reshape(len(out), self.per_period, self.bins), axis=1,
                          out=out)
        return len(out)


class period_reduce(gr.sync_block):
    """The chosen design: one input item is a whole period (stream_to_vector in front)."""

    def __init__(self, bins: int, per_period: int) -> None:
        gr.sync_block.__init__(self, "period_reduce", [(np.float32, bins * per_period)],
                               [(np.float32, bins)])
        self.per_period, self.bins, self.forecasts = per_period, bins, 0

    def forecast(self, noutput_items: int, ninputs: int) -> list[int]:
        self.forecasts += 1
        return [noutput_items] * ninputs

    def work(self, input_items: Any, output_items: Any) -> int:
        out = output_items[0]
        np.maximum.reduce(input_items[0].reshape(len(out), self.per_period, self.bins),
                          axis=1, out=out)
        return len(out)


def design_chain(design: str, bins: int, per_period: int) -> Callable[[Any, Any], Any]:
    """FFT of every sample -> |X|^2 -> the period reduction ``design`` -> null sink."""

    def build(top: Any, upstream: Any) -> Any:
        to_vectors = blocks.stream_to_vector(gr.sizeof_gr_complex, bins)
        transform = fft.fft_vcc(bins, True, fft_window.blackmanharris(bins), True, 1)
        power = blocks.complex_to_mag_squared(bins)
        top.connect(upstream, to_vectors, transform, power)
        vector = gr.sizeof_float * bins
        python_block = None
        if design == "none (FFT chain only)":
            last = power
        elif design == "Python decim_block":
            python_block = last = decim_reduce(bins, per_period)
            top.connect(power, last)
        elif design == "stream_to_vector + Python":
            python_block = last = period_reduce(bins, per_period)
            top.connect(power, blocks.stream_to_vector(vector, per_period), last)
        elif design == "integrate_ff (average)":
            last = blocks.integrate_ff(per_period, bins)
            top.connect(power, last)
        elif design == "deinterleave + max_ff":
            split, last = blocks.deinterleave(vector, 1), blocks.max_ff(bins, bins)
            top.connect(power, split)
            for port in range(per_period):
                top.connect((split, port), (last, port))
        else:
            raise ValueError(design)
        top.connect(last, blocks.null_sink(vector))
        return python_block
    return build


DESIGNS = ("none (FFT chain only)", "Python decim_block", "stream_to_vector + Python",
           "integrate_ff (average)", "deinterleave + max_ff")


def run_designs(args: argparse.Namespace) -> list[dict[str, Any]]:
    rate, bins = args.rate, 2048
    per_period = round(rate / bins / FRAME_RATE)
    source = statistics.median(measure_throttled(null_chain, rate, args.cpu_seconds).cores
                               for _ in range(args.repeats))
    results = []
    for design in DESIGNS:
        cores, forecasts = [], []
        for _ in range(args.repeats):
            paced = measure_throttled(design_chain(design, bins, per_period), rate,
                                      args.cpu_seconds)
            cores.append(paced.cores)
            if paced.built is not None:
                forecasts.append(paced.built.forecasts / paced.run_s)
        row = {"design": design, "bins": bins, "rate": rate, "per_period": per_period,
               "cores_after_source": spread(cores, source),
               "python_forecasts_per_s": statistics.median(forecasts) if forecasts else None}
        results.append(row)
        after = row["cores_after_source"]
        calls = (f", Python forecast() {row['python_forecasts_per_s']:.0f}/s"
                 if forecasts else "")
        print(f"design {design:28s} {after['median']:.3f} cores "
              f"({after['min']:.3f}-{after['max']:.3f}){calls}", flush=True)
    return results


# -- main -------------------------------------------------------------------------------------

def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("poi", "cpu", "threads", "designs", "all"))
    parser.add_argument("--bins", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20e6,
                        help="sample rate of the throttled CPU runs (S/s)")
    parser.add_argument("--cpu-seconds", type=float, default=5.0,
                        help="measured seconds per throttled run (after 1 s warm-up)")
    parser.add_argument("--unthrottled-samples", type=float, default=2e8)
    parser.add_argument("--seconds", type=float, default=6.0, help="recording length (poi)")
    parser.add_argument("--burst-us", type=float, default=256.0,
                        help="burst length in microseconds (poi; 256 = one 2048-point FFT)")
    parser.add_argument("--burst-rate", type=float, default=20.0, help="bursts per second")
    parser.add_argument("--noise-rms", type=float, default=0.003)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--source", choices=("fastnoise", "file"), default="fastnoise",
                        help="paced source of cpu and threads: fastnoise + throttle, or "
                             "osmosdr's file source replaying the poi recording")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = argument_parser().parse_args(argv)

    out = cache_dir() / "every_sample.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    started = time.strftime("%Y-%m-%d %H:%M")
    for what, run in (("poi", run_poi), ("cpu", run_cpu), ("threads", run_threads),
                      ("designs", run_designs)):
        if args.what in (what, "all"):
            key = f"{what}-{args.source}" if what in ("cpu", "threads") else what
            results[key] = {"started": started, "args": vars(args), "rows": run(args)}
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
