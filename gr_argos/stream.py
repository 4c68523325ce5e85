# SPDX-License-Identifier: GPL-3.0-or-later
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

import logging
import threading
import time
from collections import deque
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
from gr_argos.detections import DetectionSettings, SignalFinder, parse_ranges, ranges_text
from gr_argos.settings import ConfigError, in_range, non_negative, positive, setting, validate

__all__ = ["FrameDestination", "STREAM", "SpectrumStream", "StreamSettings"]

#: ``--help`` section of the stream settings.
STREAM = "spectrum"
#: The ``--help`` section of the signal detection settings.
DETECT = "signal detection"


def _step_db(value: float) -> str | None:
    try:
        check_step_db(value)
    except ProtocolError:
        return (f"must be 0 (automatic) or from {UINT8_STEP_DB_MIN:g} to "
                f"{UINT8_STEP_DB_MAX:g} dB")
    return None


def _detect_ranges(value: str) -> str | None:
    try:
        parse_ranges(value)
    except ValueError as exc:
        return str(exc)
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
    max_fps: float = setting(0.0, "most frames per second handed to clients (0 = twice fps); "
                             "a sink fed faster skips the rest, counted in frames_skipped "
                             "(clients see the gap)", check=non_negative, group=STREAM)
    detect: bool = setting(False, "find signals in the frames and send detection events "
                           "(start, update, end: frequency, bandwidth, levels, duration, GPS "
                           "fix) to every client", group=DETECT)
    detect_threshold_db: float = setting(8.0, "a signal is this many dB over the noise floor "
                                         "(or more where the noise scatters more: 4 times its "
                                         "20-80 % spread)", check=positive, group=DETECT)
    detect_min_bandwidth_hz: float = setting(0.0, "report only signals at least this wide (Hz)",
                                             check=non_negative, group=DETECT)
    detect_min_duration_s: float = setting(0.0, "report only signals that last at least this "
                                           "long (s)", check=non_negative, group=DETECT)
    detect_ranges: str = setting("", "frequency ranges to watch with their own threshold or "
                                 "to ignore, in Hz: 'LOW-HIGH:watch[:THRESHOLD_DB], "
                                 "LOW-HIGH:ignore, ...' (e.g. '433.05e6-434.79e6:watch:6, "
                                 "100e6-100.2e6:ignore'; a YAML list of such items works "
                                 "too); events in a watched range say watched: true; "
                                 "empty = none", check=_detect_ranges, convert=ranges_text,
                                 group=DETECT)
    detect_log: str = setting("", "append each detection event to this file, one JSON object "
                              "per line (empty = no log); a failing disk is logged and "
                              "counted, never waited for", group=DETECT)

    def __post_init__(self) -> None:
        validate(self)
        if self.second_detector and self.second_detector == self.detector:
            raise ConfigError(f"second_detector {self.second_detector!r} is the detector "
                              "itself: choose another (e.g. average with peak) or none")

    def detection(self) -> DetectionSettings:
        """The settings of signal detection on this stream."""
        return DetectionSettings(threshold_db=self.detect_threshold_db,
                                 min_bandwidth_hz=self.detect_min_bandwidth_hz,
                                 min_duration_s=self.detect_min_duration_s,
                                 ranges=parse_ranges(self.detect_ranges))

    def info(self) -> StreamInfo:
        """The stream's descriptor, as ``hello`` announces it."""
        return StreamInfo(
            stream_id=self.stream_id, name=self.stream_name, bins=self.bins,
            center_freq_hz=self.center_freq, span_hz=self.span,
            encoding=ENCODING_CODES[self.encoding], fps=self.fps,
            step_db=self.step_db if self.encoding == "uint8" else 0.0,
            detector=self.detector, second_detector=self.second_detector)


class FrameRateGuard:
    """Keeps a sink fed faster than its frame rate (an FFT not decimated to the display rate)
    from flooding its clients: at most ``max_fps`` frames a second pass (a token bucket of
    one second, so a chunk of frames from a busy scheduler still passes), and the measured
    input rate is reported once when it is more than 1.5 times ``fps``.

    Args:
        fps: the rate the sink is configured for.
        max_fps: frames a second that may pass (0: twice ``fps``).
        clock: seconds, monotonic (injectable for tests).
    """

    #: The input rate is measured over windows of this many seconds.
    WINDOW_S = 2.0

    def __init__(self, fps: float, max_fps: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fps = fps
        self.limit = max_fps or 2.0 * fps
        self._clock = clock
        self._tokens = self.limit
        self._last: float | None = None
        self._window: tuple[float, int] | None = None  # (start, vectors counted since)
        self.reported = False

    def admit(self) -> bool:
        """Whether one more frame may pass now."""
        now = self._clock()
        if self._last is not None:
            self._tokens = min(self.limit, self._tokens + (now - self._last) * self.limit)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def measure(self, vectors: int) -> float | None:
        """Count ``vectors`` arriving now; the input rate, the first time it is measured over
        a window at more than 1.5 times ``fps`` (None otherwise)."""
        now = self._clock()
        if self._window is None:
            self._window = (now, 0)
            return None
        start, counted = self._window[0], self._window[1] + vectors
        elapsed = now - start
        if elapsed < self.WINDOW_S:
            self._window = (start, counted)
            return None
        self._window = (now, 0)
        rate = counted / elapsed
        if self.reported or rate <= 1.5 * self.fps:
            return None
        self.reported = True
        return rate


class FrameDestination(Protocol):
    """Where encoded frames go (a :class:`~gr_argos.server.SpectrumServer`, say)."""

    def publish_frame(self, stream_id: int, frame: bytes) -> None: ...

    def update_stream(self, stream_id: int, **changes: Any) -> None: ...


log = logging.getLogger(__name__)

#: How far the sample count may fall behind the host clock (samples lost to an overflow, or a
#: sample clock slower than the host's) before frame times are anchored again...
LATE_NS = 250_000_000
#: ...provided it stays that far behind for this long (a stalled flowgraph catches up).
LATE_FOR_NS = 1_000_000_000
#: At most one log line per stream in this time says that frame times were anchored again
#: (a machine too busy for its source's pace does it every few seconds).
REANCHOR_LOG_EVERY_NS = 60_000_000_000
#: A retune waits at most this long (host time) for the first frame after it.
RETUNE_WAIT_NS = 2_000_000_000
#: Retunes at a tagged frame that may wait for their tag at once (a control storm's).
TAGGED_PENDING = 64
#: A frame's period start and a shift's sample, both in ns from seconds, may differ by this.
SHIFT_SLACK_NS = 1_000
#: How far one frame's earlier estimate moves the first sample's time back: frame times never
#: go backwards (a frame period is longer), and a source that fell behind and catches up
#: (a throttled file) comes back smoothly.
EARLIER_STEP_NS = 500_000


@dataclass(frozen=True)
class Shift:
    """A change of a rotator's phase increment scheduled at the first sample of a frame
    (:meth:`SpectrumStream.retune_at_tag`).

    Attributes:
        phase_inc: the new increment, as its ``rot_phase_inc`` tag will say.
        at_s: that frame's first sample, in seconds after the producer's first sample (as
            the frames' ``period_time`` says their periods).
        missed: called (on the sink's thread) when a frame from ``at_s`` on comes without
            the tag: the rotator read the change after passing its sample and dropped it.
    """

    phase_inc: float
    at_s: float
    missed: Callable[[], None] | None = None


class SpectrumStream:
    """Turns spectra into numbered, timestamped frames of one stream.

    A frame's ``timestamp_ns`` is the time of the first sample of the period it covers when
    its producer says which period that is (:meth:`set_period`, from the ``period_time``
    tag of :class:`~gr_argos.spectrum_detector.spectrum_detector`): the time of the first
    input sample plus the period's start. That first time comes from the device clock
    (``rx_time``, :meth:`set_capture_time`) or else from the host clock: the earliest
    ``now - ready`` over the frames so far, ``ready`` being when the samples the frame waited
    for were taken (a frame handed off late only says the samples are older), approached by
    at most ``EARLIER_STEP_NS`` a frame so that frame times never go backwards. When the
    samples fall behind the host clock by more than ``LATE_NS`` for ``LATE_FOR_NS`` (samples
    the radio dropped), the host clock anchors them again (counted in ``time_reanchors``).
    Frames without a period get the ``rx_time`` anchor plus the host time elapsed, or the
    host clock when they are handed off.

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
        self._period: tuple[int, int] | None = None  # the next frame's (start, ready) ns
        self._first_sample_ns: int | None = None  # the time of the producer's sample 0
        self._device_clock = False  # _first_sample_ns is from rx_time, not the host clock
        self._late: tuple[int, int] | None = None  # (since, earliest estimate) while late
        self.time_reanchors = 0
        self.finder: SignalFinder | None = None
        self.on_detection: Callable[[dict[str, Any]], None] | None = None
        self._reanchors_logged = (0, 0)  # (count, host ns) at the last line about them
        self._frame_end_ns = 0  # the time of the last sample of the frame handed off now
        # A retune made at some moment: (changes, applied ns, settle ns, asked at host ns).
        self._retune: tuple[dict[str, float], int, int, int] | None = None
        self.frames_retuning = 0  # frames dropped because their samples span a retune
        # Retunes at a frame's first sample, waiting for their tag (any thread adds them).
        self._tagged: deque[tuple[Shift, dict[str, float]]] = deque(maxlen=TAGGED_PENDING)
        self._tagged_lock = threading.Lock()
        self._tag_seen: float | None = None  # the tag on the frame handed off next
        self._period_start_ns: int | None = None  # the first sample of that frame's period
        self._within: dict[str, float] | None = None  # a change inside that frame

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
            if self.finder is not None and self.on_detection is not None:
                for event in self.finder.retuned(self._clock_ns()):
                    self.on_detection(event)

    def retune_at(self, applied_ns: int, settle_ns: int = 0, *,
                  center_freq_hz: float | None = None, span_hz: float | None = None) -> None:
        """Change the centre frequency and/or span from the samples taken ``settle_ns``
        after ``applied_ns`` (host clock, ns) on: frames of samples all before
        ``applied_ns`` keep the old label, frames with samples between the two are dropped
        (counted in ``frames_retuning``; their sequence numbers pass, so clients see the
        gap), and the frames after get the new label. Needs frames whose period is known
        (:meth:`set_period`); others are relabelled once they are handed off after
        ``applied_ns + settle_ns``. A retune not reached within ``RETUNE_WAIT_NS`` of host
        time (frames that stopped coming) applies to the next frame."""
        changes = _changes(center_freq_hz, span_hz)
        self._retune = (changes, int(applied_ns), int(settle_ns), self._clock_ns())

    def retune_at_tag(self, shift: Shift, *, center_freq_hz: float | None = None,
                      span_hz: float | None = None) -> None:
        """Change the centre frequency and/or span from the frame whose first sample holds
        a ``rot_phase_inc`` tag of ``shift.phase_inc`` (:meth:`retune_tag_seen`): a rotator
        told to change its increment exactly at a frame's first sample, so no frame spans
        the change and none is dropped. Tags are matched by value: a tag nobody waits for
        changes nothing, and a retune whose tag never came is passed over by a later one's.
        A frame from ``shift.at_s`` on without the tag means the rotator dropped the change
        (it read it too late): ``shift.missed`` is called, to send it again. Any thread."""
        with self._tagged_lock:
            self._tagged.append((shift, _changes(center_freq_hz, span_hz)))

    def new_producer(self) -> None:
        """The block before the sink was replaced (a flowgraph reconfigured): its periods
        count from its own first sample, so the first sample's time is found again; and it
        starts at the latest retune asked for, whose tag will never come."""
        self._first_sample_ns = None
        self._late = None
        self._period = None
        self._device_clock = False
        self._tag_seen = self._within = self._period_start_ns = None
        with self._tagged_lock:
            latest = self._tagged[-1][1] if self._tagged else None
            self._tagged.clear()
        if latest is not None:
            self.retune(**latest)

    def retune_within(self, *, center_freq_hz: float | None = None,
                      span_hz: float | None = None) -> None:
        """The frame handed off next holds samples from both sides of a change (an
        ``rx_freq`` tag inside its period): it is dropped (counted in ``frames_retuning``),
        and the frames after it get the new label."""
        self._within = _changes(center_freq_hz, span_hz)

    def retune_tag_seen(self, phase_inc: float) -> None:
        """The frame handed off next starts with a ``rot_phase_inc`` tag of ``phase_inc``."""
        self._tag_seen = float(phase_inc)

    def _apply_tagged(self) -> None:
        """Apply the retune whose tag the frame handed off now holds, if one waits for it
        (and forget those asked before it, passed over); tell the shifts whose frame came
        without their tag that they were missed."""
        seen, self._tag_seen = self._tag_seen, None
        start_ns = self._period_start_ns
        missed: list[Shift] = []
        changes: dict[str, float] | None = None
        with self._tagged_lock:
            for index, (shift, wanted) in enumerate(self._tagged):
                # The rotator's tag holds its increment as a float32.
                if seen is not None and abs(shift.phase_inc - seen) <= 1e-6 * max(
                        1.0, abs(shift.phase_inc)):
                    for _ in range(index + 1):
                        self._tagged.popleft()
                    changes = wanted
                    break
            else:
                while self._tagged and start_ns is not None \
                        and start_ns >= round(self._tagged[0][0].at_s * 1e9) - SHIFT_SLACK_NS:
                    missed.append(self._tagged.popleft()[0])
        if changes is not None:
            self.retune(**changes)
        for shift in missed:
            if shift.missed is not None:
                shift.missed()

    def _retuning(self, timestamp_ns: int) -> bool:
        """Whether the frame starting at ``timestamp_ns`` (ending at ``_frame_end_ns``)
        is to be dropped for a retune; applies the retune at its first frame after it."""
        self._apply_tagged()
        if self._within is not None:
            changes, self._within = self._within, None
            self.retune(**changes)
            return True
        if self._retune is None:
            return False
        changes, applied_ns, settle_ns, asked_ns = self._retune
        if self._frame_end_ns <= applied_ns:
            return False  # all of it before the retune: the old label is right
        if timestamp_ns < applied_ns + settle_ns \
                and self._clock_ns() - asked_ns < RETUNE_WAIT_NS:
            return True
        self._retune = None
        self.retune(**changes)
        return False

    def set_capture_time(self, capture_ns: int) -> None:
        """Anchor frame timestamps to a device clock reading (an ``rx_time`` tag).

        The next frame gets exactly ``capture_ns``; later frames get it plus the host time
        elapsed since, until the next anchor.
        """
        self._time_ref = (int(capture_ns), self._clock_ns())
        self._anchor_pending = True

    def set_period(self, start_s: float, ready_s: float) -> None:
        """Say which period the next frame covers: its first sample at ``start_s`` and the
        last sample it waited for at ``ready_s``, in seconds after the producer's first
        sample (the ``period_time`` tag)."""
        self._period = (round(start_s * 1e9), round(ready_s * 1e9))

    def timestamp_ns(self) -> int:
        """Capture time for the frame handed off now (see the class)."""
        now = self._clock_ns()
        period, self._period = self._period, None
        self._period_start_ns = None if period is None else period[0]
        if period is not None:
            start_ns = self._period_timestamp_ns(now, *period)
            self._frame_end_ns = start_ns + period[1] - period[0]
            return start_ns
        self._frame_end_ns = now
        if self._time_ref is None:
            return now
        capture_ns, seen_ns = self._time_ref
        if self._anchor_pending:
            self._anchor_pending = False
            return capture_ns
        return capture_ns + (now - seen_ns)

    def _period_timestamp_ns(self, now: int, start_ns: int, ready_ns: int) -> int:
        if self._anchor_pending:
            assert self._time_ref is not None
            self._anchor_pending = False
            self._first_sample_ns = self._time_ref[0] - start_ns
            self._device_clock = True
        elif not self._device_clock:
            self._follow_host_clock(now, now - ready_ns)
        assert self._first_sample_ns is not None
        return self._first_sample_ns + start_ns

    def _follow_host_clock(self, now: int, estimate: int) -> None:
        """Keep the first sample's time at the earliest estimate, unless the samples stay
        behind the host clock (then take the earliest estimate of that while)."""
        anchor = self._first_sample_ns
        if anchor is None:
            self._first_sample_ns = estimate
        elif estimate <= anchor:
            self._first_sample_ns, self._late = max(estimate, anchor - EARLIER_STEP_NS), None
        elif estimate - anchor <= LATE_NS:
            self._late = None
        elif self._late is None:
            self._late = (now, estimate)
        else:
            since, earliest = self._late[0], min(self._late[1], estimate)
            self._late = (since, earliest)
            if now - since >= LATE_FOR_NS:
                self._first_sample_ns, self._late = earliest, None
                self.time_reanchors += 1
                self._log_reanchor(now, (earliest - anchor) / 1e6)

    def _log_reanchor(self, now: int, behind_ms: float) -> None:
        logged, at = self._reanchors_logged
        if logged and now - at < REANCHOR_LOG_EVERY_NS:
            return
        log.warning("stream %d: the samples fell %.0f ms behind the host clock (samples "
                    "lost, a slow sample clock, or a machine too busy for the source's pace): "
                    "frame times follow the host clock again (%d times so far)",
                    self.info.stream_id, behind_ms, self.time_reanchors)
        self._reanchors_logged = (self.time_reanchors, now)

    def publish(self, power_db: npt.ArrayLike,
                second_power_db: npt.ArrayLike | None = None) -> int:
        """Encode one spectrum once and hand it to the sink; return its sequence number.

        ``second_power_db`` is the stream's second trace over the same period (its
        ``second_detector``), sent to the clients that ask for it.
        """
        sequence = self.sequence
        timestamp_ns = self.timestamp_ns()
        if self._retuning(timestamp_ns):
            self.sequence += 1
            self.frames_retuning += 1
            return sequence
        second = None if second_power_db is None or not self.info.second_detector else (
            np.asarray(second_power_db, dtype=np.float32))
        frame = encode_frame(
            np.asarray(power_db, dtype=np.float32),
            detector=self.info.detector,
            second_power_db=second,
            second_detector=self.info.second_detector if second is not None else "",
            center_freq_hz=self.info.center_freq_hz,
            span_hz=self.info.span_hz,
            timestamp_ns=timestamp_ns,
            sequence=sequence,
            stream_id=self.info.stream_id,
        )
        self.sequence += 1
        self._destination.publish_frame(self.info.stream_id, frame)
        if self.finder is not None and self.on_detection is not None:
            for event in self.finder.process(power_db, self.info.center_freq_hz,
                                             self.info.span_hz, timestamp_ns):
                self.on_detection(event)
        return sequence

    def detect(self, settings: DetectionSettings,
               on_detection: Callable[[dict[str, Any]], None]) -> None:
        """Find signals in the frames from now on (:mod:`gr_argos.detections`) and hand each
        event to ``on_detection``, in the thread that publishes."""
        self.finder = SignalFinder(1.0 / self.info.fps if self.info.fps > 0 else 0.0, settings)
        self.on_detection = on_detection

    def skip(self, count: int) -> None:
        """Count frames that were produced but not handed off (their sequence numbers pass,
        so every client sees the gap)."""
        self.sequence += count
        self.frames_skipped += count


def _changes(center_freq_hz: float | None, span_hz: float | None) -> dict[str, float]:
    """A retune's changes, as :meth:`SpectrumStream.retune` takes them."""
    return {key: float(value) for key, value in
            (("center_freq_hz", center_freq_hz), ("span_hz", span_hz)) if value is not None}
