# SPDX-License-Identifier: GPL-3.0-or-later
"""Views as plain code: a request resolved to a lattice slice, snapped past the cap, checked."""

from __future__ import annotations

import pytest

from gr_argos.protocol import ProtocolError, ViewRequest
from gr_argos.server.views import (
    VIEW_WIDTHS,
    StreamGeometry,
    View,
    ViewSlice,
    choose_view,
    resolve_view,
)

STREAM = StreamGeometry(2048, 100e6, 2.048e6)  # 1 kHz bins, bin 1024 at 100 MHz


def covered_hz(view: View, stream: StreamGeometry = STREAM) -> tuple[float, float]:
    """The band a view's frames cover, from the header fields the reply states."""
    described = stream.describe(view)
    width_hz = described["span_hz"] / described["bins"]
    low = described["center_freq_hz"] - (described["bins"] // 2 + 0.5) * width_hz
    return low, low + described["span_hz"]


def test_no_request_is_the_whole_stream_as_published() -> None:
    """An empty set_view asks for the whole stream, its bins, every frame: no slice."""
    assert resolve_view(ViewRequest(), STREAM) == View(None, 1)
    assert STREAM.describe(View()) == {"center_freq_hz": 100e6, "span_hz": 2.048e6,
                                       "bins": 2048, "fps_divisor": 1, "level": 0}


@pytest.mark.parametrize("center_hz,span_hz,bins", [
    (100.3e6, 200e3, None), (100.3e6, 200e3, 50), (99.5e6, 1e6, 100), (100e6, 2.048e6, 1024),
    (100e6, 2.048e6, 800), (100.0004e6, 3e3, 1), (101e6, 20e3, 4096), (99.2e6, 333.3e3, 77),
])
def test_a_view_covers_the_range_with_at_least_the_bins_asked(
        center_hz: float, span_hz: float, bins: int | None) -> None:
    """The slice covers the asked range (cut at the stream's edges), has at least the asked
    bins across it unless the stream has fewer, comes from the coarsest such level, and sits
    on the lattice: a width from the short list (or the whole level), aligned."""
    view = resolve_view(ViewRequest(None, center_hz, span_hz, bins), STREAM)
    assert view.slice is not None
    low, high = covered_hz(view)
    assert low <= max(center_hz - span_hz / 2, 99e6 - 24.5e3) + 1e-3
    assert high >= min(center_hz + span_hz / 2, 101e6 + 23.5e3) - 1e-3
    asked_bins_hz = span_hz / bins if bins else 1e3
    level_bin_hz = 1e3 * 2 ** view.slice.level
    assert level_bin_hz <= max(asked_bins_hz, 1e3)
    assert view.slice.level == 0 or level_bin_hz * 2 > asked_bins_hz
    assert view.slice.width in VIEW_WIDTHS or view.slice.width == 2048 >> view.slice.level
    assert view.slice.end_bin <= 2048


def test_nearby_requests_share_one_slice() -> None:
    """Two clients panned or zoomed a little apart get the same slice (they share encodes)."""
    first = resolve_view(ViewRequest(None, 100.30e6, 200e3, 1000), STREAM)
    second = resolve_view(ViewRequest(None, 100.302e6, 196e3, 1100), STREAM)
    assert first == second


def test_header_frequencies_of_a_slice_are_those_of_its_bins() -> None:
    """The slice's bin k (by docs/protocol.md "Bin frequencies") is at the mean frequency of
    the stream bins it merges."""
    view = ViewSlice(level=3, offset=40, width=24)
    center = STREAM.slice_center_hz(view)
    width_hz = STREAM.slice_span_hz(view) / view.width
    for k in (0, 5, 12, 23):
        merged = range((view.offset + k) * 8, (view.offset + k + 1) * 8)
        stream_hz = [100e6 + (i - 1024) * 1e3 for i in merged]
        assert center + (k - view.width // 2) * width_hz == pytest.approx(
            sum(stream_hz) / 8, abs=1e-6)


def test_levels_stop_where_the_bins_no_longer_halve() -> None:
    """A stream of 3 * 2**4 bins has 4 levels above its own: a view of 2 bins gets 3."""
    stream = StreamGeometry(48, 1e6, 48e3)
    assert stream.max_level == 4
    view = resolve_view(ViewRequest(bins=2), stream)
    assert view.slice == ViewSlice(4, 0, 3)


@pytest.mark.parametrize("fields,words", [
    ({"span_hz": -200e3}, "span_hz must be more than 0"),
    ({"span_hz": 0}, "span_hz must be more than 0"),
    ({"bins": 0}, "bins must be a whole number from 1"),
    ({"bins": 1 << 30}, "bins must be a whole number from 1 to 1048576"),
    ({"bins": 10.5}, "bins must be a whole number"),
    ({"fps_divisor": 0}, "fps_divisor must be a whole number from 1 to 100"),
    ({"center_freq_hz": "nan"}, "center_freq_hz must be a finite number"),
    ({"center_freq_hz": [1]}, "center_freq_hz must be a finite number"),
    ({"bins": True}, "bins must be"),
])
def test_bad_requests_say_what_is_wrong(fields: dict[str, object], words: str) -> None:
    """A bad field is refused with the key and what it must be."""
    with pytest.raises(ProtocolError, match=words):
        ViewRequest.parse(fields)


def test_url_text_parses_like_json_numbers() -> None:
    """The URL query's text values give the same request as JSON numbers."""
    assert ViewRequest.parse({"center_freq_hz": "101.6e6", "span_hz": "200e3", "bins": "1024",
                              "fps_divisor": "3"}) == ViewRequest(None, 101.6e6, 200e3, 1024, 3)


def test_a_range_outside_the_stream_is_refused() -> None:
    """A range wholly outside the stream names both bands."""
    with pytest.raises(ProtocolError, match="outside the stream"):
        resolve_view(ViewRequest(None, 433e6, 1e6), STREAM)


def test_past_the_cap_a_new_view_snaps_to_the_nearest_in_use() -> None:
    """With the cap reached, a new slice is replaced by the one in use that overlaps it most;
    a slice in use, or the whole stream, is never snapped; the frame rate is kept."""
    low = resolve_view(ViewRequest(None, 99.5e6, 200e3, 100), STREAM).slice
    high = resolve_view(ViewRequest(None, 100.5e6, 200e3, 100), STREAM).slice
    assert low is not None and high is not None
    in_use = {low, high}
    wanted = ViewRequest(None, 100.52e6, 150e3, 300, fps_divisor=2)
    view, snapped = choose_view(wanted, STREAM, in_use, limit=2)
    assert snapped and view == View(high, 2)
    assert choose_view(wanted, STREAM, in_use, limit=3)[1] is False
    assert choose_view(wanted, STREAM, in_use, limit=0)[1] is False
    assert choose_view(ViewRequest(None, 99.5e6, 200e3, 100), STREAM, in_use, 2) == (
        View(low), False)
    assert choose_view(ViewRequest(), STREAM, in_use, 2) == (View(), False)
