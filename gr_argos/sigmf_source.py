# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio source that plays a SigMF recording (docs/recording.md, "Playing a recording")."""

from __future__ import annotations

import bisect
import math
import os
from typing import Any

import numpy as np
import numpy.typing as npt
import pmt
from gnuradio import blocks, gr

from gr_argos.recording.sigmf_reader import SigmfRecording, read_sigmf
from gr_argos.tags import RX_FREQ, RX_RATE

__all__ = ["sigmf_source"]

#: Samples the tagger passes at a time, when the recording repeats.
_TAGGER_CHUNK = 65536


class sigmf_source(gr.hier_block2):
    """Plays a SigMF recording as complex samples, tagged as a radio tags them: ``rx_rate``
    (``core:sample_rate``) and ``rx_freq`` (the first capture's ``core:frequency``) on the
    first sample, and ``rx_freq`` again on the first sample of each capture segment whose
    frequency differs (a recording made while the radio was retuned), in every loop.

    The data goes through GNU Radio's file source, then, for integer datatypes, its
    converters to complex64 (``ci16_le`` scaled by 1/32768, ``ci8`` by 1/128, ``cu8``
    offset by 128 then scaled by 1/128: full scale is 1.0), then a throttle.

    Args:
        path: the recording's ``.sigmf-meta`` or ``.sigmf-data`` file, or their base name.
        repeat: play it again from the start when it ends (else the flowgraph's source
            ends).
        throttle: pace the samples at the recorded rate, as a radio delivers them (off:
            as fast as the flowgraph takes them, with nothing else pacing it).

    Attributes:
        recording: what its meta file says
            (:class:`~gr_argos.recording.sigmf_reader.SigmfRecording`).
        samp_rate: its sample rate in S/s.
        center_freq: its first capture segment's frequency in Hz (None: not said).

    Raises:
        SigmfError: the recording cannot be played (the message says why and what to do).
    """

    def __init__(self, path: str = "", repeat: bool = True, throttle: bool = True) -> None:
        gr.hier_block2.__init__(self, "sigmf_source", gr.io_signature(0, 0, 0),
                                gr.io_signature(1, 1, gr.sizeof_gr_complex))
        self.recording = recording = read_sigmf(path)
        self.samp_rate = recording.samp_rate
        self.center_freq = recording.center_freq
        chain = _reader(recording, repeat)
        tagger = _capture_tagger(recording, chain[0], 1 if recording.datatype == "cf32_le"
                                 else 2)
        if repeat:
            # A Python block costs ~50 us a call: in chunks this large it is called ~300
            # times a second at 20 MS/s (0.3 core for the whole source, against 0.75 in the
            # small chunks the throttle takes). Not when the file ends: the last partial
            # chunk would never leave.
            tagger.set_output_multiple(_TAGGER_CHUNK)
        chain.append(tagger)
        if throttle:
            chain.append(blocks.throttle(gr.sizeof_gr_complex, recording.samp_rate, True))
        self._blocks = chain  # kept alive with the hier block
        self.connect(*chain, self)


def _reader(recording: SigmfRecording, repeat: bool) -> list[Any]:
    """The file source and the converters that turn its datatype into complex64."""
    path = str(recording.data_path)
    datatype = recording.datatype
    if datatype == "cf32_le":
        return [blocks.file_source(gr.sizeof_gr_complex, path, repeat)]
    if datatype == "ci16_le":
        return [blocks.file_source(gr.sizeof_short, path, repeat),
                blocks.interleaved_short_to_complex(False, False, 32768.0)]
    chain: list[Any] = [blocks.file_source(gr.sizeof_char, path, repeat)]
    if datatype == "cu8":
        # Unsigned around 128 to signed around 0 (mod 256: the same as flipping the top bit).
        chain.append(blocks.add_const_bb(128))
    chain.append(blocks.interleaved_char_to_complex(False, 128.0))
    return chain


class _capture_tagger(gr.sync_block):
    """Passes the samples through and tags where the recording says they were taken: the
    first sample and each capture segment's first sample, counted in loops of the
    recording's length.

    It counts the samples it passed on itself: when the flowgraph is started again (argos-
    spectrum does when a client's change builds its spectrum chain anew), GNU Radio counts
    every block's items from 0 again and drops what its buffers held, so at its start the
    file source is sent back to the first sample not yet passed on.
    """

    def __init__(self, recording: SigmfRecording, file_source: Any,
                 items_per_sample: int) -> None:
        gr.sync_block.__init__(self, name="sigmf_capture_tagger", in_sig=[np.complex64],
                               out_sig=[np.complex64])
        self._length = recording.samples
        captures = recording.captures
        self._starts = [capture.sample_start for capture in captures]
        # The frequency to tag at each capture start in a loop after the first: none where
        # the loop goes on at the frequency it ended with.
        self._freqs = [capture.center_freq_hz for capture in captures]
        self._again = [not math.isnan(freq) and freq != self._freqs[index - 1]
                       for index, freq in enumerate(self._freqs)]
        self._rate = pmt.from_double(recording.samp_rate)
        self._file_source = file_source
        self._items_per_sample = items_per_sample
        self._position = 0  # samples passed on since the first start, over every loop

    def start(self) -> bool:
        if self._position:
            within = self._position % self._length
            self._file_source.seek(within * self._items_per_sample, os.SEEK_SET)
        return True

    def work(self, input_items: list[npt.NDArray[Any]],
             output_items: list[npt.NDArray[Any]]) -> int:
        count = len(output_items[0])
        output_items[0][:] = input_items[0]
        # The recording's sample p is output item p - position + nitems_written.
        position, shift = self._position, self.nitems_written(0) - self._position
        at, end = position, position + count
        while at < end:
            loop, within = divmod(at, self._length)
            index = bisect.bisect_left(self._starts, within)
            if index == len(self._starts):
                at = (loop + 1) * self._length
                continue
            offset = loop * self._length + self._starts[index]
            if offset >= end:
                break
            freq = self._freqs[index]
            if offset == 0:
                self.add_item_tag(0, 0 + shift, RX_RATE, self._rate)
            if (offset == 0 and not math.isnan(freq)) or self._again[index]:
                self.add_item_tag(0, offset + shift, RX_FREQ, pmt.from_double(freq))
            at = offset + 1
        self._position = end
        return count
