# SPDX-License-Identifier: GPL-3.0-or-later
"""The pyramid and view frames as plain code, against numpy; a published frame's view
variants are encoded once."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gr_argos.protocol import (
    ENCODING_UINT8,
    FrameFormat,
    SpectrumFrame,
    decode_frame,
    encode_frame,
)
from gr_argos.server.outgoing import PYRAMID_LEVELS, PublishedFrame
from gr_argos.server.pyramid import Pyramid, encode_view
from gr_argos.server.views import ViewSlice

BINS = 2048


def noisy_frame(seed: int = 1, carrier_bin: int = 1337, second: bool = True) -> bytes:
    """A peak trace of noise with a one-bin carrier, and an average trace under it."""
    rng = np.random.default_rng(seed)
    peak = rng.normal(-100.0, 3.0, BINS).astype(np.float32)
    peak[carrier_bin] = -30.0
    average = (peak - 6.0 + rng.normal(0.0, 1.0, BINS)).astype(np.float32)
    return encode_frame(peak, center_freq_hz=100e6, span_hz=2.048e6, timestamp_ns=5,
                        sequence=42, detector="peak",
                        second_power_db=average if second else None,
                        second_detector="average" if second else "")


def test_levels_are_max_of_peak_and_mean_of_average_power() -> None:
    """Level L, checked against numpy on the whole frame: the peak trace is the max of each
    2**L bins; the average trace is the mean of their linear power, in dB."""
    frame = decode_frame(noisy_frame())
    assert frame.second_power_db is not None
    pyramid = Pyramid(frame)
    for level in range(0, 12):
        merged = 1 << level
        view = ViewSlice(level, 0, BINS >> level)
        peak, average = pyramid.traces(view, second=True)
        expected_peak = frame.power_db.reshape(-1, merged).max(axis=1)
        linear = 10.0 ** (frame.second_power_db.astype(np.float64) / 10.0)
        expected_average = 10.0 * np.log10(linear.reshape(-1, merged).mean(axis=1))
        np.testing.assert_array_equal(peak, expected_peak)
        np.testing.assert_allclose(average, expected_average, atol=1e-4)


@pytest.mark.parametrize("carrier_bin", [0, 1, 1023, 1024, 1337, 2047])
def test_a_one_bin_carrier_keeps_its_level_at_every_level(carrier_bin: int) -> None:
    """A carrier one bin wide reads within 0.5 dB of its level in every slice that covers it,
    in uint8 too, and the bin holding it is the one whose frequency is the carrier's."""
    frame = decode_frame(noisy_frame(carrier_bin=carrier_bin))
    pyramid = Pyramid(frame)
    carrier_hz = frame.bin_freqs_hz()[carrier_bin]
    for level in range(0, 12):
        width = max(1, min(64, BINS >> level))
        offset = min((carrier_bin >> level) // width * width, (BINS >> level) - width)
        view = ViewSlice(level, offset, width)
        for frame_format in (FrameFormat(), FrameFormat(ENCODING_UINT8)):
            sliced = decode_frame(encode_view(pyramid, view, frame_format))
            strongest = int(np.argmax(sliced.power_db))
            assert abs(sliced.power_db[strongest] - -30.0) <= 0.5
            half_bin_hz = sliced.span_hz / sliced.bin_count / 2
            assert abs(sliced.bin_freqs_hz()[strongest] - carrier_hz) <= half_bin_hz


def test_a_view_frame_is_an_exact_v1_frame_of_its_slice() -> None:
    """A view frame's header says the slice's bins and band exactly (each bin at the mean
    of the frequencies it merges), keeps sequence, time, stream and detectors, and carries
    the second trace only when the format asks."""
    frame = decode_frame(noisy_frame())
    view = ViewSlice(level=2, offset=300, width=48)
    sliced = decode_frame(encode_view(Pyramid(frame), view, FrameFormat(second_trace=True)))
    assert sliced.bin_count == 48
    expected_hz = frame.bin_freqs_hz()[1200:1392].reshape(48, 4).mean(axis=1)
    np.testing.assert_allclose(sliced.bin_freqs_hz(), expected_hz, rtol=0, atol=1e-6)
    assert (sliced.sequence, sliced.timestamp_ns, sliced.detector, sliced.second_detector) == (
        42, 5, "peak", "average")
    plain = decode_frame(encode_view(Pyramid(frame), view, FrameFormat()))
    assert plain.second_power_db is None and plain.flags == 0


def test_a_frame_that_no_longer_holds_the_view_is_refused() -> None:
    """A view past the frame's bins (its bin count changed) raises instead of cutting short."""
    pyramid = Pyramid(decode_frame(noisy_frame()))
    with pytest.raises(ValueError, match="has no level"):
        pyramid.traces(ViewSlice(0, 2000, 64), second=False)


def test_a_published_frame_encodes_each_view_and_format_once() -> None:
    """Many asks for a few (view, format) pairs encode each pair once, deflate once per
    compressed pair, build only the levels needed, and return the same bytes object."""
    published = PublishedFrame(0, noisy_frame(second=False))
    encodes: Counter[str] = Counter()
    views = [ViewSlice(1, 0, 1024), ViewSlice(3, 128, 64), None]
    formats = [None, FrameFormat(ENCODING_UINT8, compress=True)]
    first = {(v, f): published.in_format(f, encodes, v) for v in views for f in formats}
    for _ in range(50):
        for (view, frame_format), data in first.items():
            assert published.in_format(frame_format, encodes, view) is data
    assert encodes["float32+view"] == 2
    assert encodes["uint8+view"] == 2 and encodes["uint8+deflate+view"] == 2
    assert encodes["uint8+deflate"] == 1
    assert encodes[PYRAMID_LEVELS] == 3
    assert first[None, None] is published.data


def test_a_view_frame_without_a_second_trace_is_sliced_alone() -> None:
    """A frame without a second trace gives a view the first trace only, even to a format
    that asks for the second."""
    published = PublishedFrame(0, noisy_frame(second=False))
    data = published.in_format(FrameFormat(second_trace=True), Counter(), ViewSlice(2, 0, 512))
    sliced: SpectrumFrame = decode_frame(data)
    assert sliced.second_power_db is None and sliced.bin_count == 512
