# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for gr_argos.stream: sequence numbers, retuning and capture timestamps of a stream."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gr_argos.protocol import SpectrumFrame, decode_frame
from gr_argos.protocol import StreamInfo
from gr_argos.stream import FrameRateGuard, SpectrumStream

ANCHOR_NS = 1_700_000_000_123_456_789


class RecordingSink:
    """A FrameSink that keeps what the stream hands it."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.updates: list[tuple[int, dict[str, object]]] = []

    def publish_frame(self, stream_id: int, frame: bytes) -> None:
        self.frames.append((stream_id, frame))

    def update_stream(self, stream_id: int, **changes: object) -> None:
        self.updates.append((stream_id, changes))

    def decoded(self) -> list[SpectrumFrame]:
        return [decode_frame(frame) for _, frame in self.frames]


class FakeClock:
    """A host clock in ns that moves only when the test says so."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def make_stream(clock: FakeClock | None = None) -> tuple[SpectrumStream, RecordingSink]:
    sink = RecordingSink()
    info = StreamInfo(stream_id=7, name="test", bins=4, center_freq_hz=100e6, span_hz=2e6)
    stream = SpectrumStream(sink, info, clock_ns=clock or FakeClock(5_000))
    return stream, sink


def test_each_published_spectrum_is_one_frame_with_the_next_sequence() -> None:
    """Frames carry sequence 0, 1, 2, ... of their stream, with the spectrum bit for bit."""
    stream, sink = make_stream()
    spectra = [np.array([-100.0, -50.5, 0.25, 10.0], dtype=np.float32) + n for n in range(3)]

    returned = [stream.publish(spectrum) for spectrum in spectra]

    frames = sink.decoded()
    assert returned == [0, 1, 2]
    assert [f.sequence for f in frames] == [0, 1, 2]
    assert [stream_id for stream_id, _ in sink.frames] == [7, 7, 7]
    assert all(f.stream_id == 7 for f in frames)
    for f, spectrum in zip(frames, spectra):
        assert f.power_db.tobytes() == spectrum.tobytes()
        assert (f.center_freq_hz, f.span_hz) == (100e6, 2e6)


def test_skipped_frames_leave_a_gap_in_the_sequence() -> None:
    """Frames produced but not handed off still use up sequence numbers, so clients see a gap."""
    stream, sink = make_stream()

    stream.publish(np.zeros(4, dtype=np.float32))
    stream.skip(3)
    stream.publish(np.zeros(4, dtype=np.float32))

    assert [f.sequence for f in sink.decoded()] == [0, 4]
    assert stream.frames_skipped == 3


def test_retune_changes_later_frames_and_updates_the_descriptor() -> None:
    """A retune applies to the frames after it and tells the sink what changed, only that."""
    stream, sink = make_stream()
    stream.publish(np.zeros(4, dtype=np.float32))

    stream.retune(center_freq_hz=433.92e6)
    stream.publish(np.zeros(4, dtype=np.float32))
    stream.retune(center_freq_hz=433.92e6, span_hz=2.4e6)
    stream.publish(np.zeros(4, dtype=np.float32))
    stream.retune(center_freq_hz=433.92e6, span_hz=2.4e6)  # no change: no update

    assert [(f.center_freq_hz, f.span_hz) for f in sink.decoded()] == [
        (100e6, 2e6), (433.92e6, 2e6), (433.92e6, 2.4e6)]
    assert sink.updates == [(7, {"center_freq_hz": 433.92e6}), (7, {"span_hz": 2.4e6})]
    assert (stream.info.center_freq_hz, stream.info.span_hz) == (433.92e6, 2.4e6)


def test_without_a_capture_time_frames_carry_the_host_clock() -> None:
    """With no rx_time anchor, a frame's timestamp is the host clock when it is handed off."""
    clock = FakeClock(1_000_000)
    stream, sink = make_stream(clock)

    stream.publish(np.zeros(4, dtype=np.float32))
    clock.now_ns += 250
    stream.publish(np.zeros(4, dtype=np.float32))

    assert [f.timestamp_ns for f in sink.decoded()] == [1_000_000, 1_000_250]


def test_capture_time_anchor_is_exact_then_advances_with_host_time() -> None:
    """The frame after an rx_time anchor gets exactly that time; later frames get the anchor
    plus the host time elapsed since it was seen; a new anchor replaces the old one."""
    clock = FakeClock(1_000_000)
    stream, sink = make_stream(clock)

    stream.set_capture_time(ANCHOR_NS)
    clock.now_ns += 500  # the frame is handed off a little after the tag was seen
    stream.publish(np.zeros(4, dtype=np.float32))
    clock.now_ns += 33_000_000
    stream.publish(np.zeros(4, dtype=np.float32))
    stream.set_capture_time(ANCHOR_NS + 10**9)
    clock.now_ns += 7
    stream.publish(np.zeros(4, dtype=np.float32))

    assert [f.timestamp_ns for f in sink.decoded()] == [
        ANCHOR_NS, ANCHOR_NS + 33_000_500, ANCHOR_NS + 10**9]


PERIOD_S = 0.032  # a frame period in these tests
MS = 1_000_000


def publish_period(stream: SpectrumStream, clock: FakeClock, frame: int, start_ns: int,
                   latency_ns: int) -> None:
    """Publish frame ``frame`` of a detector whose first sample was taken at ``start_ns``
    (host clock), handed off ``latency_ns`` after its last sample was."""
    start_s, ready_s = max(0.0, (frame - 0.5) * PERIOD_S), (frame + 1) * PERIOD_S
    clock.now_ns = start_ns + round(ready_s * 1e9) + latency_ns
    stream.set_period(start_s, ready_s)
    stream.publish(np.zeros(4, dtype=np.float32))


def test_a_frame_with_a_period_is_stamped_with_the_start_of_that_period() -> None:
    """Frames saying their period get the first sample's time plus the period's start; the
    first sample's time goes towards the earliest (handed-off time - ready time) so far, half
    a millisecond a frame (frame times never go back), so a frame handed off late does not
    make the samples look younger."""
    clock = FakeClock(0)
    stream, sink = make_stream(clock)
    first_ns = 1_700_000_000 * 10**9
    for frame, latency in enumerate([9 * MS, 3 * MS, 40 * MS, 3 * MS, 5 * MS]):
        publish_period(stream, clock, frame, first_ns, latency)

    starts = [round(max(0.0, (j - 0.5) * PERIOD_S) * 1e9) for j in range(5)]
    # 9 ms, then half a millisecond a frame towards the 3 ms seen (the 40 ms: a late frame).
    anchors = [9 * MS, 8_500_000, 8_500_000, 8 * MS, 7_500_000]
    assert [f.timestamp_ns for f in sink.decoded()] == [
        first_ns + anchor + start for anchor, start in zip(anchors, starts)]
    assert stream.time_reanchors == 0


def test_when_samples_fall_behind_the_host_clock_for_a_second_times_follow_it_again(
        caplog: Any) -> None:
    """Half a second of samples lost (an overflow): the frames keep the sample count's time
    for a second, in case the flowgraph only stalled, then follow the host clock again,
    once, with a warning; a stall shorter than that changes nothing; a source that catches
    up again (a throttled file) brings the times back without ever going backwards."""
    clock = FakeClock(0)
    stream, sink = make_stream(clock)
    first_ns = 10**18
    for frame in range(3):
        publish_period(stream, clock, frame, first_ns, 2 * MS)
    publish_period(stream, clock, 3, first_ns, 600 * MS)  # a stall: one frame late
    for frame in range(4, 60):  # then 0.5 s of samples are gone
        publish_period(stream, clock, frame, first_ns + 500 * MS, 2 * MS)

    stamps = [f.timestamp_ns for f in sink.decoded()]
    start = [first_ns + 2 * MS + round(max(0.0, (j - 0.5) * PERIOD_S) * 1e9) for j in range(60)]
    late = [j for j in range(60) if stamps[j] != start[j]]
    assert late and all(stamps[j] == start[j] + 500 * MS for j in late)
    assert late == list(range(late[0], 60))
    # About a second of host time after frame 3 (the stall) fell behind: 32 ms frames.
    assert 4 + 0.8 / PERIOD_S <= late[0] <= 4 + 1.3 / PERIOD_S
    assert stream.time_reanchors == 1
    for frame in range(60, 90):  # a throttled source that catches up: times still go on
        publish_period(stream, clock, frame, first_ns, 2 * MS)
    stamps = [f.timestamp_ns for f in sink.decoded()]
    assert all(later > earlier for earlier, later in zip(stamps, stamps[1:]))
    assert stamps[89] == first_ns + 502 * MS - 30 * 500_000 + round((89 - 0.5) * PERIOD_S * 1e9)
    assert ["fell 500 ms behind" in r.getMessage() and "1 times" in r.getMessage()
            for r in caplog.records] == [True]


def test_an_rx_time_on_a_frame_with_a_period_anchors_the_first_sample_to_it() -> None:
    """rx_time at the first sample (as gr-osmosdr and UHD put it) makes every frame's time
    the device's: that time plus the period's start, whatever the host clock does."""
    clock = FakeClock(0)
    stream, sink = make_stream(clock)
    stream.set_capture_time(ANCHOR_NS)
    for frame, latency in enumerate([9 * MS, 3 * MS, 900 * MS, -700 * MS]):
        publish_period(stream, clock, frame, 5 * 10**17, latency)

    assert [f.timestamp_ns for f in sink.decoded()] == [
        ANCHOR_NS + round(max(0.0, (j - 0.5) * PERIOD_S) * 1e9) for j in range(4)]


class FakeSeconds:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_frame_rate_guard_passes_max_fps_and_reports_a_fast_input_once() -> None:
    """Fed 1,000 vectors/s with fps 30: about max_fps (default twice fps) frames a second pass,
    a burst of a second's worth passes at once, and the input rate is reported once, measured;
    fed at its rate, everything passes and nothing is reported."""
    clock = FakeSeconds()
    guard = FrameRateGuard(30.0, clock=clock)
    reports, passed = [], 0
    for _ in range(10):  # 10 s of 100 vectors every 0.1 s
        for _ in range(10):
            clock.now += 0.1
            reports.append(guard.measure(100))
            passed += sum(guard.admit() for _ in range(100))
    assert [r for r in reports if r is not None] == [pytest.approx(1000.0)]
    assert 60 * 10 <= passed <= 60 * 11  # the limit, plus the first second's bucket

    calm = FrameRateGuard(30.0, max_fps=0, clock=clock)
    results = []
    for _ in range(300):
        clock.now += 1 / 30
        results.append((calm.measure(1), calm.admit()))
    assert all(report is None and admitted for report, admitted in results)


def test_a_shift_at_a_frames_first_sample_relabels_that_frame_and_drops_none() -> None:
    """A rotator's shift scheduled at frame 3's first sample: frames 0-2 keep the old label,
    frame 3 (its tag on it) and later get the new one, none is dropped; the same tag again
    (the shift sent twice) and a tag nobody asked for change nothing."""
    from gr_argos.stream import Shift

    clock = FakeClock(0)
    stream, sink = make_stream(clock)
    at_s = (3 - 0.5) * PERIOD_S
    stream.retune_at_tag(Shift(-0.25, at_s), center_freq_hz=101e6)
    for frame in range(6):
        if frame in (3, 4):
            stream.retune_tag_seen(float(np.float32(-0.25)))  # as the rotator's float32
        if frame == 5:
            stream.retune_tag_seen(0.5)
        publish_period(stream, clock, frame, 10**18, MS)
    frames = sink.decoded()
    assert [f.sequence for f in frames] == list(range(6))
    assert [f.center_freq_hz for f in frames] == [100e6] * 3 + [101e6] * 3
    assert stream.frames_retuning == 0


def test_a_shift_whose_frame_comes_without_its_tag_was_missed_and_is_told() -> None:
    """The rotator drops a change it reads after its sample: frame 3 then comes without the
    tag, keeps the old label (its samples were not shifted) and the shift's ``missed`` is
    called once; the shift sent again for frame 5 relabels from there."""
    from gr_argos.stream import Shift

    clock = FakeClock(0)
    stream, sink = make_stream(clock)
    missed: list[int] = []

    def send_again() -> None:
        missed.append(1)
        stream.retune_at_tag(Shift(-0.25, (5 - 0.5) * PERIOD_S), center_freq_hz=101e6)

    stream.retune_at_tag(Shift(-0.25, (3 - 0.5) * PERIOD_S, send_again), center_freq_hz=101e6)
    for frame in range(7):
        if frame == 5:
            stream.retune_tag_seen(-0.25)
        publish_period(stream, clock, frame, 10**18, MS)
    assert missed == [1]
    assert [f.center_freq_hz for f in sink.decoded()] == [100e6] * 5 + [101e6] * 2
    assert stream.frames_retuning == 0
