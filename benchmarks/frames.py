# SPDX-License-Identifier: GPL-3.0-or-later
"""Realistic spectra for the benchmarks, recorded once through the real GNU Radio FFT chain.

Two frame sources (``load_frames(..., source=)``, default ``$ARGOS_BENCH_FRAMES`` or ``sim``):

- ``sim``: ``sim_band_source -> fft.logpwrfft_c -> vector sink``;
- ``iq``: an IQ recording (``iq_band.cf32``, 2 MS/s complex float32, 10 s: FM carriers of
  tones and band-limited noise at several levels, a wideband OFDM-like block, intermittent
  bursts, a drifting CW, a DC spike and noise) synthesized once with GNU Radio, then
  replayed through gr-osmosdr's file source (``file=PATH,rate=2e6,repeat=true,
  throttle=true``, the code path of ``argos-spectrum --source file=PATH``) into the same
  ``fft.logpwrfft_c``.

The frames are cached as ``.npy`` files in a cache directory (never committed), keyed by
source, bin count and frame count.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["FRAME_SOURCES", "cache_dir", "iq_recording", "load_frames"]

FRAME_SOURCES = ("sim", "iq")
_SAMP_RATE = 2e6
_FRAME_RATE = 30.0
_IQ_SECONDS = 10.0


def cache_dir() -> Path:
    """``$ARGOS_BENCH_CACHE`` or ``<tmp>/gr-argos-bench``."""
    path = Path(os.environ.get("ARGOS_BENCH_CACHE",
                               os.path.join(tempfile.gettempdir(), "gr-argos-bench")))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fm_carrier(top, offset_hz: float, amplitude: float, deviation_hz: float,
                tones: tuple[float, ...], noise: float, seed: int):
    """An FM carrier at ``offset_hz``: tones plus low-passed noise as the message."""
    import math

    from gnuradio import analog, blocks, filter

    fs = _SAMP_RATE
    message = blocks.add_ff()
    port = 0
    for tone in tones:
        top.connect(analog.sig_source_f(fs, analog.GR_SIN_WAVE, tone, 0.3 / len(tones)),
                    (message, port))
        port += 1
    # Band-limited noise (speech/music-like): white noise through two cheap one-pole low-passes.
    hiss = analog.fastnoise_source_f(analog.GR_GAUSSIAN, noise, seed)
    lp1 = filter.single_pole_iir_filter_ff(0.03)
    lp2 = filter.single_pole_iir_filter_ff(0.03)
    top.connect(hiss, lp1, lp2, (message, port))
    modulator = analog.frequency_modulator_fc(2 * math.pi * deviation_hz / fs)
    carrier = analog.sig_source_c(fs, analog.GR_COS_WAVE, offset_hz, amplitude)
    mixed = blocks.multiply_cc()
    top.connect(message, modulator, (mixed, 0))
    top.connect(carrier, (mixed, 1))
    return mixed


def _noise_block(top, offset_hz: float, width_hz: float, amplitude: float, seed: int):
    """Band-limited complex noise (an OFDM-like flat block) of ``width_hz`` at ``offset_hz``."""
    from gnuradio import analog, blocks, filter
    from gnuradio.fft import window

    fs = _SAMP_RATE
    taps = filter.firdes.low_pass(1.0, fs, width_hz / 2, width_hz / 20, window.WIN_BLACKMAN)
    source = analog.fastnoise_source_c(analog.GR_GAUSSIAN, amplitude, seed)
    shaped = filter.fft_filter_ccc(1, taps)
    carrier = analog.sig_source_c(fs, analog.GR_COS_WAVE, offset_hz, 1.0)
    mixed = blocks.multiply_cc()
    top.connect(source, shaped, (mixed, 0))
    top.connect(carrier, (mixed, 1))
    return mixed


def synthesize_iq(path: Path, seconds: float = _IQ_SECONDS, seed: int = 7) -> None:
    """Write a realistic 2 MS/s complex64 recording of ``seconds`` to ``path`` (GNU Radio)."""
    import math

    from gnuradio import analog, blocks, gr

    fs = _SAMP_RATE
    top = gr.top_block("bench_synthesize_iq")
    parts = [
        # FM broadcast-like and narrowband FM carriers at different levels (full scale 1.0).
        _fm_carrier(top, -620e3, 0.25, 75e3, (440.0, 1900.0, 19e3), 0.8, seed + 1),
        _fm_carrier(top, 310e3, 0.05, 50e3, (700.0, 3100.0), 1.0, seed + 2),
        _fm_carrier(top, 555e3, 0.012, 5e3, (1000.0,), 0.5, seed + 3),
        _fm_carrier(top, -180e3, 0.004, 3e3, (1200.0, 2300.0), 0.5, seed + 4),
        # A wideband OFDM-like block and a narrower digital carrier.
        _noise_block(top, 720e3, 200e3, 0.03, seed + 5),
        _noise_block(top, -400e3, 25e3, 0.01, seed + 6),
    ]
    # Intermittent bursts: a 12.5 kHz noise burst gated by two square waves (irregular on/off).
    burst = _noise_block(top, 130e3, 12.5e3, 0.05, seed + 8)
    gate_a = analog.sig_source_f(fs, analog.GR_SQR_WAVE, 2.3, 1.0)
    gate_b = analog.sig_source_f(fs, analog.GR_SQR_WAVE, 0.7, 1.0)
    gate = blocks.multiply_ff()
    top.connect(gate_a, (gate, 0))
    top.connect(gate_b, (gate, 1))
    gate_c = blocks.float_to_complex()
    gated = blocks.multiply_cc()
    top.connect(gate, gate_c, (gated, 1))
    top.connect(burst, (gated, 0))
    parts.append(gated)
    # A CW carrier drifting slowly (+-40 kHz around -820 kHz over 10 s).
    drift_law = analog.sig_source_f(fs, analog.GR_SIN_WAVE, 0.1, 40e3, -820e3)
    drift = blocks.vco_c(fs, 2 * math.pi, 0.02)
    top.connect(drift_law, drift)
    parts.append(drift)
    # Receiver noise floor and the DC spike of a zero-IF front end.
    parts.append(analog.fastnoise_source_c(analog.GR_GAUSSIAN, 0.003, seed))
    parts.append(analog.sig_source_c(fs, analog.GR_CONST_WAVE, 0, 0, 0.004 + 0.002j))
    band = blocks.add_cc()
    for port, part in enumerate(parts):
        top.connect(part, (band, port))
    head = blocks.head(gr.sizeof_gr_complex, int(fs * seconds))
    tmp = path.with_suffix(".part")
    sink = blocks.file_sink(gr.sizeof_gr_complex, str(tmp), False)
    sink.set_unbuffered(False)
    top.connect(band, head, sink)
    top.run()
    sink.close()
    tmp.replace(path)


def iq_recording() -> Path:
    """The cached IQ recording (synthesized first if needed)."""
    path = cache_dir() / "iq_band.cf32"
    if not path.exists():
        synthesize_iq(path)
    return path


def record_frames(bins: int, count: int, source: str = "sim") -> npt.NDArray[np.float32]:
    """Run the simulated band (``sim``) or the IQ recording replayed through gr-osmosdr's
    file source (``iq``, paced at 2 MS/s) through logpwrfft_c; ``count`` frames of dB."""
    from gnuradio import blocks, gr
    from gnuradio.fft import logpwrfft, window

    top = gr.top_block("bench_record")
    if source == "iq":
        import osmosdr

        from gr_argos.apps.sources import osmosdr_args

        args = osmosdr_args(f"file={iq_recording()}", _SAMP_RATE)
        signal = osmosdr.source(args)
        signal.set_sample_rate(_SAMP_RATE)
    else:
        from gr_argos.sim_band_source import sim_band_source

        signal = sim_band_source(samp_rate=_SAMP_RATE, throttle=False, seed=1)
    spectrum = logpwrfft.logpwrfft_c(
        sample_rate=_SAMP_RATE, fft_size=bins, ref_scale=2.0, frame_rate=_FRAME_RATE,
        avg_alpha=1.0, average=False, win=window.blackmanharris, shift=True,
    )
    head = blocks.head(gr.sizeof_float * bins, count)
    sink = blocks.vector_sink_f(bins)
    top.connect(signal, spectrum, head, sink)
    top.run()
    data = np.asarray(sink.data(), dtype=np.float32).reshape(-1, bins)
    return data[:count]


def load_frames(bins: int, count: int = 300, source: str | None = None
                ) -> npt.NDArray[np.float32]:
    """The cached frames for ``bins`` from ``source`` (``sim`` or ``iq``; default
    ``$ARGOS_BENCH_FRAMES`` or ``sim``), recording them first if needed."""
    source = source or os.environ.get("ARGOS_BENCH_FRAMES", "sim")
    if source not in FRAME_SOURCES:
        raise ValueError(f"frame source must be one of {', '.join(FRAME_SOURCES)}, "
                         f"got {source!r}")
    name = "sim_band" if source == "sim" else "iq_replay"
    path = cache_dir() / f"{name}_{bins}x{count}.npy"
    if path.exists():
        return np.load(path)
    frames = record_frames(bins, count, source)
    np.save(path, frames)
    return frames


if __name__ == "__main__":
    import sys
    import time
    for src in sys.argv[1:] or FRAME_SOURCES:
        for n in (2048, 4096):
            t0 = time.monotonic()
            f = load_frames(n, source=src)
            print(src, n, f.shape, f.dtype, float(f.min()), float(f.max()),
                  f"{time.monotonic()-t0:.1f}s")
