# SPDX-License-Identifier: GPL-3.0-or-later
"""What a client yields: frames, messages, connection states and gaps; and how it finds gaps.

Plain code without sockets; the gap reasons are the JavaScript client's too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gr_argos.protocol import SpectrumFrame

__all__ = [
    "ClientStats",
    "Event",
    "FrameEvent",
    "GAP_DROPPED_BY_SERVER",
    "GAP_SEQUENCE_JUMP",
    "GAP_STREAM_RESTARTED",
    "GapDetector",
    "GapEvent",
    "MessageEvent",
    "STATE_CLOSED",
    "STATE_CONNECTING",
    "STATE_OPEN",
    "STATE_RECONNECTING",
    "State",
    "StateEvent",
]

State = Literal["connecting", "open", "reconnecting", "closed"]
STATE_CONNECTING: State = "connecting"  # before the first connection opened
STATE_OPEN: State = "open"
STATE_RECONNECTING: State = "reconnecting"  # a connection was lost; retrying until one opens
STATE_CLOSED: State = "closed"  # closed by the user, or the token was refused; iteration ends

GapReason = Literal["dropped by server", "sequence jump", "stream restarted"]
GAP_DROPPED_BY_SERVER: GapReason = "dropped by server"  # the frame's missed field says so
GAP_SEQUENCE_JUMP: GapReason = "sequence jump"  # e.g. frames produced while reconnecting
GAP_STREAM_RESTARTED: GapReason = "stream restarted"  # the sequence went backwards


@dataclass(frozen=True)
class FrameEvent:
    """A spectrum frame arrived.

    Attributes:
        frame: the decoded frame (``frame.power_db`` is the float32 array in dB).
        gap: frames of this stream lost just before this one (0 when none; see
            :class:`GapEvent`, which is yielded before this event when ``gap`` > 0).
        received_ns: wall-clock receive time, ns since the Unix epoch.
        age_ms: receive time minus the frame's capture timestamp, in ms (depends on
            both clocks agreeing).
        size_bytes: size of the binary message.

    ``frame.replayed`` is true for a frame the server sent again from its resume ring (one
    this client missed while it reconnected, or a backfill), not live.
    """

    frame: SpectrumFrame
    gap: int
    received_ns: int
    age_ms: float
    size_bytes: int


@dataclass(frozen=True)
class MessageEvent:
    """A JSON text message arrived (``hello``, ``status``, ``gps``, ``pong``, ``stats``, ...).

    Attributes:
        message: the decoded object; ``message["type"]`` says which message it is.
    """

    message: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.message["type"])


@dataclass(frozen=True)
class StateEvent:
    """The connection state changed.

    Attributes:
        state: ``"connecting"``, ``"open"``, ``"reconnecting"`` or ``"closed"``.
        error: for ``"reconnecting"``, why the previous connection ended; for
            ``"closed"``, why the client gave up (the server refused its token, see
            :attr:`ArgosClient.auth_failed`), or None when it was closed by the user;
            else None.
    """

    state: State
    error: str | None = None


@dataclass(frozen=True)
class GapEvent:
    """Frames of a stream were lost before the next frame.

    Attributes:
        stream_id: the stream that lost frames.
        lost: how many frames were lost (0 when unknown, for a restarted stream).
        from_sequence: sequence of the last frame received before the gap (for a gap
            reported only by the ``missed`` field of a first frame: the sequence implied).
        to_sequence: sequence of the frame received after the gap.
        reason: ``"dropped by server"`` (the frame's ``missed`` field; this client was too
            slow), ``"sequence jump"`` (frames produced while it was not connected, e.g.
            across a reconnect) or ``"stream restarted"`` (the sequence went backwards: the
            producer started counting again; ``lost`` is unknown).
        session_changed: the server restarted (its hello carried a new session) since the
            previous frame. A sequence jump across a server restart assumes the producer
            kept counting, as it does behind a gateway.
    """

    stream_id: int
    lost: int
    from_sequence: int
    to_sequence: int
    reason: GapReason
    session_changed: bool = False


Event = FrameEvent | MessageEvent | StateEvent | GapEvent


class GapDetector:
    """Find lost frames from each frame's ``missed`` field and per-stream sequence numbers.

    Plain code without sockets: feed it every hello's session with :meth:`new_session`,
    every ``view`` reply's frame rate divisor with :meth:`set_fps_divisor` and every frame
    with :meth:`observe`.
    """

    def __init__(self) -> None:
        self._last_sequence: dict[int, int] = {}
        self._fps_divisors: dict[int, int] = {}
        # Per stream, the divisor before a change whose frames may still be queued.
        self._previous_divisors: dict[int, int] = {}
        self._session: str | None = None
        self._session_changed: set[int] = set()

    def new_session(self, session: str | None) -> None:
        """Record the session of a hello; a different one means the server restarted.

        A hello starts a connection at every frame (or at the URL's view, whose ``view``
        reply follows it), so the frame rate divisors are forgotten.
        """
        if self._session is not None and session != self._session:
            self._session_changed = set(self._last_sequence)
        self._session = session
        self._fps_divisors.clear()
        self._previous_divisors.clear()

    @property
    def session(self) -> str | None:
        """The session of the latest hello (None before the first)."""
        return self._session

    def last_sequences(self) -> dict[int, int]:
        """The sequence of the latest frame of each stream: where a resume starts from."""
        return dict(self._last_sequence)

    def set_fps_divisor(self, stream_id: int, fps_divisor: int) -> None:
        """Record a stream's frame rate divisor (a ``view`` reply's): the client then gets
        one frame in ``fps_divisor``, and the sequence steps over the others.

        Frames the server queued before the change were chosen by the old divisor: until a
        frame shows it was not (its sequence is no multiple of the old one), a jump counts
        the fewer of the frames of either rate.
        """
        fps_divisor = max(1, fps_divisor)
        old = self._fps_divisors.get(stream_id, 1)
        self._fps_divisors[stream_id] = fps_divisor
        if stream_id in self._last_sequence and fps_divisor % old != 0:
            self._previous_divisors[stream_id] = old

    def observe(self, frame: SpectrumFrame) -> GapEvent | None:
        """Account for one frame; return the gap before it, or None if there was none.

        With a previous frame of the same stream, the lost count is the larger of the
        ``missed`` field and the sequence jump: the server knows what it dropped for this
        client, the sequence also covers frames produced while no connection was open. Both
        count frames of the client's own rate (see :meth:`set_fps_divisor`): the sequences
        between the two frames that are multiples of the divisor. So a divisor changed
        between two frames (the previous one not a multiple of the new divisor) counts no
        false gap, and a jump across a reconnect is still counted.
        """
        stream_id = frame.stream_id
        sequence = frame.sequence
        previous = self._last_sequence.get(stream_id)
        session_changed = stream_id in self._session_changed
        self._session_changed.discard(stream_id)
        self._last_sequence[stream_id] = sequence
        if previous is None:
            if frame.missed == 0:
                return None
            return GapEvent(stream_id, frame.missed, sequence - frame.missed - 1, sequence,
                            GAP_DROPPED_BY_SERVER, session_changed)
        if sequence == previous and frame.missed == 0 and not session_changed:
            return None  # the same frame again, cut to a view just chosen (docs/protocol.md)
        if sequence <= previous:
            return GapEvent(stream_id, 0, previous, sequence, GAP_STREAM_RESTARTED,
                            session_changed)
        jump = _frames_between(previous, sequence, self._fps_divisors.get(stream_id, 1))
        old = self._previous_divisors.get(stream_id)
        if old is not None:
            jump = min(jump, _frames_between(previous, sequence, old))
            if sequence % old != 0:
                del self._previous_divisors[stream_id]
        lost = max(jump, frame.missed)
        if lost == 0:
            return None
        reason = GAP_DROPPED_BY_SERVER if frame.missed >= jump else GAP_SEQUENCE_JUMP
        return GapEvent(stream_id, lost, previous, sequence, reason, session_changed)


def _frames_between(previous: int, sequence: int, fps_divisor: int) -> int:
    """How many sequences strictly between ``previous`` and ``sequence`` are multiples of
    ``fps_divisor``: the frames of that rate that went by."""
    return (sequence - 1) // fps_divisor - previous // fps_divisor


@dataclass
class ClientStats:
    """Counters of one :class:`ArgosClient` since it was created.

    Attributes:
        frames: spectrum frames received and decoded.
        messages: JSON messages received and decoded.
        bytes_received: bytes of all WebSocket messages received (frames and text).
        gaps: gap events (times frames were lost).
        frames_lost: frames lost in all gaps.
        malformed: messages skipped because they did not decode.
        frames_replayed: frames of those the server sent again from its resume ring.
        reconnects: connections opened again after one was lost.
        failed_attempts: connection attempts that failed.
        last_rtt_ms: round-trip time of the last heartbeat ping, in ms (None until one).
    """

    frames: int = 0
    frames_replayed: int = 0
    messages: int = 0
    bytes_received: int = 0
    gaps: int = 0
    frames_lost: int = 0
    malformed: int = 0
    reconnects: int = 0
    failed_attempts: int = 0
    last_rtt_ms: float | None = None
