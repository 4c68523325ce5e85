"""One spectrum stream: numbers frames, stamps them, encodes them once, hands them off.

:class:`SpectrumStream` holds what a stream knows between frames: its sequence counter,
its current centre frequency and span (changed by a retune), and its time reference (the
last ``rx_time`` seen). The GNU Radio sink feeds it from stream tags; anything else that
produces spectra (a sweep reassembler, a test) can feed it directly. No GNU Radio import.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

import numpy as np
import numpy.typing as npt

from gr_argos.protocol import encode_frame
from gr_argos.server import StreamInfo

__all__ = ["FrameSink", "SpectrumStream"]


class FrameSink(Protocol):
    """Where encoded frames go (a :class:`~gr_argos.server.SpectrumServer`, say)."""

    def publish_frame(self, stream_id: int, frame: bytes) -> None: ...

    def update_stream(self, stream_id: int, **changes: object) -> None: ...


class SpectrumStream:
    """Turns spectra into numbered, timestamped frames of one stream.

    Args:
        sink: receives each encoded frame and descriptor changes.
        info: the stream's descriptor; its centre frequency and span are the defaults until
            a retune changes them.
        clock_ns: host clock in ns since the Unix epoch (injectable for tests).
    """

    def __init__(
        self,
        sink: FrameSink,
        info: StreamInfo,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._sink = sink
        self.info = info
        self._clock_ns = clock_ns
        self.sequence = 0
        self.frames_skipped = 0
        self._time_ref: tuple[int, int] | None = None  # (capture ns, host ns when seen)
        self._anchor_pending = False

    def attach(self, sink: FrameSink) -> None:
        """Send frames to another sink from now on (the sequence keeps counting)."""
        self._sink = sink

    @property
    def center_freq_hz(self) -> float:
        return self.info.center_freq_hz

    @property
    def span_hz(self) -> float:
        return self.info.span_hz

    def retune(self, center_freq_hz: float | None = None, span_hz: float | None = None) -> None:
        """Change the centre frequency and/or span of the frames from now on."""
        changes: dict[str, float] = {}
        if center_freq_hz is not None and center_freq_hz != self.info.center_freq_hz:
            changes["center_freq_hz"] = float(center_freq_hz)
        if span_hz is not None and span_hz != self.info.span_hz:
            changes["span_hz"] = float(span_hz)
        if changes:
            for key, value in changes.items():
                setattr(self.info, key, value)
            self._sink.update_stream(self.info.stream_id, **changes)

    def set_capture_time(self, capture_ns: int) -> None:
        """Anchor frame timestamps to a device clock reading (an ``rx_time`` tag).

        The next frame gets exactly ``capture_ns``; later frames get it plus the host time
        elapsed since, until the next anchor.
        """
        self._time_ref = (int(capture_ns), self._clock_ns())
        self._anchor_pending = True

    def timestamp_ns(self) -> int:
        """Capture time for the frame handed off now (the anchor itself for the first)."""
        now = self._clock_ns()
        if self._time_ref is None:
            return now
        capture_ns, seen_ns = self._time_ref
        if self._anchor_pending:
            self._anchor_pending = False
            return capture_ns
        return capture_ns + (now - seen_ns)

    def publish(self, power_db: npt.ArrayLike) -> int:
        """Encode one spectrum once and hand it to the sink; return its sequence number."""
        sequence = self.sequence
        frame = encode_frame(
            np.asarray(power_db, dtype=np.float32),
            center_freq_hz=self.info.center_freq_hz,
            span_hz=self.info.span_hz,
            timestamp_ns=self.timestamp_ns(),
            sequence=sequence,
            stream_id=self.info.stream_id,
        )
        self.sequence += 1
        self._sink.publish_frame(self.info.stream_id, frame)
        return sequence

    def skip(self, count: int) -> None:
        """Count frames that were produced but not handed off (their sequence numbers pass,
        so every client sees the gap)."""
        self.sequence += count
        self.frames_skipped += count
