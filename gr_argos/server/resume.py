# SPDX-License-Identifier: GPL-3.0-or-later
"""Resume and backfill: a bounded ring of each stream's recent frames, and what a client that
comes back (or a new one) may ask of it.

The hub appends every frame it fanned out to the :class:`ResumeRing`, which keeps the newest
ones of each stream up to ``resume_buffer_bytes`` (counted with the variants encoded of each
frame: every format and view clients asked for). A client that reconnects says, in its URL,
the server session it was served by and the last sequence it has of each stream
(``?resume_session=...&resume_from=0:1234``); one that is new may ask for the last seconds
(``?backfill_s=10``). :func:`plan_catch_up` checks the request against the ring and says
where the client's catch-up starts on each stream (or why it is refused); the connection then
sends the frames from the ring, marked as replayed, at the pace of the server's
:class:`Pacer`, and joins the live fan-out once it has caught up. Frames older than the ring
are gone: the client sees the jump in sequence and reports the gap as it always did.

Plain code: no sockets, no GNU Radio.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gr_argos.protocol import ProtocolError
from gr_argos.server.outgoing import PublishedFrame

__all__ = ["CatchUpPlan", "MAX_BACKFILL_S", "Pacer", "RESUME_KEYS", "ResumeRing",
           "parse_resume_query", "plan_catch_up"]

#: The URL query keys of resume and backfill.
RESUME_KEYS = ("resume_from", "resume_session", "backfill_s")
#: The longest backfill a client may ask for, in seconds.
MAX_BACKFILL_S = 3600.0


def _sequence(frame: PublishedFrame) -> int:
    return frame.sequence


def _bins(frame: PublishedFrame) -> int | None:
    geometry = frame.geometry()
    return None if geometry is None else geometry.bins


@dataclass
class _StreamRing:
    """The recent frames of one stream, oldest first, with their sizes."""

    frames: deque[PublishedFrame] = field(default_factory=deque)
    sizes: deque[int] = field(default_factory=deque)
    nbytes: int = 0
    #: The newest sequence published on the stream (kept with the ring off too).
    last_sequence: int = -1
    #: Sequences up to this one were in the ring and are gone (-1: none yet).
    evicted_through: int = -1


class ResumeRing:
    """The newest frames of each stream, at most ``max_bytes`` of them per stream.

    Touched on the hub's event loop only.

    Args:
        max_bytes: bytes of frames kept per stream, with their variants (0: none, resume
            and backfill then replay nothing; the newest sequence is still tracked, so a
            resume from the future is still refused).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self._streams: dict[int, _StreamRing] = {}
        self.evicted = 0
        self.restarts = 0
        self.resizes = 0  # times a stream's bin count changed (its ring emptied)

    def append(self, frame: PublishedFrame) -> None:
        """Keep ``frame`` (already offered to every live client), evicting the oldest
        frames of its stream past the limit. A sequence at or below the stream's newest
        (its producer started counting again) empties the stream's ring first; so does a
        frame of another bin count (counted as evicted, in ``resizes`` too)."""
        ring = self._streams.setdefault(frame.stream_id, _StreamRing())
        sequence = frame.sequence
        if sequence <= ring.last_sequence:
            self.restarts += 1
            self._empty(ring)
            ring.evicted_through = -1
        elif ring.frames and _bins(ring.frames[-1]) != _bins(frame):
            # A new FFT size: a catch-up never mixes frames of two sizes. The frames before
            # are gone for it (the recording has them), a gap its client sees and reports.
            self.resizes += 1
            self.evicted += len(ring.frames)
            ring.evicted_through = ring.frames[-1].sequence
            self._empty(ring)
        ring.last_sequence = sequence
        frame.trim()
        if self.max_bytes == 0:
            ring.evicted_through = sequence
            return
        if ring.frames:
            # Variants encoded for clients behind in the fan-out came after it was counted.
            newest = ring.frames[-1].nbytes()
            ring.nbytes += newest - ring.sizes[-1]
            ring.sizes[-1] = newest
        size = frame.nbytes()
        ring.frames.append(frame)
        ring.sizes.append(size)
        ring.nbytes += size
        while ring.nbytes > self.max_bytes and len(ring.frames) > 1:
            ring.evicted_through = ring.frames.popleft().sequence
            ring.nbytes -= ring.sizes.popleft()
            self.evicted += 1

    @staticmethod
    def _empty(ring: _StreamRing) -> None:
        ring.frames.clear()
        ring.sizes.clear()
        ring.nbytes = 0

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def last_sequence(self, stream_id: int) -> int:
        """The newest sequence published on the stream (-1: none yet)."""
        ring = self._streams.get(stream_id)
        return -1 if ring is None else ring.last_sequence

    def evicted_through(self, stream_id: int) -> int:
        """The newest sequence of the stream that was in the ring and is gone (-1: none)."""
        ring = self._streams.get(stream_id)
        return -1 if ring is None else ring.evicted_through

    def oldest_sequence(self, stream_id: int) -> int | None:
        """The oldest sequence of the stream the ring still holds (None: it holds none)."""
        ring = self._streams.get(stream_id)
        return ring.frames[0].sequence if ring is not None and ring.frames else None

    def next_after(self, stream_id: int, sequence: int) -> PublishedFrame | None:
        """The oldest frame of the stream newer than ``sequence``, or None."""
        ring = self._streams.get(stream_id)
        if ring is None:
            return None
        index = bisect.bisect_right(ring.frames, sequence, key=_sequence)
        return ring.frames[index] if index < len(ring.frames) else None

    def sequence_before(self, stream_id: int, seconds: float) -> int:
        """The sequence a backfill of the last ``seconds`` starts after: the frames whose
        timestamps lie within ``seconds`` of the newest frame's follow it."""
        ring = self._streams.get(stream_id)
        if ring is None or not ring.frames:
            return self.last_sequence(stream_id)
        since_ns = ring.frames[-1].timestamp_ns - round(seconds * 1e9)
        for frame in ring.frames:
            if frame.timestamp_ns >= since_ns:
                return frame.sequence - 1
        return ring.last_sequence

    @property
    def nbytes(self) -> int:
        """Bytes held by every stream's ring."""
        return sum(ring.nbytes for ring in self._streams.values())

    def stats(self) -> dict[str, Any]:
        """Frames and bytes held, by stream; frames evicted; restarts and changes of bin
        count seen."""
        return {
            "max_bytes": self.max_bytes,
            "bytes": self.nbytes,
            "frames": sum(len(ring.frames) for ring in self._streams.values()),
            "streams": {str(stream_id): {"frames": len(ring.frames), "bytes": ring.nbytes,
                                         "oldest_sequence": (ring.frames[0].sequence
                                                             if ring.frames else None),
                                         "last_sequence": ring.last_sequence}
                        for stream_id, ring in sorted(self._streams.items())},
            "evicted": self.evicted,
            "restarts": self.restarts,
            "resizes": self.resizes,
        }


@dataclass(frozen=True)
class ResumeRequest:
    """What a connection URL asks: to resume ``session`` after the sequences ``after``
    (stream id -> the last sequence the client has; None: the first stream), or a backfill
    of the last ``backfill_s`` seconds."""

    session: str | None = None
    after: Mapping[int | None, int] = field(default_factory=dict)
    backfill_s: float | None = None


def parse_resume_query(query: Mapping[str, list[str]]) -> ResumeRequest | None:
    """The resume or backfill request of a connection URL's query (None: it has none).

    ``resume_from`` is a sequence (of the first stream in ``hello``) or comma-separated
    ``STREAM:SEQUENCE`` pairs; it needs ``resume_session``. ``backfill_s`` is a number of
    seconds from 0 to :data:`MAX_BACKFILL_S`; not with ``resume_from``.

    Raises:
        ProtocolError: a value of the wrong form, naming the key and what it takes.
    """
    if not any(key in query for key in RESUME_KEYS):
        return None
    resume_from = query.get("resume_from", [None])[-1]
    session = query.get("resume_session", [None])[-1]
    backfill = query.get("backfill_s", [None])[-1]
    if backfill is not None:
        if resume_from is not None:
            raise ProtocolError("backfill_s and resume_from exclude each other: resume after "
                                "a reconnect, backfill on a first connection")
        try:
            seconds = float(backfill)
        except ValueError:
            seconds = math.nan
        if not 0 < seconds <= MAX_BACKFILL_S:
            raise ProtocolError(f"backfill_s must be a number of seconds more than 0 and at "
                                f"most {MAX_BACKFILL_S:g}, got {backfill[:32]!r}")
        return ResumeRequest(backfill_s=seconds)
    if resume_from is None:
        raise ProtocolError("resume_session needs resume_from: the last sequence you have")
    if not session:
        raise ProtocolError("resume_from needs resume_session: the session of the hello "
                            "that served those frames")
    after: dict[int | None, int] = {}
    for item in resume_from.split(","):
        stream, _, sequence = item.rpartition(":")
        try:
            after[int(stream) if stream else None] = int(sequence)
        except ValueError:
            raise ProtocolError(f"resume_from must be a sequence or STREAM:SEQUENCE pairs "
                                f"separated by commas, got {resume_from[:64]!r}") from None
        if after[int(stream) if stream else None] < 0:
            raise ProtocolError(f"resume_from: a sequence is 0 or more, got {sequence!r}")
    return ResumeRequest(session=session, after=after)


@dataclass
class CatchUpPlan:
    """Where a client's catch-up starts: the last sequence it has of each stream (it gets
    every newer frame the ring holds, then the live ones), and the frames of each stream
    that are already gone from the ring (the gap it will see)."""

    after: dict[int, int]
    lost: dict[int, int]
    started_at: float = field(default_factory=time.monotonic)

    def describe(self, ring: ResumeRing) -> list[dict[str, Any]]:
        """The ``streams`` of the ``resume`` reply."""
        described = []
        for stream_id, after in sorted(self.after.items()):
            following = ring.next_after(stream_id, after)
            described.append({"stream_id": stream_id, "from_sequence": after,
                              "first_sequence": None if following is None
                              else following.sequence,
                              "lost": self.lost.get(stream_id, 0)})
        return described


def plan_catch_up(request: ResumeRequest, ring: ResumeRing, session: str,
                  stream_ids: list[int]) -> CatchUpPlan:
    """Check a resume or backfill request against the ring and plan the catch-up.

    Streams the request does not name start at their newest frame (nothing replayed).

    Raises:
        ProtocolError: the request is from another session (the server restarted since),
            names a stream this server does not have, or a sequence it has not produced
            yet; the message says which.
    """
    known = sorted(set(stream_ids) | set(ring.stream_ids()))
    after = {stream_id: ring.last_sequence(stream_id) for stream_id in known}
    lost: dict[int, int] = {}
    if request.backfill_s is not None:
        for stream_id in known:
            after[stream_id] = ring.sequence_before(stream_id, request.backfill_s)
        return CatchUpPlan(after, lost)
    if request.session != session:
        raise ProtocolError(f"resume_session {str(request.session)[:32]!r} is not this "
                            f"server's session {session!r}: the server restarted, its "
                            "sequences started again, and nothing can be resumed")
    for stream, sequence in request.after.items():
        stream_id = stream if stream is not None else (stream_ids[0] if stream_ids else 0)
        if stream_id not in after:
            raise ProtocolError(f"resume_from: no stream {stream_id} on this server (it has "
                                + (", ".join(str(s) for s in known) or "none") + ")")
        newest = ring.last_sequence(stream_id)
        if sequence > newest:
            raise ProtocolError(f"resume_from: sequence {sequence} of stream {stream_id} is "
                                f"from the future: the newest is {newest}")
        after[stream_id] = sequence
        oldest = ring.oldest_sequence(stream_id)
        gone_through = ring.evicted_through(stream_id) if oldest is None else oldest - 1
        if gone_through > sequence:
            lost[stream_id] = gone_through - sequence
    return CatchUpPlan(after, lost)


class Pacer:
    """Spaces the frames every client's catch-up sends, together, at most ``rate_per_s``
    a second, first come first served: catching up takes a bounded share of the server's
    event loop, whatever the number of clients doing it.

    Args:
        rate_per_s: frames per second for all catch-ups together (more than 0).
        clock: monotonic seconds (a test may pass its own).
    """

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be more than 0, got {rate_per_s}")
        self.interval_s = 1.0 / rate_per_s
        self._clock = clock
        self._next = 0.0

    async def wait(self) -> None:
        """Wait for this caller's turn to send one frame."""
        now = self._clock()
        turn = max(now, self._next)
        self._next = turn + self.interval_s
        if turn > now:
            await asyncio.sleep(turn - now)
