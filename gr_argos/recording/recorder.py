# SPDX-License-Identifier: GPL-3.0-or-later
"""The recorder: the one consumer that sees every frame and message a server publishes.

:class:`Recorder` is a tap in front of the server's hub: ``publish_frame`` and
``publish_message`` hand it each item before any client queue sees it. It only appends the
item to a queue bounded in bytes (``record_buffer_bytes``) and returns; a thread of its own
writes the items to the segment files of :mod:`gr_argos.recording.files`, re-encoding frames
into ``record_encoding`` there when asked. So a slow, full or broken disk never makes the
radio or the clients wait:

- items the disk is too slow for (the queue is full) are dropped, counted, and written down
  as a gap in the segment's sidecar;
- a write error (the disk full, the directory not writable) stops the writing: the error
  goes to the log and to every ``status`` message (``server.recorder.error``), items are
  dropped and counted, and the recorder tries again with a new segment every
  :data:`RETRY_S` seconds.

Segments are rotated by size and age and the oldest deleted past ``record_max_total_bytes``.
The file being written is fsync'd every ``record_fsync_s`` seconds (and at rotation and
stop), with its index, and its sidecar rewritten then: a power cut loses at most about that
much, and leaves whole records. Plain code: no GNU Radio, no sockets.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from gr_argos import __version__
from gr_argos.protocol import (
    ENCODING_CODES,
    FLAG_COMPRESSED,
    FrameFormat,
    ProtocolError,
    reencode_frame,
)
from gr_argos.recording.disk import (
    RETRY_S, WriterThread, close_quietly, delete_oldest, replace_json,
)
from gr_argos.recording.files import (
    FILE_MAGIC,
    INDEX_ENTRY,
    KIND_FRAME,
    KIND_MESSAGE,
    RECORD_HEADER,
    SEGMENT_SUFFIX,
    index_path,
    segments,
    sidecar_path,
)

if TYPE_CHECKING:
    from gr_argos.server.config import ServerConfig

__all__ = ["RETRY_S", "Recorder"]

log = logging.getLogger(__name__)

#: Seconds between two visits of the writer to its queue. The producer never wakes it (a
#: wake-up per frame is a thread switch, and a wait for the GIL, on the radio's thread): it
#: appends, and the writer takes what came every this often.
_TICK_S = 0.05


@dataclass
class _Gap:
    """Items dropped in a row (the disk too slow, or a write error)."""

    at_ns: int
    reason: str
    frames: int = 0
    messages: int = 0

    def describe(self) -> dict[str, Any]:
        return {"at_ns": self.at_ns, "reason": self.reason, "frames": self.frames,
                "messages": self.messages}


@dataclass
class _Segment:
    """The segment being written and what its sidecar says of it."""

    path: Path
    data: IO[bytes]
    index: IO[bytes]
    start_ns: int
    opened_at: float
    size: int = len(FILE_MAGIC)
    end_ns: int | None = None
    frames: int = 0
    messages: int = 0
    indexed_second: int | None = None
    sequences: dict[int, list[int]] = field(default_factory=dict)  # stream -> [first, last]
    gaps: list[_Gap] = field(default_factory=list)
    unsynced: int = 0  # items written since the last flush
    #: Every stream described while the segment was written, by id: the latest description
    #: (a stream removed before the segment closes is still one of its streams).
    streams: dict[int, dict[str, Any]] = field(default_factory=dict)
    bins: dict[int, int] = field(default_factory=dict)  # stream -> its frames' bin count


class Recorder(WriterThread):
    """Records every frame and message handed to it, on a thread of its own.

    Args:
        config: the server's settings (``record_dir`` and the other ``record_*``).
        describe: the server's ``hello`` body (its session and streams), for the sidecars.
        clock_ns: host clock in ns since the epoch (injectable for tests).
    """

    def __init__(self, config: ServerConfig, describe: Callable[[], dict[str, Any]],
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.directory = Path(config.record_dir)
        self.config = config
        self.frame_format = FrameFormat(ENCODING_CODES[config.record_encoding],
                                        config.record_compress, second_trace=True)
        self._describe = describe
        self._clock_ns = clock_ns
        self._queue: deque[tuple[int, int, bytes]] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._queued_bytes = 0
        self._pending_gap: _Gap | None = None  # dropped by the producer, not yet noted
        self._thread: threading.Thread | None = None
        self._segment: _Segment | None = None
        self._retry_at = 0.0
        self._next_fsync = 0.0
        self._number = 0
        # Counters since start (read by status and metrics from other threads).
        self.frames = 0
        self.messages = 0
        self.bytes = 0
        self.dropped_frames = 0
        self.dropped_messages = 0
        self.encode_errors = 0
        self.write_errors = 0
        self.files_deleted = 0
        self.error: str | None = None

    # -- producers (any thread) ------------------------------------------------------------

    def frame(self, data: bytes) -> None:
        """Record a published frame. Never blocks or raises."""
        self._put(KIND_FRAME, data)

    def message(self, text: str) -> None:
        """Record a published JSON message. Never blocks or raises."""
        self._put(KIND_MESSAGE, text.encode())

    def _put(self, kind: int, body: bytes) -> None:
        time_ns = self._clock_ns()
        with self._lock:
            if self._thread is None:
                return  # stopped: nothing is being recorded, so nothing is lost
            if self._queued_bytes + len(body) > self.config.record_buffer_bytes:
                self._drop_locked(kind, time_ns, "disk too slow")
                return
            self._queued_bytes += len(body)
            self._queue.append((kind, time_ns, body))

    def _drop_locked(self, kind: int, time_ns: int, reason: str) -> None:
        if kind == KIND_FRAME:
            self.dropped_frames += 1
        else:
            self.dropped_messages += 1
        gap = self._pending_gap
        if gap is None or gap.reason != reason:
            gap = self._pending_gap = _Gap(time_ns, reason)
        if kind == KIND_FRAME:
            gap.frames += 1
        else:
            gap.messages += 1

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (again, after :meth:`stop`: into a new segment); a
        directory that cannot be written is reported (log and status), not raised: the
        server serves without recording until it can."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._retry_at = 0.0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / ".argos-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            self._fail(exc, f"cannot write to the directory {self.directory}")
        else:
            log.info("recording every frame and message to %s (%s)", self.directory,
                     self.frame_format.name.replace("+second_trace", ""))
        with self._lock:
            self._thread = threading.Thread(target=self._run, name="argos-recorder",
                                            daemon=True)
        self._thread.start()

    # -- what it reports -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The recorder's state, as ``status`` messages carry it (``server.recorder``)."""
        segment = self._segment
        return {
            "started": self.started,
            "recording": segment is not None and self.error is None,
            "dir": str(self.directory),
            "file": None if segment is None else segment.path.name,
            "frames": self.frames,
            "messages": self.messages,
            "bytes": self.bytes,
            "dropped_frames": self.dropped_frames,
            "dropped_messages": self.dropped_messages,
            "queued_bytes": self._queued_bytes,
            "error": self.error,
        }

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stopping.wait(_TICK_S)
                while self._queue:
                    self._write(*self._queue.popleft())
                self._flush()
                if stopping:
                    return
                self._tick()
        except Exception:  # a bug: the server keeps serving, the log says why
            log.exception("event=recorder_failed dir=%s: recording stopped", self.directory)
            self.error = "the recorder stopped on an internal error (see the log)"
        finally:
            self._close_segment()

    def _write(self, kind: int, time_ns: int, body: bytes) -> None:
        with self._lock:
            self._queued_bytes -= len(body)
        segment = self._segment
        if segment is not None and kind == KIND_FRAME \
                and segment.bins.get(_stream_id(body), _bin_count(body)) != _bin_count(body):
            # A new FFT size starts a new segment: each one's sidecar says its frames' bins.
            self._close_segment()
            segment = None
        segment = segment or self._open_segment(time_ns)
        if segment is None:
            with self._lock:
                self._drop_locked(kind, time_ns, "write error")
            return
        self._note_gap(segment)
        if kind == KIND_FRAME:
            body = self._encode(body)
            stream_id = _stream_id(body)
            sequence = int.from_bytes(body[16:24], "little")
            seen = segment.sequences.setdefault(stream_id, [sequence, sequence])
            seen[1] = sequence
            bins = _bin_count(body)
            if bins is not None:
                segment.bins.setdefault(stream_id, bins)
            segment.frames += 1
        else:
            segment.messages += 1
        second = time_ns // 1_000_000_000
        try:
            if second != segment.indexed_second:
                segment.index.write(INDEX_ENTRY.pack(time_ns, segment.size))
                segment.indexed_second = second
            segment.data.write(RECORD_HEADER.pack(len(body), kind, time_ns))
            segment.data.write(body)
        except OSError as exc:
            self._fail(exc, f"cannot write {segment.path}")
            with self._lock:
                self._drop_locked(kind, time_ns, "write error")
            return
        segment.unsynced += 1
        segment.size += RECORD_HEADER.size + len(body)
        segment.end_ns = time_ns
        self.bytes += RECORD_HEADER.size + len(body)
        if kind == KIND_FRAME:
            self.frames += 1
        else:
            self.messages += 1
        if segment.size >= self.config.record_max_file_bytes:
            self._close_segment()  # the next item opens the next segment

    def _encode(self, frame: bytes) -> bytes:
        """A frame in the recording's format (as published when it is already)."""
        wanted = self.frame_format
        if len(frame) > 10 and frame[10] == wanted.encoding and \
                bool(frame[8] & FLAG_COMPRESSED) == wanted.compress and wanted.step_db == 0:
            return frame
        try:
            return reencode_frame(frame, wanted)
        except ProtocolError:
            self.encode_errors += 1
            return frame

    def _note_gap(self, segment: _Segment) -> None:
        with self._lock:
            gap, self._pending_gap = self._pending_gap, None
        if gap is not None:
            segment.gaps.append(gap)

    def _flush(self) -> None:
        """Hand what was written to the kernel (and to the disk when it is time)."""
        segment = self._segment
        if segment is None or not segment.unsynced:
            return
        try:
            segment.data.flush()
            segment.index.flush()
        except OSError as exc:
            lost = segment.unsynced
            self._fail(exc, f"cannot write {segment.path}")
            with self._lock:
                self.dropped_frames += lost  # counted as frames: which is not known
                self._pending_gap = _Gap(self._clock_ns(), "write error", frames=lost)
            return
        segment.unsynced = 0
        if self.config.record_fsync_s == 0:
            self._sync(segment)

    def _tick(self) -> None:
        segment = self._segment
        if segment is None:
            return
        now = time.monotonic()
        if now >= self._next_fsync:
            self._sync(segment)
        if now - segment.opened_at >= self.config.record_max_file_s:
            self._close_segment()

    def _sync(self, segment: _Segment) -> None:
        """fsync the data and index, and rewrite the sidecar."""
        self._next_fsync = time.monotonic() + self.config.record_fsync_s
        try:
            os.fsync(segment.data.fileno())
            os.fsync(segment.index.fileno())
            self._write_sidecar(segment, complete=False)
        except OSError as exc:
            self._fail(exc, f"cannot sync {segment.path}")

    def _open_segment(self, time_ns: int) -> _Segment | None:
        if time.monotonic() < self._retry_at:
            return None
        self._number += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time_ns / 1e9))
        path = self.directory / f"argos-{stamp}-{self._number:06d}{SEGMENT_SUFFIX}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            data = path.open("xb")
            try:
                index = index_path(path).open("xb")
            except OSError:
                data.close()
                raise
            data.write(FILE_MAGIC)
        except OSError as exc:
            self._fail(exc, f"cannot create {path}")
            return None
        segment = self._segment = _Segment(path, data, index, time_ns, time.monotonic())
        self._next_fsync = time.monotonic() + self.config.record_fsync_s
        if self.error is not None:
            log.info("event=recording_resumed file=%s", path)
        self.error = None
        try:
            self._write_sidecar(segment, complete=False)
        except OSError as exc:
            self._fail(exc, f"cannot write the sidecar of {path}")
            return None
        self._apply_retention(path)
        return segment

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        self._note_gap(segment)
        try:
            segment.data.flush()
            segment.index.flush()
            os.fsync(segment.data.fileno())
            os.fsync(segment.index.fileno())
            self._write_sidecar(segment, complete=True)
        except OSError as exc:
            self._fail(exc, f"cannot finish {segment.path}")
        finally:
            close_quietly(segment.data, segment.index)

    def _write_sidecar(self, segment: _Segment, complete: bool) -> None:
        """Write the segment's sidecar whole, then put it in place (never half a file)."""
        hello = self._describe()
        for stream in hello.get("streams", []):
            # Its frames' bin count, whatever the stream has now (a later segment has theirs).
            bins = segment.bins.get(stream["id"])
            segment.streams[stream["id"]] = stream if bins is None else {**stream, "bins": bins}
        cfg = self.config
        sidecar = {
            "format": "gr-argos recording", "layout": 1, "software_version": __version__,
            "protocol": hello.get("protocol"), "session": hello.get("session"),
            "file": segment.path.name, "index": index_path(segment.path).name,
            "streams": [segment.streams[key] for key in sorted(segment.streams)],
            "settings": {"record_encoding": cfg.record_encoding,
                         "record_compress": cfg.record_compress,
                         "record_max_file_bytes": cfg.record_max_file_bytes,
                         "record_max_file_s": cfg.record_max_file_s,
                         "record_max_total_bytes": cfg.record_max_total_bytes,
                         "record_fsync_s": cfg.record_fsync_s,
                         "record_buffer_bytes": cfg.record_buffer_bytes},
            "start_ns": segment.start_ns, "end_ns": segment.end_ns,
            "frames": segment.frames, "messages": segment.messages, "bytes": segment.size,
            "sequences": {str(stream_id): {"first": first, "last": last}
                          for stream_id, (first, last) in sorted(segment.sequences.items())},
            "gaps": [gap.describe() for gap in segment.gaps],
            "dropped_frames": sum(gap.frames for gap in segment.gaps),
            "dropped_messages": sum(gap.messages for gap in segment.gaps),
            "complete": complete,
        }
        replace_json(sidecar_path(segment.path), sidecar)

    def _apply_retention(self, current: Path) -> None:
        """Delete the oldest segments (with their index and sidecar) past
        ``record_max_total_bytes``; never the one being written."""
        self.files_deleted += delete_oldest(
            [_parts(path) for path in segments(self.directory) if path != current],
            _parts(current), self.config.record_max_total_bytes, "record_max_total_bytes")

    def _fail(self, exc: OSError, what: str) -> None:
        """Stop writing after an OSError: say what and why (once per distinct error), drop
        the segment, and try again in :data:`RETRY_S` s."""
        self._write_failed(log, "recording_failed", exc, what, "record_dir",
                           "record_max_total_bytes")
        segment, self._segment = self._segment, None
        if segment is not None:
            close_quietly(segment.data, segment.index)


def _parts(segment: Path) -> tuple[Path, Path, Path]:
    return segment, index_path(segment), sidecar_path(segment)


def _stream_id(frame: bytes) -> int:
    return int.from_bytes(frame[12:14], "little")


def _bin_count(frame: bytes) -> int | None:
    """The frame's bin count from its header (None: too short to say)."""
    return int.from_bytes(frame[28:32], "little") if len(frame) >= 32 else None
