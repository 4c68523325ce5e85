# SPDX-License-Identifier: GPL-3.0-or-later
"""A simulated HackRF-style band: fixed carriers, a drifting signal, a bursty one, short
pulses (as a key fob's) and noise.

Built only from GNU Radio's own C++ blocks, so it costs little CPU and behaves like any other
source in a flowgraph. Every signal sits at a known offset from the centre, given below as a
fraction of the sample rate, so tests and demos can say where each one must appear.

The fixed offsets are whole multiples of ``samp_rate / 2048``: each carrier lies on a bin
centre of a 2048-point FFT (and of any larger power-of-two FFT), never at DC or on a bin edge.
"""

from __future__ import annotations

import math

import numpy as np
from gnuradio import analog, blocks, gr

__all__ = [
    "CARRIER_PERIOD",
    "CARRIERS",
    "STRONGEST_CARRIER",
    "SWEEP_RANGE",
    "SWEEP_PERIOD_S",
    "SWEEP_AMPLITUDE",
    "BURST",
    "BURST_RATE_HZ",
    "PULSE",
    "PULSE_S",
    "PULSE_RATE_HZ",
    "sim_band_source",
]

# (offset as a fraction of samp_rate, amplitude) of the steady carriers. Every offset is a
# whole number of cycles per CARRIER_PERIOD samples. The first carrier is the strongest by
# 14 dB over any other signal in the band (0.5 against at most 0.1).
CARRIER_PERIOD = 2048
CARRIERS: tuple[tuple[float, float], ...] = (
    (410 / 2048, 0.5),
    (103 / 2048, 0.1),
    (-717 / 2048, 0.05),
    (881 / 2048, 0.02),
)
STRONGEST_CARRIER: tuple[float, float] = max(CARRIERS, key=lambda carrier: carrier[1])

# The drifting signal sweeps up and down between these offsets (fractions of samp_rate) with a
# triangle law, one full up-and-down cycle every SWEEP_PERIOD_S seconds.
SWEEP_RANGE: tuple[float, float] = (-0.30, -0.05)
SWEEP_PERIOD_S = 4.0
SWEEP_AMPLITUDE = 0.08

# The bursty carrier (offset fraction, amplitude) is on for half of each 1 / BURST_RATE_HZ
# period and off for the other half.
BURST: tuple[float, float] = (615 / 2048, 0.1)
BURST_RATE_HZ = 3.0

# A short pulse (offset fraction, amplitude), PULSE_S long, PULSE_RATE_HZ times a second: like
# a key fob or a TPMS sensor. At 8 MS/s it spans a little more than one 2048-point FFT, so the
# peak detector shows every one, while one FFT per frame (logpwrfft) catches about 1 in 100.
PULSE: tuple[float, float] = (-819 / 2048, 0.06)
PULSE_S = 300e-6
PULSE_RATE_HZ = 4.0

# Every block inside gets output buffers holding this much signal time. GNU Radio's default
# (4096 complex samples, 0.5 ms at 8 MS/s) wakes each block about 2000 times a second and the
# thread switching then costs more CPU than the signal generation itself; 5 ms buffers cut the
# cost from ~40% to ~17% of one core at 8 MS/s while keeping the throttled output smooth.
_BUFFER_S = 0.005
_DEFAULT_BUFFER_ITEMS = 4096  # GNU Radio's 32 KiB default buffer, in complex samples


def _carrier_period() -> list[complex]:
    """One CARRIER_PERIOD-sample period of the sum of the steady carriers."""
    t = np.arange(CARRIER_PERIOD)
    period = sum(
        amplitude * np.exp(2j * np.pi * offset * t) for offset, amplitude in CARRIERS
    )
    return [complex(x) for x in np.asarray(period, dtype=np.complex64)]


class sim_band_source(gr.hier_block2):
    """Simulated band: one complex64 stream at ``samp_rate`` with known signals in it.

    Output: complex baseband holding the carriers of ``CARRIERS``, a signal drifting
    across ``SWEEP_RANGE``, a carrier at ``BURST`` switching on and off ``BURST_RATE_HZ``
    times per second, a ``PULSE_S`` pulse at ``PULSE`` ``PULSE_RATE_HZ`` times per second,
    and Gaussian noise. All offsets are fractions of ``samp_rate``
    relative to the centre, so the picture scales with the sample rate. The sum stays below
    1.0 in magnitude (full scale of a HackRF) apart from rare noise peaks.

    Args:
        samp_rate: sample rate of the output in samples/s.
        noise_amplitude: RMS magnitude of the complex Gaussian noise floor (linear,
            full scale = 1.0).
        throttle: pace the output at ``samp_rate`` like real hardware. Turn it off only to
            measure throughput or to generate samples as fast as the CPU allows.
        seed: seed of the noise generator; equal seeds give equal noise.
    """

    def __init__(
        self,
        samp_rate: float = 8e6,
        noise_amplitude: float = 0.02,
        throttle: bool = True,
        seed: int = 0,
    ) -> None:
        if samp_rate <= 0:
            raise ValueError(f"samp_rate must be positive, got {samp_rate} samples/s")
        gr.hier_block2.__init__(
            self,
            "sim_band_source",
            gr.io_signature(0, 0, 0),
            gr.io_signature(1, 1, gr.sizeof_gr_complex),
        )

        # The steady carriers all repeat every CARRIER_PERIOD samples, so one precomputed
        # period played in a loop replaces a sig_source and an adder input per carrier.
        steady = blocks.vector_source_c(_carrier_period(), repeat=True)
        noise = analog.fastnoise_source_c(analog.GR_GAUSSIAN, noise_amplitude, seed)

        # The VCO turns a triangle of frequencies (in Hz) into the drifting tone:
        # sensitivity 2*pi rad/s per volt makes one volt mean one hertz.
        sweep_low, sweep_high = (fraction * samp_rate for fraction in SWEEP_RANGE)
        sweep_law = analog.sig_source_f(
            samp_rate, analog.GR_TRI_WAVE, 1.0 / SWEEP_PERIOD_S, sweep_high - sweep_low, sweep_low
        )
        sweep = blocks.vco_c(samp_rate, 2 * math.pi, SWEEP_AMPLITUDE)

        # A 0/1 square wave gates the burst carrier on and off.
        burst_offset, burst_amplitude = BURST
        burst_carrier = analog.sig_source_c(
            samp_rate, analog.GR_COS_WAVE, burst_offset * samp_rate, burst_amplitude
        )
        burst_gate = analog.sig_source_f(samp_rate, analog.GR_SQR_WAVE, BURST_RATE_HZ, 1.0)
        gate_to_complex = blocks.float_to_complex()
        burst = blocks.multiply_cc()

        # The pulse: a rising sawtooth at PULSE_RATE_HZ, over a threshold for its last
        # PULSE_S, gates a carrier.
        pulse_offset, pulse_amplitude = PULSE
        pulse_carrier = analog.sig_source_c(
            samp_rate, analog.GR_COS_WAVE, pulse_offset * samp_rate, pulse_amplitude
        )
        ramp = analog.sig_source_f(samp_rate, analog.GR_SAW_WAVE, PULSE_RATE_HZ, 1.0)
        edge = 1.0 - PULSE_S * PULSE_RATE_HZ
        pulse_gate = blocks.threshold_ff(edge, edge, 0.0)
        pulse = blocks.multiply_cc()
        pulse_to_complex = blocks.float_to_complex()
        self.connect(ramp, pulse_gate, pulse_to_complex, (pulse, 1))
        self.connect(pulse_carrier, (pulse, 0))

        band = blocks.add_cc()
        for port, block in enumerate((steady, noise, sweep, burst, pulse)):
            self.connect(block, (band, port))
        self.connect(sweep_law, sweep)
        self.connect(burst_gate, gate_to_complex, (burst, 1))
        self.connect(burst_carrier, (burst, 0))

        inner = [steady, noise, sweep_law, sweep, burst_carrier, burst_gate, gate_to_complex,
                 burst, pulse_carrier, ramp, pulse_gate, pulse_to_complex, pulse, band]
        if throttle:
            throttle_block = blocks.throttle(gr.sizeof_gr_complex, samp_rate, True)
            self.connect(band, throttle_block, self)
            inner.append(throttle_block)
        else:
            self.connect(band, self)

        buffer_items = int(samp_rate * _BUFFER_S)
        if buffer_items > _DEFAULT_BUFFER_ITEMS:
            self.set_min_output_buffer(buffer_items)
            # GNU Radio logs the larger buffer of each inner block at info level when the
            # flowgraph starts, 15 lines that bury the sink's URL in GRC's console: these
            # blocks say only warnings and errors.
            for block in inner:
                block.set_log_level("warn")
