# SPDX-License-Identifier: GPL-3.0-or-later
"""Resume and backfill against a real SpectrumServer: a client that says where it stopped
gets the frames it missed from the server's ring, marked replayed, before the live ones; a
request from another session or the future is refused clearly; the ring stays within its
bytes. Plain checks of the ring and the request parser first."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from gr_argos.protocol import ProtocolError, decode_frame, encode_frame
from gr_argos.server.outgoing import PublishedFrame
from gr_argos.server.resume import ResumeRing, parse_resume_query

from server_helpers import WAIT_S, StartServer, samples, scrape, spectrum_frame, value

FRAME_BYTES = len(spectrum_frame(0))


# -- the ring and the request, as plain code ------------------------------------------------

def test_ring_keeps_the_newest_frames_within_its_bytes() -> None:
    """Past max_bytes the oldest frames go; what is left is the newest, in order."""
    ring = ResumeRing(10 * FRAME_BYTES)
    for sequence in range(25):
        ring.append(PublishedFrame(0, spectrum_frame(sequence)))
    assert ring.nbytes <= 10 * FRAME_BYTES
    assert ring.oldest_sequence(0) == 15 and ring.last_sequence(0) == 24
    assert ring.evicted_through(0) == 14 and ring.stats()["evicted"] == 15
    frame = ring.next_after(0, 17)
    assert frame is not None and frame.sequence == 18
    assert ring.next_after(0, 24) is None


def test_ring_empties_a_stream_whose_sequence_starts_again() -> None:
    """A producer that starts counting again: nothing of the old count may be replayed."""
    ring = ResumeRing(10 * FRAME_BYTES)
    for sequence in (5, 6, 7, 0, 1):
        ring.append(PublishedFrame(0, spectrum_frame(sequence)))
    assert ring.oldest_sequence(0) == 0 and ring.last_sequence(0) == 1
    assert ring.stats()["restarts"] == 1


def test_ring_never_mixes_frame_sizes_a_new_fft_size_is_a_gap() -> None:
    """Frames of a new bin count empty the stream's ring: a catch-up from before the change
    starts after it, and the frames gone are counted (evicted, resizes)."""
    ring = ResumeRing(10 * FRAME_BYTES)
    for sequence in range(3):
        ring.append(PublishedFrame(0, spectrum_frame(sequence)))
    for sequence in (3, 4):
        ring.append(PublishedFrame(0, encode_frame(
            np.full(4096, -90.0, dtype=np.float32), center_freq_hz=100e6, span_hz=2.048e6,
            timestamp_ns=sequence, sequence=sequence)))
    assert ring.oldest_sequence(0) == 3 and ring.evicted_through(0) == 2
    frame = ring.next_after(0, 0)
    assert frame is not None and frame.sequence == 3 and decode_frame(frame.data).bin_count == 4096
    assert ring.stats()["resizes"] == 1 and ring.stats()["evicted"] == 3


def test_ring_of_zero_bytes_keeps_no_frame_but_knows_the_newest() -> None:
    ring = ResumeRing(0)
    for sequence in range(3):
        ring.append(PublishedFrame(0, spectrum_frame(sequence)))
    assert ring.nbytes == 0 and ring.oldest_sequence(0) is None
    assert ring.last_sequence(0) == 2 and ring.evicted_through(0) == 2


@pytest.mark.parametrize(("query", "problem"), [
    ({"resume_from": ["12"]}, "needs resume_session"),
    ({"resume_session": ["abc"]}, "needs resume_from"),
    ({"resume_from": ["x"], "resume_session": ["abc"]}, "STREAM:SEQUENCE"),
    ({"resume_from": ["-3"], "resume_session": ["abc"]}, "0 or more"),
    ({"backfill_s": ["0"]}, "more than 0"),
    ({"backfill_s": ["nan"]}, "more than 0"),
    ({"backfill_s": ["5"], "resume_from": ["1"], "resume_session": ["a"]}, "exclude"),
])
def test_malformed_requests_say_what_is_wrong(query: dict[str, list[str]],
                                              problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        parse_resume_query(query)


def test_resume_from_takes_a_sequence_or_stream_pairs() -> None:
    first = parse_resume_query({"resume_from": ["12"], "resume_session": ["s"]})
    pairs = parse_resume_query({"resume_from": ["0:12,3:7"], "resume_session": ["s"]})
    assert first is not None and dict(first.after) == {None: 12}
    assert pairs is not None and dict(pairs.after) == {0: 12, 3: 7}
    assert parse_resume_query({"encoding": ["uint8"]}) is None


# -- against a server -------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[tuple[ClientConnection, dict[str, Any]]]:
    async with connect(url, open_timeout=WAIT_S, max_size=None) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert hello["type"] == "hello"
        yield ws, hello


async def read_until(ws: ClientConnection, done: Any) -> list[bytes | dict[str, Any]]:
    """Messages (frames as bytes, JSON decoded) until ``done(items)`` says so."""
    items: list[bytes | dict[str, Any]] = []
    async with asyncio.timeout(WAIT_S):
        while not done(items):
            message = await ws.recv()
            items.append(json.loads(message) if isinstance(message, str) else message)
    return items


def frames_of(items: list[bytes | dict[str, Any]]) -> list[tuple[int, bool]]:
    """(sequence, replayed) of each frame."""
    return [(frame.sequence, frame.replayed) for frame in
            (decode_frame(item) for item in items if isinstance(item, bytes))]


def publish(server: Any, sequences: range) -> None:
    for sequence in sequences:
        server.publish_frame(0, spectrum_frame(sequence))


async def wait_published(server: Any, last: int) -> None:
    """Wait until the hub's ring holds frame ``last`` (the fan-out is done with it)."""
    async with asyncio.timeout(WAIT_S):
        while server.stats()["total"]["resume_ring"]["streams"].get("0", {}).get(
                "last_sequence") != last:
            await asyncio.sleep(0.01)


async def thirty_published_resume_after_9(server: Any) -> str:
    """Frames 0..29 published (in the ring); the URL of a client that had up to 9."""
    publish(server, range(30))
    await wait_published(server, 29)
    async with connected(server.url) as (_, hello):
        session = hello["session"]
    return f"{server.url}?resume_session={session}&resume_from=9"


async def test_a_resumed_client_gets_what_it_missed_then_live_frames(
        start_server: StartServer) -> None:
    """Frames 0..29 published, the client had up to 9: it gets 10..29 replayed (marked),
    a resume reply saying where they start and a caught_up message, then 30.. live."""
    server = start_server()
    url = await thirty_published_resume_after_9(server)
    async with connected(url) as (ws, _):
        items = await read_until(ws, lambda got: any(
            isinstance(i, dict) and i["type"] == "caught_up" for i in got))
        publish(server, range(30, 35))
        items += await read_until(ws, lambda got: len(frames_of(got)) == 5)
    replies = [i for i in items if isinstance(i, dict)]
    assert replies[0] == {"type": "resume", "streams": [
        {"stream_id": 0, "from_sequence": 9, "first_sequence": 10, "lost": 0}]}
    assert {"type": "caught_up", "replayed": 20, "missed": 0} in replies
    assert frames_of(items) == [(s, True) for s in range(10, 30)] + [
        (s, False) for s in range(30, 35)]
    total = server.stats()["total"]
    assert total["frames_replayed"] == 20


async def test_a_view_chosen_while_catching_up_keeps_the_frames_in_order(
        start_server: StartServer) -> None:
    """A resuming client that chooses a view in its URL and again in a message (as the
    viewer does when a tab takes over a shared connection): the view applies from the
    frames after the catch-up's, and
    no frame comes out of order (the server answers a new view with its current frame only
    for a client that is not catching up: it came before the replayed ones, and the page
    took the sequence going back for a restart)."""
    server = start_server()
    url = await thirty_published_resume_after_9(server) + "&bins=2"
    async with connected(url) as (ws, _):
        await ws.send(json.dumps({"type": "set_view", "stream_id": 0, "bins": 2}))
        items = await read_until(ws, lambda got: any(
            isinstance(i, dict) and i["type"] == "caught_up" for i in got))
        publish(server, range(30, 33))
        items += await read_until(ws, lambda got: len(frames_of(got)) == 3)
    sequences = [sequence for sequence, _ in frames_of(items)]
    assert sequences == list(range(10, 33))
    assert [decode_frame(i).bin_count for i in items if isinstance(i, bytes)][-3:] == [2] * 3
    assert server.stats()["total"]["frames_replayed"] == 20


async def test_frames_older_than_the_ring_are_a_gap_the_reply_counts(
        start_server: StartServer) -> None:
    """A ring of 5 frames: a client that had up to 9 of 0..29 gets 25..29, and the resume
    reply says 15 are gone (the jump from 9 to 25 is the gap it reports)."""
    server = start_server(resume_buffer_bytes=5 * FRAME_BYTES)
    publish(server, range(30))
    await wait_published(server, 29)
    url = f"{server.url}?resume_session={server.session}&resume_from=0:9"
    async with connected(url) as (ws, _):
        items = await read_until(ws, lambda got: any(
            isinstance(i, dict) and i["type"] == "caught_up" for i in got))
    assert items[0] == {"type": "resume", "streams": [
        {"stream_id": 0, "from_sequence": 9, "first_sequence": 25, "lost": 15}]}
    assert frames_of(items) == [(s, True) for s in range(25, 30)]


@pytest.mark.parametrize(("query", "problem"), [
    ("resume_session=0123456789abcdef&resume_from=3", "server restarted"),
    ("resume_session={session}&resume_from=99", "from the future: the newest is 4"),
    ("resume_session={session}&resume_from=7:1", "no stream 7"),
])
async def test_a_resume_the_server_cannot_honour_is_refused_and_served_live(
        start_server: StartServer, query: str, problem: str) -> None:
    """Another session, a sequence not produced yet, a stream it does not have: an error
    resume_refused that says so, then live frames as without a request."""
    server = start_server()
    publish(server, range(5))
    await wait_published(server, 4)
    url = f"{server.url}?" + query.format(session=server.session)
    async with connected(url) as (ws, _):
        error = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        publish(server, range(5, 7))
        items = await read_until(ws, lambda got: len(frames_of(got)) == 2)
    assert error["type"] == "error" and error["code"] == "resume_refused"
    assert problem in error["message"]
    assert frames_of(items) == [(5, False), (6, False)]


async def test_a_malformed_request_is_a_bad_message(start_server: StartServer) -> None:
    server = start_server()
    async with connected(f"{server.url}?resume_from=12") as (ws, _):
        error = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert error["code"] == "bad_message" and "resume_session" in error["message"]


async def test_a_new_viewer_asks_for_the_last_seconds(start_server: StartServer) -> None:
    """spectrum_frame() stamps frames 1 ns apart: the last 5 ns are the newest 6 frames."""
    server = start_server()
    publish(server, range(20))
    await wait_published(server, 19)
    async with connected(f"{server.url}?backfill_s=0.000000005") as (ws, _):
        items = await read_until(ws, lambda got: any(
            isinstance(i, dict) and i["type"] == "caught_up" for i in got))
    assert items[0]["type"] == "resume" and items[0]["backfill_s"] == 5e-9
    assert frames_of(items) == [(s, True) for s in range(14, 20)]


async def test_a_resumed_client_gets_its_own_format(start_server: StartServer) -> None:
    """Replayed frames come in the format the URL asks for, like live ones."""
    server = start_server()
    publish(server, range(6))
    await wait_published(server, 5)
    url = f"{server.url}?encoding=uint8&compress=1&resume_session={server.session}&resume_from=2"
    async with connected(url) as (ws, _):
        items = await read_until(ws, lambda got: len(frames_of(got)) == 3)
    frames = [decode_frame(i) for i in items if isinstance(i, bytes)]
    assert [f.encoding for f in frames] == [2, 2, 2] and all(f.flags & 1 for f in frames)
    assert [f.sequence for f in frames] == [3, 4, 5]


async def test_metrics_show_the_ring_and_the_frames_replayed(start_server: StartServer) -> None:
    """/metrics: the ring's bytes and frames of stream 0 within resume_buffer_bytes, and
    the frames a resume sent again."""
    server = start_server(resume_buffer_bytes=4 * FRAME_BYTES)
    publish(server, range(10))
    await wait_published(server, 9)
    url = f"{server.url}?resume_session={server.session}&resume_from=7"
    async with connected(url) as (ws, _):
        await read_until(ws, lambda got: len(frames_of(got)) == 2)
        found = samples(await asyncio.to_thread(scrape, server.port))
    assert value(found, "argos_resume_ring_frames", stream="0") == 4
    assert value(found, "argos_resume_ring_bytes", stream="0") == 4 * FRAME_BYTES
    assert value(found, "argos_frames_replayed_total") == 2


async def test_the_python_client_asks_for_a_backfill(start_server: StartServer) -> None:
    """ArgosClient(backfill_s=...): the newest frames the ring holds come first, marked
    replayed, then live ones; no gap is reported for the frames before the backfill."""
    from gr_argos.client import ArgosClient, FrameEvent, GapEvent, MessageEvent

    server = start_server()
    publish(server, range(20))
    await wait_published(server, 19)
    events: list[FrameEvent | GapEvent] = []
    async with ArgosClient(server.url, backfill_s=5e-9) as argos:
        async with asyncio.timeout(WAIT_S):
            async for event in argos:
                if isinstance(event, (FrameEvent, GapEvent)):
                    events.append(event)
                if isinstance(event, MessageEvent) and event.type == "caught_up":
                    publish(server, range(20, 22))
                if sum(isinstance(e, FrameEvent) for e in events) == 8:
                    break
    assert [(e.frame.sequence, e.frame.replayed) for e in events
            if isinstance(e, FrameEvent)] == [(s, True) for s in range(14, 20)] + [
        (20, False), (21, False)]
    assert not any(isinstance(e, GapEvent) for e in events)
    assert argos.stats.frames_replayed == 6
