# SPDX-License-Identifier: GPL-3.0-or-later
"""The broadcast hub: per-client bounded queues with drop-oldest, counted and reported.

The hub owns the one decision that shapes gr-argos: the radio never waits for a client.
Producers (a GNU Radio block's ``work()``, a ZeroMQ subscriber) call :meth:`BroadcastHub.publish_frame`
and :meth:`BroadcastHub.publish_message` from any thread. Those calls only append to a small
bounded ingress buffer and wake the event loop once, so they cost O(1) whatever the number of
clients, never block, and never raise into the producer.

On the event loop the hub fans each frame out to every client's :class:`ClientQueue`:

- spectrum frames go to a queue of ``queue_depth`` frames; a new frame that finds it full
  displaces the oldest one, which counts as a drop for that client, and the next frame of that
  stream it receives carries the count in its ``missed`` field;
- JSON messages (status, gps, replies) go to a separate queue that spectrum frames never
  displace; a client so far behind that this queue overflows is closed, never allowed to grow
  memory.

A client that is keeping up never waits in a queue: when nothing is queued for it, the hub
offers the frame or message to the client's :class:`Outlet` (its connection) during the fan-out
itself, and the outlet writes it at once if it can, so it arrives in publish order. Only a
client that is behind (its transport full, a send in flight, items queued) gets items queued,
and its outlet is told to send them. The bytes on the wire (``wrap``: the WebSocket framing,
the same for every client of a format) are built once per frame and format, and once per
message.

Each frame's variants (other encodings, deflated or not, and views' slices of it) are made
once per frame however many clients use them (:mod:`gr_argos.server.outgoing`; ``stats()["total"]["encodes"]``
counts them). Every client of one format gets the same ``bytes`` object, and only a client
that lost frames gets a copy with its four ``missed`` bytes patched (the header is never
compressed). A client with a frame rate divisor on a stream (its view) is never offered
the frames it leaves out, so they are neither queued nor counted as drops.

Once offered to every client, a frame goes into the hub's
:class:`~gr_argos.server.resume.ResumeRing`, from which a client that resumes or asks for a
backfill is sent frames by its connection; the fan-out passes such a client by
(``catching_up``) until it has caught up.

This module imports neither GNU Radio nor any socket code.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from gr_argos.protocol import FrameFormat, encode_message, with_missed, with_replayed
from gr_argos.server.outgoing import (
    DEFLATE_IN,
    DEFLATE_OUT,
    PYRAMID_LEVELS,
    OutgoingMessage,
    PublishedFrame,
    Wrap,
)
from gr_argos.server.resume import ResumeRing
from gr_argos.server.views import View, ViewSlice, resnap, slice_fits

__all__ = ["BroadcastHub", "ClientQueue", "DEFAULT_INGRESS_DEPTH", "Outlet"]

log = logging.getLogger(__name__)

#: Frames buffered between a producer thread and the loop (the sink never hands off more).
DEFAULT_INGRESS_DEPTH = 64

def _as_is(data: bytes, text: bool) -> bytes:
    return data


def _view_name(view: View) -> str:
    """A view as stats show it: ``whole`` or ``level L bins OFFSET+WIDTH``, then
    `` every N`` with a frame rate divisor."""
    cut = "whole" if view.slice is None else (
        f"level {view.slice.level} bins {view.slice.offset}+{view.slice.width}")
    return cut + (f" every {view.fps_divisor}" if view.fps_divisor > 1 else "")


class Outlet(Protocol):
    """Where a client's frames and messages leave the hub: its connection (on the loop)."""

    def write_now(self, data: bytes, wire: bytes, text: bool) -> bool:
        """Write ``wire`` (``data`` as framed by the hub's ``wrap``; text: a JSON message) to
        the client now and return True, or return False if it cannot take it now (the hub
        then queues it)."""

    def queued(self) -> None:
        """Items were queued for this client: send them with :meth:`ClientQueue.pop`, in
        order, and count each with :meth:`BroadcastHub.record_sent`."""

    def too_slow(self) -> None:
        """The client's message queue overflowed: close it (the hub calls this once)."""


@dataclass
class ClientQueue:
    """Outbound state of one client, touched only on the hub's event loop.

    Attributes:
        client_id: a number unique within the hub.
        peer: a printable remote address, for logs and stats.
        depth: spectrum frames kept before the oldest is dropped.
        message_depth: JSON messages kept before the client counts as too slow.
        frame_format: the format this client asked for; None: each stream's default.
        stream_formats: default format per stream id (shared with the hub; a stream not
            in it goes out as published).
        encodes: variants encoded, by format name (shared with the hub).
        views: the client's view of each stream that it chose one for (others: the whole
            stream, every frame); a frame its ``fps_divisor`` skips is never queued, so it
            is not a drop and ``missed`` does not count it.
        outlet: the client's connection: takes items now, or is told when some are queued.
        catching_up: the client is sent frames from the hub's resume ring by its
            connection (a resume or backfill), not by the fan-out, until it caught up.

    The queues are lists, not deques: an empty deque costs ~700 bytes, and most clients
    never have anything queued; they are short (``depth``, ``message_depth``).
    """

    client_id: int
    peer: str
    depth: int
    message_depth: int
    connected_at: float = field(default_factory=time.monotonic)
    frame_format: FrameFormat | None = None
    stream_formats: dict[int, FrameFormat] = field(default_factory=dict)
    encodes: Counter[str] = field(default_factory=Counter)
    views: dict[int, View] = field(default_factory=dict)
    frames: list[PublishedFrame] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    pending_missed: dict[int, int] = field(default_factory=dict)
    frames_sent: int = 0
    frames_dropped: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0
    bytes_sent: int = 0
    too_slow: bool = False
    outlet: Outlet | None = None
    catching_up: bool = False
    frames_replayed: int = 0
    # When the frame pop() returned last was published (monotonic s): the send latency.
    last_published_at: float = 0.0
    # Publish -> transport write latency of this client's frames (seconds).
    latency_last_s: float = 0.0
    latency_max_s: float = 0.0
    latency_total_s: float = 0.0

    def can_write_now(self) -> bool:
        """Nothing queued, so an item written now keeps the order (the outlet knows whether
        a send of its own is still in flight)."""
        return self.outlet is not None and not (self.frames or self.messages)

    def push_frame(self, frame: PublishedFrame) -> None:
        """Queue a frame, displacing (and counting) the oldest when the queue is full."""
        if len(self.frames) >= self.depth:
            dropped_stream = self.frames.pop(0).stream_id
            self.frames_dropped += 1
            self.pending_missed[dropped_stream] = self.pending_missed.get(dropped_stream, 0) + 1
        self.frames.append(frame)
        self.wake()

    def push_message(self, text: str) -> bool:
        """Queue a JSON message; return False (and mark the client too slow) on overflow.

        A client marked too slow is being closed: what it is sent from then on is counted
        in ``messages_dropped`` and discarded.
        """
        if self.too_slow or len(self.messages) >= self.message_depth:
            self.too_slow = True
            self.messages_dropped += 1
            return False
        self.messages.append(text)
        self.wake()
        return True

    def wake(self) -> None:
        """Tell the outlet that items are queued."""
        if self.outlet is not None:
            self.outlet.queued()

    def pop(self) -> bytes | str | None:
        """The next item to send: messages first (in order), then the oldest frame.

        A frame comes in this client's format (encoded now if no client needed that
        variant of it before). A frame of a stream that lost frames since this client's
        previous frame of that stream comes back as a patched copy carrying the missed count.
        """
        if self.messages:
            return self.messages.pop(0)
        if self.frames:
            frame = self.frames.pop(0)
            self.last_published_at = frame.published_at
            data = self.in_own_format(frame)
            missed = self.pending_missed.pop(frame.stream_id, 0)
            return with_missed(data, missed) if missed else data
        return None

    def in_own_format(self, frame: PublishedFrame) -> bytes:
        """``frame`` in this client's format and view of its stream."""
        frame_format = self.frame_format or self.stream_formats.get(frame.stream_id)
        return frame.in_format(frame_format, self.encodes, self.view_slice(frame.stream_id))

    def replayed(self, frame: PublishedFrame, missed: int = 0) -> bytes:
        """``frame`` as this client gets it again from the resume ring: in its format,
        marked replayed, ``missed`` saying the frames the ring lost meanwhile."""
        return with_replayed(self.in_own_format(frame), missed)

    def view_slice(self, stream_id: int) -> ViewSlice | None:
        view = self.views.get(stream_id)
        return None if view is None else view.slice

    def skips(self, frame: PublishedFrame) -> bool:
        """Whether the client's frame rate divisor leaves ``frame`` out."""
        view = self.views.get(frame.stream_id)
        return view is not None and view.fps_divisor > 1 and frame.sequence % view.fps_divisor != 0

    def record_sent(self, item: bytes | str) -> None:
        """Count an item the transport accepted (a frame's latency: :meth:`record_frame`)."""
        if isinstance(item, bytes):
            self.record_frame(len(item), time.monotonic() - self.last_published_at)
        else:
            self.messages_sent += 1
            self.bytes_sent += len(item.encode())

    def record_replayed(self, size: int) -> None:
        """Count a frame of ``size`` bytes sent again from the resume ring (its age is not
        a latency)."""
        self.frames_sent += 1
        self.frames_replayed += 1
        self.bytes_sent += size

    def record_frame(self, size: int, latency_s: float) -> None:
        """Count a frame of ``size`` bytes written ``latency_s`` after it was published."""
        self.frames_sent += 1
        self.bytes_sent += size
        self.latency_last_s = latency_s
        self.latency_total_s += latency_s
        if latency_s > self.latency_max_s:
            self.latency_max_s = latency_s

    def snapshot(self) -> dict[str, Any]:
        """Per-client counters, as reported in stats and logs."""
        return {
            "id": self.client_id,
            "peer": self.peer,
            "connected_s": round(time.monotonic() - self.connected_at, 3),
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "frames_replayed": self.frames_replayed,
            "messages_sent": self.messages_sent,
            "messages_dropped": self.messages_dropped,
            "bytes_sent": self.bytes_sent,
            "queue_depth": len(self.frames),
            "message_queue_depth": len(self.messages),
            "format": None if self.frame_format is None else self.frame_format.name,
            "step_db": None if self.frame_format is None else self.frame_format.step_db,
            "views": {str(stream_id): _view_name(view) for stream_id, view in self.views.items()},
            "latency_ms": {
                "last": round(self.latency_last_s * 1e3, 3),
                "mean": round(self.latency_total_s * 1e3 / max(self.frames_sent, 1), 3),
                "max": round(self.latency_max_s * 1e3, 3),
            },
        }


class BroadcastHub:
    """Fans frames and messages out to clients; producers call it from any thread.

    Args:
        queue_depth: spectrum frames queued per client before the oldest is dropped.
        message_queue_depth: JSON messages queued per client before it is closed as too slow.
        ingress_depth: frames buffered between a producer thread and the loop; if the loop
            falls this far behind, the oldest are dropped and counted as ``ingress_dropped``.
        wrap: frames the bytes of a frame or message for clients' outlets (the WebSocket
            framing); built once per frame and format, and once per message. Default: as is.
        observe_latency: called with the publish -> write latency (s) of every frame sent.
        ring: keeps each frame once it was fanned out, for clients that resume or ask for
            a backfill (default: one that keeps none).
    """

    def __init__(
        self,
        queue_depth: int,
        message_queue_depth: int,
        ingress_depth: int = DEFAULT_INGRESS_DEPTH,
        wrap: Wrap | None = None,
        observe_latency: Callable[[float], None] | None = None,
        ring: ResumeRing | None = None,
    ) -> None:
        if queue_depth < 1:
            raise ValueError(f"queue_depth must be at least 1, got {queue_depth}")
        if message_queue_depth < 1:
            raise ValueError(f"message_queue_depth must be at least 1, got {message_queue_depth}")
        self.queue_depth = queue_depth
        self.message_queue_depth = message_queue_depth
        self._wrap = wrap or _as_is
        self.ring = ring or ResumeRing(0)
        self._observe_latency = observe_latency or (lambda seconds: None)
        self._ingress_depth = max(1, ingress_depth)
        self._lock = threading.Lock()
        self._ingress: deque[tuple[int, bytes, float] | str] = deque()
        self._ingress_frames = 0
        self._wakeup_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[int, ClientQueue] = {}
        self._stream_formats: dict[int, FrameFormat] = {}
        self._latest: dict[int, PublishedFrame] = {}  # each stream's last frame fanned out
        self.encodes: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self._closed = False
        # Totals (frames_sent etc. of departed clients are folded in when they leave).
        self.frames_in = 0
        self.messages_in = 0
        self.ingress_dropped = 0
        self.unsent_after_stop = 0
        self.views_reset = 0  # clients' views a stream's new bin count left no room for
        self.frames_resent = 0  # current frames sent again in a view just chosen
        self._departed = {"frames_sent": 0, "frames_dropped": 0, "frames_replayed": 0,
                          "messages_sent": 0,
                          "messages_dropped": 0, "bytes_sent": 0}
        self.clients_total = 0

    # -- producer side (any thread) -------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the hub to the event loop that serves its clients."""
        self._loop = loop

    def publish_frame(self, stream_id: int, data: bytes) -> None:
        """Hand an encoded spectrum frame to every client. Thread-safe, O(1), never raises."""
        with self._lock:
            self.frames_in += 1
            if self._ingress_frames >= self._ingress_depth:
                self._drop_oldest_ingress_frame()
            self._ingress.append((stream_id, data, time.monotonic()))
            self._ingress_frames += 1
            self._wake_locked()

    def set_stream_format(self, stream_id: int, frame_format: FrameFormat | None) -> None:
        """Set the format a stream's frames go out in to clients that chose none.

        None (the default for every stream) sends them as published. Safe from any thread:
        one dict assignment, read by the loop when a frame is sent.
        """
        if frame_format is None:
            self._stream_formats.pop(stream_id, None)
        else:
            self._stream_formats[stream_id] = frame_format

    def publish_message(self, text: str) -> None:
        """Hand an encoded JSON message to every client. Thread-safe, never raises.

        Messages are never dropped for frames; the ingress keeps them all (they are small
        and rare); each client's own message queue is bounded.
        """
        with self._lock:
            self.messages_in += 1
            self._ingress.append(text)
            self._wake_locked()

    def _drop_oldest_ingress_frame(self) -> None:
        for index, item in enumerate(self._ingress):
            if not isinstance(item, str):
                del self._ingress[index]
                self._ingress_frames -= 1
                self.ingress_dropped += 1
                return

    def _wake_locked(self) -> None:
        loop = self._loop
        # Checked before _wakeup_pending: a drain scheduled before close() must not carry
        # items published after it (nor let them pile up if the loop never runs it).
        if loop is None or self._closed:
            self._discard_ingress_locked()
            return
        if self._wakeup_pending:
            return
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed or closing: nobody left to send to
            self._discard_ingress_locked()
            return
        self._wakeup_pending = True

    def _discard_ingress_locked(self) -> None:
        self.unsent_after_stop += len(self._ingress)
        self._ingress.clear()
        self._ingress_frames = 0

    # -- loop side ------------------------------------------------------------------------

    def _drain(self) -> None:
        with self._lock:
            items = list(self._ingress)
            self._ingress.clear()
            self._ingress_frames = 0
            self._wakeup_pending = False
        clients = list(self._clients.values())
        for item in items:
            if isinstance(item, str):
                message = OutgoingMessage(item)
                for client in clients:
                    self._push_message(client, message)
            else:
                frame = PublishedFrame(*item)
                self._fan_out(frame, clients)
                self.ring.append(frame)

    def _fan_out(self, frame: PublishedFrame, clients: list[ClientQueue]) -> None:
        """Write ``frame`` now to every client that keeps up; queue it for the others.

        A client that lost frames gets its next one through the queue, where the ``missed``
        count is patched in.
        """
        stream_format = self._stream_formats.get(frame.stream_id)
        self._latest[frame.stream_id] = frame
        resets = 0
        for client in clients:
            if client.catching_up:
                continue  # its connection sends it this frame from the ring
            if client.views:
                if client.skips(frame):
                    continue
                resets += self._reset_view_outside(client, frame)
            if not client.can_write_now() or client.pending_missed:
                client.push_frame(frame)
                continue
            data, wire = frame.on_wire(client.frame_format or stream_format, self.encodes,
                                       self._wrap, client.view_slice(frame.stream_id))
            assert client.outlet is not None  # can_write_now() checked it
            if not client.outlet.write_now(data, wire, False):
                client.push_frame(frame)
                continue
            latency_s = time.monotonic() - frame.published_at
            client.record_frame(len(data), latency_s)
            self._observe_latency(latency_s)
        if resets:
            geometry = frame.geometry()
            assert geometry is not None  # a view was found outside it
            log.info("event=views_reset stream=%d bins=%d clients=%d", frame.stream_id,
                     geometry.bins, resets)

    def _reset_view_outside(self, client: ClientQueue, frame: PublishedFrame) -> bool:
        """When ``frame`` does not hold the client's slice of its stream (the stream changed
        its bin count), give the client its view resolved again for the new size from this
        frame on (the same share of the band, as many bins across it, its frame rate
        divisor) and tell it with a ``view`` message saying ``reset``."""
        view = client.views.get(frame.stream_id)
        geometry = frame.geometry()
        if view is None or view.slice is None or geometry is None \
                or slice_fits(view.slice, geometry.bins):
            return False
        new = resnap(view, geometry)
        if new == View():
            del client.views[frame.stream_id]
        else:
            client.views[frame.stream_id] = new
        self.views_reset += 1
        self._push_message(client, OutgoingMessage(encode_message("view", {
            "stream_id": frame.stream_id, **geometry.describe(new), "reset": True,
            "message": f"stream {frame.stream_id} now has {geometry.bins} bins: your view is "
                       "the same band at the new size (send set_view to choose again)"})))
        return True

    def send_current_frame(self, client: ClientQueue, stream_id: int) -> bool:
        """Send ``client`` the stream's latest frame again, cut to the view it has just
        chosen, so that a zoom does not wait up to a frame period for the next one.

        Only to a client that keeps up (nothing queued, nothing missed, not catching up
        from the resume ring): one that is behind gets its queued frames in the new view
        soon enough, and a resent frame must never take a queued or replayed one's place. The frame keeps its ``sequence`` (readers take the same
        sequence again as the same frame in another view: docs/protocol.md). It is left
        out of the latency metric, which times frames from their publication.
        """
        frame = self._latest.get(stream_id)
        view = client.views.get(stream_id)
        geometry = None if frame is None else frame.geometry()
        if frame is None or geometry is None or not client.can_write_now() \
                or client.pending_missed or client.too_slow or client.catching_up:
            return False
        if view is not None and view.slice is not None \
                and not slice_fits(view.slice, geometry.bins):
            return False
        data, wire = frame.on_wire(client.frame_format or self._stream_formats.get(stream_id),
                                   self.encodes, self._wrap, client.view_slice(stream_id))
        assert client.outlet is not None  # can_write_now() checked it
        if not client.outlet.write_now(data, wire, False):
            return False
        client.frames_sent += 1
        client.bytes_sent += len(data)
        self.frames_resent += 1
        return True

    def record_sent(self, client: ClientQueue, item: bytes | str) -> None:
        """Count an item a client's sender got through (a frame's latency too)."""
        client.record_sent(item)
        if isinstance(item, bytes):
            self._observe_latency(client.latency_last_s)

    def _push_message(self, client: ClientQueue, message: OutgoingMessage) -> None:
        if client.can_write_now() and not client.too_slow:
            data, wire = message.on_wire(self._wrap)
            assert client.outlet is not None  # can_write_now() checked it
            if client.outlet.write_now(data, wire, True):
                client.messages_sent += 1
                client.bytes_sent += len(data)
                return
        was_too_slow = client.too_slow
        if not client.push_message(message.text) and not was_too_slow:
            # Reported once: the client is closed; later messages are only counted.
            if client.outlet is not None and client.client_id in self._clients:
                client.outlet.too_slow()

    def add_client(self, peer: str, outlet: Outlet) -> ClientQueue:
        """Register a new client (on the loop); it receives frames published from now on.

        Args:
            peer: a printable remote address, for logs and stats.
            outlet: the client's connection, which takes what the hub sends it.
        """
        client = ClientQueue(
            client_id=next(self._ids),
            peer=peer,
            depth=self.queue_depth,
            message_depth=self.message_queue_depth,
            stream_formats=self._stream_formats,
            encodes=self.encodes,
            outlet=outlet,
        )
        self._clients[client.client_id] = client
        self.clients_total += 1
        return client

    def remove_client(self, client: ClientQueue) -> None:
        """Forget a client; its counters are folded into the totals."""
        if self._clients.pop(client.client_id, None) is None:
            return
        for key in self._departed:
            self._departed[key] += getattr(client, key)
        client.outlet = None

    def send_to(self, client: ClientQueue, text: str) -> None:
        """Send a JSON reply to one client only (on the loop), now or after what is queued."""
        self._push_message(client, OutgoingMessage(text))

    def close(self) -> None:
        """Stop accepting items: what producers publish from now on is counted and dropped
        (``unsent_after_stop``)."""
        with self._lock:
            self._closed = True
            self._discard_ingress_locked()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def formats_in_use(self, besides: ClientQueue) -> set[FrameFormat]:
        """The frame formats the clients other than ``besides`` get now: those they chose,
        and each stream's default if one of them chose none."""
        formats: set[FrameFormat] = set()
        for client in self._clients.values():
            if client is besides:
                continue
            if client.frame_format is None:
                formats.update(self._stream_formats.values())
            else:
                formats.add(client.frame_format)
        return formats

    def views_in_use(self, stream_id: int, besides: ClientQueue) -> set[ViewSlice]:
        """The slices of stream ``stream_id`` the clients other than ``besides`` get now
        (the whole stream, sent as published, is not one)."""
        return {view.slice for client in self._clients.values() if client is not besides
                and (view := client.views.get(stream_id)) is not None and view.slice is not None}

    def _distinct_views(self) -> dict[str, int]:
        """Distinct slices in use now, by stream (the encodes a frame of it may need)."""
        slices: dict[int, set[ViewSlice]] = {}
        for client in self._clients.values():
            for stream_id, view in client.views.items():
                if view.slice is not None:
                    slices.setdefault(stream_id, set()).add(view.slice)
        return {str(stream_id): len(found) for stream_id, found in sorted(slices.items())}

    def stats(self) -> dict[str, Any]:
        """A snapshot of per-client and total counters (call on the loop)."""
        clients = [c.snapshot() for c in self._clients.values()]
        total: dict[str, Any] = dict(self._departed)
        for snap in clients:
            for key in total:
                total[key] += snap[key]
        total.update(
            clients=len(clients),
            clients_total=self.clients_total,
            frames_in=self.frames_in,
            messages_in=self.messages_in,
            ingress_dropped=self.ingress_dropped,
            unsent_after_stop=self.unsent_after_stop,
            queue_depth=sum(snap["queue_depth"] for snap in clients),
            encodes={name: count for name, count in self.encodes.items()
                     if name not in (DEFLATE_IN, DEFLATE_OUT, PYRAMID_LEVELS)},
            pyramid_levels=self.encodes[PYRAMID_LEVELS],
            views=self._distinct_views(),
            views_reset=self.views_reset,
            frames_resent=self.frames_resent,
            deflate={"in_bytes": self.encodes[DEFLATE_IN],
                     "out_bytes": self.encodes[DEFLATE_OUT]},
            resume_ring=self.ring.stats(),
        )
        return {"clients": clients, "total": total}
