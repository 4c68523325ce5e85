# SPDX-License-Identifier: GPL-3.0-or-later
"""retune_sweep in real flowgraphs, driving a simulated receiver that reacts to retunes.

``tunable_band`` stands in for a gr-osmosdr device: it holds carriers at fixed absolute
frequencies and outputs those within its filter's passband shifted to baseband around its
current tune. On a ``command``
message ``{"freq": f}`` (or a ``set_center_freq(f)`` call) it retunes at the start of its next
output, tags that sample ``rx_freq`` like a real driver, and then outputs ``SETTLE_SAMPLES``
of garbage (a loud tone and loud noise), as a PLL that has not locked yet would. The tests
check that each carrier shows in the wideband bin of its absolute frequency and that none
of the garbage reaches the stitched spectrum.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

gr = pytest.importorskip("gnuradio.gr")
import pmt  # noqa: E402
from gnuradio import blocks  # noqa: E402
from gnuradio.fft import logpwrfft  # noqa: E402

from gr_argos.retune_sweep import retune_sweep  # noqa: E402

pytestmark = pytest.mark.slow

SAMP_RATE = 1e6
FFT_SIZE = 256
BIN_HZ = SAMP_RATE / FFT_SIZE             # 3906.25 Hz
START_HZ, STOP_HZ = 100e6, 104e6          # 6 steps of 750 kHz: 4.5 MHz, 1152 bins
KEPT = 192                                # 0.75 of 256 bins per step
# Wideband bins of the carriers, with their amplitudes: inside steps, on the last and the
# first kept bin of a step (191, 384), at both ends of the sweep, and apart by more than the
# window's main lobe (+-4 bins).
CARRIER_BINS = {0: 0.2, 10: 0.3, 191: 0.2, 384: 0.1, 420: 0.1, 700: 0.3, 1000: 0.05, 1151: 0.2}
CARRIERS_HZ = [(START_HZ + j * BIN_HZ, amplitude) for j, amplitude in CARRIER_BINS.items()]
NOISE_RMS = 0.001
PASSBAND = 0.9                            # of the band the receiver's filter passes
SETTLE_SAMPLES = 2 * FFT_SIZE
GARBAGE_OFFSET_BINS = 77                  # the unlocked PLL's tone, in the kept part of a step
SWEEPS = 3


class tunable_band(gr.sync_block):
    """A receiver at ``samp_rate`` whose tune follows ``command`` messages (see module doc).

    Args:
        carriers: (absolute frequency in Hz, amplitude) of each carrier.
        center_freq: the tune before the first command, in Hz.
        emit_tags: tag each retune ``rx_freq`` (a UHD-like driver) or not (gr-osmosdr's
            HackRF and RTL-SDR sources tag nothing).
    """

    def __init__(self, carriers: list[tuple[float, float]], center_freq: float,
                 emit_tags: bool = True) -> None:
        gr.sync_block.__init__(self, name="tunable_band", in_sig=None, out_sig=[np.complex64])
        self.carriers = carriers
        self.emit_tags = emit_tags
        self.tune = float(center_freq)
        self.tunes_applied: list[float] = []
        self._pending: float | None = float(center_freq)
        self._garbage_left = 0
        self._rng = np.random.default_rng(7)
        self.message_port_register_in(pmt.intern("command"))
        self.set_msg_handler(pmt.intern("command"), self._command)

    def _command(self, msg: Any) -> None:
        self.set_center_freq(pmt.to_double(pmt.dict_ref(msg, pmt.intern("freq"), pmt.PMT_NIL)))

    def set_center_freq(self, freq: float) -> None:
        self._pending = float(freq)

    def work(self, input_items: list[np.ndarray], output_items: list[np.ndarray]) -> int:
        out = output_items[0]
        n = len(out)
        first = self.nitems_written(0)
        if self._pending is not None:
            self.tune, self._pending = self._pending, None
            self.tunes_applied.append(self.tune)
            self._garbage_left = SETTLE_SAMPLES
            if self.emit_tags:
                self.add_item_tag(0, first, pmt.intern("rx_freq"), pmt.from_double(self.tune))
        t = (first + np.arange(n)) / SAMP_RATE
        signal = NOISE_RMS * (self._rng.standard_normal(n) + 1j * self._rng.standard_normal(n))
        for freq, amplitude in self.carriers:
            if abs(freq - self.tune) < PASSBAND * SAMP_RATE / 2:  # the anti-alias filter
                signal += amplitude * np.exp(2j * np.pi * (freq - self.tune) * t)
        garbage = min(self._garbage_left, n)
        if garbage:
            signal[:garbage] = (np.exp(2j * np.pi * GARBAGE_OFFSET_BINS * BIN_HZ * t[:garbage])
                                + 0.5 * self._rng.standard_normal(garbage))
            self._garbage_left -= garbage
        out[:] = signal
        return n


def run_sweep(*, emit_tags: bool, **sweep_args: Any) -> tuple[np.ndarray, list[Any], Any]:
    """band -> logpwrfft -> retune_sweep -> SWEEPS wideband vectors; returns (vectors, their
    tags, the band). With tags the sweep commands the band by message, without it calls
    the band's set_center_freq as its tuner."""
    tb = gr.top_block()
    band = tunable_band(CARRIERS_HZ, center_freq=90e6, emit_tags=emit_tags)
    fft = logpwrfft.logpwrfft_c(sample_rate=SAMP_RATE, fft_size=FFT_SIZE, ref_scale=2.0,
                                frame_rate=SAMP_RATE / FFT_SIZE, avg_alpha=1.0, average=False,
                                shift=True)
    sweep = retune_sweep(freq_min=START_HZ, freq_max=STOP_HZ, samp_rate=SAMP_RATE,
                         fft_size=FFT_SIZE, usable_fraction=KEPT / FFT_SIZE,
                         wait_for_tag=emit_tags,
                         tuner=None if emit_tags else band.set_center_freq, **sweep_args)
    head = blocks.head(gr.sizeof_float * sweep.bins, SWEEPS)
    sink = blocks.vector_sink_f(sweep.bins)
    tb.connect(band, fft, sweep, head, sink)
    if emit_tags:
        tb.msg_connect(sweep, "command", band, "command")
    tb.run()
    vectors = np.array(sink.data(), dtype=np.float32).reshape(-1, sweep.bins)
    return vectors, list(sink.tags()), band


def assert_carriers_in_their_bins_and_no_garbage(vectors: np.ndarray) -> None:
    """Every sweep shows each carrier at its absolute frequency's bin and nothing else."""
    assert vectors.shape == (SWEEPS, 6 * KEPT)
    garbage_bins = [step * KEPT + KEPT // 2 + GARBAGE_OFFSET_BINS for step in range(6)]
    for spectrum in vectors:
        floor = float(np.median(spectrum))
        for j, amplitude in CARRIER_BINS.items():
            assert int(np.argmax(spectrum[max(0, j - 3):j + 4])) + max(0, j - 3) == j
            assert spectrum[j] > floor + 40, (j, spectrum[j], floor)
        peaks = set(np.flatnonzero(spectrum > floor + 20))
        near_carriers = {j + d for j in CARRIER_BINS for d in range(-3, 4)}
        assert peaks <= near_carriers, sorted(peaks - near_carriers)
        for j in garbage_bins:
            assert spectrum[j] < floor + 10, f"garbage of a settling retune in bin {j}"


def test_geometry_tiles_the_band_with_whole_steps() -> None:
    """Steps are usable_fraction * samp_rate apart, centred on their kept slices; the output
    spans whole steps from freq_min and names its centre and span."""
    sweep = retune_sweep(freq_min=START_HZ, freq_max=STOP_HZ, samp_rate=SAMP_RATE,
                         fft_size=FFT_SIZE, usable_fraction=0.75)

    assert sweep.tune_freqs == [START_HZ + (i + 0.5) * 750e3 for i in range(6)]
    assert sweep.bins == 1152 and sweep.span_hz == 4.5e6
    assert sweep.center_freq_hz == START_HZ + 2.25e6


@pytest.mark.parametrize(("freq_min", "freq_max", "samp_rate", "fft_size", "fraction"), [
    (88e6, 108e6, 8e6, 2048, 0.75), (START_HZ, STOP_HZ, SAMP_RATE, FFT_SIZE, 0.75),
    (2.4e9, 2.4835e9, 20e6, 4096, 0.5), (433e6, 433.1e6, 2e6, 1024, 1.0)])
def test_sweep_bins_for_a_grc_variable_is_the_block_output_and_its_grc_vlen(
        freq_min: float, freq_max: float, samp_rate: float, fft_size: int,
        fraction: float) -> None:
    """gr_argos.sweep_bins(...) (for a Variable feeding the sink's Bins) is the block's output
    length, and the vlen GRC's block definition computes for the output port."""
    import yaml

    import gr_argos
    from helpers import REPO_ROOT

    definition = yaml.safe_load((REPO_ROOT / "grc" / "gr_argos_retune_sweep.block.yml")
                                .read_text())
    expression = definition["outputs"][0]["vlen"].strip()[2:-1]  # ${ ... }
    grc_vlen = eval(expression, {"max": max, "int": int}, dict(  # noqa: S307 (our own file)
        freq_min=freq_min, freq_max=freq_max, samp_rate=samp_rate, fft_size=fft_size,
        usable_fraction=fraction))
    sweep = retune_sweep(freq_min=freq_min, freq_max=freq_max, samp_rate=samp_rate,
                         fft_size=fft_size, usable_fraction=fraction)
    assert gr_argos.sweep_bins(freq_min, freq_max, samp_rate, fft_size, fraction) \
        == sweep.bins == grc_vlen


@pytest.mark.parametrize("fraction", [0.0, 0.7, 1.5])
def test_bad_usable_fraction_is_refused(fraction: float) -> None:
    """A fraction that does not keep an even whole number of bins is refused at once."""
    with pytest.raises(ValueError, match="even whole number"):
        retune_sweep(fft_size=256, usable_fraction=fraction)


def test_command_messages_and_rx_freq_tags_stitch_the_band() -> None:
    """Driving a tagging source through command messages, each sweep shows every carrier in
    the bin of its absolute frequency, none of the settling garbage, and carries the
    rx_freq/rx_rate tags of the whole band."""
    vectors, tags, band = run_sweep(emit_tags=True, skip_vectors=4, dwell_vectors=2)

    assert_carriers_in_their_bins_and_no_garbage(vectors)
    assert band.tunes_applied[1:7] == [START_HZ + (i + 0.5) * 750e3 for i in range(6)]
    by_key: dict[str, list[float]] = {}
    for tag in tags:
        by_key.setdefault(pmt.symbol_to_string(tag.key), []).append(pmt.to_double(tag.value))
    assert set(by_key["rx_freq"]) == {START_HZ + 2.25e6}
    assert set(by_key["rx_rate"]) == {4.5e6}


def test_tuner_callback_without_tags_skips_the_vectors_in_flight() -> None:
    """For a source with no command port and no tags (this gr-osmosdr build), the tuner
    callback retunes it and skip_vectors covers the vectors still in flight: the stitched
    band is just as clean."""
    vectors, _tags, band = run_sweep(emit_tags=False, skip_vectors=400, dwell_vectors=1)

    assert_carriers_in_their_bins_and_no_garbage(vectors)
    assert band.tunes_applied[1:7] == [START_HZ + (i + 0.5) * 750e3 for i in range(6)]
