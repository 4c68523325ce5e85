# SPDX-License-Identifier: GPL-3.0-or-later
"""Views: which bins of a stream a client gets, at what resolution and how often.

A client asks for a frequency range (``center_freq_hz``, ``span_hz``), a number of display
``bins`` and an ``fps_divisor`` (every frame, every 2nd, ...). The server answers from a
pyramid of levels of each frame (:mod:`gr_argos.server.pyramid`: level ``L`` has one bin per
``2**L`` bins of the stream) and snaps the request to a small lattice, a :class:`ViewSlice`
(level, offset, width), so that clients looking at about the same thing get the same bytes:

- the level is the coarsest that still has at least ``bins`` bins across the range;
- the width is the smallest of ``VIEW_WIDTHS`` (powers of two and 1.5 times them) that,
  from an offset aligned to an eighth of the width, covers the range.

The frame rate divisor does not change the bytes of a frame, so clients at different rates
of one slice share its encodes. Plain code: no GNU Radio, no sockets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from gr_argos.protocol import ProtocolError, ViewRequest

__all__ = ["VIEW_WIDTHS", "StreamGeometry", "View", "ViewSlice", "choose_view", "nearest_slice",
           "resnap", "resolve_view", "slice_fits"]

@dataclass(frozen=True)
class ViewSlice:
    """Bins ``offset .. offset + width - 1`` of a stream's pyramid level ``level``, where
    level bin ``j`` merges the stream's bins ``j * 2**level .. (j + 1) * 2**level - 1``,
    resolved for a stream of ``stream_bins`` bins (0: any number that holds it; not part of
    the slice's identity, which is the bins it takes from a frame)."""

    level: int
    offset: int
    width: int
    stream_bins: int = field(default=0, compare=False)

    @property
    def first_bin(self) -> int:
        """The first of the stream's own bins it covers."""
        return self.offset << self.level

    @property
    def end_bin(self) -> int:
        """One past the last of the stream's own bins it covers."""
        return (self.offset + self.width) << self.level


@dataclass(frozen=True)
class View:
    """A client's view of one stream: a slice (None: the whole stream as published) and the
    frame rate divisor (only frames whose ``sequence`` is a multiple of it are sent)."""

    slice: ViewSlice | None = None
    fps_divisor: int = 1


@dataclass(frozen=True)
class StreamGeometry:
    """What a view is resolved against: a stream's bins and the band they cover."""

    bins: int
    center_freq_hz: float
    span_hz: float

    @property
    def bin_width_hz(self) -> float:
        return self.span_hz / self.bins

    @property
    def low_edge_hz(self) -> float:
        """The lower edge of bin 0 (bins are FFT-shifted: ``bins // 2`` is at the centre)."""
        return self.center_freq_hz - (self.bins // 2 + 0.5) * self.bin_width_hz

    @property
    def max_level(self) -> int:
        """The coarsest level whose bins are whole groups of the stream's bins."""
        return _max_level(self.bins)

    def slice_center_hz(self, view: ViewSlice) -> float:
        """``center_freq_hz`` of a frame of ``view``: its bin ``width // 2`` is there, as
        docs/protocol.md "Bin frequencies" has it, so every bin's frequency is exact."""
        merged = 1 << view.level
        middle = (view.offset + view.width // 2) * merged + (merged - 1) / 2
        return self.center_freq_hz + (middle - self.bins // 2) * self.bin_width_hz

    def slice_span_hz(self, view: ViewSlice) -> float:
        return view.width * (self.bin_width_hz * (1 << view.level))

    def fits(self, view: ViewSlice) -> bool:
        """Whether the stream (e.g. after a change of its bin count) still holds ``view``."""
        return slice_fits(view, self.bins)

    def describe(self, view: View) -> dict[str, Any]:
        """A view as the ``view`` reply states it: the header fields of its frames."""
        if view.slice is None:
            return {"center_freq_hz": self.center_freq_hz, "span_hz": self.span_hz,
                    "bins": self.bins, "fps_divisor": view.fps_divisor, "level": 0}
        return {"center_freq_hz": self.slice_center_hz(view.slice),
                "span_hz": self.slice_span_hz(view.slice), "bins": view.slice.width,
                "fps_divisor": view.fps_divisor, "level": view.slice.level}


def _max_level(bins: int) -> int:
    level = 0
    while bins > 0 and bins % (2 << level) == 0:
        level += 1
    return level


def slice_fits(view: ViewSlice, bins: int) -> bool:
    """Whether a frame of ``bins`` bins holds ``view``: the bin count it was resolved for
    (after a change of it, the same bins are other frequencies at another resolution, or
    are not there at all)."""
    if view.stream_bins:
        return view.stream_bins == bins
    return view.level <= _max_level(bins) and view.end_bin <= bins


def _widths() -> tuple[int, ...]:
    widths = {1 << k for k in range(21)} | {3 << k for k in range(20)}
    return tuple(sorted(widths))


#: The widths a view may have, in bins of its level.
VIEW_WIDTHS = _widths()


def resolve_view(request: ViewRequest, stream: StreamGeometry) -> View:
    """The lattice view that serves ``request`` on ``stream``.

    A range reaching past the stream's edges is cut at them; the slice then covers at least
    the range (it may be wider) with at least ``bins`` bins across it (or the stream's own
    resolution, if that is less). The whole stream at its own resolution is the view None
    (frames as published).

    Raises:
        ProtocolError: the range lies wholly outside the stream.
    """
    center = stream.center_freq_hz if request.center_freq_hz is None else request.center_freq_hz
    span = stream.span_hz if request.span_hz is None else request.span_hz
    width_hz = stream.bin_width_hz
    low = (center - span / 2 - stream.low_edge_hz) / width_hz
    high = (center + span / 2 - stream.low_edge_hz) / width_hz
    if high <= 0 or low >= stream.bins:
        top = stream.low_edge_hz + stream.span_hz
        raise ProtocolError(
            f"the view {(center - span / 2) / 1e6:.6f} .. {(center + span / 2) / 1e6:.6f} MHz "
            f"is outside the stream ({stream.low_edge_hz / 1e6:.6f} .. {top / 1e6:.6f} MHz)")
    # A range edge within a millionth of a bin of a bin edge is on it (rounding in Hz).
    first = max(0, math.floor(low + 1e-6))
    end = min(stream.bins, max(first + 1, math.ceil(high - 1e-6)))
    # A level's bin may be no wider than the span asked divided by the bins asked (the
    # span as asked, not cut at the stream's edges: a viewer zoomed out past them shows
    # the stream across that share of its bins).
    merged = span / request.bins / width_hz if request.bins else 1.0
    level = min(stream.max_level, int(math.floor(math.log2(merged) + 1e-9)) if merged > 1 else 0)
    level_bins = stream.bins >> level
    start, stop = first >> level, -(-end >> level)
    slice_ = ViewSlice(level, 0, level_bins, stream.bins)
    for width in VIEW_WIDTHS:
        if width >= level_bins:
            break
        if width < stop - start:
            continue
        align = max(1, 1 << ((width // 8).bit_length() - 1)) if width >= 8 else 1
        offset = start // align * align
        if offset + width >= stop:
            slice_ = ViewSlice(level, min(offset, level_bins - width), width, stream.bins)
            break
    whole = slice_.level == 0 and slice_.width == stream.bins
    return View(None if whole else slice_, request.fps_divisor)


def resnap(view: View, stream: StreamGeometry) -> View:
    """``view``, resolved for another bin count, resolved again for ``stream`` (a new FFT
    size): the same share of the band with as many bins across it (its level changes with
    the size: the same bin width in Hz), the same frame rate divisor. A slice resolved for
    no bin count in particular gives the whole stream."""
    old = view.slice
    if old is None or not old.stream_bins:
        return View(None, view.fps_divisor)
    scale = stream.bins / old.stream_bins
    low = stream.low_edge_hz + old.first_bin * scale * stream.bin_width_hz
    high = stream.low_edge_hz + old.end_bin * scale * stream.bin_width_hz
    request = ViewRequest(None, (low + high) / 2, high - low, old.width, view.fps_divisor)
    return resolve_view(request, stream)


def nearest_slice(wanted: ViewSlice | None, available: Iterable[ViewSlice | None],
                  stream: StreamGeometry) -> ViewSlice | None:
    """The slice of ``available`` (or the whole stream) closest to ``wanted``: the one that
    overlaps its band most (intersection over union), then the closest resolution."""
    def bounds(slice_: ViewSlice | None) -> tuple[int, int, int]:
        if slice_ is None:
            return 0, stream.bins, 0
        return slice_.first_bin, slice_.end_bin, slice_.level

    low, high, level = bounds(wanted)

    def distance(other: ViewSlice | None) -> tuple[float, int]:
        other_low, other_high, other_level = bounds(other)
        overlap = max(0, min(high, other_high) - max(low, other_low))
        union = max(high, other_high) - min(low, other_low)
        return 1.0 - overlap / union, abs(other_level - level)

    return min([None, *available], key=distance)


def choose_view(request: ViewRequest, stream: StreamGeometry, in_use: set[ViewSlice],
                limit: int) -> tuple[View, bool]:
    """The view a client gets for ``request``, and whether it was snapped to one in use.

    Args:
        request: what the client asked for.
        stream: the stream's geometry now.
        in_use: the slices of the stream other clients get.
        limit: distinct slices per stream (0: no limit); a new one past it is snapped to
            the nearest in use (or the whole stream), keeping the client's frame rate.

    Raises:
        ProtocolError: the request's range lies wholly outside the stream.
    """
    view = resolve_view(request, stream)
    if not limit or view.slice is None or view.slice in in_use or len(in_use) < limit:
        return view, False
    return View(nearest_slice(view.slice, in_use, stream), view.fps_divisor), True
