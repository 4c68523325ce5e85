"""One spectrum stream: its settings, and the frames it numbers, stamps, encodes once and
hands off.

:class:`StreamSettings` declares what a sink streams, whatever its transport (bins, centre
frequency, span, frame rate, default encoding...). :class:`SpectrumStream` holds what a stream
knows between frames: its sequence counter, its current centre frequency and span (changed by
a retune), and its time reference (the last ``rx_time`` seen). The GNU Radio sinks feed it
from stream tags; anything else that produces spectra (a sweep reassembler, a test) can feed
it directly. No GNU Radio import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import numpy.typing as npt

from gr_argos.protocol import (
    DETECTOR_CODES,
    ENCODING_CODES,
    UINT8_STEP_DB_MAX,
    UINT8_STEP_DB_MIN,
    ProtocolError,
    StreamInfo,
    check_step_db,
    encode_frame,
)
from gr_argos.settings import ConfigError, in_range, non_negative, positive, setting, validate

__all__ = ["FrameDestination", "STREAM", "SpectrumStream", "StreamSettings"]

#: ``--help`` section of the stream settings.
STREAM = "spectrum"


def _step_db(value: float) -> str | None:
    try:
        check_step_db(value)
    except ProtocolError:
        return (f"must be 0 (automatic) or from {UINT8_STEP_DB_MIN:g} to "
                f"{UINT8_STEP_DB_MAX:g} dB")
    return None


def _message_type(value: str) -> str | None:
    return None if value.isidentifier() else "must be a simple name like 'gps' or 'status'"


@dataclass(frozen=True)
class StreamSettings:
    """What a sink streams, whatever its transport (see each field's help).

    Raises:
        ConfigError: a value of the wrong kind or out of range (naming the setting).
    """

    bins: int = setting(2048, "bins per spectrum frame (the FFT size, or a sweep's bins)",
                        check=in_range(1, 1 << 20), aliases=("fft_size",), group=STREAM)
    center_freq: float = setting(0.0, "centre frequency in Hz (an rx_freq stream tag "
                                 "overrides it)", check=non_negative, group=STREAM)
    span: float = setting(0.0, "frequency span of a frame in Hz: the sample rate for an FFT "
                          "(an rx_rate stream tag overrides it)", check=non_negative,
                          group=STREAM)
    fps: float = setting(30.0, "spectrum frames per second", check=positive, group=STREAM)
    stream_id: int = setting(0, "id of this stream in the frames (sinks sharing a port need "
                             "their own)", check=in_range(0, 0xFFFF), group=STREAM)
    stream_name: str = setting("spectrum", "name of this stream in the hello message",
                               group=STREAM)
    encoding: str = setting("float32", "frame encoding for clients that do not choose one: "
                            "float32 (exact), int16 (0.005 dB) or uint8 (half a step of "
                            "each frame's range)", choices=tuple(ENCODING_CODES), group=STREAM)
    step_db: float = setting(0.0, "with encoding uint8: the step in dB for clients that do not "
                             "choose one; 0 = automatic (each frame's range / 255), 0.01-20 = "
                             "fixed, aligned levels (coarser deflates better; error half a "
                             "step)", check=_step_db, group=STREAM)
    detector: str = setting("", "what the frames show of each frame period, as the spectrum "
                            "chain makes them: peak, average, sample, or empty when not "
                            "known (e.g. after GNU Radio's logpwrfft, which is sample)",
                            choices=tuple(DETECTOR_CODES), group=STREAM)
    second_detector: str = setting("", "detector of a second trace over the same periods "
                                   "(e.g. average under a peak trace), offered to clients "
                                   "that ask for it; a sink then has a second input; empty "
                                   "= none", choices=tuple(DETECTOR_CODES), group=STREAM)
    msg_channel: str = setting("gps", "JSON type of the messages from the msg port",
                               check=_message_type, group=STREAM)
    status_interval_s: float = setting(1.0, "seconds between status messages (0 = none)",
                                       check=non_negative, aliases=("status_interval",),
                                       group=STREAM)

    def __post_init__(self) -> None:
        validate(self)
        if self.second_detector and self.second_detector == self.detector:
            raise ConfigError(f"second_detector {self.second_detector!r} is the detector "
                              "itself: choose another (e.g. average with peak) or none")

    def info(self) -> StreamInfo:
        """The stream's descriptor, as ``hello`` announces it."""
        return StreamInfo(
            stream_id=self.stream_id, name=self.stream_name, bins=self.bins,
            center_freq_hz=self.center_freq, span_hz=self.span,
            encoding=ENCODING_CODES[self.encoding], fps=self.fps,
            step_db=self.step_db if self.encoding == "uint8" else 0.0,
            detector=self.detector, second_detector=self.second_detector)


class FrameDestination(Protocol):
    """Where encoded frames go (a :class:`~gr_argos.server.SpectrumServer`, say)."""

    def publish_frame(self, stream_id: int, frame: bytes) -> None: ...

    def update_stream(self, stream_id: int, **changes: Any) -> None: ...


class SpectrumStream:
    """Turns spectra into numbered, timestamped frames of one stream.

    Args:
        destination: receives each encoded frame and descriptor changes (a server or a
            ZeroMQ publisher).
        info: the stream's descriptor; its centre frequency and span are the defaults until
            a retune changes them.
        clock_ns: host clock in ns since the Unix epoch (injectable for tests).
    """

    def __init__(
        self,
        destination: FrameDestination,
        info: StreamInfo,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._destination = destination
        self.info = info
        self._clock_ns = clock_ns
        self.sequence = 0
        self.frames_skipped = 0
        self._time_ref: tuple[int, int] | None = None  # (capture ns, host ns when seen)
        self._anchor_pending = False

    def attach(self, destination: FrameDestination) -> None:
        """Send frames elsewhere from now on (the sequence keeps counting)."""
        self._destination = destination

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
            self._destination.update_stream(self.info.stream_id, **changes)

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

    def publish(self, power_db: npt.ArrayLike,
                second_power_db: npt.ArrayLike | None = None) -> int:
        """Encode one spectrum once and hand it to the sink; return its sequence number.

        ``second_power_db`` is the stream's second trace over the same period (its
        ``second_detector``), sent to the clients that ask for it.
        """
        sequence = self.sequence
        second = None if second_power_db is None or not self.info.second_detector else (
            np.asarray(second_power_db, dtype=np.float32))
        frame = encode_frame(
            np.asarray(power_db, dtype=np.float32),
            detector=self.info.detector,
            second_power_db=second,
            second_detector=self.info.second_detector if second is not None else "",
            center_freq_hz=self.info.center_freq_hz,
            span_hz=self.info.span_hz,
            timestamp_ns=self.timestamp_ns(),
            sequence=sequence,
            stream_id=self.info.stream_id,
        )
        self.sequence += 1
        self._destination.publish_frame(self.info.stream_id, frame)
        return sequence

    def skip(self, count: int) -> None:
        """Count frames that were produced but not handed off (their sequence numbers pass,
        so every client sees the gap)."""
        self.sequence += count
        self.frames_skipped += count
