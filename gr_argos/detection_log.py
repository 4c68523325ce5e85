# SPDX-License-Identifier: GPL-3.0-or-later
"""A JSONL file of detection events: one JSON object per line, appended, flushed per line.

:class:`DetectionLog` takes each event from the thread that found it (a sink's) without
ever waiting for the disk: the event goes into a bounded queue and a thread of its own
writes it. A disk that fails (full, gone, read-only, a path that cannot be a file) is said
once in the log, each event it loses is counted, and the file is tried again every
:data:`RETRY_S`; when the queue is full (a disk far slower than the events) the event is
counted too. No GNU Radio import.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["DetectionLog", "QUEUED", "RETRY_S"]

log = logging.getLogger(__name__)

#: Events waiting for the writer before new ones are counted as lost.
QUEUED = 1024
#: After a failure the file is tried again after this many seconds.
RETRY_S = 10.0

_STOP = None


class DetectionLog:
    """Appends detection events to ``path``, one JSON object per line (see the module).

    Args:
        path: the file (created if missing, appended to if not).
        on_counts: called from the writer with ``{"detect_log_written": n,
            "detect_log_failed": m}`` whenever they change (e.g. a status reporter's
            ``update_source``).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, path: str | Path, on_counts: Callable[[dict[str, int]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.written = 0
        self._failed_writing = 0  # by the writer thread
        self._failed_queueing = 0  # by the thread that calls write()
        self._on_counts = on_counts
        self._clock = clock
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=QUEUED)
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._retry_at: float | None = None  # failing: when to try the file again

    @property
    def failed(self) -> int:
        """Events not written: the file could not take them, or the queue was full."""
        return self._failed_writing + self._failed_queueing

    def start(self) -> None:
        """Start the writer (the file is opened with the first event)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="argos-detect-log",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (for at most ``timeout_s``), then close the file."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            pass  # a stuck disk: the daemon thread is left behind, its events counted
        thread.join(timeout_s)

    def write(self, event: dict[str, Any]) -> None:
        """Queue one event; never blocks (a full queue counts it as failed)."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._failed_queueing += 1
            self._report()

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (event := self._queue.get()) is not _STOP:
                self._write(event)
        finally:
            self._close()

    def _write(self, event: dict[str, Any]) -> None:
        if self._retry_at is not None and self._clock() < self._retry_at:
            self._failed_writing += 1
            self._report()
            return
        try:
            line = json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n"
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
            self._file.write(line)
            self._file.flush()
        except (OSError, ValueError, TypeError) as exc:
            self._failed(exc)
        else:
            self.written += 1
            if self._retry_at is not None:
                self._retry_at = None
                log.warning("writing detection events to %s again (%d lost so far)",
                            self.path, self.failed)
        self._report()

    def _failed(self, exc: Exception) -> None:
        self._failed_writing += 1
        if isinstance(exc, OSError):
            if self._retry_at is None:
                log.error("cannot write detection events to %s: %s; they are counted in "
                          "detect_log_failed (status messages) and the file is tried again "
                          "every %g s", self.path, exc.strerror or exc, RETRY_S)
            self._retry_at = self._clock() + RETRY_S
            self._close()
        else:
            log.error("dropped a detection event that is not JSON: %s", exc)

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass  # its last lines were counted when they failed

    def _report(self) -> None:
        if self._on_counts is not None:
            self._on_counts({"detect_log_written": self.written,
                             "detect_log_failed": self.failed})
