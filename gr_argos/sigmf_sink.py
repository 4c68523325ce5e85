# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio sink that records complex samples as SigMF (docs/recording.md, "IQ recording")."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pmt
from gnuradio import gr

from gr_argos.recording.sigmf import IqRecorder, IqRecordSettings
from gr_argos.settings import ConfigError, from_arguments, init_signature
from gr_argos.tags import ROT_PHASE_INC, RX_FREQ, RX_RATE

__all__ = ["sigmf_sink"]


class sigmf_sink(gr.sync_block):
    """Record a stream of complex samples as a SigMF recording (``cf32_le``), on a thread of
    its own: ``work()`` copies the samples into a bounded queue and returns, so a slow or
    full disk never stalls the radio (what is lost is counted, and the recording says so).

    The capture segments follow the tuning: an ``rx_freq`` tag (gr-osmosdr, UHD) or a
    ``rot_phase_inc`` tag (a ``blocks.rotator_cc`` shifting a simulated band or a recording
    away from ``center_freq``, to the frequency :meth:`expect_retune` gave) starts a new one
    at its sample; so does :meth:`retuned` (a device that tags nothing: from the next
    samples in), and ``rx_rate`` or :meth:`set_sample_rate` start a new recording.

    Args:
        samp_rate: the samples' rate in S/s.
        center_freq: the frequency they are centred on, in Hz.
        hw: the receiver (``core:hw``).
        description: ``core:description``.
        recording: whether to record from the start (:meth:`set_recording` switches).
        settings: ``record_iq_dir`` and the other ``record_iq_*`` settings
            (:class:`~gr_argos.recording.sigmf.IqRecordSettings`).
    """

    def __init__(self, samp_rate: float, center_freq: float = 100e6, hw: str = "",
                 description: str = "", recording: bool = True, **settings: Any) -> None:
        gr.sync_block.__init__(self, name="sigmf_sink", in_sig=[np.complex64], out_sig=None)
        (record,) = from_arguments("sigmf_sink", settings, IqRecordSettings)
        if not record.record_iq_dir:
            raise ConfigError("sigmf_sink: record_iq_dir is empty: name the directory to "
                              "record to")
        self.recorder = IqRecorder(record, samp_rate, center_freq, hw=hw,
                                   description=description)
        self._samp_rate = float(samp_rate)
        self._origin_hz = float(center_freq)  # where a rotator's shift is counted from
        self._wanted = recording
        self._running = False
        # The frequency each phase increment the rotator will tag stands for.
        self._expected: dict[float, float] = {}

    # -- recording on and off --------------------------------------------------------------

    def start(self) -> bool:
        self._running = True
        if self._wanted:
            self.recorder.start()
        return True

    def stop(self) -> bool:
        self._running = False
        self.recorder.stop()
        return True

    def set_recording(self, wanted: bool) -> None:
        """Record (into a new file) or stop recording, now if the flowgraph runs, else from
        its start."""
        self._wanted = wanted
        if wanted and self._running:
            self.recorder.start()
        elif not wanted:
            self.recorder.stop()

    @property
    def switch(self) -> _Switch:
        """The recording as a server's clients start and stop it (``record``)."""
        return _Switch(self)

    # -- tuning ----------------------------------------------------------------------------

    def retuned(self, center_freq: float) -> None:
        """The source now gives samples centred on ``center_freq`` (Hz), from about the next
        samples this block gets (a device that tags nothing)."""
        self.recorder.retune(center_freq)

    def expect_retune(self, center_freq: float, phase_inc: float) -> None:
        """A ``rot_phase_inc`` tag of ``phase_inc`` will move the band to exactly
        ``center_freq`` (Hz): call it before the rotator gets its new increment (which it
        holds only as a float, a few mHz from the frequency asked for). Tags are matched by
        value, so one sent twice changes nothing the second time."""
        if len(self._expected) >= 64:  # tags that never came (a chain rebuilt meanwhile)
            self._expected.clear()
        self._expected[_tag_key(phase_inc)] = float(center_freq)

    def set_sample_rate(self, samp_rate: float) -> None:
        """The source's new rate: a new recording from the next samples in."""
        self._samp_rate = float(samp_rate)
        self.recorder.set_sample_rate(samp_rate)

    # -- data ------------------------------------------------------------------------------

    def work(self, input_items: list[npt.NDArray[Any]], output_items: list[npt.NDArray[Any]]) -> int:
        samples = input_items[0]
        count = len(samples)
        first = self.nitems_read(0)
        done = 0
        for tag in sorted(self.get_tags_in_window(0, 0, count), key=lambda t: t.offset):
            at = int(tag.offset - first)
            if at > done:
                self.recorder.samples(samples[done:at])
                done = at
            self._apply_tag(tag)
        self.recorder.samples(samples[done:])
        return count

    def _apply_tag(self, tag: Any) -> None:
        if pmt.eq(tag.key, RX_FREQ) and pmt.is_number(tag.value):
            self.recorder.retune(pmt.to_double(tag.value))
        elif pmt.eq(tag.key, RX_RATE) and pmt.is_number(tag.value):
            self.set_sample_rate(pmt.to_double(tag.value))
        elif pmt.eq(tag.key, ROT_PHASE_INC) and pmt.is_number(tag.value):
            expected = self._expected.get(_tag_key(pmt.to_double(tag.value)))
            if expected is not None:
                self.recorder.retune(expected)
                return
            # The rotator moves the band by -inc: its centre is now origin - inc * rate / 2 pi.
            shift = -pmt.to_double(tag.value) * self._samp_rate / (2 * math.pi)
            self.recorder.retune(round(self._origin_hz + shift, 3))


def _tag_key(phase_inc: float) -> float:
    """A phase increment as the rotator's tag holds it (a float32)."""
    return float(np.float32(phase_inc))


class _Switch:
    """A :class:`sigmf_sink`'s recording, switched by clients (a
    :class:`~gr_argos.server.recording_switch.Recording`)."""

    def __init__(self, sink: sigmf_sink) -> None:
        self._sink = sink

    @property
    def started(self) -> bool:
        return self._sink.recorder.started

    def start(self) -> None:
        self._sink.set_recording(True)

    def stop(self) -> None:
        self._sink.set_recording(False)

    def status(self) -> dict[str, Any]:
        return self._sink.recorder.status()


# help(sigmf_sink) and GRC's parameters: its own arguments, then each record_iq_* setting.
sigmf_sink.__init__.__signature__ = inspect.signature(sigmf_sink.__init__).replace(  # type: ignore[attr-defined]
    parameters=[*list(inspect.signature(sigmf_sink.__init__).parameters.values())[:-1],
                *list(init_signature(IqRecordSettings).parameters.values())[1:]])
