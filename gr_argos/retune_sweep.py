# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio block that sweeps a tunable source across a wide band and stitches the spectra."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pmt
from gnuradio import gr

from gr_argos import tags
__all__ = ["retune_sweep", "sweep_bins"]


# Vectors to wait for an rx_freq tag before the command is sent again (and a warning logged).
_TAG_TIMEOUT_VECTORS = 256


def sweep_bins(freq_min: float, freq_max: float, samp_rate: float, fft_size: int = 2048,
               usable_fraction: float = 0.75) -> int:
    """The bins of a :class:`retune_sweep`'s output vector: the Bins to give the sink after
    it. In GRC, a Variable ``gr_argos.sweep_bins(freq_min, freq_max, samp_rate, fft_size,
    usable_fraction)`` (with an Import block ``import gr_argos``) keeps the two in step.
    Written as the block's GRC definition computes its output size (whole steps, rounded up).
    """
    kept = int(int(fft_size) * float(usable_fraction))
    step_hz = float(samp_rate) * float(usable_fraction)
    return max(1, int(-(-(float(freq_max) - float(freq_min)) // step_hz))) * kept


class retune_sweep(gr.basic_block):
    """Sweep any tunable source across ``freq_min``..``freq_max`` and stitch one wide
    spectrum per sweep.

    Input: FFT-shifted log-power vectors of ``fft_size`` bins (fft.logpwrfft or
    stream_to_vector + fft + complex_to_mag_squared + nlog10) of a source at ``samp_rate``.
    The block retunes the source itself, one step at a time, and moves on only when it has
    what it needs, so it never outruns the source:

    1. it publishes ``{"freq": f}`` on its ``command`` port (the message gr-osmosdr, UHD and
       Soapy sources accept there) and calls ``tuner(f)`` if one is given;
    2. it waits for the source's ``rx_freq`` tag with that frequency (``wait_for_tag``; off:
       it counts from the first vector after the command);
    3. it discards ``skip_vectors`` vectors, counting the one with the tag: spectra of the
       PLL settling and of samples still in flight from the previous tune;
    4. it averages the next ``dwell_vectors`` vectors (in linear power) and keeps their
       central ``usable_fraction`` of bins, away from the filter roll-off at the band edges.

    Steps are ``samp_rate * usable_fraction`` apart, so the kept slices tile the band without
    gaps or overlap. Output: one vector of ``bins`` = steps x kept bins per complete sweep,
    lowest frequency first, each tagged ``rx_freq`` (``center_freq_hz``) and ``rx_rate``
    (``span_hz``), as a websocket_sink expects. Bin ``j`` lies at
    ``freq_min + j * samp_rate / fft_size``.

    Args:
        freq_min: lowest frequency of the sweep in Hz (the lower edge of bin 0).
        freq_max: the sweep covers at least up to this frequency in Hz (whole steps).
        samp_rate: sample rate of the source in samples/s.
        fft_size: bins per input vector.
        usable_fraction: share of each input vector's bins kept; ``fft_size *
            usable_fraction`` must be an even whole number.
        skip_vectors: vectors discarded after each retune (at least 1).
        dwell_vectors: vectors averaged per step.
        wait_for_tag: wait for the source's ``rx_freq`` tag after each retune. Turn it off
            for sources that tag nothing (gr-osmosdr's HackRF, RTL-SDR and file sources);
            ``skip_vectors`` must then also cover the vectors in flight between the source
            and this block.
        tuner: called with each frequency in Hz, in this block's thread, for sources without
            a ``command`` port (this Debian build of gr-osmosdr has none), e.g.
            ``lambda f: self.osmosdr_source_0.set_center_freq(f)``.
    """

    COMMAND_PORT = pmt.intern("command")

    def __init__(
        self,
        freq_min: float = 88e6,
        freq_max: float = 108e6,
        samp_rate: float = 8e6,
        fft_size: int = 2048,
        usable_fraction: float = 0.75,
        skip_vectors: int = 4,
        dwell_vectors: int = 1,
        wait_for_tag: bool = True,
        tuner: Callable[[float], Any] | None = None,
    ) -> None:
        fft_size = int(fft_size)
        kept = fft_size * float(usable_fraction)
        if not samp_rate > 0:
            raise ValueError(f"samp_rate must be positive, got {samp_rate} samples/s")
        if not freq_max > freq_min >= 0:
            raise ValueError(f"need 0 <= freq_min < freq_max, got {freq_min:g} and "
                             f"{freq_max:g} Hz")
        if not 0 < usable_fraction <= 1 or not kept.is_integer() or int(kept) % 2:
            raise ValueError(f"fft_size * usable_fraction must be an even whole number of "
                             f"bins in 2..fft_size, got {fft_size} * {usable_fraction}")
        if int(skip_vectors) < 1 or int(dwell_vectors) < 1:
            raise ValueError(f"skip_vectors and dwell_vectors must be at least 1, got "
                             f"{skip_vectors} and {dwell_vectors}")
        self.fft_size = fft_size
        self.kept_bins = int(kept)
        self.bin_hz = float(samp_rate) / fft_size
        step_hz = self.kept_bins * self.bin_hz
        self.bins = sweep_bins(freq_min, freq_max, samp_rate, fft_size, usable_fraction)
        steps = self.bins // self.kept_bins
        #: Centre frequency of each step in Hz, lowest first.
        self.tune_freqs = [float(freq_min) + (i + 0.5) * step_hz for i in range(steps)]
        self.span_hz = self.bins * self.bin_hz
        self.center_freq_hz = float(freq_min) + self.span_hz / 2
        self.skip_vectors = int(skip_vectors)
        self.dwell_vectors = int(dwell_vectors)
        self.wait_for_tag = bool(wait_for_tag)
        self.tuner = tuner

        gr.basic_block.__init__(self, name="retune_sweep",
                                in_sig=[(np.float32, fft_size)],
                                out_sig=[(np.float32, self.bins)])
        self.set_tag_propagation_policy(gr.TPP_DONT)  # input tags describe one step only
        self.message_port_register_out(self.COMMAND_PORT)
        first = (fft_size - self.kept_bins) // 2
        self._kept = slice(first, first + self.kept_bins)
        self._sweep = np.zeros(self.bins, dtype=np.float32)
        self._reset()

    # -- the step machine ----------------------------------------------------------------

    def _reset(self) -> None:
        self._step = 0
        self._tuned = False          # the rx_freq tag (or the command) has been seen
        self._to_skip = self.skip_vectors
        self._waited = 0
        self._linear_sum = np.zeros(self.kept_bins, dtype=np.float64)
        self._collected = 0
        self._commanded = False

    def start(self) -> bool:
        """Begin a sweep at the first step (the command goes out with the first input)."""
        self._reset()
        return True

    def _retune(self) -> None:
        freq = self.tune_freqs[self._step]
        self.message_port_pub(self.COMMAND_PORT,
                              pmt.dict_add(pmt.make_dict(), pmt.intern("freq"),
                                           pmt.from_double(freq)))
        if self.tuner is not None:
            try:
                self.tuner(freq)
            except Exception as exc:  # a driver error must not stop the flowgraph
                self.logger.error(f"tuner failed to tune to {freq:g} Hz: {exc}")
        self._commanded = True
        self._tuned = not self.wait_for_tag
        self._to_skip = self.skip_vectors
        self._waited = 0
        self._linear_sum[:] = 0.0
        self._collected = 0

    def _tag_says_tuned(self, tags: list[Any]) -> bool:
        wanted = self.tune_freqs[self._step]
        for tag in tags:
            try:
                if abs(pmt.to_double(tag.value) - wanted) <= self.bin_hz / 2:
                    return True
            except (RuntimeError, ValueError, TypeError):
                self.logger.warn(f"ignored malformed rx_freq tag {pmt.write_string(tag.value)}")
        return False

    def _take(self, vector: npt.NDArray[Any], tags: list[Any]) -> bool:
        """Use one input vector; True when it completed a sweep (then in ``_sweep``)."""
        if not self._tuned:
            if self._tag_says_tuned(tags):
                self._tuned = True
            else:
                self._waited += 1
                if self._waited >= _TAG_TIMEOUT_VECTORS:
                    self.logger.warn(
                        f"no rx_freq tag for {self.tune_freqs[self._step]:g} Hz after "
                        f"{self._waited} vectors: retuning again (if the source tags nothing, "
                        f"set wait_for_tag=False)")
                    self._retune()
                return False
        if self._to_skip > 0:
            self._to_skip -= 1
            return False
        self._linear_sum += np.power(10.0, vector[self._kept].astype(np.float64) / 10.0)
        self._collected += 1
        if self._collected < self.dwell_vectors:
            return False
        start = self._step * self.kept_bins
        mean = np.maximum(self._linear_sum / self._collected, 1e-30)
        self._sweep[start:start + self.kept_bins] = 10.0 * np.log10(mean)
        self._step = (self._step + 1) % len(self.tune_freqs)
        self._retune()
        return self._step == 0

    def general_work(self, input_items: list[npt.NDArray[Any]],
                     output_items: list[npt.NDArray[Any]]) -> int:
        vectors, out = input_items[0], output_items[0]
        if not self._commanded:
            self._retune()
        first = self.nitems_read(0)
        freq_tags = self.get_tags_in_window(0, 0, len(vectors), tags.RX_FREQ)
        produced = consumed = 0
        while consumed < len(vectors) and produced < len(out):
            index = consumed
            consumed += 1
            here = [t for t in freq_tags if t.offset == first + index]
            if self._take(vectors[index], here):
                out[produced] = self._sweep
                self._tag_output(self.nitems_written(0) + produced)
                produced += 1
        self.consume(0, consumed)
        return produced

    def _tag_output(self, offset: int) -> None:
        self.add_item_tag(0, offset, tags.RX_FREQ, pmt.from_double(self.center_freq_hz))
        self.add_item_tag(0, offset, tags.RX_RATE, pmt.from_double(self.span_hz))
