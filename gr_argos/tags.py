# SPDX-License-Identifier: GPL-3.0-or-later
"""Stream tag keys gr-argos blocks read and write.

``rx_freq``, ``rx_rate`` and ``rx_time`` are the keys gr-osmosdr and UHD sources emit; the
sweep keys are gr-argos's own, on each wideband vector a sweep source outputs, and
``period_time`` is :class:`~gr_argos.spectrum_detector.spectrum_detector`'s, on each frame.
"""

from __future__ import annotations

import pmt

RX_FREQ = pmt.intern("rx_freq")  # centre frequency in Hz (double)
RX_RATE = pmt.intern("rx_rate")  # sample rate / span in Hz (double)
RX_TIME = pmt.intern("rx_time")  # capture time: tuple (uint64 seconds, double fraction)
SWEEP_NUMBER = pmt.intern("sweep_number")  # uint64, counting sweeps from 0
SWEEP_COMPLETE = pmt.intern("sweep_complete")  # bool: every output bin was measured
#: The frame period a detector's output vector covers: tuple (double start_s, double ready_s),
#: its first sample and the last sample the vector waited for, in seconds after the
#: detector's first input sample.
PERIOD_TIME = pmt.intern("period_time")
#: GNU Radio's rotator (``blocks.rotator_cc(inc, True)``) on the sample where a phase increment
#: sent to its ``cmd`` port takes effect: argos-spectrum shifts a simulated band or a
#: recording with one when a client tunes it, and the sink changes its label there.
ROT_PHASE_INC = pmt.intern("rot_phase_inc")
