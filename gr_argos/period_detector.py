# SPDX-License-Identifier: GPL-3.0-or-later
"""One power spectrum per frame period, from every FFT of the period: peak or average.

The block inside :class:`gr_argos.spectrum_detector.spectrum_detector` that turns the
|X|^2 vectors of a whole frame period into one vector (or two: a second trace with another
detector over the same FFTs, e.g. the average under the peak). It is called once per period with
the period's vectors already gathered into one item (by ``blocks.stream_to_vector`` in
C++), so Python runs about ``fps`` times a second, whatever the sample rate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pmt
from gnuradio import gr

from gr_argos.tags import PERIOD_TIME

__all__ = ["REDUCTIONS", "period_detector", "reduce_periods"]

#: How the vectors of one period become one: "max" (positive peak), "mean" (average power)
#: or "last" (the period's last FFT of the first branch, as a sample detector).
REDUCTIONS = ("max", "mean", "last")


def reduce_periods(branches: list[npt.NDArray[np.float32]], reduction: str,
                   out: npt.NDArray[np.float32]) -> None:
    """Reduce whole periods of power vectors to one vector per period, in place.

    Args:
        branches: one array per FFT branch, shape (periods, vectors_per_period * bins),
            float32 power; every branch covers the same periods (overlapping FFTs are a
            second branch).
        reduction: "max" or "mean" over all vectors of a period in all branches, or
            "last": the last vector of the period in the first branch.
        out: float32 array of shape (periods, bins) receiving the result.
    """
    periods, bins = out.shape
    if reduction == "last":
        out[:] = branches[0].reshape(periods, -1, bins)[:, -1, :]
        return
    for index, branch in enumerate(branches):
        vectors = branch.reshape(periods, -1, bins)
        if index == 0:
            target = out
        else:
            target = np.empty_like(out)
        if reduction == "max":
            np.maximum.reduce(vectors, axis=1, out=target)
        else:
            np.add.reduce(vectors, axis=1, out=target)
        if index > 0:
            if reduction == "max":
                np.maximum(out, target, out=out)
            else:
                out += target
    if reduction == "mean":
        out *= np.float32(1.0 / (len(branches) * branches[0].shape[1] // bins))


class period_detector(gr.sync_block):
    """Peak or average over the power vectors of each frame period.

    Inputs: ``branches`` streams of float32 items, each item one period's
    ``vectors_per_period`` power vectors of ``bins`` values end to end; then one complex
    stream with one item per period that only carries the period's stream tags. Outputs:
    one float32 vector of ``bins`` per period for each reduction. Tags on any input reach
    the output items of the same index (GNU Radio's all-to-all propagation at rate 1), so
    the tag input is how tags cross the FFT chain.

    Args:
        bins: power values per vector.
        vectors_per_period: vectors of one branch in one period (1 passes the vector on).
        reduction: "max" (positive peak), "mean" (average power) or "last"; a tuple of
            them for one output each (e.g. ("max", "mean"): peak and average).
        branches: FFT branches (2 with 50 % overlap, 4 with 75 %).
        period_samples, samp_rate: when given (the enclosing block's frame period M in
            input samples, and their rate), each output item j gets a ``period_time`` tag
            (start_s, ready_s): the period's first sample, max(0, j M - M/2), and the last
            sample the item waited for, (j + 1) M, in seconds (the FFTs run M/2 late and
            the tag path one period, see spectrum_detector).

    Raises:
        ValueError: an unknown reduction or a non-positive size.
    """

    def __init__(self, bins: int, vectors_per_period: int,
                 reduction: str | tuple[str, ...] = "max", branches: int = 1,
                 period_samples: int = 0, samp_rate: float = 0.0) -> None:
        reductions = (reduction,) if isinstance(reduction, str) else tuple(reduction)
        for one in reductions:
            if one not in REDUCTIONS:
                raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, "
                                 f"got {one!r}")
        if min(bins, vectors_per_period, branches) < 1:
            raise ValueError(f"bins, vectors_per_period and branches must be >= 1, got "
                             f"{bins}, {vectors_per_period} and {branches}")
        gr.sync_block.__init__(
            self,
            name="period_detector",
            in_sig=[(np.float32, int(bins) * int(vectors_per_period))] * int(branches)
            + [np.complex64],
            out_sig=[(np.float32, int(bins))] * len(reductions),
        )
        self.reductions = reductions
        self.period_samples = int(period_samples)
        self.samp_rate = float(samp_rate)

    def work(self, input_items: list[Any], output_items: list[Any]) -> int:
        for reduction, out in zip(self.reductions, output_items):
            reduce_periods(input_items[:-1], reduction, out)
        count = len(output_items[0])
        if self.period_samples and self.samp_rate > 0:
            self._tag_periods(count)
        return count

    def _tag_periods(self, count: int) -> None:
        period, rate = self.period_samples, self.samp_rate
        first = self.nitems_written(0)
        for item in range(first, first + count):
            value = pmt.make_tuple(pmt.from_double(max(0, item * period - period // 2) / rate),
                                   pmt.from_double((item + 1) * period / rate))
            for port in range(len(self.reductions)):
                self.add_item_tag(port, item, PERIOD_TIME, value)
