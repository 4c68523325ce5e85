# SPDX-License-Identifier: GPL-3.0-or-later
"""Export a recording's frames as CSV in the layout of rtl_power and hackrf_sweep.

One line per frame of the chosen stream::

    date, time, hz_low, hz_high, hz_bin_width, num_samples, dB, dB, ...

``date`` and ``time`` are the frame's ``timestamp_ns`` in UTC (``2026-12-07, 05:47:00``);
bin ``i`` covers ``[hz_low + i * hz_bin_width, hz_low + (i + 1) * hz_bin_width)``, so its
centre is the bin's frequency in the frame (docs/protocol.md, "Bin frequencies");
``num_samples`` is the bin count (the FFT size of an FFT spectrum); the levels are in dB with
two decimals (``-inf`` for an empty bin, ``nan`` as it came). Tools that read hackrf_sweep's
text output (this project's own sweep parser among them) read it. Plain code.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TextIO

import numpy as np

from gr_argos.protocol import ProtocolError, decode_frame
from gr_argos.recording.files import KIND_FRAME, Record

__all__ = ["csv_line", "csv_lines", "write_csv"]


def csv_line(frame_bytes: bytes) -> tuple[int, str]:
    """A frame's stream id and its CSV line (ending in a newline).

    Raises:
        ProtocolError: the bytes are no valid frame.
    """
    frame = decode_frame(frame_bytes)
    bins = frame.bin_count
    width = frame.span_hz / bins
    hz_low = frame.center_freq_hz - (bins // 2 + 0.5) * width
    seconds, _ = divmod(frame.timestamp_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%d, %H:%M:%S", time.gmtime(seconds))
    levels = ", ".join(np.char.mod("%.2f", frame.power_db.astype(np.float64)))
    return frame.stream_id, (f"{stamp}, {round(hz_low)}, {round(hz_low + bins * width)}, "
                             f"{width:.2f}, {bins}, {levels}\n")


def csv_lines(records: Iterable[Record], stream_id: int | None = None) -> Iterator[str]:
    """The CSV lines of the frames of ``stream_id`` (None: the first stream met)."""
    for record in records:
        if record.kind != KIND_FRAME:
            continue
        try:
            frame_stream, line = csv_line(record.body)
        except ProtocolError as exc:
            raise ProtocolError(f"{record.segment} byte {record.offset}: {exc}") from exc
        if stream_id is None:
            stream_id = frame_stream
        if frame_stream == stream_id:
            yield line


def write_csv(records: Iterable[Record], out: TextIO, stream_id: int | None = None) -> int:
    """Write the CSV lines of a stream's frames to ``out``; return how many."""
    count = 0
    for line in csv_lines(records, stream_id):
        out.write(line)
        count += 1
    return count
