# SPDX-License-Identifier: GPL-3.0-or-later
"""Spectrum frames from every sample: FFT everything, then one detector value per frame period.

``fft.logpwrfft`` keeps one FFT of ``bins`` samples per output frame and drops the rest (at
8 MS/s, 2048 bins and 30 frames/s it sees 0.8 % of the samples), so a short burst between
two kept FFTs never shows. :class:`spectrum_detector` transforms every sample and reduces
each frame period with a detector, as a real-time spectrum analyzer does: ``peak`` keeps the
largest power of each bin over the period, ``average`` its mean power. ``sample`` is the
logpwrfft behaviour, kept for comparison.

The work per sample is done by GNU Radio's C++/VOLK blocks (``stream_to_vector``,
``fft_vcc``, ``complex_to_mag_squared``). Python (:class:`gr_argos.period_detector`) runs
once per frame on a whole period at a time, which measured cheaper than GNU Radio's own
``deinterleave`` + ``max_ff`` (docs/spectrum_detector.md has the numbers).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from gnuradio import blocks, fft, filter, gr
from gnuradio.fft import window as fft_window

from gr_argos.detectors import DETECTORS, WINDOWS, DetectorSettings
from gr_argos.period_detector import period_detector
from gr_argos.settings import from_arguments, init_signature

__all__ = ["spectrum_detector"]

#: GNU Radio's function giving the taps of each window.
_WINDOW_TAPS: dict[str, Callable[[int], list[float]]] = {
    name: getattr(fft_window, name) for name in WINDOWS}


class spectrum_detector(gr.hier_block2):
    """Complex samples in, one float32 dB spectrum of ``bins`` per frame period out.

    Every sample is windowed and transformed (FFTs of ``bins`` samples, back to back, or
    overlapping by ``overlap``); per frame period of ``bins * vectors_per_frame`` samples
    the detector reduces the power spectra of the period to one: ``peak`` (max-hold over
    the period, a burst one FFT long is never missed), ``average`` (mean power) or
    ``sample`` (only the last FFT of the period, as ``fft.logpwrfft``). An optional
    exponential average across frames (``avg_alpha``) follows, then 10*log10 with
    logpwrfft's scaling, so a steady tone reads the same level as through
    ``fft.logpwrfft_c(..., ref_scale)``. Output vectors are FFT-shifted (lowest frequency
    first).

    The frame period is a whole number of FFTs, M = ``bins * vectors_per_frame`` samples
    with ``vectors_per_frame = round(samp_rate / bins / fps)``, so the frame rate is
    ``frame_rate`` (close to ``fps``). Frame j covers samples [j M - M/2, (j + 1) M - M/2)
    (frame 0 holds the first M/2). Stream tags (``rx_freq``, ``rx_rate``, ``rx_time``, any
    other) reach the frame that holds their sample, and each frame carries a
    ``period_time`` tag saying when its period starts (the sinks stamp the frame with it).
    A frame leaves once the tags up to half a period after it are known: half a period of
    latency.

    Keyword arguments: its settings (:class:`~gr_argos.detectors.DetectorSettings`:
    ``samp_rate``, ``bins`` (a power of two >= 16), ``fps`` (at most ``samp_rate / bins``),
    ``detector``, ``second_detector`` (empty, or another detector: the block then has a
    second output with that detector over the same FFTs and periods, e.g. the average
    under the peak), ``window``, ``overlap`` (0, 0.5 or 0.75; not used by ``sample``),
    ``avg_alpha``, ``ref_scale``); ``help(spectrum_detector)`` lists them with their
    defaults.

    Raises:
        ConfigError: a setting out of range (the message says what is allowed).
        TypeError: an argument that is not a setting of this block.
    """

    def __init__(self, **settings: Any) -> None:
        (chosen,) = from_arguments("spectrum_detector", settings, DetectorSettings)
        samp_rate, bins, fps = chosen.samp_rate, chosen.bins, chosen.fps
        detector, window, avg_alpha = chosen.detector, chosen.window, chosen.avg_alpha
        self.settings = chosen
        detectors = [detector] + ([chosen.second_detector] if chosen.second_detector else [])
        gr.hier_block2.__init__(
            self,
            "spectrum_detector",
            gr.io_signature(1, 1, gr.sizeof_gr_complex),
            gr.io_signature(len(detectors), len(detectors), gr.sizeof_float * bins),
        )
        self.samp_rate = float(samp_rate)
        self.bins = bins
        self.fps = float(fps)
        self.detector = detector
        self.second_detector = chosen.second_detector
        self.window = window
        self.overlap = chosen.overlap
        self.ref_scale = chosen.ref_scale
        self.vectors_per_frame = chosen.vectors_per_frame
        self.frame_rate = samp_rate / (bins * self.vectors_per_frame)
        # Share of the input samples that reach an FFT: all of them, or one FFT per frame.
        self.fft_sample_fraction = 1.0 if chosen.every_sample else 1 / self.vectors_per_frame

        taps = _WINDOW_TAPS[window](bins)
        self._blocks: list[Any] = []  # internal blocks, kept alive with the hier block
        samples_per_frame = bins * self.vectors_per_frame
        # The FFTs run half a period late, so that the tag path can put every tag on its
        # frame exactly (_connect_tag_path).
        half_period_late = blocks.delay(gr.sizeof_gr_complex, samples_per_frame // 2)
        half_period_late.set_tag_propagation_policy(gr.TPP_DONT)
        self.connect(self, half_period_late)
        self._blocks.append(half_period_late)
        if not chosen.every_sample:
            self.branches = 1
            self._detector = period_detector(bins, 1, "max", 1, samples_per_frame,
                                             self.samp_rate)
            self._connect_sample_branch(half_period_late, taps)
        else:
            self.branches = round(1 / (1 - self.overlap))
            # One output per detector, from the same FFTs ("last": sample beside another).
            reductions = tuple(DETECTORS[name] or "last" for name in detectors)
            self._detector = period_detector(bins, self.vectors_per_frame, reductions,
                                             self.branches, samples_per_frame, self.samp_rate)
            for branch in range(self.branches):
                self._connect_every_sample_branch(half_period_late, taps, branch,
                                                  bins // self.branches * branch)
        self._connect_tag_path(self.branches)
        self.fft_per_frame = (self.vectors_per_frame * self.branches if chosen.every_sample
                              else 1)

        window_power = sum(tap * tap for tap in taps)
        # logpwrfft's scaling: per-bin FFT gain, window power, then the 0 dB amplitude.
        log_offset = (-20 * math.log10(bins) - 10 * math.log10(window_power / bins)
                      - 20 * math.log10(self.ref_scale / 2))
        self._averages = []
        for port in range(len(detectors)):
            average = filter.single_pole_iir_filter_ff(avg_alpha, bins)
            log = blocks.nlog10_ff(10, bins, log_offset)
            self.connect((self._detector, port), average, log, (self, port))
            self._averages.append(average)
            self._blocks.append(log)
        self.avg_alpha = float(avg_alpha)

    def _fft_chain(self, taps: list[float], *between: Any) -> tuple[Any, Any]:
        """stream_to_vector -> ``between`` -> FFT (window, shift) -> |X|^2.

        Returns the first and the last block. Tags are dropped at the entry: their period
        is known exactly only on the tag path.
        """
        to_vectors = blocks.stream_to_vector(gr.sizeof_gr_complex, self.bins)
        to_vectors.set_tag_propagation_policy(gr.TPP_DONT)
        # nthreads=1: two FFTW threads measured 4-5x slower on a 2-core machine.
        transform = fft.fft_vcc(self.bins, True, taps, True, 1)
        power = blocks.complex_to_mag_squared(self.bins)
        self.connect(to_vectors, *between, transform, power)
        self._blocks += [to_vectors, *between, transform, power]
        return to_vectors, power

    def _connect_every_sample_branch(self, upstream: Any, taps: list[float], branch: int,
                                     delay: int) -> None:
        """FFTs of every sample, ``delay`` samples late, gathered per period into one item."""
        first, power = self._fft_chain(taps)
        if delay:
            late = blocks.delay(gr.sizeof_gr_complex, delay)
            self.connect(upstream, late, first)
            self._blocks.append(late)
        else:
            self.connect(upstream, first)
        if self.vectors_per_frame == 1:
            self.connect(power, (self._detector, branch))
            return
        # One item per period: Python then runs once per frame, not once per FFT (a
        # decimating Python block is woken, and its forecast() called, on every FFT).
        period = blocks.stream_to_vector(gr.sizeof_float * self.bins, self.vectors_per_frame)
        self.connect(power, period, (self._detector, branch))
        self._blocks.append(period)

    def _connect_sample_branch(self, upstream: Any, taps: list[float]) -> None:
        """One FFT per period (the last of its vectors), as fft.logpwrfft does."""
        keep = blocks.keep_one_in_n(gr.sizeof_gr_complex * self.bins, self.vectors_per_frame)
        first, power = self._fft_chain(taps, keep)
        self.connect(upstream, first)
        self.connect(power, (self._detector, 0))

    def _connect_tag_path(self, port: int) -> None:
        """Carry the input's tags to the detector, one item per period.

        Through a decimation by M samples, GNU Radio's scheduler moves a tag at sample s to
        item floor(s / M + 1/2), exactly (rational arithmetic): the period of the FFT path,
        which runs M/2 samples late. (``keep_one_in_n`` maps tags itself in single-precision
        float, which puts tags on the wrong frame after hours; ``keep_m_in_n`` leaves it to
        the scheduler.)

        The same could be had with the delay here (then dropping the first item) and the
        FFT path on time; that measured slower (0.45 against 0.37 core for the chain at
        20 MS/s, docs/performance.md).
        """
        one_per_period = blocks.keep_m_in_n(gr.sizeof_gr_complex, 1,
                                            self.bins * self.vectors_per_frame, 0)
        # Its forecast asks for noutput * M samples in a C int: keep noutput at 1 so that
        # 20 MS/s / 30 fps (M = 667,648) cannot overflow it.
        one_per_period.set_max_noutput_items(1)
        self.connect(self, one_per_period, (self._detector, port))
        self._blocks.append(one_per_period)

    def set_avg_alpha(self, avg_alpha: float) -> None:
        """Weight of the newest frame in the average across frames, in (0, 1]; 1 = off."""
        self.settings = dataclasses.replace(self.settings, avg_alpha=avg_alpha)  # checks it
        for average in self._averages:
            average.set_taps(avg_alpha)
        self.avg_alpha = float(avg_alpha)

    def status_fields(self) -> dict[str, Any]:
        """What a stream's ``status`` message should say about this spectrum.

        For ``websocket_sink.set_source_status()``: the detector (and the second trace's),
        the window, the overlap, the FFTs per frame and the share of the input samples that
        reached an FFT (1.0 for ``peak`` and ``average``; ``1 / vectors_per_frame`` for
        ``sample`` alone).
        """
        return {
            "detector": self.detector,
            **({"second_detector": self.second_detector} if self.second_detector else {}),
            "window": self.window,
            "overlap": self.overlap,
            "fft_per_frame": self.fft_per_frame,
            "fft_sample_fraction": self.fft_sample_fraction,
        }


spectrum_detector.__init__.__signature__ = init_signature(DetectorSettings)  # type: ignore[attr-defined]
