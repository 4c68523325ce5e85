"""Tests for gr_argos.stream: sequence numbers, retuning and capture timestamps of a stream."""

from __future__ import annotations

import numpy as np

from gr_argos.protocol import SpectrumFrame, decode_frame
from gr_argos.protocol import StreamInfo
from gr_argos.stream import SpectrumStream

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
