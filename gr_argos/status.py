# SPDX-License-Identifier: GPL-3.0-or-later
"""Periodic ``status`` messages for a stream: what the flowgraph is producing, measured.

:class:`StatusReporter` publishes, every ``interval`` seconds, one JSON ``status`` message per
stream: the stream's descriptor (centre frequency, span, bins), the frame rate actually
produced over the last interval, frame counters, and whatever the source reported about
itself (kind, arguments, gains, measured sample rate, restarts, errors) through
:meth:`StatusReporter.update_source`. It runs on its own thread, so a status still goes out
when no frames flow (then showing ``fps`` 0: the source has stalled). No GNU Radio import.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping

from gr_argos.stream import SpectrumStream

__all__ = ["StatusReporter"]

# Keys that source blocks report under GNU Radio's names, and what status calls them.
# blocks.probe_rate posts {"rate_now", "rate_avg"} in items per second.
_SOURCE_KEY_NAMES = {"rate_avg": "samp_rate_measured", "rate_now": None}


class StatusReporter:
    """Builds and periodically publishes a stream's ``status`` message.

    Args:
        stream: the stream whose frames are counted.
        publish: called with (message type, body) for each status message.
        interval: seconds between messages; 0 means never (``snapshot()`` still works).
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        stream: SpectrumStream,
        publish: Callable[[str, dict[str, Any]], None],
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval < 0:
            raise ValueError(f"status_interval must be >= 0 seconds, got {interval}")
        self.stream = stream
        self.interval = interval
        self.publish = publish  # a sink that takes over the stream sets its own
        self._clock = clock
        self._lock = threading.Lock()
        self._source: dict[str, Any] = {}
        self._last = (clock(), stream.sequence)
        self._fps = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update_source(self, fields: Mapping[str, Any]) -> None:
        """Merge what the source says about itself into every later status (thread-safe)."""
        with self._lock:
            for key, value in fields.items():
                if key in ("type", "stream"):
                    continue
                name = _SOURCE_KEY_NAMES.get(key, key)
                if name is not None:
                    self._source[name] = value

    def snapshot(self) -> dict[str, Any]:
        """The status body now; also advances the frame-rate measurement window."""
        now = self._clock()
        sequence = self.stream.sequence
        last_time, last_sequence = self._last
        if now > last_time:
            self._fps = (sequence - last_sequence) / (now - last_time)
        self._last = (now, sequence)
        info = self.stream.info
        with self._lock:
            source = dict(self._source)
        return {
            "stream": info.stream_id,
            "name": info.name,
            "center_freq_hz": info.center_freq_hz,
            "span_hz": info.span_hz,
            "bins": info.bins,
            "fps": round(self._fps, 3),
            "frames": sequence,
            "frames_skipped": self.stream.frames_skipped,
            "frames_retuning": self.stream.frames_retuning,
            **source,
        }

    def start(self) -> None:
        """Publish every ``interval`` seconds until :meth:`stop` (no-op if interval is 0)."""
        if self.interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._last = (self._clock(), self.stream.sequence)
        self._thread = threading.Thread(target=self._run, name="argos-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish("status", self.snapshot())
