# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``detections`` query through a real server: the recent events of each stream, kept
in a bounded ring, filtered and limited as asked, and bad queries answered with
bad_message while the connection keeps serving (real websockets clients on 127.0.0.1)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gr_argos.protocol import StreamInfo
from gr_argos.server import SpectrumServer
from gr_argos.server.detection_history import DETECTIONS_KEPT, DetectionHistory
from tests.server_helpers import StartServer, client, next_json

T0_NS = 1_700_000_000_000_000_000


def event(stream: int, number: int, kind: str = "start") -> dict[str, Any]:
    """A detection body as a sink publishes it, decided at T0 + number ms."""
    return {"stream": stream, "event": kind, "id": number, "center_freq_hz": 433.92e6,
            "bandwidth_hz": 25e3, "time_ns": T0_NS + number * 1_000_000, "watched": False}


def publish(server: SpectrumServer, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        server.publish_message("detection", body)


async def query(ws: Any, **fields: Any) -> dict[str, Any]:
    """Send a detections query; the next message that is not a live detection."""
    await ws.send(json.dumps({"type": "detections", **fields}))
    while (reply := await next_json(ws))["type"] == "detection":
        pass
    return reply


def test_the_history_keeps_the_newest_of_each_stream_oldest_first() -> None:
    """Each stream keeps its newest events; recent() merges streams by time and filters
    by stream and by time."""
    history = DetectionHistory(kept=3)
    for number in range(5):
        history.add(event(0, 2 * number))
        history.add(event(1, 2 * number + 1))
    history.add({"event": "start"})  # no stream: not kept
    assert [e["id"] for e in history.recent()] == [4, 5, 6, 7, 8, 9]
    assert [e["id"] for e in history.recent(stream=1)] == [5, 7, 9]
    assert [e["id"] for e in history.recent(since_ns=T0_NS + 6_000_000)] == [7, 8, 9]


async def test_a_client_gets_the_recent_events_it_asks_for(start_server: StartServer) -> None:
    """A client connecting after the events asks for them: all kept, oldest first, as the
    live messages were (without their type); limit gives the newest N and says the reply
    is truncated; since_ns those decided after it; stream one stream's."""
    server = start_server()
    server.add_stream(StreamInfo(stream_id=1, bins=2048, center_freq_hz=400e6,
                                 span_hz=2.048e6, fps=30.0))
    bodies = [event(number % 2, number, kind) for number, kind in
              enumerate(["start", "start", "update", "end", "end"])]
    publish(server, *bodies)
    async with client(server) as ws:
        reply = await query(ws)
        assert reply == {"type": "detections", "events": bodies, "truncated": False,
                         "kept": DETECTIONS_KEPT}
        reply = await query(ws, limit=2)
        assert reply["events"] == bodies[-2:] and reply["truncated"] is True
        reply = await query(ws, since_ns=bodies[2]["time_ns"])
        assert reply["events"] == bodies[3:]
        reply = await query(ws, stream=1, limit=DETECTIONS_KEPT)
        assert reply["events"] == [bodies[1], bodies[3]]
        assert (await query(ws, stream=7))["events"] == []


async def test_the_ring_is_bounded_per_stream(start_server: StartServer) -> None:
    """More events than are kept: the reply holds the newest DETECTIONS_KEPT."""
    server = start_server()
    bodies = [event(0, number) for number in range(DETECTIONS_KEPT + 40)]
    publish(server, *bodies)
    async with client(server) as ws:
        reply = await query(ws)
    assert reply["events"] == bodies[-DETECTIONS_KEPT:]


@pytest.mark.parametrize(("fields", "problem"), [
    ({"limit": 0}, "field 'limit' must be a whole number from 1 to"),
    ({"limit": -5}, "field 'limit' must be a whole number from 1 to"),
    ({"limit": DETECTIONS_KEPT + 1}, "field 'limit' must be a whole number from 1 to"),
    ({"limit": 10**30}, "field 'limit' must be a whole number from 1 to"),
    ({"limit": 2.5}, "field 'limit'"),
    ({"limit": "10"}, "field 'limit'"),
    ({"limit": True}, "field 'limit'"),
    ({"since_ns": -1}, "field 'since_ns' must be a whole number of ns since the Unix epoch"),
    ({"since_ns": 1 << 70}, "field 'since_ns'"),
    ({"since_ns": 1.7e18}, "field 'since_ns'"),
    ({"since_ns": None}, "field 'since_ns'"),
    ({"stream": "0"}, "field 'stream' must be a stream id from hello"),
    ({"stream": [0]}, "field 'stream'"),
])
async def test_a_bad_query_gets_bad_message_and_the_client_keeps_being_served(
        start_server: StartServer, fields: dict[str, Any], problem: str) -> None:
    """Hostile limits, times and streams are answered with a bad_message error naming the
    field and what it must be; the same connection then gets its answer to a good query."""
    server = start_server()
    publish(server, event(0, 1))
    async with client(server) as ws:
        reply = await query(ws, **fields)
        assert reply["type"] == "error" and reply["code"] == "bad_message"
        assert reply["message"].startswith("detections: ") and problem in reply["message"]
        assert (await query(ws, limit=1))["events"] == [event(0, 1)]
