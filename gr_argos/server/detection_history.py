# SPDX-License-Identifier: GPL-3.0-or-later
"""The recent detection events of each stream, kept for the ``detections`` query.

A server keeps the last :data:`DETECTIONS_KEPT` ``detection`` messages of each stream it
publishes (start, update and end events, as sent), so a client that connects, or comes back
after losing its link, can ask what it missed: ``{"type": "detections", "limit": N,
"since_ns": T, "stream": S}`` (docs/protocol.md). Plain code, thread-safe: a sink adds from
its thread, a connection reads on the server's loop.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

__all__ = ["DETECTIONS_KEPT", "DetectionHistory"]

#: Detection events kept per stream (the oldest go first): a few minutes of a busy band at
#: a start, an update a second and an end per signal; about 100 KB of JSON when all are asked.
DETECTIONS_KEPT = 256


class DetectionHistory:
    """The last :data:`DETECTIONS_KEPT` detection events of each stream.

    Args:
        kept: events kept per stream.
    """

    def __init__(self, kept: int = DETECTIONS_KEPT) -> None:
        self.kept = kept
        self._events: dict[int, deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, body: dict[str, Any]) -> None:
        """Keep one ``detection`` message's body (any thread)."""
        stream = body.get("stream")
        if not isinstance(stream, int) or isinstance(stream, bool):
            return
        with self._lock:
            events = self._events.get(stream)
            if events is None:
                events = self._events[stream] = deque(maxlen=self.kept)
            events.append(body)

    def recent(self, since_ns: int | None = None,
               stream: int | None = None) -> list[dict[str, Any]]:
        """The kept events, oldest first (by ``time_ns``, then stream): of ``stream`` only
        if given, decided after ``since_ns`` (ns since the Unix epoch) if given."""
        with self._lock:
            chosen = [event for key, events in self._events.items()
                      if stream is None or key == stream for event in events]
        if since_ns is not None:
            chosen = [e for e in chosen if _time_ns(e) > since_ns]
        chosen.sort(key=lambda e: (_time_ns(e), e["stream"]))
        return chosen


def _time_ns(event: dict[str, Any]) -> int:
    time_ns = event.get("time_ns")
    return time_ns if isinstance(time_ns, int) else 0
