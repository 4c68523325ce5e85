# SPDX-License-Identifier: GPL-3.0-or-later
"""Replay a recording through a server: the same frames, at their pace or faster.

:class:`RecordingPlayer` reads a recording (:mod:`gr_argos.recording`) on a thread of its own
and publishes each frame to a :class:`~gr_argos.server.SpectrumServer` exactly as it was
recorded (sequence, timestamp and payload unchanged), and each message again, spaced as they
were published, divided by ``speed``. Clients (the viewer, the Python and JavaScript
clients) see the stream they would have seen live; every ``status`` message says it is a
replay (``replay``: the recording, the position, the speed, paused or not).

Clients control the replay with a ``replay`` message (docs/recording.md): pause, play, seek
to a time or by an offset, change the speed. The replay is shared: what one client does,
every client sees. Plain code: no GNU Radio.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from gr_argos.protocol import ENCODING_CODES, ProtocolError, StreamInfo
from gr_argos.recording.files import (
    KIND_FRAME,
    Record,
    RecordingError,
    read_recording,
    read_sidecar,
    segments,
)
from gr_argos.settings import non_negative, positive, setting, validate

__all__ = ["MAX_SPEED", "RecordingPlayer", "ReplaySettings", "REPLAY", "streams_of"]

log = logging.getLogger(__name__)

#: ``--help`` section of the replay settings.
REPLAY = "replay"
#: The fastest replay a client may ask for.
MAX_SPEED = 100.0
#: Seconds between status messages while the replay is paused or between records.
_STATUS_EVERY_S = 1.0


def _speed(value: float) -> str | None:
    return None if 0 < value <= MAX_SPEED else f"must be more than 0 and at most {MAX_SPEED:g}"


@dataclass(frozen=True)
class ReplaySettings:
    """How a recording is replayed (see each field's help)."""

    speed: float = setting(1.0, "replay speed: 1 = as recorded, 4 = four times faster "
                           f"(at most {MAX_SPEED:g})", check=_speed, group=REPLAY)
    loop: bool = setting(False, "start again from the beginning at the end", group=REPLAY)
    start_s: float = setting(0.0, "start this many seconds into the recording",
                             check=non_negative, group=REPLAY)
    paused: bool = setting(False, "start paused (a client's replay message plays it)",
                           group=REPLAY)
    status_interval_s: float = setting(1.0, "seconds between status messages while paused",
                                       check=positive, group=REPLAY)

    def __post_init__(self) -> None:
        validate(self)


class Destination(Protocol):
    """Where a replay goes (a :class:`~gr_argos.server.SpectrumServer`)."""

    def publish_frame(self, stream_id: int, frame: bytes) -> None: ...

    def publish_message(self, msg_type: str, body: dict[str, Any] | None = None) -> None: ...


def streams_of(path: str | Path) -> list[StreamInfo]:
    """The streams a recording describes (its first segment's sidecar), as a server
    announces them.

    Raises:
        RecordingError: the path is no recording, or its sidecar describes no stream.
    """
    first = segments(path)[0]
    described = read_sidecar(first).get("streams") or []
    infos = []
    for stream in described:
        try:
            infos.append(StreamInfo(
                stream_id=int(stream["id"]), name=str(stream.get("name", "spectrum")),
                bins=int(stream.get("bins", 0)),
                center_freq_hz=float(stream.get("center_freq_hz", 0.0)),
                span_hz=float(stream.get("span_hz", 0.0)),
                encoding=ENCODING_CODES.get(str(stream.get("encoding")), 0),
                fps=float(stream.get("fps", 0.0)), step_db=float(stream.get("step_db", 0.0)),
                detector=str(stream.get("detector", "")),
                second_detector=str(stream.get("second_detector", ""))))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{first}: a stream of its sidecar cannot be read: "
                                 f"{exc}") from exc
    if not infos:
        raise RecordingError(f"{first}: its sidecar ({first.with_suffix('.json').name}) "
                             "describes no stream: it is needed to announce the streams")
    return infos


class RecordingPlayer:
    """Publishes a recording's frames and messages to a destination at their pace.

    Args:
        path: the recording (a directory of segments, or one segment).
        destination: the server to publish to.
        settings: speed, loop, start and whether to start paused.

    Raises:
        RecordingError: the path is no recording.
    """

    def __init__(self, path: str | Path, destination: Destination,
                 settings: ReplaySettings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or ReplaySettings()
        found = segments(self.path)
        sidecars = [read_sidecar(segment) for segment in found]
        self.start_ns = _first_time(found[0], sidecars[0])
        self.end_ns = max((s["end_ns"] for s in sidecars if isinstance(s.get("end_ns"), int)),
                          default=self.start_ns)
        self._destination = destination
        self._lock = threading.Condition()
        self._speed = self.settings.speed
        self._paused = self.settings.paused
        self._loop = self.settings.loop
        self._seek_ns: int | None = self.start_ns + round(self.settings.start_s * 1e9)
        self._position_ns = self.start_ns
        # The latest status of each stream, repeated while paused (before the first one is
        # replayed: what the sidecar says of the stream).
        self._last_status: dict[int, dict[str, Any]] = {
            info.stream_id: {"stream": info.stream_id, "name": info.name,
                             "center_freq_hz": info.center_freq_hz, "span_hz": info.span_hz,
                             "bins": info.bins, "fps": 0.0}
            for info in streams_of(self.path)}
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.frames_published = 0
        self.loops = 0
        self.finished = threading.Event()

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="argos-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(10.0)

    # -- control (any thread) --------------------------------------------------------------

    def control(self, message: dict[str, Any]) -> dict[str, Any]:
        """Apply a client's ``replay`` message and return the state after it (the reply).

        ``action``: ``"pause"``, ``"play"``, ``"seek"`` (with ``time_ns``, a recording
        time, or ``offset_s``, seconds from the recording's start), ``"speed"`` (with
        ``speed``) or ``"loop"`` (with ``loop``, true or false); ``"state"`` changes
        nothing.

        Raises:
            ProtocolError: an unknown action or a bad value, naming what is accepted.
        """
        action = message.get("action")
        with self._lock:
            if action == "pause":
                self._paused = True
            elif action == "play":
                self._paused = False
            elif action == "seek":
                self._seek_ns = self._position_ns = self._seek_target(message)
            elif action == "speed":
                speed = message.get("speed")
                if isinstance(speed, bool) or not isinstance(speed, (int, float)) or \
                        _speed(float(speed)) is not None:
                    raise ProtocolError(f"replay: speed must be a number more than 0 and at "
                                        f"most {MAX_SPEED:g}, got {speed!r}")
                self._speed = float(speed)
            elif action == "loop":
                loop = message.get("loop")
                if not isinstance(loop, bool):
                    raise ProtocolError(f"replay: loop must be true or false, got {loop!r}")
                self._loop = loop
            elif action != "state":
                raise ProtocolError(f"replay: unknown action {str(action)[:32]!r}; use pause, "
                                    "play, seek (time_ns or offset_s), speed, loop or state")
            self._lock.notify_all()
            return self.state()

    def _seek_target(self, message: dict[str, Any]) -> int:
        time_ns, offset_s = message.get("time_ns"), message.get("offset_s")
        if isinstance(time_ns, int) and not isinstance(time_ns, bool):
            target = time_ns
        elif isinstance(offset_s, (int, float)) and not isinstance(offset_s, bool) \
                and math.isfinite(offset_s):
            target = self.start_ns + round(offset_s * 1e9)
        else:
            raise ProtocolError("replay: seek needs time_ns (ns since the epoch, a recording "
                                "time) or offset_s (seconds from the recording's start)")
        if not self.start_ns <= target <= self.end_ns:
            raise ProtocolError(f"replay: seek to {target} is outside the recording "
                                f"({self.start_ns} to {self.end_ns} ns)")
        return target

    def state(self) -> dict[str, Any]:
        """What status messages say of the replay (``replay``)."""
        return {"file": self.path.name, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "position_ns": self._position_ns, "speed": self._speed,
                "paused": self._paused, "loop": self._loop}

    # -- the player thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                with self._lock:
                    seek, self._seek_ns = self._seek_ns, None
                if self._play(read_recording(self.path, seek)):
                    continue  # a seek: start reading there
                if not self._loop:
                    break
                self.loops += 1
                with self._lock:
                    if self._seek_ns is None:
                        self._seek_ns = self.start_ns
        except RecordingError as exc:
            log.error("replay of %s stopped: %s", self.path, exc)
        finally:
            self.finished.set()

    def _play(self, records: Iterator[Record]) -> bool:
        """Publish records at their pace; True when a seek interrupted them."""
        anchor: tuple[float, int, float] | None = None  # (monotonic s, recording ns, speed)
        for record in records:
            while True:
                with self._lock:
                    if self._stopping:
                        return False
                    if self._seek_ns is not None:
                        return True
                    if self._paused:
                        anchor = None
                        self._lock.wait(self.settings.status_interval_s)
                        repeat = self._paused
                    else:
                        if anchor is None or anchor[2] != self._speed:
                            anchor = (time.monotonic(), record.time_ns, self._speed)
                        wait_s = (anchor[0] + (record.time_ns - anchor[1]) / 1e9 / anchor[2]
                                  - time.monotonic())
                        if wait_s <= 0:
                            break
                        self._lock.wait(min(wait_s, self.settings.status_interval_s))
                        continue
                if repeat:
                    self._repeat_status()
            self._publish(record)
        return False

    def _publish(self, record: Record) -> None:
        self._position_ns = record.time_ns
        if record.kind == KIND_FRAME:
            stream_id = int.from_bytes(record.body[12:14], "little")
            self._destination.publish_frame(stream_id, record.body)
            self.frames_published += 1
            return
        try:
            message = json.loads(record.body)
        except ValueError:
            log.warning("skipped a recorded message that is not JSON at %s byte %d",
                        record.segment.name, record.offset)
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return
        msg_type = message.pop("type")
        if msg_type == "status":
            message.pop("server", None)  # the replaying server says its own
            stream = message.get("stream")
            if isinstance(stream, int):
                self._last_status[stream] = message
            message = {**message, "replay": self.state()}
        self._destination.publish_message(msg_type, message)

    def _repeat_status(self) -> None:
        """While paused: the latest status of each stream again, saying so."""
        for body in list(self._last_status.values()):
            self._destination.publish_message("status", {**body, "replay": self.state()})


def _first_time(segment: Path, sidecar: dict[str, Any]) -> int:
    start_ns = sidecar.get("start_ns")
    if isinstance(start_ns, int):
        return start_ns
    for record in read_recording(segment):
        return record.time_ns
    return 0
