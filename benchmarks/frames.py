"""Realistic spectra for the benchmarks, recorded once through the real GNU Radio FFT chain.

``sim_band_source -> fft.logpwrfft_c -> vector sink``; the frames are cached as a ``.npy``
file in a cache directory (never committed), keyed by bin count and frame count.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["cache_dir", "load_frames"]

_SAMP_RATE = 2e6
_FRAME_RATE = 30.0


def cache_dir() -> Path:
    """``$ARGOS_BENCH_CACHE`` or ``<tmp>/gr-argos-bench``."""
    path = Path(os.environ.get("ARGOS_BENCH_CACHE",
                               os.path.join(tempfile.gettempdir(), "gr-argos-bench")))
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_frames(bins: int, count: int) -> npt.NDArray[np.float32]:
    """Run the simulated band through logpwrfft_c and return ``count`` frames of dB."""
    from gnuradio import blocks, gr
    from gnuradio.fft import logpwrfft, window

    from gr_argos.sim_band_source import sim_band_source

    top = gr.top_block("bench_record")
    source = sim_band_source(samp_rate=_SAMP_RATE, throttle=False, seed=1)
    spectrum = logpwrfft.logpwrfft_c(
        sample_rate=_SAMP_RATE, fft_size=bins, ref_scale=2.0, frame_rate=_FRAME_RATE,
        avg_alpha=1.0, average=False, win=window.blackmanharris, shift=True,
    )
    head = blocks.head(gr.sizeof_float * bins, count)
    sink = blocks.vector_sink_f(bins)
    top.connect(source, spectrum, head, sink)
    top.run()
    data = np.asarray(sink.data(), dtype=np.float32).reshape(-1, bins)
    return data[:count]


def load_frames(bins: int, count: int = 300) -> npt.NDArray[np.float32]:
    """The cached frames for ``bins``, recording them first if needed."""
    path = cache_dir() / f"sim_band_{bins}x{count}.npy"
    if path.exists():
        return np.load(path)
    frames = record_frames(bins, count)
    np.save(path, frames)
    return frames


if __name__ == "__main__":
    import time
    for n in (2048, 4096):
        t0 = time.monotonic()
        f = load_frames(n)
        print(n, f.shape, f.dtype, float(f.min()), float(f.max()), f"{time.monotonic()-t0:.1f}s")
