# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for the ZeroMQ transport with real PUB/SUB sockets on tcp://127.0.0.1 and ipc."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from gr_argos.protocol import StreamInfo
from gr_argos.zmq_transport import (
    FramePublisher,
    FrameSubscriber,
    PublisherError,
    stream_info_from_descriptor,
)

WAIT_S = 30.0
HEARTBEAT_S = 0.1


@pytest.fixture
def publisher() -> Iterator[FramePublisher]:
    pub = FramePublisher("tcp://127.0.0.1:0", heartbeat_interval_s=HEARTBEAT_S)
    try:
        yield pub
    finally:
        pub.close()


def next_event(subscriber: FrameSubscriber, kind: str,
               deadline_s: float = WAIT_S) -> tuple[Any, ...]:
    """The next event of ``kind`` (others are skipped), or a test failure."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        event = subscriber.receive(0.5)
        if event is not None and event[0] == kind:
            return event
    pytest.fail(f"no {kind} event within {deadline_s:.0f} s")


def test_frames_messages_and_descriptors_reach_a_subscriber(publisher: FramePublisher) -> None:
    """A subscriber gets the frame bytes on their stream, the JSON message text as clients get
    it, the descriptors after a change, and heartbeats with the session and counters."""
    info = StreamInfo(stream_id=7, name="hackrf", bins=16, center_freq_hz=100e6, span_hz=8e6)
    publisher.add_stream(info)
    subscriber = FrameSubscriber([publisher.endpoint])
    try:
        beat = next_event(subscriber, "heartbeat")[1]  # connected: nothing after it is lost
        assert beat["session"] == publisher.session
        assert [stream_info_from_descriptor(d) for d in beat["streams"]] == [info]

        publisher.publish_frame(7, b"frame bytes")
        assert next_event(subscriber, "frame") == ("frame", 7, b"frame bytes")
        publisher.publish_message("gps", {"lat": 52.5})
        assert next_event(subscriber, "message") == ("message", '{"type":"gps","lat":52.5}')
        publisher.update_stream(7, center_freq_hz=433.92e6)
        streams = next_event(subscriber, "streams")[1]
        assert streams["streams"][0]["center_freq_hz"] == 433.92e6
        beat = next_event(subscriber, "heartbeat")[1]
        assert beat["frames_sent"] == 1 and beat["frames_dropped"] == 0
    finally:
        subscriber.close()


def test_a_subscriber_hears_several_publishers_over_tcp_and_ipc(tmp_path: Path) -> None:
    """One subscriber connected to a tcp and an ipc publisher gets both sessions' heartbeats."""
    tcp = FramePublisher("tcp://127.0.0.1:0", heartbeat_interval_s=HEARTBEAT_S)
    ipc = FramePublisher(f"ipc://{tmp_path / 'argos.sock'}", heartbeat_interval_s=HEARTBEAT_S)
    subscriber = FrameSubscriber([tcp.endpoint, ipc.endpoint])
    try:
        sessions = set()
        deadline = time.monotonic() + WAIT_S
        while sessions != {tcp.session, ipc.session} and time.monotonic() < deadline:
            sessions.add(next_event(subscriber, "heartbeat")[1]["session"])
        assert sessions == {tcp.session, ipc.session}
    finally:
        subscriber.close()
        tcp.close()
        ipc.close()


def test_publishing_without_subscribers_never_blocks(publisher: FramePublisher) -> None:
    """With nobody subscribed, thousands of large frames are handed off and publish returns."""
    frame = bytes(64 * 1024)
    done = threading.Event()

    def publish_many() -> None:
        for _ in range(5000):
            publisher.publish_frame(0, frame)
        done.set()

    threading.Thread(target=publish_many, daemon=True).start()
    assert done.wait(WAIT_S), "publish_frame blocked with no subscriber"


def test_a_stalled_subscriber_makes_sends_drop_and_the_heartbeat_reports_them() -> None:
    """When a subscriber stops reading, sends past the high-water mark are dropped at once and
    counted, and the next heartbeat it gets carries that count."""
    publisher = FramePublisher("tcp://127.0.0.1:0", sndhwm=1, heartbeat_interval_s=HEARTBEAT_S)
    subscriber = FrameSubscriber([publisher.endpoint], rcvhwm=1)
    try:
        next_event(subscriber, "heartbeat")  # subscribed; from here on it does not read
        frame = bytes(256 * 1024)  # a few fill the kernel's socket buffers quickly
        deadline = time.monotonic() + WAIT_S
        while publisher.frames_dropped == 0 and time.monotonic() < deadline:
            publisher.publish_frame(0, frame)
        assert publisher.frames_dropped > 0

        dropped = publisher.frames_dropped
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:  # drain; heartbeats resume once there is room
            beat = next_event(subscriber, "heartbeat")[1]
            if beat["frames_dropped"] >= dropped:
                break
        assert beat["frames_dropped"] == publisher.frames_dropped >= dropped
    finally:
        subscriber.close()
        publisher.close()


def test_an_endpoint_in_use_or_malformed_fails_with_what_to_do(
        publisher: FramePublisher) -> None:
    """Binding a taken endpoint, or one that is not an endpoint, raises PublisherError."""
    with pytest.raises(PublisherError, match="already in use"):
        FramePublisher(publisher.endpoint)
    with pytest.raises(PublisherError, match="expected e.g."):
        FramePublisher("localhost:5555")


def test_after_close_publishes_are_dropped_and_counted(publisher: FramePublisher) -> None:
    """A closed publisher never raises: frames are counted as dropped."""
    publisher.close()
    publisher.publish_frame(0, b"x")
    publisher.publish_message("status", {"fps": 1})
    assert publisher.frames_dropped == 1 and publisher.messages_dropped == 1


def test_unknown_topics_are_skipped() -> None:
    """A message on a topic this version does not know is skipped, not returned."""
    context = zmq.Context.instance()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    subscriber = FrameSubscriber([f"tcp://127.0.0.1:{port}"])
    try:
        deadline = time.monotonic() + WAIT_S
        event = None
        while event is None and time.monotonic() < deadline:
            pub.send_multipart([b"future", b"?"])
            pub.send_multipart([b"frame/3", b"data"])
            event = subscriber.receive(0.2)
        assert event == ("frame", 3, b"data")
    finally:
        subscriber.close()
        pub.close()
