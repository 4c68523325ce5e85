# SPDX-License-Identifier: GPL-3.0-or-later
"""The periodic status message: measured frame rate, stream descriptor and source fields."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from gr_argos.protocol import StreamInfo
from gr_argos.status import StatusReporter
from gr_argos.stream import SpectrumStream


class Recorder:
    """A FrameSink that keeps nothing; frames only advance the stream's counters."""

    def publish_frame(self, stream_id: int, frame: bytes) -> None:
        pass

    def update_stream(self, stream_id: int, **changes: object) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(interval: float = 1.0) -> tuple[SpectrumStream, StatusReporter, Clock, list[Any]]:
    stream = SpectrumStream(Recorder(), StreamInfo(stream_id=2, name="wide", bins=4,
                                                   center_freq_hz=1e9, span_hz=20e6))
    published: list[Any] = []
    clock = Clock()
    reporter = StatusReporter(stream, lambda t, b: published.append((t, b)), interval, clock)
    return stream, reporter, clock, published


def test_status_reports_the_frame_rate_over_the_last_interval() -> None:
    """fps is the frames produced since the previous status divided by the time between."""
    stream, reporter, clock, _ = make()
    for _ in range(30):
        stream.publish([0.0, 1.0, 2.0, 3.0])
    clock.now += 2.0
    first = reporter.snapshot()
    assert first["fps"] == 15.0 and first["frames"] == 30
    clock.now += 1.0
    assert reporter.snapshot()["fps"] == 0.0  # nothing since: the source has stalled


def test_status_carries_the_stream_descriptor_and_skipped_frames() -> None:
    """A status names the stream and its frequency, span, bins and frames not handed off."""
    stream, reporter, _, _ = make()
    stream.retune(center_freq_hz=2.4e9)
    stream.skip(3)
    body = reporter.snapshot()
    assert body["stream"] == 2 and body["name"] == "wide" and body["bins"] == 4
    assert body["center_freq_hz"] == 2.4e9 and body["span_hz"] == 20e6
    assert body["frames_skipped"] == 3


def test_source_fields_are_merged_and_probe_rate_names_translated() -> None:
    """Fields a source posts appear in every later status; probe_rate's rate_avg becomes
    samp_rate_measured, rate_now is left out, and type/stream cannot be overridden."""
    _, reporter, _, _ = make()
    reporter.update_source({"source": "hackrf", "lna_gain": 16, "type": "x", "stream": 9})
    reporter.update_source({"rate_avg": 8.0e6, "rate_now": 7.9e6, "lna_gain": 24})
    body = reporter.snapshot()
    assert body["source"] == "hackrf" and body["lna_gain"] == 24
    assert body["samp_rate_measured"] == 8.0e6
    assert "rate_now" not in body and "rate_avg" not in body and "type" not in body
    assert body["stream"] == 2


def test_running_reporter_publishes_status_messages_until_stopped() -> None:
    """start() publishes a status every interval on its own thread; stop() ends it."""
    _, reporter, _, published = make(interval=0.05)
    got_two = threading.Event()
    original = reporter.publish

    def publish(msg_type: str, body: dict[str, Any]) -> None:
        original(msg_type, body)
        if len(published) >= 2:
            got_two.set()

    reporter.publish = publish
    reporter.start()
    try:
        assert got_two.wait(20)
    finally:
        reporter.stop()
    count = len(published)
    assert {t for t, _ in published} == {"status"}
    assert not any(t.name == "argos-status" for t in threading.enumerate())
    assert len(published) == count


def test_interval_zero_publishes_nothing_and_negative_is_refused() -> None:
    """status_interval 0 turns the messages off; a negative interval is an error."""
    _, reporter, _, published = make(interval=0)
    reporter.start()
    reporter.stop()
    assert published == []
    with pytest.raises(ValueError, match="status_interval"):
        make(interval=-1)
