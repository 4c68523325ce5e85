# SPDX-License-Identifier: GPL-3.0-or-later
"""The simulated band puts its signals where gr_argos.sim_band_source documents them.

A real GNU Radio top block runs the source unthrottled at a low sample rate (all offsets
scale with it), and numpy measures the samples.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

gr = pytest.importorskip("gnuradio.gr")
from gnuradio import blocks  # noqa: E402

from gr_argos.sim_band_source import (  # noqa: E402
    BURST,
    BURST_RATE_HZ,
    CARRIERS,
    PULSE,
    PULSE_RATE_HZ,
    PULSE_S,
    STRONGEST_CARRIER,
    SWEEP_PERIOD_S,
    SWEEP_RANGE,
    sim_band_source,
)

SAMP_RATE = 256e3
FFT_SIZE = 2048
DURATION_S = 4.5  # more than one sweep period, so the sweep can be seen to repeat

Samples = npt.NDArray[np.complex64]


def generate(seconds: float, *, seed: int = 0, samp_rate: float = SAMP_RATE) -> Samples:
    """Run sim_band_source -> head -> vector sink in a top block and return the samples."""
    top = gr.top_block()
    source = sim_band_source(samp_rate=samp_rate, throttle=False, seed=seed)
    head = blocks.head(gr.sizeof_gr_complex, int(seconds * samp_rate))
    sink = blocks.vector_sink_c()
    top.connect(source, head, sink)
    top.run()
    return np.asarray(sink.data(), dtype=np.complex64)


def power_db(samples: Samples) -> npt.NDArray[np.float64]:
    """FFT-shifted power spectrum in dB of one FFT_SIZE window; a tone of amplitude A reads 20*log10(A)."""
    window = np.blackman(FFT_SIZE)
    spectrum = np.fft.fftshift(np.fft.fft(samples[:FFT_SIZE] * window)) / window.sum()
    return 10 * np.log10(np.abs(spectrum) ** 2 + 1e-20)


def spectra_db(samples: Samples) -> npt.NDArray[np.float64]:
    """One power spectrum per consecutive FFT_SIZE window, shape (windows, FFT_SIZE)."""
    count = len(samples) // FFT_SIZE
    return np.array([power_db(samples[i * FFT_SIZE :]) for i in range(count)])


def bin_of(offset_fraction: float) -> int:
    """Index of the FFT-shifted bin holding a signal at this fraction of the sample rate."""
    return round(FFT_SIZE / 2 + offset_fraction * FFT_SIZE)


def window_at(samples: Samples, time_s: float) -> Samples:
    start = int(time_s * SAMP_RATE)
    return samples[start : start + FFT_SIZE]


@pytest.fixture(scope="module")
def band() -> Samples:
    return generate(DURATION_S)


def test_output_has_the_requested_length_and_stays_within_full_scale(band: Samples) -> None:
    """The source yields complex samples at samp_rate whose magnitude stays below 1.0."""
    assert len(band) == int(DURATION_S * SAMP_RATE)
    assert np.max(np.abs(band)) < 1.0


def test_each_carrier_sits_at_its_documented_offset_and_amplitude(band: Samples) -> None:
    """Every entry of CARRIERS shows up as a peak at its bin with its amplitude (+-1 dB)."""
    average_db = 10 * np.log10(np.mean(10 ** (spectra_db(band[: 32 * FFT_SIZE]) / 10), axis=0))
    noise_floor_db = np.median(average_db)
    for offset, amplitude in CARRIERS:
        expected = bin_of(offset)
        neighbourhood = average_db[expected - 3 : expected + 4]
        assert int(np.argmax(neighbourhood)) == 3, f"carrier at {offset:+.4f} fs is not at bin {expected}"
        assert average_db[expected] == pytest.approx(20 * np.log10(amplitude), abs=1.0)
        assert average_db[expected] > noise_floor_db + 30


def test_strongest_carrier_beats_every_other_signal_by_10_db(band: Samples) -> None:
    """Even in a max-hold over bursts and the whole sweep, the strongest carrier leads by >= 10 dB."""
    max_hold_db = spectra_db(band[: int(SAMP_RATE)]).max(axis=0)
    strongest = bin_of(STRONGEST_CARRIER[0])
    assert abs(int(np.argmax(max_hold_db)) - strongest) <= 1
    others = np.delete(max_hold_db, np.arange(strongest - 3, strongest + 4))
    assert max_hold_db[strongest] - others.max() >= 10.0


def test_drifting_signal_moves_within_its_sweep_range_and_repeats(band: Samples) -> None:
    """The sweep peak lies inside SWEEP_RANGE, changes place over time and comes back one period later."""
    low, high = (bin_of(fraction) for fraction in SWEEP_RANGE)

    def sweep_peak(time_s: float) -> int:
        spectrum = power_db(window_at(band, time_s))
        return low + int(np.argmax(spectrum[low : high + 1]))

    early, later = sweep_peak(0.1), sweep_peak(1.1)
    assert low <= early <= high and low <= later <= high
    assert abs(early - later) > 50
    assert abs(sweep_peak(0.1 + SWEEP_PERIOD_S) - early) <= 1


def test_bursty_carrier_switches_on_and_off_at_its_rate(band: Samples) -> None:
    """The burst bin toggles between carrier and noise BURST_RATE_HZ times per second."""
    burst_db = spectra_db(band[: int(SAMP_RATE)])[:, bin_of(BURST[0])]
    assert burst_db.max() - burst_db.min() > 30
    on = burst_db > (burst_db.max() + burst_db.min()) / 2
    switch_ons = int(np.count_nonzero(on[1:] & ~on[:-1]))
    assert switch_ons == pytest.approx(BURST_RATE_HZ, abs=1)


def test_short_pulses_come_at_their_rate_length_and_offset(band: Samples) -> None:
    """Mixed down from its offset and smoothed, the pulse carrier is on PULSE_RATE_HZ times
    a second, each time for PULSE_S, at its amplitude."""
    offset, amplitude = PULSE
    t = np.arange(len(band))
    baseband = band * np.exp(-2j * np.pi * offset * t)
    smoothing = np.hanning(48)  # shorter than a pulse, low sidelobes for the carriers
    envelope = np.abs(np.convolve(baseband, smoothing / smoothing.sum(), mode="same"))
    on = envelope > amplitude / 2
    starts = np.flatnonzero(on[1:] & ~on[:-1])
    ends = np.flatnonzero(~on[1:] & on[:-1])
    assert len(starts) == pytest.approx(DURATION_S * PULSE_RATE_HZ, abs=1)
    assert np.diff(starts) / SAMP_RATE == pytest.approx(1 / PULSE_RATE_HZ, abs=1e-3)
    lengths = ends[: len(starts)] - starts[: len(ends)] if ends[0] > starts[0] else (
        ends[1:][: len(starts)] - starts[: len(ends) - 1])
    assert lengths / SAMP_RATE == pytest.approx(PULSE_S, abs=40 / SAMP_RATE)
    assert np.median(envelope[on]) == pytest.approx(amplitude, rel=0.1)


def test_equal_seeds_give_equal_noise_and_different_seeds_differ() -> None:
    """The seed argument makes the noise reproducible."""
    first, again, other = (generate(0.05, seed=seed) for seed in (7, 7, 8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_nonpositive_sample_rate_is_refused() -> None:
    """samp_rate <= 0 raises ValueError naming the problem."""
    with pytest.raises(ValueError, match="samp_rate"):
        sim_band_source(samp_rate=0)
