# SPDX-License-Identifier: GPL-3.0-or-later
"""IQ recordings in SigMF: the source's raw samples, for inspectrum, URH or GNU Radio.

:class:`IqRecorder` is handed blocks of complex64 samples (by the
:class:`~gr_argos.sigmf_sink.sigmf_sink` block, from the radio's thread). It copies them into
a queue bounded in bytes (``record_iq_buffer_bytes``) and returns; a thread of its own writes
them to a SigMF recording: a ``.sigmf-data`` file of ``cf32_le`` samples and its
``.sigmf-meta`` JSON file (the sample rate, the hardware, one capture segment per tuning with
its frequency and the time of its first sample, and an annotation per detection). So the
radio never waits for the disk:

- samples the disk is too slow for (the queue is full) are dropped and counted; the next
  samples written start a new capture segment whose ``core:global_index`` says how many
  were lost;
- a write error (the disk full, the directory not writable) stops the writing: the log and
  every ``status`` message say what and what to do, samples are dropped and counted, and the
  recorder tries again with a new file every :data:`~gr_argos.recording.disk.RETRY_S` s.

A retune starts a new capture segment; a new sample rate a new recording (SigMF has one rate
per recording). Recordings rotate by size and age, and the oldest go past
``record_iq_max_total_bytes``. The meta file is rewritten (whole, then renamed into place)
every second and when a recording ends, so a power cut leaves a recording that opens.
Plain code: no GNU Radio, no sockets.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt

from gr_argos import __version__
from gr_argos.recording.disk import WriterThread, close_quietly, delete_oldest, replace_json
from gr_argos.server.config import RECORDING
from gr_argos.settings import at_least, positive, setting, validate

__all__ = ["DATA_SUFFIX", "IqRecordSettings", "IqRecorder", "META_SUFFIX", "SIGMF_VERSION",
           "iq_recordings"]

log = logging.getLogger(__name__)

DATA_SUFFIX = ".sigmf-data"
META_SUFFIX = ".sigmf-meta"
#: The SigMF specification version the meta files follow.
SIGMF_VERSION = "1.2.0"
#: Seconds between two visits of the writer to its queue (and between meta rewrites: 20).
_TICK_S = 0.05
_META_EVERY_TICKS = 20
#: Bytes of one complex64 (cf32_le) sample.
SAMPLE_BYTES = 8


@dataclass(frozen=True)
class IqRecordSettings:
    """Where and how argos-spectrum records its source's IQ samples (see each field's help).

    Raises:
        ConfigError: a value of the wrong kind or out of range (naming the setting).
    """

    record_iq_dir: str = setting("", "directory to record the source's raw IQ samples to as "
                                 "SigMF (cf32_le .sigmf-data with a .sigmf-meta file, "
                                 "rotating; created if missing; not for --source sweep); "
                                 "empty = none", group=RECORDING)
    record_iq_max_file_bytes: int = setting(2**30, "start a new IQ recording past this size "
                                            "(1 GiB: about 13 s at 10 MS/s)",
                                            check=at_least(2**20), group=RECORDING)
    record_iq_max_file_s: float = setting(600.0, "start a new IQ recording after this many "
                                          "seconds", check=positive, group=RECORDING)
    record_iq_max_total_bytes: int = setting(0, "delete the oldest IQ recordings of "
                                             "record_iq_dir past this many bytes in all (0 = "
                                             "keep every one: mind the disk, IQ is 8 bytes a "
                                             "sample)", check=at_least(0), group=RECORDING)
    record_iq_buffer_bytes: int = setting(64 * 2**20, "bytes of IQ samples waiting for the "
                                          "disk; past it they are dropped and counted, and "
                                          "the recording says so (the radio never waits)",
                                          check=at_least(2**20), group=RECORDING)

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class _Block:
    """Samples handed to the recorder, with what was true of them."""

    index: int  # of the first sample, counted from the recorder's first (the global index)
    arrival_ns: int  # host clock when the block reached the recorder (its last sample)
    center_freq_hz: float
    sample_rate_hz: float
    samples: npt.NDArray[np.complex64]


@dataclass
class _Annotation:
    start_ns: int
    end_ns: int
    low_hz: float
    high_hz: float
    label: str
    comment: str


@dataclass
class _File:
    """The recording being written."""

    data_path: Path
    data: IO[bytes]
    sample_rate_hz: float
    opened_at: float
    samples: int = 0  # written to it
    next_index: int = -1  # the global index the next sample should have
    center_freq_hz: float = float("nan")
    captures: list[dict[str, Any]] = field(default_factory=list)
    #: (sample_start, datetime ns) of each capture, to place annotations.
    capture_times: list[tuple[int, int]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0  # samples lost inside this file (jumps of the global index)

    @property
    def meta_path(self) -> Path:
        return self.data_path.with_suffix(META_SUFFIX)


def iq_recordings(directory: Path) -> list[Path]:
    """The ``.sigmf-data`` files of a directory, oldest first."""
    return sorted(directory.glob("*" + DATA_SUFFIX))


def _write_all(data: IO[bytes], payload: memoryview) -> tuple[int, OSError | None]:
    """Write ``payload`` to an unbuffered file; the bytes written, and the error that
    stopped it (None: all written)."""
    written = 0
    while written < len(payload):
        try:
            done = data.write(payload[written:])
        except OSError as exc:
            return written, exc
        if not done:
            return written, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written += done
    return written, None


def _datetime(time_ns: int) -> str:
    """SigMF's ``core:datetime``: ISO 8601 in UTC with a Z, to the microsecond."""
    seconds, ns = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns // 1000:06d}Z"


class IqRecorder(WriterThread):
    """Records the IQ samples handed to it as SigMF, on a thread of its own.

    Args:
        settings: the ``record_iq_*`` settings.
        sample_rate_hz: the source's sample rate.
        center_freq_hz: the frequency its samples are centred on.
        hw: ``core:hw``, the receiver ("HackRF One (hackrf=0)", "simulated band").
        description: ``core:description``.
        clock_ns: host clock in ns since the epoch (injectable for tests).
    """

    def __init__(self, settings: IqRecordSettings, sample_rate_hz: float,
                 center_freq_hz: float, hw: str = "", description: str = "",
                 clock_ns: Any = time.time_ns) -> None:
        self.settings = settings
        self.directory = Path(settings.record_iq_dir)
        self.hw = hw
        self.description = description
        self._clock_ns = clock_ns
        self._sample_rate_hz = float(sample_rate_hz)
        self._center_freq_hz = float(center_freq_hz)
        self._next_index = 0  # global index of the next sample handed over
        self._queue: deque[_Block | _Annotation] = deque()
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: _File | None = None
        self._retry_at = 0.0
        self._number = 0
        # Counters since start (read by status from other threads).
        self.samples_written = 0
        self.bytes = 0
        self.dropped_samples = 0
        self.files = 0
        self.files_deleted = 0
        self.write_errors = 0
        self.error: str | None = None

    # -- producers (the radio's thread) ----------------------------------------------------

    def samples(self, block: npt.NDArray[np.complex64]) -> None:
        """Record a block of samples (copied; the caller may reuse it). Never blocks or
        raises."""
        count = len(block)
        if not count:
            return
        with self._lock:
            index = self._next_index
            self._next_index += count
            if self._thread is None:
                return  # stopped: not recording, so not dropping
            size = count * SAMPLE_BYTES
            if self._queued_bytes + size > self.settings.record_iq_buffer_bytes:
                self.dropped_samples += count
                return
            self._queued_bytes += size
            self._queue.append(_Block(index, self._clock_ns(), self._center_freq_hz,
                                      self._sample_rate_hz,
                                      np.array(block, dtype=np.complex64, copy=True)))

    def retune(self, center_freq_hz: float) -> None:
        """The samples from the next one handed over are centred on ``center_freq_hz``."""
        with self._lock:
            self._center_freq_hz = float(center_freq_hz)

    def set_sample_rate(self, sample_rate_hz: float) -> None:
        """The samples from the next one handed over are at this rate (a new recording)."""
        with self._lock:
            self._sample_rate_hz = float(sample_rate_hz)

    def annotate(self, start_ns: int, end_ns: int, low_hz: float, high_hz: float,
                 label: str, comment: str = "") -> None:
        """Mark a signal seen from ``start_ns`` to ``end_ns`` (host clock) between two
        frequencies (Hz, absolute) in the recording being written (cut to its start)."""
        with self._lock:
            if self._thread is not None:
                self._queue.append(_Annotation(start_ns, end_ns, low_hz, high_hz, label,
                                               comment))

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start recording (again, after :meth:`stop`: into a new file). A directory that
        cannot be written is reported (log and status), not raised."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping.clear()
            self._retry_at = 0.0
            thread = self._thread = threading.Thread(target=self._run,
                                                     name="argos-iq-recorder", daemon=True)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fail(exc, f"cannot create the directory {self.directory}")
        log.info("recording IQ samples as SigMF to %s", self.directory)
        thread.start()

    def status(self) -> dict[str, Any]:
        """The recorder's state, as ``status`` messages carry it (``server.iq_recorder``)."""
        current = self._file
        return {
            "started": self._thread is not None,
            "recording": current is not None and self.error is None,
            "dir": str(self.directory),
            "file": None if current is None else current.data_path.name,
            "samples": self.samples_written,
            "bytes": self.bytes,
            "files": self.files,
            "dropped_samples": self.dropped_samples,
            "queued_bytes": self._queued_bytes,
            "error": self.error,
        }

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        ticks = 0
        try:
            while True:
                stopping = self._stopping.wait(_TICK_S)
                while self._queue:
                    item = self._queue.popleft()
                    if isinstance(item, _Block):
                        self._write(item)
                    else:
                        self._annotate(item)
                if stopping:
                    return
                ticks += 1
                current = self._file
                if current is not None and ticks % _META_EVERY_TICKS == 0:
                    self._sync(current)
                if current is not None and \
                        time.monotonic() - current.opened_at >= self.settings.record_iq_max_file_s:
                    self._close()
        except Exception:  # a bug: the radio keeps running, the log says why
            log.exception("event=iq_recorder_failed dir=%s: IQ recording stopped",
                          self.directory)
            self.error = "the IQ recorder stopped on an internal error (see the log)"
        finally:
            self._close()

    def _write(self, block: _Block) -> None:
        count = len(block.samples)
        with self._lock:
            self._queued_bytes -= count * SAMPLE_BYTES
        current = self._file
        if current is not None and current.sample_rate_hz != block.sample_rate_hz:
            self._close()
            current = None
        if current is None:
            current = self._open(block)
            if current is None:
                with self._lock:
                    self.dropped_samples += count
                return
        if block.index != current.next_index or block.center_freq_hz != current.center_freq_hz:
            self._new_capture(current, block)
        # numpy 1.24's stubs do not say an array is a buffer; it is (no copy is made here).
        payload = memoryview(cast(Any, block.samples)).cast("B")
        written, error = _write_all(current.data, payload)
        whole = written // SAMPLE_BYTES
        current.samples += whole
        current.next_index = block.index + whole
        with self._lock:
            self.samples_written += whole
            self.bytes += whole * SAMPLE_BYTES
            self.dropped_samples += count - whole
        if error is not None:
            if written % SAMPLE_BYTES:  # the file ends at its last whole sample
                try:
                    os.ftruncate(current.data.fileno(), current.samples * SAMPLE_BYTES)
                except OSError:
                    pass
            self._fail(error, f"cannot write {current.data_path}")
            return
        if current.samples * SAMPLE_BYTES >= self.settings.record_iq_max_file_bytes:
            self._close()  # the next block opens the next file

    def _new_capture(self, current: _File, block: _Block) -> None:
        """A capture segment from ``block``'s first sample: a new tuning, or samples lost
        before it (its global index says how many)."""
        if current.next_index >= 0 and block.index > current.next_index:
            current.dropped += block.index - current.next_index
        first_ns = block.arrival_ns - round(len(block.samples) / block.sample_rate_hz * 1e9)
        capture: dict[str, Any] = {"core:sample_start": current.samples,
                                   "core:global_index": block.index,
                                   "core:frequency": block.center_freq_hz,
                                   "core:datetime": _datetime(first_ns)}
        current.captures.append(capture)
        current.capture_times.append((current.samples, first_ns))
        current.center_freq_hz = block.center_freq_hz
        current.next_index = block.index

    def _annotate(self, note: _Annotation) -> None:
        """An annotation in the file being written, at the samples of its times (cut to
        the samples written)."""
        current = self._file
        if current is None or not current.capture_times:
            return
        rate = current.sample_rate_hz

        def sample_at(time_ns: int) -> int:
            start, start_ns = current.capture_times[0]
            for sample, at_ns in current.capture_times:
                if at_ns <= time_ns:
                    start, start_ns = sample, at_ns
            return max(0, start + round((time_ns - start_ns) * rate / 1e9))

        if not current.samples:
            return
        # Within the samples written: a signal's end is decided after its last samples came.
        first = min(sample_at(note.start_ns), current.samples - 1)
        last = min(max(first + 1, sample_at(note.end_ns)), current.samples)
        annotation = {"core:sample_start": first, "core:sample_count": last - first,
                      "core:freq_lower_edge": note.low_hz, "core:freq_upper_edge": note.high_hz,
                      "core:label": note.label[:64], "core:generator": "gr-argos"}
        if note.comment:
            annotation["core:comment"] = note.comment
        current.annotations.append(annotation)

    def _open(self, block: _Block) -> _File | None:
        if time.monotonic() < self._retry_at:
            return None
        self._number += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(block.arrival_ns / 1e9))
        path = self.directory / f"argos-iq-{stamp}-{self._number:06d}{DATA_SUFFIX}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            data = path.open("xb", buffering=0)  # a write error is known at once
        except OSError as exc:
            self._fail(exc, f"cannot create {path}")
            return None
        current = self._file = _File(path, data, block.sample_rate_hz, time.monotonic())
        self._new_capture(current, block)
        if self.error is not None:
            log.info("event=iq_recording_resumed file=%s", path)
        self.error = None
        self.files += 1
        try:
            self._write_meta(current)
        except OSError as exc:
            self._fail(exc, f"cannot write {current.meta_path}")
            return None
        self.files_deleted += delete_oldest(
            [(other, other.with_suffix(META_SUFFIX)) for other in iq_recordings(self.directory)
             if other != path],
            (path, current.meta_path), self.settings.record_iq_max_total_bytes,
            "record_iq_max_total_bytes")
        return current

    def _sync(self, current: _File) -> None:
        """Hand the samples to the disk and rewrite the meta file."""
        try:
            os.fsync(current.data.fileno())
            self._write_meta(current)
        except OSError as exc:
            self._fail(exc, f"cannot write {current.data_path}")

    def _close(self) -> None:
        current = self._file
        if current is None:
            return
        self._sync(current)
        self._file = None
        close_quietly(current.data)  # an error was reported by _sync

    def _write_meta(self, current: _File) -> None:
        """Write the meta file whole, then put it in place (never half a file)."""
        global_fields: dict[str, Any] = {
            "core:datatype": "cf32_le",
            "core:sample_rate": current.sample_rate_hz,
            "core:version": SIGMF_VERSION,
            "core:num_channels": 1,
            "core:recorder": f"gr-argos {__version__}",
        }
        if self.hw:
            global_fields["core:hw"] = self.hw
        description = self.description
        if current.dropped:
            description += (f" ({current.dropped} samples were lost to the disk: see "
                            "core:global_index in captures)")
        if description.strip():
            global_fields["core:description"] = description.strip()
        meta = {"global": global_fields, "captures": current.captures,
                "annotations": sorted(current.annotations,
                                      key=lambda a: int(a["core:sample_start"]))}
        replace_json(current.meta_path, meta)

    def _fail(self, exc: OSError, what: str) -> None:
        """Stop writing after an OSError: say what and why (once per distinct error), drop
        the file, and try again in :data:`RETRY_S` s."""
        self._write_failed(log, "iq_recording_failed", exc, what, "record_iq_dir",
                           "record_iq_max_total_bytes")
        current, self._file = self._file, None
        if current is not None:
            close_quietly(current.data)
