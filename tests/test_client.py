# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of gr_argos.client: the backoff policy, gap detection and ArgosClient.

The policy and gap tests are plain code. The client is tested against a scripted
``websockets`` server (for what a real server never sends: malformed frames, bad JSON,
chosen ``missed`` values) and against the real :class:`~gr_argos.server.SpectrumServer`
(restart, stream restart, heartbeat, stats).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from gr_argos.client import (
    GAP_DROPPED_BY_SERVER,
    GAP_SEQUENCE_JUMP,
    GAP_STREAM_RESTARTED,
    ArgosClient,
    Backoff,
    Event,
    FrameEvent,
    GapDetector,
    GapEvent,
    MessageEvent,
    StateEvent,
)
from gr_argos.protocol import SpectrumFrame, ViewRequest, encode_frame, encode_message
from gr_argos.protocol import StreamInfo
from gr_argos.server import ServerConfig, SpectrumServer

BINS = 16
WAIT_S = 30.0  # a hang guard, not a speed requirement


def spectrum(sequence: int, *, stream_id: int = 0, missed: int = 0) -> bytes:
    """An encoded 16-bin frame whose peak bin (-20 dB) is ``sequence % 16``."""
    power = np.full(BINS, -100.0, dtype=np.float32)
    power[sequence % BINS] = -20.0
    return encode_frame(power, center_freq_hz=100e6, span_hz=8e6, timestamp_ns=time.time_ns(),
                        sequence=sequence, stream_id=stream_id, missed=missed)


def frame(sequence: int, *, stream_id: int = 0, missed: int = 0) -> SpectrumFrame:
    return SpectrumFrame(np.zeros(4, np.float32), 100e6, 8e6, 0, sequence, stream_id, missed)


def hello(session: str = "s1") -> str:
    return encode_message("hello", {"server": "test", "protocol": 1, "session": session,
                                    "streams": []})


async def collect_until(events: AsyncIterator[Event], seen: list[Event],
                        done: Callable[[Event], bool]) -> Event:
    """Append events to ``seen`` until one satisfies ``done``; return that one."""
    async with asyncio.timeout(WAIT_S):
        async for event in events:
            seen.append(event)
            if done(event):
                return event
    raise AssertionError(f"the events ended before the one awaited; got {seen}")


async def collect_all(events: AsyncIterable[Event]) -> list[Event]:
    return [event async for event in events]


def is_frame(sequence: int) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, FrameEvent) and e.frame.sequence == sequence


def is_message(msg_type: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, MessageEvent) and e.type == msg_type


def states(seen: list[Event]) -> list[str]:
    return [e.state for e in seen if isinstance(e, StateEvent)]


def gaps(seen: list[Event]) -> list[GapEvent]:
    return [e for e in seen if isinstance(e, GapEvent)]


# -- Backoff ------------------------------------------------------------------------------

class TestBackoff:
    def test_ceiling_doubles_from_base_up_to_cap(self) -> None:
        """Attempt n may wait up to min(cap, base * 2**n) seconds."""
        backoff = Backoff(0.5, 10.0, rng=random.Random(1))
        ceilings = []
        for _ in range(8):
            ceilings.append(backoff.ceiling_s())
            backoff.next_delay_s()
        assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]

    def test_every_delay_lies_between_zero_and_its_ceiling(self) -> None:
        """No delay is negative or above the ceiling of its attempt, however many attempts."""
        backoff = Backoff(0.25, 3.0, rng=random.Random(2))
        for _ in range(5000):
            ceiling = backoff.ceiling_s()
            assert 0.0 <= backoff.next_delay_s() <= ceiling <= 3.0

    def test_jitter_is_full_not_partial(self) -> None:
        """Delays of one attempt spread over the whole range from 0 to the ceiling."""
        rng = random.Random(3)
        draws = []
        for _ in range(2000):
            backoff = Backoff(1.0, 100.0, rng=rng)
            backoff.attempt = 3
            draws.append(backoff.next_delay_s())
        assert min(draws) < 0.05 * 8.0
        assert max(draws) > 0.95 * 8.0
        assert 3.5 < sum(draws) / len(draws) < 4.5  # uniform on [0, 8] has mean 4

    def test_same_seed_gives_same_delays(self) -> None:
        """A seeded random source makes the delays repeatable."""
        first = Backoff(rng=random.Random(7))
        second = Backoff(rng=random.Random(7))
        assert [first.next_delay_s() for _ in range(10)] == \
               [second.next_delay_s() for _ in range(10)]

    def test_counter_resets_only_after_a_stable_connection(self) -> None:
        """A connection open stable_after_s or longer resets the counter; a shorter one does not."""
        backoff = Backoff(0.5, 10.0, stable_after_s=5.0, rng=random.Random(4))
        for _ in range(4):
            backoff.next_delay_s()
        backoff.connection_closed(open_for_s=4.9)
        assert backoff.ceiling_s() == 8.0
        backoff.connection_closed(open_for_s=5.0)
        assert backoff.attempt == 0
        assert backoff.ceiling_s() == 0.5

    @pytest.mark.parametrize("base_s, cap_s, stable_after_s",
                             [(0.0, 1.0, 1.0), (2.0, 1.0, 1.0), (0.5, 1.0, -1.0)])
    def test_rejects_settings_that_make_no_sense(
            self, base_s: float, cap_s: float, stable_after_s: float) -> None:
        """A zero base, a cap below the base or a negative stable time is refused."""
        with pytest.raises(ValueError):
            Backoff(base_s, cap_s, stable_after_s)


# -- GapDetector --------------------------------------------------------------------------

class TestGapDetector:
    def test_consecutive_frames_have_no_gap(self) -> None:
        """Sequences 0, 1, 2 with missed 0 report nothing."""
        detector = GapDetector()
        assert [detector.observe(frame(n)) for n in range(3)] == [None, None, None]

    def test_missed_field_is_a_drop_by_the_server(self) -> None:
        """A frame whose missed field matches its sequence jump reports a server drop."""
        detector = GapDetector()
        detector.observe(frame(10))
        assert detector.observe(frame(14, missed=3)) == GapEvent(
            0, lost=3, from_sequence=10, to_sequence=14, reason=GAP_DROPPED_BY_SERVER)

    def test_jump_larger_than_missed_is_a_sequence_jump(self) -> None:
        """Frames never queued for this client (e.g. while reconnecting) count from the sequence."""
        detector = GapDetector()
        detector.observe(frame(10))
        assert detector.observe(frame(20, missed=2)) == GapEvent(
            0, lost=9, from_sequence=10, to_sequence=20, reason=GAP_SEQUENCE_JUMP)

    def test_missed_on_a_first_frame_is_reported(self) -> None:
        """Without an earlier frame the missed field alone gives the gap."""
        detector = GapDetector()
        assert detector.observe(frame(7, missed=2)) == GapEvent(
            0, lost=2, from_sequence=4, to_sequence=7, reason=GAP_DROPPED_BY_SERVER)

    def test_backwards_sequence_is_a_stream_restart(self) -> None:
        """A sequence that does not grow means the producer started counting again."""
        detector = GapDetector()
        detector.observe(frame(50))
        assert detector.observe(frame(0)) == GapEvent(
            0, lost=0, from_sequence=50, to_sequence=0, reason=GAP_STREAM_RESTARTED)

    def test_the_same_sequence_again_is_the_frame_resent_in_a_new_view(self) -> None:
        """A frame whose sequence equals the previous one's is that frame cut to a view
        just chosen: no gap, and later gaps count from it; with a new session it is a
        restart."""
        detector = GapDetector()
        detector.new_session("a")
        detector.observe(frame(9))
        assert detector.observe(frame(9)) is None
        assert detector.observe(frame(10)) is None
        assert detector.observe(frame(10)) is None
        assert detector.observe(frame(12, missed=1)) == GapEvent(
            0, lost=1, from_sequence=10, to_sequence=12, reason=GAP_DROPPED_BY_SERVER)
        detector.new_session("b")
        gap = detector.observe(frame(12))
        assert gap is not None
        assert (gap.reason, gap.session_changed) == (GAP_STREAM_RESTARTED, True)

    def test_streams_are_tracked_separately(self) -> None:
        """Interleaved streams with their own counters report no gap."""
        detector = GapDetector()
        results = [detector.observe(frame(n, stream_id=s)) for n in range(3) for s in (0, 1)]
        assert results == [None] * 6
        gap = detector.observe(frame(5, stream_id=1))
        assert gap is not None and (gap.stream_id, gap.lost) == (1, 2)

    def test_new_session_is_flagged_on_the_next_gap_of_each_stream(self) -> None:
        """After a hello with another session, the next gap says the server restarted."""
        detector = GapDetector()
        detector.new_session("a")
        detector.observe(frame(3))
        detector.new_session("a")  # a reconnect to the same server
        gap = detector.observe(frame(6))
        assert gap is not None and not gap.session_changed
        detector.new_session("b")
        gap = detector.observe(frame(1))
        assert gap is not None
        assert (gap.reason, gap.session_changed) == (GAP_STREAM_RESTARTED, True)
        assert detector.observe(frame(3)) == GapEvent(0, 1, 1, 3, GAP_SEQUENCE_JUMP, False)


# -- ArgosClient against a scripted server ------------------------------------------------

@contextlib.asynccontextmanager
async def scripted_server(*messages: bytes | str, hang_up: bool = False) -> AsyncIterator[str]:
    """A WebSocket server on port 0 that sends ``messages`` to each client; yields its URL.

    With ``hang_up`` it closes each connection (code 1000) after the messages.
    """
    async def handler(ws: ServerConnection) -> None:
        for message in messages:
            await ws.send(message)
        if not hang_up:
            await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


def client_for(url: str, **options: Any) -> ArgosClient:
    settings = dict(backoff_base_s=0.05, backoff_cap_s=0.2, heartbeat_interval_s=0.0)
    settings.update(options)
    return ArgosClient(url, rng=random.Random(0), **settings)


async def test_frames_are_decoded_with_their_age_and_size() -> None:
    """A frame event carries the decoded spectrum, its metadata, size and age."""
    data = spectrum(3)
    seen: list[Event] = []
    async with scripted_server(hello(), data) as url, client_for(url) as client:
        event = await collect_until(aiter(client), seen, is_frame(3))
    assert isinstance(event, FrameEvent)
    assert event.frame.bin_count == BINS and event.frame.power_db[3] == -20.0
    assert event.frame.center_freq_hz == 100e6 and event.frame.span_hz == 8e6
    assert event.size_bytes == len(data) and event.gap == 0
    assert event.age_ms == (event.received_ns - event.frame.timestamp_ns) / 1e6
    assert event.age_ms >= 0
    assert states(seen) == ["connecting", "open"]
    assert is_message("hello")(seen[2])
    assert client.hello is not None and client.hello["session"] == "s1"
    assert (client.stats.frames, client.stats.messages) == (1, 1)
    assert client.stats.bytes_received == len(data) + len(hello())


async def test_malformed_frame_and_bad_json_are_skipped_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """A garbage frame, non-JSON text and a message without type are logged and skipped."""
    caplog.set_level(logging.WARNING, logger="gr_argos.client")
    bad: list[bytes | str] = [b"ARGS\x01not a frame", spectrum(0)[:-4], "{not json",
                              '{"no": "type"}']
    seen: list[Event] = []
    async with scripted_server(*bad, spectrum(1)) as url, client_for(url) as client:
        await collect_until(aiter(client), seen, is_frame(1))
    assert [e.frame.sequence for e in seen if isinstance(e, FrameEvent)] == [1]
    assert not any(isinstance(e, MessageEvent) for e in seen)
    assert client.stats.malformed == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert "malformed frame" in warnings[0] and "magic" not in warnings[0]
    assert "truncated" in warnings[1]
    assert "not valid JSON" in warnings[2] and '"type"' in warnings[3]


async def test_missed_field_and_sequence_jump_give_gap_events_before_the_frame() -> None:
    """A gap event precedes the frame after the gap, and the counters add the lost frames."""
    script = [spectrum(0), spectrum(5, missed=4), spectrum(9)]
    seen: list[Event] = []
    async with scripted_server(*script) as url, client_for(url) as client:
        await collect_until(aiter(client), seen, is_frame(9))
    data_events = [e for e in seen if isinstance(e, (FrameEvent, GapEvent))]
    assert data_events[1] == GapEvent(0, 4, 0, 5, GAP_DROPPED_BY_SERVER)
    assert isinstance(data_events[2], FrameEvent) and data_events[2].gap == 4
    assert data_events[3] == GapEvent(0, 3, 5, 9, GAP_SEQUENCE_JUMP)
    assert isinstance(data_events[4], FrameEvent) and data_events[4].gap == 3
    assert (client.stats.gaps, client.stats.frames_lost) == (2, 7)


async def test_reconnects_after_the_server_hangs_up() -> None:
    """When the server closes the connection, the client goes reconnecting, then open again."""
    seen: list[Event] = []
    async with scripted_server(hello(), hang_up=True) as url, client_for(url) as client:
        events = aiter(client)
        await collect_until(events, seen, is_message("hello"))
        await collect_until(events, seen, is_message("hello"))
    reconnecting = [e for e in seen if isinstance(e, StateEvent) and e.state == "reconnecting"]
    assert states(seen)[:4] == ["connecting", "open", "reconnecting", "open"]
    assert reconnecting[0].error == "closed by server: 1000"
    assert client.stats.reconnects >= 1


async def test_close_from_another_task_ends_the_iteration() -> None:
    """close() while the client waits for data ends the iteration with a closed state."""
    seen: list[Event] = []
    async with scripted_server(hello()) as url:
        client = client_for(url)
        async with client:
            events = aiter(client)
            await collect_until(events, seen, is_message("hello"))
            closer = asyncio.create_task(client.close())  # runs while the client awaits data
            async with asyncio.timeout(WAIT_S):
                seen += await collect_all(events)
                await closer
    assert states(seen) == ["connecting", "open", "closed"]
    assert client.state == "closed"


async def test_close_while_waiting_to_retry_ends_the_iteration() -> None:
    """With no server listening, close() during the backoff delay ends the iteration."""
    async with scripted_server() as url:
        pass  # the port is free again: every attempt is refused
    client = client_for(url, backoff_base_s=60.0, backoff_cap_s=60.0)
    async with client:
        reader = asyncio.create_task(collect_all(client))
        async with asyncio.timeout(WAIT_S):
            while client.stats.failed_attempts == 0:
                await asyncio.sleep(0.01)
            await client.close()
            seen = await reader
    assert states(seen) == ["connecting", "closed"]
    assert client.last_error  # why the attempts failed stays readable


async def test_send_message_without_a_connection_raises() -> None:
    """Sending before the connection opened is a ConnectionError, not a silent loss."""
    client = client_for("ws://127.0.0.1:9/")
    with pytest.raises(ConnectionError, match="not connected"):
        await client.send_message("stats")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/", "127.0.0.1:8765", "ws://h:99999/"])
def test_bad_url_is_refused_at_once(url: str) -> None:
    """A URL that is not ws:// or wss:// with a valid port raises ValueError saying so."""
    with pytest.raises(ValueError, match=r"bad URL .*; expected ws://HOST:PORT/"):
        ArgosClient(url)


# -- ArgosClient against the real SpectrumServer ------------------------------------------

def start_server(port: int = 0, **settings: Any) -> SpectrumServer:
    server = SpectrumServer(ServerConfig(host="127.0.0.1", port=port, queue_depth=8,
                                         **settings))
    server.add_stream(StreamInfo(stream_id=0, name="spectrum", bins=BINS, center_freq_hz=100e6,
                                 span_hz=8e6, fps=30.0))
    server.start()
    return server


@pytest.fixture
async def server() -> AsyncIterator[SpectrumServer]:
    """A running SpectrumServer on a free port, stopped after the test."""
    started = await asyncio.to_thread(start_server)
    try:
        yield started
    finally:
        await asyncio.to_thread(started.stop)


async def publish_across_restart(
        server: SpectrumServer, before: range, after: range) -> tuple[ArgosClient, list[Event]]:
    """Publish ``before``, restart the server on its port, publish ``after``; return the
    client (closed) and every event it yielded."""
    port = server.port
    seen: list[Event] = []
    async with client_for(server.url) as client:
        events = aiter(client)
        await collect_until(events, seen, is_message("hello"))
        for sequence in before:
            server.publish_frame(0, spectrum(sequence))
        await collect_until(events, seen, is_frame(before[-1]))
        await asyncio.to_thread(server.stop)
        restarted = await asyncio.to_thread(start_server, port)
        try:
            await collect_until(events, seen, is_message("hello"))
            for sequence in after:
                restarted.publish_frame(0, spectrum(sequence))
            await collect_until(events, seen, is_frame(after[-1]))
        finally:
            await asyncio.to_thread(restarted.stop)
    return client, seen


async def test_server_restart_is_a_sequence_jump_and_a_reconnect(server: SpectrumServer) -> None:
    """Restarting the server: open -> reconnecting -> open, and the skipped sequences are a gap."""
    # Frames 3..9 are produced while no server listens (as behind a restarting gateway).
    client, seen = await publish_across_restart(server, range(3), range(10, 12))
    assert states(seen) == ["connecting", "open", "reconnecting", "open"]
    assert client.state == "closed"
    assert gaps(seen) == [GapEvent(0, 7, 2, 10, GAP_SEQUENCE_JUMP, session_changed=True)]
    assert [e.gap for e in seen if isinstance(e, FrameEvent)] == [0, 0, 0, 7, 0]
    assert (client.stats.reconnects, client.stats.frames_lost) == (1, 7)
    sessions = [e.message["session"] for e in seen
                if isinstance(e, MessageEvent) and e.type == "hello"]
    assert sessions[0] == server.session and sessions[1] != server.session


async def test_a_new_server_counting_from_zero_is_a_stream_restart(server: SpectrumServer) -> None:
    """A new session whose sequence starts again is reported as a restarted stream."""
    _, seen = await publish_across_restart(server, range(5), range(1))
    assert gaps(seen) == [GapEvent(0, 0, 4, 0, GAP_STREAM_RESTARTED, session_changed=True)]


async def test_heartbeat_ping_gets_a_pong_and_a_round_trip_time(server: SpectrumServer) -> None:
    """With a heartbeat interval the client pings, and the server's pong gives last_rtt_ms."""
    seen: list[Event] = []
    async with client_for(server.url, heartbeat_interval_s=0.1) as client:
        pong = await collect_until(aiter(client), seen, is_message("pong"))
    assert isinstance(pong, MessageEvent)
    assert pong.message["id"] == "heartbeat-1"
    assert isinstance(pong.message["server_time_ns"], int)
    assert client.stats.last_rtt_ms is not None and client.stats.last_rtt_ms >= 0


async def test_stats_request_gets_this_clients_counters(server: SpectrumServer) -> None:
    """send_message("stats") is answered with this client's counters and the totals."""
    seen: list[Event] = []
    async with client_for(server.url) as client:
        events = aiter(client)
        await collect_until(events, seen, is_message("hello"))
        server.publish_frame(0, spectrum(0))
        await collect_until(events, seen, is_frame(0))
        await client.send_message("stats")
        reply = await collect_until(events, seen, is_message("stats"))
    assert isinstance(reply, MessageEvent)
    assert reply.message["client"]["frames_sent"] == 1
    assert reply.message["total"]["clients"] == 1


async def test_a_slow_client_accounts_for_every_frame(server: SpectrumServer) -> None:
    """Frames the server drops for a client that does not read are all reported as lost."""
    seen: list[Event] = []
    published = 40  # below the hub's ingress depth, so the server counts every drop
    async with client_for(server.url) as client:
        events = aiter(client)
        await collect_until(events, seen, is_message("hello"))
        server.publish_frame(0, spectrum(0))
        await collect_until(events, seen, is_frame(0))
        for sequence in range(1, published):  # one burst, while this client reads nothing
            server.publish_frame(0, spectrum(sequence))
        await collect_until(events, seen, is_frame(published - 1))
        await client.send_message("stats")
        reply = await collect_until(events, seen, is_message("stats"))
    frames = [e for e in seen if isinstance(e, FrameEvent)]
    assert isinstance(reply, MessageEvent)
    assert len(frames) + client.stats.frames_lost == published
    assert sum(e.frame.missed for e in frames) == reply.message["client"]["frames_dropped"]
    for gap in gaps(seen):
        assert gap.reason == GAP_DROPPED_BY_SERVER
        assert gap.lost == gap.to_sequence - gap.from_sequence - 1


async def test_uint8_compressed_frames_from_a_real_server_decode_within_half_a_step() -> None:
    """encoding="uint8", compress=True goes in the URL; the real server's deflated uint8
    frames decode to within step/2 of what was published."""
    server = SpectrumServer(ServerConfig(host="127.0.0.1", port=0))
    server.add_stream(StreamInfo(stream_id=0, bins=BINS))
    await asyncio.to_thread(server.start)
    seen: list[Event] = []
    try:
        async with client_for(server.url, encoding="uint8", compress=True) as client:
            assert client.url.endswith("/?encoding=uint8&compress=1")
            events = aiter(client)
            reply = await collect_until(events, seen, is_message("encoding"))
            assert isinstance(reply, MessageEvent)
            assert reply.message == {"type": "encoding", "encoding": "uint8", "compress": True,
                                     "step_db": 0.0, "second_trace": False}
            server.publish_frame(0, spectrum(5))
            event = await collect_until(events, seen, is_frame(5))
    finally:
        await asyncio.to_thread(server.stop)
    assert isinstance(event, FrameEvent)
    frame = event.frame
    assert (frame.encoding, frame.flags) == (2, 1)
    expected = np.full(BINS, -100.0)
    expected[5] = -20.0
    assert np.abs(frame.power_db - expected).max() <= 80 / 255 / 2 + 1e-4
    assert event.size_bytes < 64 + BINS


def test_an_unknown_encoding_is_refused_before_connecting() -> None:
    """ArgosClient(encoding=...) names the accepted values."""
    with pytest.raises(ValueError, match="uint8"):
        ArgosClient("ws://127.0.0.1:1/", encoding="float16")


async def test_step_db_goes_in_the_url_and_the_frames_use_that_step() -> None:
    """step_db=1 with encoding="uint8" goes in the URL (also after a reconnect); the server
    confirms it and its frames decode on whole-dB levels."""
    server = SpectrumServer(ServerConfig(host="127.0.0.1", port=0))
    server.add_stream(StreamInfo(stream_id=0, bins=BINS))
    await asyncio.to_thread(server.start)
    seen: list[Event] = []
    try:
        async with client_for(server.url, encoding="uint8", compress=True,
                              step_db=1.0) as client:
            assert client.url.endswith("/?encoding=uint8&compress=1&step_db=1")
            events = aiter(client)
            reply = await collect_until(events, seen, is_message("encoding"))
            assert isinstance(reply, MessageEvent)
            assert reply.message["step_db"] == 1.0
            server.publish_frame(0, spectrum(5))
            event = await collect_until(events, seen, is_frame(5))
    finally:
        await asyncio.to_thread(server.stop)
    assert isinstance(event, FrameEvent)
    expected = np.full(BINS, -100.0)
    expected[5] = -20.0
    assert event.frame.power_db.tolist() == expected.tolist()


@pytest.mark.parametrize(("encoding", "step_db", "match"), [
    ("uint8", 0.001, "from 0.01 to 20"), ("uint8", 21.0, "from 0.01 to 20"),
    (None, 1.0, "uint8 encoding only"), ("float32", 1.0, "uint8 encoding only")])
def test_a_bad_step_db_is_refused_before_connecting(encoding: str | None, step_db: float,
                                                    match: str) -> None:
    """ArgosClient(step_db=...) names the accepted range, and wants encoding "uint8"."""
    with pytest.raises(ValueError, match=match):
        ArgosClient("ws://127.0.0.1:1/", encoding=encoding, step_db=step_db)


# -- ArgosClient and a server with a token ------------------------------------------------

TOKEN = "correct-horse-battery-staple-7f3a"
WRONG_TOKEN = "wrong-token-0b9e"


@pytest.fixture
async def token_server() -> AsyncIterator[SpectrumServer]:
    """A running SpectrumServer with a token (and a short handshake timeout)."""
    started = await asyncio.to_thread(start_server, token=TOKEN, handshake_timeout_s=0.5)
    try:
        yield started
    finally:
        await asyncio.to_thread(started.stop)


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


async def test_the_token_goes_in_the_authorization_header(
        token_server: SpectrumServer, caplog: pytest.LogCaptureFixture) -> None:
    """With token= the client is admitted on its upgrade request (no auth message) and
    frames flow; the token is in no URL and, even at DEBUG level, in no log line."""
    caplog.set_level(logging.DEBUG)
    seen: list[Event] = []
    async with client_for(token_server.url, token=TOKEN) as client:
        events = aiter(client)
        await collect_until(events, seen, is_message("hello"))
        token_server.publish_frame(0, spectrum(1))
        await collect_until(events, seen, is_frame(1))
    assert TOKEN not in client.url
    logged = logged_text(caplog)
    assert "event=auth_ok" in logged and "method=header" in logged
    assert "Authorization: Bearer ***" in logged  # websockets' own request line, masked
    assert TOKEN not in logged
    assert not client.auth_failed and states(seen) == ["connecting", "open"]


async def test_a_wrong_token_ends_the_client_with_the_reason(
        token_server: SpectrumServer, caplog: pytest.LogCaptureFixture) -> None:
    """An HTTP 401 is final: one attempt, then a closed state whose error says the token
    was refused, an error logged, auth_failed set; neither token is logged."""
    caplog.set_level(logging.DEBUG)
    async with client_for(token_server.url, token=WRONG_TOKEN) as client:
        async with asyncio.timeout(WAIT_S):
            seen = await collect_all(client)
    assert states(seen) == ["connecting", "closed"]
    closed = seen[-1]
    assert isinstance(closed, StateEvent) and closed.error is not None
    assert "authentication failed" in closed.error and "HTTP 401: wrong token" in closed.error
    assert client.auth_failed and client.last_error == closed.error
    assert client.stats.failed_attempts == 1
    assert dict(token_server.counters.auth_failures) == {"header": 1}
    assert any(record.levelno == logging.ERROR and record.name == "gr_argos.client"
               for record in caplog.records)
    logged = logged_text(caplog)
    assert WRONG_TOKEN not in logged and TOKEN not in logged


async def test_no_token_for_a_server_that_needs_one_ends_the_client(
        token_server: SpectrumServer) -> None:
    """Without a token the server's auth_failed error (after its handshake timeout) is
    final too, and the closed state says a token is needed."""
    async with client_for(token_server.url) as client:
        async with asyncio.timeout(WAIT_S):
            seen = await collect_all(client)
    assert states(seen) == ["connecting", "open", "closed"]
    assert any(isinstance(e, MessageEvent) and e.message.get("code") == "auth_failed"
               for e in seen)
    closed = seen[-1]
    assert isinstance(closed, StateEvent) and closed.error is not None
    assert "the server needs a token" in closed.error
    assert client.auth_failed and client.stats.reconnects == 0


async def test_retry_auth_failure_keeps_trying_until_closed(
        token_server: SpectrumServer) -> None:
    """With retry_auth_failure=True a refused token is retried like any refusal."""
    async with client_for(token_server.url, token=WRONG_TOKEN,
                          retry_auth_failure=True) as client:
        reader = asyncio.create_task(collect_all(client))
        async with asyncio.timeout(WAIT_S):
            while client.stats.failed_attempts < 3:
                await asyncio.sleep(0.01)
            assert client.state == "connecting" and not client.auth_failed
            assert client.last_error is not None and "HTTP 401" in client.last_error
            await client.close()
            seen = await reader
    assert states(seen) == ["connecting", "closed"]
    assert isinstance(seen[-1], StateEvent) and seen[-1].error is None


@pytest.mark.parametrize("token", ["", " padded", "padded\n", "two\nlines", "x" * 4097])
def test_a_token_no_server_could_hold_is_refused_without_showing_it(token: str) -> None:
    """An empty, padded, multi-line or overlong token raises ValueError at once, and the
    message does not repeat it."""
    with pytest.raises(ValueError, match="token") as raised:
        ArgosClient("ws://127.0.0.1:1/", token=token)
    assert token.strip() == "" or token.strip() not in str(raised.value)


async def test_auth_failed_despite_a_token_blames_what_dropped_the_header() -> None:
    """An auth_failed error although the client sent a token header means the header never
    reached the server (a proxy dropped it): the closed state says so."""
    refusal = encode_message("error", {"code": "auth_failed",
                                       "message": "no auth message within 10 s"})
    async with scripted_server(refusal, hang_up=True) as url, \
            client_for(url, token=TOKEN) as client:
        async with asyncio.timeout(WAIT_S):
            seen = await collect_all(client)
    closed = seen[-1]
    assert isinstance(closed, StateEvent) and closed.state == "closed"
    assert closed.error is not None and "got no token" in closed.error
    assert "drops the Authorization header" in closed.error and client.auth_failed


async def test_other_refusals_are_retried_and_say_the_servers_reason() -> None:
    """An HTTP 429 (too many connections from this address) is not final: the client keeps
    trying, and last_error carries the server's reason from the refusal's body."""
    server = await asyncio.to_thread(start_server, max_clients_per_ip=1)
    try:
        async with client_for(server.url) as first:
            await collect_until(aiter(first), [], is_message("hello"))
            async with client_for(server.url) as second:
                reader = asyncio.create_task(collect_all(second))
                async with asyncio.timeout(WAIT_S):
                    while second.stats.failed_attempts < 1:
                        await asyncio.sleep(0.01)
                assert second.last_error is not None
                assert "HTTP 429 (too many connections from your address" in second.last_error
                assert not second.auth_failed and second.state == "connecting"
                await second.close()
                await reader
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_view_goes_in_the_url_and_set_view_changes_it_without_false_gaps() -> None:
    """view= asks in the URL (so again after a reconnect): the server confirms it and sends
    that slice at one frame in 2, with no gap reported for the frames the rate leaves out;
    set_view() switches to another slice at once and the URL follows."""
    server = SpectrumServer(ServerConfig(host="127.0.0.1", port=0))
    server.add_stream(StreamInfo(stream_id=0, bins=BINS, center_freq_hz=100e6, span_hz=8e6))
    await asyncio.to_thread(server.start)
    seen: list[Event] = []
    try:
        async with client_for(server.url, view=ViewRequest(bins=4, fps_divisor=2)) as client:
            assert client.url.endswith("/?bins=4&fps_divisor=2")
            events = aiter(client)
            reply = await collect_until(events, seen, is_message("view"))
            assert isinstance(reply, MessageEvent)
            assert (reply.message["bins"], reply.message["fps_divisor"]) == (4, 2)
            for sequence in range(5):
                server.publish_frame(0, spectrum(sequence))
            coarse = await collect_until(events, seen, is_frame(4))
            await client.set_view(ViewRequest(center_freq_hz=98e6, span_hz=2e6, fps_divisor=2))
            assert client.url.endswith("/?center_freq_hz=98000000&span_hz=2000000&fps_divisor=2")
            reply = await collect_until(events, seen, is_message("view"))
            assert isinstance(reply, MessageEvent)
            server.publish_frame(0, spectrum(6))
            zoomed = await collect_until(events, seen, is_frame(6))
    finally:
        await asyncio.to_thread(server.stop)
    frames = [e.frame for e in seen if isinstance(e, FrameEvent)]
    # Frame 4 comes again at once, cut to the new view, and counts no gap or restart.
    assert [f.sequence for f in frames] == [0, 2, 4, 4, 6]
    assert frames[2].span_hz == 8e6 and frames[3].span_hz == reply.message["span_hz"]
    assert gaps(seen) == []
    assert isinstance(coarse, FrameEvent) and coarse.frame.bin_count == 4
    assert coarse.frame.power_db.max() == -20.0  # the one-bin peak survives the merge
    assert isinstance(zoomed, FrameEvent)
    assert zoomed.frame.span_hz == reply.message["span_hz"]
    peak_bin = int(np.argmax(zoomed.frame.power_db))
    assert zoomed.frame.bin_freqs_hz()[peak_bin] == 100e6 + (6 - 8) * 0.5e6  # bin 6's


async def test_changing_the_frame_rate_mid_stream_reports_no_gap() -> None:
    """A real server: one frame in 2 (the URL), then every frame, then one in 3 with
    set_view; the client gets every frame of each rate and reports no gap, also for the
    frame whose predecessor is no multiple of the new divisor."""
    server = SpectrumServer(ServerConfig(host="127.0.0.1", port=0))
    server.add_stream(StreamInfo(stream_id=0, bins=BINS, center_freq_hz=100e6, span_hz=8e6))
    await asyncio.to_thread(server.start)
    seen: list[Event] = []
    sequence = 0

    async def publish_until(last: int) -> None:
        nonlocal sequence
        while sequence <= last:
            server.publish_frame(0, spectrum(sequence))
            sequence += 1
        await collect_until(events, seen, is_frame(last))

    try:
        async with client_for(server.url, view=ViewRequest(fps_divisor=2)) as client:
            events = aiter(client)
            await collect_until(events, seen, is_message("view"))
            await publish_until(4)
            for fps_divisor, last in ((1, 7), (3, 12), (2, 16)):
                await client.set_view(ViewRequest(fps_divisor=fps_divisor))
                await collect_until(events, seen, is_message("view"))
                await publish_until(last)
    finally:
        await asyncio.to_thread(server.stop)
    frames = [e.frame.sequence for e in seen if isinstance(e, FrameEvent)]
    assert frames == [0, 2, 4, 5, 6, 7, 9, 12, 14, 16]
    assert gaps(seen) == []


def test_a_bad_view_is_refused_before_connecting() -> None:
    """ArgosClient(view=...) names a value the server would refuse."""
    with pytest.raises(ValueError, match="bins must be a whole number from 1"):
        ArgosClient("ws://127.0.0.1:1/", view=ViewRequest(bins=0))


def test_gaps_count_frames_of_the_clients_own_rate() -> None:
    """With a frame rate divisor of 3, frames 3 apart are no gap; 9 apart lose 2 frames."""
    detector = GapDetector()
    detector.set_fps_divisor(0, 3)
    assert detector.observe(frame(0)) is None
    assert detector.observe(frame(3)) is None
    gap = detector.observe(frame(12))
    assert gap is not None and (gap.lost, gap.reason) == (2, GAP_SEQUENCE_JUMP)


def test_a_divisor_changed_mid_stream_counts_no_false_gap() -> None:
    """A view reply changing the divisor between two frames (the previous one no multiple of
    the new divisor) reports nothing; frames queued at the old rate after a lower divisor
    neither; then gaps count at the new rate."""
    detector = GapDetector()
    assert detector.observe(frame(101)) is None
    detector.set_fps_divisor(0, 2)
    assert [detector.observe(frame(n)) for n in (102, 104)] == [None, None]
    detector.set_fps_divisor(0, 1)  # 106 and 108 were queued before the change
    assert [detector.observe(frame(n)) for n in (106, 108, 109, 110)] == [None] * 4
    detector.set_fps_divisor(0, 6)
    assert detector.observe(frame(114)) is None
    gap = detector.observe(frame(126))
    assert gap is not None and (gap.lost, gap.from_sequence) == (1, 114)


def test_a_hello_forgets_the_divisors_and_a_reconnect_jump_counts_at_the_urls_rate() -> None:
    """After a hello the client gets every frame until a view reply says otherwise; the jump
    across a reconnect counts frames of the rate the URL's view asks for."""
    detector = GapDetector()
    detector.new_session("a")
    detector.set_fps_divisor(0, 2)
    detector.observe(frame(10))
    detector.new_session("a")  # a URL without a view
    gap = detector.observe(frame(13))
    assert gap is not None and gap.lost == 2
    detector.new_session("a")
    detector.set_fps_divisor(0, 2)  # the view reply that follows hello
    gap = detector.observe(frame(36))  # 14, 16 ... 34 went by
    assert gap is not None and (gap.lost, gap.reason) == (11, GAP_SEQUENCE_JUMP)
