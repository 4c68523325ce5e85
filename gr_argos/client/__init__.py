# SPDX-License-Identifier: GPL-3.0-or-later
"""A Python client for a gr-argos spectrum server: one async iterator of events.

``ArgosClient`` connects to ``ws://HOST:PORT/``, decodes the wire protocol v1
(:mod:`gr_argos.protocol`) and yields events: decoded spectrum frames, JSON messages,
connection state changes and gaps (frames this client never got). It reconnects forever,
with exponential backoff and full jitter, until the user closes it or the server refuses its
token::

    async with ArgosClient("ws://127.0.0.1:8765/") as client:
        async for event in client:
            if isinstance(event, FrameEvent):
                print(event.frame.sequence, event.frame.power_db.max())

Frames are read only when the caller asks for the next event, so a slow consumer slows
its own TCP stream and the server drops frames for it (and says how many) instead of this
process buffering without bound.

Modules: :mod:`~gr_argos.client.argos_client` (the client), :mod:`~gr_argos.client.events`
(what it yields, and the gap logic, :class:`GapDetector`), :mod:`~gr_argos.client.backoff`
(the retry policy), :mod:`~gr_argos.client.options` (URL, token, TLS and format checks).
The gap logic and the retry policy are plain code without sockets, and the same as the
JavaScript client's. No GNU Radio import.
"""

from __future__ import annotations

from gr_argos.client.argos_client import ArgosClient, retry_after_s
from gr_argos.client.backoff import Backoff
from gr_argos.client.events import (
    GAP_DROPPED_BY_SERVER,
    GAP_SEQUENCE_JUMP,
    GAP_STREAM_RESTARTED,
    STATE_CLOSED,
    STATE_CONNECTING,
    STATE_OPEN,
    STATE_RECONNECTING,
    ClientStats,
    Event,
    FrameEvent,
    GapDetector,
    GapEvent,
    MessageEvent,
    StateEvent,
)
from gr_argos.client.options import check_token, check_url, client_tls_context

__all__ = [
    "STATE_CONNECTING",
    "STATE_OPEN",
    "STATE_RECONNECTING",
    "STATE_CLOSED",
    "GAP_DROPPED_BY_SERVER",
    "GAP_SEQUENCE_JUMP",
    "GAP_STREAM_RESTARTED",
    "Backoff",
    "GapDetector",
    "FrameEvent",
    "MessageEvent",
    "StateEvent",
    "GapEvent",
    "Event",
    "ClientStats",
    "ArgosClient",
    "check_url",
    "check_token",
    "client_tls_context",
    "retry_after_s",
]
