# SPDX-License-Identifier: GPL-3.0-or-later
"""The pyramid of one frame: its traces at every resolution a view needs, built once.

Level 0 is the frame as published; each level above merges pairs of the bins below it, so
level ``L`` has one bin per ``2**L`` bins of the frame. A peak (or sample, or unstated)
trace merges by the maximum, so a carrier one bin wide keeps its level at every zoom
(summing or sampling bins would dim or lose it); an average trace merges by the mean of
linear power, so it stays the average over the bins it covers. Levels are built on first
use, each from the one below (the whole pyramid costs less than two passes over the frame),
and only as far up as some view needs. Plain numpy: no GNU Radio, no sockets.
"""

from __future__ import annotations


import numpy as np
import numpy.typing as npt

from gr_argos.protocol import FrameFormat, SpectrumFrame, encode_frame
from gr_argos.server.views import StreamGeometry, ViewSlice

__all__ = ["Pyramid", "encode_view"]


class _Levels:
    """One trace's levels, in the form it merges in: dB for the maximum (the same maximum
    as of linear power), linear power for the mean."""

    __slots__ = ("by_mean", "levels")

    def __init__(self, power_db: npt.NDArray[np.float32], detector: str) -> None:
        self.by_mean = detector == "average"
        values = power_db.astype(np.float64)
        if self.by_mean:
            with np.errstate(over="ignore"):
                values = np.power(10.0, values / 10.0)
        self.levels = [values]

    def up_to(self, level: int) -> None:
        while len(self.levels) <= level:
            below = self.levels[-1]
            low, high = below[0::2], below[1::2]
            if self.by_mean:
                # NaN (a bin without a value) is left out of the mean, as fmax leaves it out
                # of the maximum: the merged bin is the other one.
                merged = np.where(np.isnan(low), high,
                                  np.where(np.isnan(high), low, (low + high) / 2))
            else:
                merged = np.fmax(low, high)
            self.levels.append(merged)

    def slice_db(self, view: ViewSlice) -> npt.NDArray[np.float32]:
        values = self.levels[view.level][view.offset:view.offset + view.width]
        if self.by_mean:
            with np.errstate(divide="ignore"):
                values = 10.0 * np.log10(values)
        return values.astype(np.float32)


class Pyramid:
    """The levels of a decoded frame's traces, built on first use.

    Args:
        frame: the frame as published (its first trace, and its second if it has one).
    """

    __slots__ = ("frame", "geometry", "_traces")

    def __init__(self, frame: SpectrumFrame) -> None:
        self.frame = frame
        self.geometry = StreamGeometry(frame.bin_count, frame.center_freq_hz, frame.span_hz)
        self._traces = [_Levels(frame.power_db, frame.detector)]
        if frame.second_power_db is not None:
            self._traces.append(_Levels(frame.second_power_db, frame.second_detector))

    @property
    def levels_built(self) -> int:
        """Levels built above level 0, over all traces."""
        return sum(len(trace.levels) - 1 for trace in self._traces)

    def traces(self, view: ViewSlice, second: bool) -> list[npt.NDArray[np.float32]]:
        """The first trace of ``view`` in dB, and the second too when ``second`` is true
        and the frame has one.

        Raises:
            ValueError: the frame does not hold ``view`` (:meth:`StreamGeometry.fits`).
        """
        if not self.geometry.fits(view):
            raise ValueError(f"a {self.geometry.bins}-bin frame has no level {view.level} "
                             f"bins {view.offset}..{view.offset + view.width - 1}")
        wanted = self._traces if second else self._traces[:1]
        for trace in wanted:
            trace.up_to(view.level)
        return [trace.slice_db(view) for trace in wanted]


def encode_view(pyramid: Pyramid, view: ViewSlice, frame_format: FrameFormat) -> bytes:
    """The frame of ``view`` in ``frame_format``: an ordinary v1 frame whose ``center_freq_hz``, ``span_hz`` and ``bin_count`` describe the slice exactly.

    Raises:
        ValueError: the frame does not hold ``view``.
    """
    traces = pyramid.traces(view, frame_format.second_trace)
    frame = pyramid.frame
    second = traces[1] if len(traces) > 1 else None
    return encode_frame(
        traces[0], center_freq_hz=pyramid.geometry.slice_center_hz(view),
        span_hz=pyramid.geometry.slice_span_hz(view), timestamp_ns=frame.timestamp_ns,
        sequence=frame.sequence, stream_id=frame.stream_id, missed=frame.missed,
        encoding=frame_format.encoding, compress=frame_format.compress,
        step_db=frame_format.step_db, detector=frame.detector, second_power_db=second,
        second_detector=frame.second_detector if second is not None else "")
