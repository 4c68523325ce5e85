# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for gr_argos.server: a real SpectrumServer on port 0 with real WebSocket clients.

Well-behaved clients use the ``websockets`` asyncio client; clients that misbehave are
``server_helpers.RawClient``, a bare socket that does only what the test tells it to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gr_argos.protocol import MAX_CLIENT_MESSAGE_BYTES, decode_frame, encode_frame
from gr_argos.protocol import StreamInfo
from gr_argos.server import ServerConfig, ServerError, SpectrumServer

from server_helpers import (
    OP_PING, OP_TEXT, WAIT_S, RawClient, StartServer, client, client_stats,
    close_code_seen, next_frames, next_json, server_threads, spectrum_frame,
)


# hello, frames, requests


async def test_hello_announces_streams_session_and_protocol(start_server: StartServer) -> None:
    """The first message is a hello naming the protocol, the server session and every stream."""
    server = start_server(queue_depth=16)
    server.add_stream(StreamInfo(stream_id=1, name="sweep", bins=512, center_freq_hz=2.4e9,
                                 span_hz=100e6, fps=5.0))

    async with connect(server.url, open_timeout=WAIT_S) as first, \
            connect(server.url, open_timeout=WAIT_S) as second:
        hellos = [json.loads(await ws.recv()) for ws in (first, second)]

    hello = hellos[0]
    assert hello["type"] == "hello" and hello["server"] == "gr-argos"
    assert hello["protocol"] == 1
    assert hello["queue_depth"] == 16
    assert len(hello["session"]) == 16 and int(hello["session"], 16) >= 0
    assert hellos[1]["session"] == hello["session"]
    assert sorted(hello["streams"], key=lambda s: s["id"]) == [
        {"id": 0, "name": "spectrum", "bins": 2048, "center_freq_hz": 100e6,
         "span_hz": 2.048e6, "encoding": "float32", "fps": 30.0},
        {"id": 1, "name": "sweep", "bins": 512, "center_freq_hz": 2.4e9,
         "span_hz": 100e6, "encoding": "float32", "fps": 5.0},
    ]


async def test_a_restarted_server_has_a_new_session(start_server: StartServer) -> None:
    """A client can tell from hello's session that the server it reconnected to is new."""
    sessions = []
    server = start_server()
    for _ in range(2):  # the same server object stopped and started again
        server.start()
        async with connect(server.url, open_timeout=WAIT_S) as ws:
            sessions.append(json.loads(await ws.recv())["session"])
        await asyncio.to_thread(server.stop)

    assert sessions[0] != sessions[1]


async def test_clients_receive_every_frame_in_order_with_the_published_bytes(
        start_server: StartServer) -> None:
    """Every client receives each published frame, in order, byte for byte."""
    server = start_server(queue_depth=64)
    published = [spectrum_frame(sequence) for sequence in range(40)]

    async with client(server) as first, client(server) as second:
        for frame in published:
            server.publish_frame(0, frame)
        received = [await next_frames(ws, len(published)) for ws in (first, second)]

    assert received == [published, published]
    assert [decode_frame(f).sequence for f in received[0]] == list(range(40))


async def test_ping_is_answered_with_a_pong_carrying_the_same_id(
        start_server: StartServer) -> None:
    """An application ping gets a pong with the same id (any JSON value, null if absent)."""
    server = start_server()

    async with client(server) as ws:
        replies = []
        for ping in ({"type": "ping", "id": 17}, {"type": "ping", "id": "a\u00e9"},
                     {"type": "ping", "id": {"n": [1, 2]}}, {"type": "ping"}):
            await ws.send(json.dumps(ping))
            replies.append(await next_json(ws))

    assert [r["type"] for r in replies] == ["pong"] * 4
    assert [r["id"] for r in replies] == [17, "a\u00e9", {"n": [1, 2]}, None]
    assert all(isinstance(r["server_time_ns"], int) and r["server_time_ns"] > 0
               for r in replies)


async def test_stats_request_reports_this_client_and_server_totals(
        start_server: StartServer) -> None:
    """A stats request is answered with this connection's counters and the server's totals."""
    server = start_server(queue_depth=64)

    async with client(server) as ws, client(server):
        for sequence in range(3):
            server.publish_frame(0, spectrum_frame(sequence))
        await next_frames(ws, 3)
        await ws.send('{"type": "stats"}')
        reply = await next_json(ws)

    assert reply["type"] == "stats"
    assert reply["client"]["frames_sent"] == 3
    assert reply["client"]["frames_dropped"] == 0
    assert reply["client"]["messages_sent"] >= 1  # the hello
    assert reply["total"]["clients"] == 2
    assert reply["total"]["frames_in"] == 3
    latency = reply["client"]["latency_ms"]  # publish -> write, per client
    assert 0 <= latency["last"] <= latency["max"]
    assert 0 < latency["mean"] <= latency["max"]


async def test_frames_and_messages_keep_the_order_they_were_published_in(
        start_server: StartServer) -> None:
    """Frames and messages arrive in order, no message behind a frame published after it,
    and a client that asked for uint8 gets its frames in uint8."""
    server = start_server(queue_depth=64)

    async with client(server) as plain, \
            connect(server.url + "?encoding=uint8", open_timeout=WAIT_S) as quantized:
        await next_json(quantized)  # hello
        await next_json(quantized)  # encoding
        for sequence in range(60):
            if sequence % 7 == 0:
                server.publish_message("status", {"n": sequence})
            server.publish_frame(0, spectrum_frame(sequence))
        seen: dict[str, list[Any]] = {}
        for name, ws in [("plain", plain), ("quantized", quantized)]:
            seen[name] = []
            async with asyncio.timeout(WAIT_S):
                while len(seen[name]) < 60 + 9:
                    message = await ws.recv()
                    seen[name].append(json.loads(message)["n"] if isinstance(message, str)
                                      else decode_frame(message))

    for name, items in seen.items():
        kinds = [("status", item) if isinstance(item, int) else ("frame", item.sequence)
                 for item in items]
        frames = [n for kind, n in kinds if kind == "frame"]
        statuses = [n for kind, n in kinds if kind == "status"]
        assert frames == list(range(60)), name
        assert statuses == list(range(0, 60, 7)), name
        # A message is never behind a frame published after it (a client that is behind
        # gets its queued messages first; one that keeps up gets everything in order).
        assert all(kinds.index(("status", n)) < kinds.index(("frame", n)) for n in statuses)
    assert {f.encoding for f in seen["quantized"] if not isinstance(f, int)} == {2}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("this is not json {", "bad_json"),
        ('["ping", 1]', "bad_message"),
        ('{"id": 1}', "bad_message"),
        ('{"type": ""}', "bad_message"),
        ('{"type": "subscribe", "stream": 0}', "unknown_type"),
    ],
    ids=["invalid_json", "json_array", "no_type", "empty_type", "unknown_type"],
)
async def test_bad_request_gets_an_error_and_nobody_is_disconnected(
        start_server: StartServer, text: str, code: str) -> None:
    """A request the server cannot handle gets an error with the documented code; that
    connection stays open and another client keeps receiving every frame."""
    server = start_server(queue_depth=64)
    published = [spectrum_frame(sequence) for sequence in range(20)]

    async with client(server) as asking, client(server) as watching:
        for frame in published[:10]:
            server.publish_frame(0, frame)
        await asking.send(text)
        error = await next_json(asking)
        for frame in published[10:]:
            server.publish_frame(0, frame)
        await asking.send('{"type": "ping", "id": "still open"}')
        pong = await next_json(asking)
        watched = await next_frames(watching, len(published))

    assert error["type"] == "error"
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert (pong["type"], pong["id"]) == ("pong", "still open")
    assert watched == published


async def test_binary_message_gets_an_error_then_close_1003_others_unaffected(
        start_server: StartServer) -> None:
    """A client that sends a binary message is told why and closed with 1003; another client
    keeps receiving every frame."""
    server = start_server(queue_depth=64)
    published = [spectrum_frame(sequence) for sequence in range(10)]

    async with client(server) as offender, client(server) as watching:
        await offender.send(b"\x00\x01binary")
        error = await next_json(offender)
        code = await close_code_seen(offender)
        for frame in published:
            server.publish_frame(0, frame)
        watched = await next_frames(watching, len(published))

    assert (error["type"], error["code"]) == ("error", "binary_not_supported")
    assert code == 1003
    assert watched == published


async def test_request_over_4096_bytes_closes_with_1009_others_unaffected(
        start_server: StartServer) -> None:
    """A request of exactly 4096 bytes is answered; one byte more closes that client with
    1009, and another client keeps receiving every frame."""
    server = start_server(queue_depth=64)
    published = [spectrum_frame(sequence) for sequence in range(10)]

    def ping_of_size(size: int) -> str:
        text = '{"type":"ping","id":"%s"}' % ("x" * size)
        return '{"type":"ping","id":"%s"}' % ("x" * (size - (len(text) - size)))

    largest, too_large = ping_of_size(MAX_CLIENT_MESSAGE_BYTES), ping_of_size(4097)
    assert (len(largest), len(too_large)) == (4096, 4097)
    async with client(server) as offender, client(server) as watching:
        await offender.send(largest)
        pong = await next_json(offender)
        await offender.send(too_large)
        code = await close_code_seen(offender)
        for frame in published:
            server.publish_frame(0, frame)
        watched = await next_frames(watching, len(published))

    assert pong["type"] == "pong" and pong["id"] == json.loads(largest)["id"]
    assert code == 1009
    assert watched == published


async def test_healthz_reports_status_and_client_count(
        start_server: StartServer, wait_until: Callable[..., Any]) -> None:
    """GET /healthz on the WebSocket port returns JSON with the number of connected clients."""
    server = start_server()
    url = f"http://127.0.0.1:{server.port}/healthz"

    def get() -> tuple[int, str, dict[str, Any]]:
        with urllib.request.urlopen(url, timeout=WAIT_S) as response:
            servers.append(response.headers.get_all("Server"))
            return (response.status, response.headers["Content-Type"],
                    json.loads(response.read()))

    servers: list[list[str]] = []
    async with client(server), client(server):
        status, content_type, health = await asyncio.to_thread(get)
    await wait_until(lambda: server.hub.client_count == 0, what="the clients to leave")
    _, _, after = await asyncio.to_thread(get)

    assert (status, content_type) == (200, "application/json")
    assert servers == [[f"gr-argos/{health['version']}"]] * 2  # one Server header, not two
    assert health["status"] == "ok" and health["server"] == "gr-argos"
    assert health["clients"] == 2
    assert [s["id"] for s in health["streams"]] == [0]
    assert after["clients"] == 0


# lifecycle


async def test_stop_closes_clients_with_1001_and_leaves_no_thread(
        start_server: StartServer) -> None:
    """stop() closes every client with 1001 (going away), frees the port and ends its thread."""
    threads_before = server_threads()
    server = start_server()
    port = server.port

    async with client(server) as first, client(server) as second:
        await asyncio.to_thread(server.stop)
        codes = [await close_code_seen(ws) for ws in (first, second)]

    assert codes == [1001, 1001]
    assert not server.running
    assert server_threads() <= threads_before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()


def test_port_in_use_raises_server_error_naming_the_port(no_server_thread_left: None) -> None:
    """Starting on a port another program listens on fails with a ServerError naming it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = SpectrumServer(ServerConfig(port=port))

        with pytest.raises(ServerError, match=f"port {port} .*in use"):
            server.start()
        assert not server.running


# slow, stalled and dead clients


async def test_client_whose_message_queue_overflows_is_closed_with_1008(
        start_server: StartServer, wait_until: Callable[..., Any]) -> None:
    """A client too slow to take its JSON messages is closed with 1008 after receiving, in
    order and without a gap, the messages it did take."""
    server = start_server(message_queue_depth=4)
    raw = await asyncio.to_thread(RawClient, server.port, True)
    try:
        await wait_until(lambda: server.hub.client_count == 1, what="the raw client")
        padding = "p" * 1000
        published = 0

        def publish_two() -> None:
            nonlocal published
            for _ in range(2):  # fewer than the queue holds: only a stall can overflow it
                server.publish_message("status", {"n": published, "padding": padding})
                published += 1

        for _ in range(5000):  # bounded: 10 MB at most
            publish_two()
            stats = client_stats(server, raw.peer)  # also waits for the server to take them
            if stats is not None and stats["message_queue_depth"] >= 4:
                break  # full: the server can no longer write to this client
        else:
            raise AssertionError("the server never stopped writing to the raw client")
        publish_two()  # overflows

        frames, code = await asyncio.to_thread(raw.read_until_close)
    finally:
        raw.close()

    texts = [json.loads(payload) for opcode, payload in frames if opcode == OP_TEXT]
    numbers = [t["n"] for t in texts if t["type"] == "status"]
    assert code == 1008
    assert numbers == list(range(len(numbers)))
    assert 0 < len(numbers) < published
    await wait_until(lambda: server.hub.client_count == 0, what="the slow client to be removed")


async def test_too_slow_client_that_never_reads_is_dropped_and_others_keep_messages(
        start_server: StartServer, wait_until: Callable[..., Any]) -> None:
    """A client that stopped reading altogether is dropped once its message queue overflows,
    even with keepalive off, while a healthy client gets every message."""
    server = start_server(message_queue_depth=4, ping_interval_s=0)
    raw = await asyncio.to_thread(RawClient, server.port, True)
    try:
        async with client(server) as healthy:
            await wait_until(lambda: server.hub.client_count == 2, what="both clients")
            padding = "p" * 1000
            published = 0
            for _ in range(5000):  # bounded: 5 MB at most
                server.publish_message("status", {"n": published, "padding": padding})
                published += 1
                if client_stats(server, raw.peer) is None:
                    break  # dropped
                assert (await next_json(healthy))["n"] == published - 1
            await wait_until(lambda: client_stats(server, raw.peer) is None,
                             what="the client that never reads to be dropped")
            totals = server.stats()["total"]
            assert totals["messages_dropped"] >= 1
            server.publish_message("status", {"n": "after"})
            while (await next_json(healthy))["n"] != "after":
                pass
    finally:
        raw.close()


async def test_stalled_client_loses_only_its_own_frames_with_bounded_memory(
        start_server: StartServer, wait_until: Callable[..., Any]) -> None:
    """With a client that stopped reading, ten healthy clients still get every frame (missed
    0, consecutive sequences) while the stalled one's queue stays within queue_depth and its
    drops are counted."""
    queue_depth, healthy_count = 64, 10
    min_frames, max_frames = 150, 900  # ~5 s at 30 fps; the cap bounds a failing run
    server = start_server(queue_depth=queue_depth)
    published: list[bytes] = []
    received: list[list[bytes]] = [[] for _ in range(healthy_count)]
    samples: list[dict[str, Any]] = []

    async def read(ws: ClientConnection, into: list[bytes]) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if isinstance(message, bytes):
                    into.append(message)

    def produce(stalled_peer: str) -> None:
        for sequence in range(max_frames):
            frame = spectrum_frame(sequence)
            published.append(frame)
            server.publish_frame(0, frame)
            if sequence % 10 == 0:
                stats = client_stats(server, stalled_peer)
                assert stats is not None, "the stalled client was disconnected"
                samples.append(stats)
                if sequence >= min_frames and stats["frames_dropped"] > 0:
                    return
            time.sleep(1 / 30)

    async with contextlib.AsyncExitStack() as stack:
        healthy = [await stack.enter_async_context(client(server))
                   for _ in range(healthy_count)]
        stalled = await asyncio.to_thread(RawClient, server.port, True)
        stack.callback(stalled.close)
        readers = [asyncio.create_task(read(ws, into)) for ws, into in zip(healthy, received)]
        await wait_until(lambda: server.hub.client_count == healthy_count + 1)

        await asyncio.to_thread(produce, stalled.peer)
        await wait_until(lambda: all(len(r) == len(published) for r in received),
                         what="every healthy client to receive every frame")
        final = client_stats(server, stalled.peer)
        for reader in readers:
            reader.cancel()

    for frames in received:
        assert frames == published
        decoded = [decode_frame(f) for f in frames]
        assert [f.sequence for f in decoded] == list(range(len(published)))
        assert all(f.missed == 0 for f in decoded)
    assert final is not None
    assert max(s["queue_depth"] for s in samples + [final]) <= queue_depth
    assert final["frames_dropped"] > 0
    assert final["frames_dropped"] >= max(s["frames_dropped"] for s in samples)
    # Every frame is sent, dropped or queued (one may be half-written to the socket).
    accounted = final["frames_sent"] + final["frames_dropped"] + final["queue_depth"]
    assert len(published) - 1 <= accounted <= len(published)


async def test_client_that_takes_nothing_for_the_keepalive_time_is_aborted(
        start_server: StartServer, wait_until: Callable[..., Any]) -> None:
    """A client whose socket stays full while frames wait for it is aborted after
    ping_interval + ping_timeout (its ping could not get through), counted as stalled;
    a healthy client keeps every frame."""
    server = start_server(queue_depth=8, ping_interval_s=2.0, ping_timeout_s=1.0)
    published = 0

    def publish(count: int) -> None:
        nonlocal published
        for _ in range(count):
            server.publish_frame(0, spectrum_frame(published))
            published += 1

    async with client(server) as healthy:
        received: list[bytes] = []

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in healthy:
                    if isinstance(message, bytes):
                        received.append(message)

        reader = asyncio.create_task(read())
        stalled = await asyncio.to_thread(RawClient, server.port, True)
        try:
            def stalled_gone() -> bool:
                publish(4)  # frames keep coming, as from a radio
                return client_stats(server, stalled.peer) is None

            await wait_until(stalled_gone, timeout=60, what="the stalled client to be aborted")
            await wait_until(lambda: len(received) == published,
                             what="the healthy client to get every frame")
        finally:
            stalled.close()
            reader.cancel()

    assert server.counters.closed_by_policy["stalled"] == 1
    assert [decode_frame(f).sequence for f in received] == list(range(published))
    assert all(decode_frame(f).missed == 0 for f in received)


async def test_stop_with_a_client_that_stopped_reading_still_ends_the_thread(
        start_server: StartServer) -> None:
    """stop() returns and leaves no thread even when a client stopped reading mid-stream, and
    the healthy clients still see 1001."""
    threads_before = server_threads()
    server = start_server(queue_depth=8, ping_interval_s=0)  # no keepalive to break the stall

    def fill_until_stalled(stalled_peer: str) -> None:
        for sequence in range(10_000):
            server.publish_frame(0, spectrum_frame(sequence))
            stats = client_stats(server, stalled_peer)
            if stats is not None and stats["queue_depth"] == 8 and stats["frames_dropped"] > 0:
                return  # the server's sends to it are blocked: its socket is full
            time.sleep(0.005)
        raise AssertionError("the stalled client never dropped a frame")

    async with client(server) as healthy:
        reading = asyncio.create_task(close_code_seen(healthy))
        stalled = await asyncio.to_thread(RawClient, server.port, True)
        try:
            await asyncio.to_thread(fill_until_stalled, stalled.peer)
            await asyncio.to_thread(server.stop)
            # Checked while the stalled client is still connected and still not reading.
            threads_left = server_threads() - threads_before
            code = await reading
        finally:
            stalled.close()

    assert not threads_left
    assert not server.running
    assert code == 1001


async def test_client_that_never_answers_pings_is_removed(
        start_server: StartServer, wait_until: Callable[..., Any]) -> None:
    """A client that stops answering WebSocket pings is closed (1011) and removed, while
    clients that answer stay connected."""
    server = start_server(ping_interval_s=0.5, ping_timeout_s=1.0)
    async with client(server) as first, client(server) as second:
        dead = await asyncio.to_thread(RawClient, server.port)
        try:
            await wait_until(lambda: server.hub.client_count == 3, what="three clients")
            await wait_until(lambda: server.hub.client_count == 2, timeout=40,
                             what="the dead client to be removed")
            frames, code = await asyncio.to_thread(dead.read_until_close)
        finally:
            dead.close()
        for ws in (first, second):
            await ws.send('{"type": "ping", "id": 1}')
            assert (await next_json(ws))["type"] == "pong"

    assert code == 1011
    assert any(opcode == OP_PING for opcode, _ in frames)


async def test_clients_choose_encodings_each_encoded_once_per_frame(
        start_server: StartServer) -> None:
    """One client picks uint8+deflate in the URL, two ask with set_encoding (one with bad
    values first, answered by an error on an open connection): each gets its own format,
    and the server encodes uint8+deflate once per frame, not once per client."""
    server = start_server(queue_depth=64)
    async with connect(server.url + "?encoding=uint8&compress=1", open_timeout=WAIT_S) as url_ws, \
            client(server) as asked, client(server) as cdb:
        assert (await next_json(url_ws))["encodings"] == ["float32", "int16", "uint8"]
        assert await next_json(url_ws) == {"type": "encoding", "encoding": "uint8",
                                           "compress": True, "step_db": 0.0, "second_trace": False}
        await cdb.send(json.dumps({"type": "set_encoding", "encoding": "float16"}))
        error = await next_json(cdb)
        assert error["code"] == "bad_message" and "uint8" in error["message"]
        await cdb.send(json.dumps({"type": "set_encoding", "encoding": "int16"}))
        assert (await next_json(cdb))["encoding"] == "int16"
        await asked.send(json.dumps({"type": "set_encoding", "encoding": "uint8",
                                     "compress": True}))
        assert await next_json(asked) == {"type": "encoding", "encoding": "uint8",
                                          "compress": True, "step_db": 0.0, "second_trace": False}
        power = np.repeat(np.linspace(-120.0, -20.0, 128, dtype=np.float32), 16)
        for sequence in range(4):
            server.publish_frame(0, encode_frame(power, center_freq_hz=1e6, span_hz=1e6,
                                                 timestamp_ns=0, sequence=sequence))
        frames = {}
        for name, ws in [("url", url_ws), ("asked", asked), ("cdb", cdb)]:
            async with asyncio.timeout(WAIT_S):
                frames[name] = [decode_frame(await ws.recv()) for _ in range(4)]

    assert server.stats()["total"]["encodes"]["uint8+deflate"] == 4
    for frame in frames["url"] + frames["asked"]:
        assert (frame.encoding, frame.flags) == (2, 1)
        assert np.abs(frame.power_db - power).max() <= 100 / 255 / 2 + 1e-4
    for frame in frames["cdb"]:
        assert (frame.encoding, frame.flags) == (1, 0)
        assert np.abs(frame.power_db - power).max() <= 0.005 + 1e-5
    assert [f.sequence for f in frames["asked"]] == [0, 1, 2, 3]


async def test_stalled_quantized_compressed_client_gets_the_right_missed_count(
        start_server: StartServer) -> None:
    """A uint8+deflate client that stops reading loses its oldest frames; once it reads
    again, missed plus the frames it got account for every frame published."""
    server = start_server(queue_depth=4, ping_interval_s=0)
    raw = await asyncio.to_thread(RawClient, server.port, True, "/?encoding=uint8&compress=1")
    try:
        rng = np.random.default_rng(7)
        ramp = np.repeat(np.linspace(-120.0, -20.0, 64, dtype=np.float32), 32)
        published = 0

        def publish_until_dropped() -> None:
            nonlocal published
            for _ in range(2000):  # bounded: ~3 MB of compressed frames at most
                for _ in range(16):
                    power = ramp + rng.normal(0.0, 0.5, ramp.size).astype(np.float32)
                    server.publish_frame(0, encode_frame(power, center_freq_hz=1e6,
                                                         span_hz=1e6, timestamp_ns=0,
                                                         sequence=published))
                    published += 1
                stats = client_stats(server, raw.peer)  # lets the hub drain: no ingress drop
                if stats is not None and stats["frames_dropped"] > 0:
                    return
            raise AssertionError("the stalled client never lost a frame")

        await asyncio.to_thread(publish_until_dropped)

        def read_to_the_last() -> list[Any]:
            frames: list[Any] = []
            while not frames or frames[-1].sequence < published - 1:
                opcode, payload = raw.read_frame()
                if opcode != OP_TEXT:
                    frames.append(decode_frame(payload))
            return frames

        frames = await asyncio.to_thread(read_to_the_last)
    finally:
        raw.close()

    assert all((f.encoding, f.flags) == (2, 1) for f in frames)
    assert any(f.missed > 0 for f in frames)
    assert server.stats()["total"]["ingress_dropped"] == 0
    assert frames[0].sequence == frames[0].missed  # nothing lost before the first either
    assert sum(f.missed for f in frames) + len(frames) == published
    for before, after in zip(frames, frames[1:]):
        assert after.missed == after.sequence - before.sequence - 1


# permessage-deflate (a compatibility option) and a bad encoding request


def _negotiated(ws: ClientConnection) -> str:
    """The Sec-WebSocket-Extensions the server answered with ("" for none)."""
    assert ws.response is not None
    return ws.response.headers.get("Sec-WebSocket-Extensions", "")


async def test_permessage_deflate_on_is_negotiated_and_frames_arrive_intact(
        start_server: StartServer) -> None:
    """With permessage_deflate on, a client offering it (websockets does by default) gets
    it, with the lean window, and receives every frame byte for byte."""
    server = start_server(queue_depth=64, permessage_deflate=True)
    async with client(server) as ws:
        extensions = _negotiated(ws)
        assert "permessage-deflate" in extensions
        assert "server_max_window_bits=12" in extensions
        assert [type(e).__name__ for e in ws.protocol.extensions] == ["PerMessageDeflate"]
        published = [spectrum_frame(sequence) for sequence in range(10)]
        for frame in published:
            server.publish_frame(0, frame)
        assert await next_frames(ws, len(published)) == published


async def test_permessage_deflate_is_not_negotiated_for_compress_once_clients(
        start_server: StartServer) -> None:
    """A client that asked for compress-once frames in its URL gets no permessage-deflate
    (its frames are not compressed twice), and gets its deflated frames."""
    server = start_server(queue_depth=64, permessage_deflate=True)
    async with connect(server.url + "?encoding=uint8&compress=1", open_timeout=WAIT_S) as ws:
        assert _negotiated(ws) == ""
        assert ws.protocol.extensions == []
        assert (await next_json(ws))["type"] == "hello"
        assert await next_json(ws) == {"type": "encoding", "encoding": "uint8",
                                       "compress": True, "step_db": 0.0, "second_trace": False}
        power = np.repeat(np.linspace(-120.0, -20.0, 128, dtype=np.float32), 16)
        for sequence in range(3):
            server.publish_frame(0, encode_frame(power, center_freq_hz=1e6, span_hz=1e6,
                                                 timestamp_ns=0, sequence=sequence))
        frames = [decode_frame(frame) for frame in await next_frames(ws, 3)]

    assert [(f.encoding, f.flags, f.sequence) for f in frames] == [(2, 1, 0), (2, 1, 1),
                                                                    (2, 1, 2)]
    assert np.abs(frames[0].power_db - power).max() <= 100 / 255 / 2 + 1e-4


async def test_permessage_deflate_is_off_by_default(start_server: StartServer) -> None:
    """By default the server negotiates no permessage-deflate, whatever the client offers."""
    server = start_server()
    assert server.config.permessage_deflate is False
    async with client(server) as ws:
        assert _negotiated(ws) == ""
        assert ws.protocol.extensions == []


async def test_an_unknown_encoding_is_refused_and_the_stream_default_kept(
        start_server: StartServer) -> None:
    """set_encoding with "float16" gets an error naming the accepted encodings; the
    connection stays open and keeps receiving the stream's default encoding."""
    server = start_server(queue_depth=64)
    server.update_stream(0, encoding=1)  # int16: a default that is not float32
    async with client(server) as ws:
        await ws.send(json.dumps({"type": "set_encoding", "encoding": "float16"}))
        error = await next_json(ws)
        assert error["type"] == "error" and error["code"] == "bad_message"
        assert "float16" in error["message"]
        for name in ("float32", "int16", "uint8"):
            assert f'"{name}"' in error["message"]
        power = np.linspace(-120.0, -20.0, 2048, dtype=np.float32)
        for sequence in range(3):
            server.publish_frame(0, encode_frame(power, center_freq_hz=1e6, span_hz=1e6,
                                                 timestamp_ns=0, sequence=sequence))
        frames = [decode_frame(frame) for frame in await next_frames(ws, 3)]

    assert [(f.encoding, f.flags) for f in frames] == [(1, 0)] * 3
    assert [f.sequence for f in frames] == [0, 1, 2]
    assert np.abs(frames[0].power_db - power).max() <= 0.005 + 1e-5


# a fixed uint8 step (step_db)


async def test_a_fixed_step_asked_for_in_the_url_or_set_encoding_reaches_the_frames(
        start_server: StartServer) -> None:
    """step_db in the URL query or in set_encoding gives that client uint8 frames with that
    step on aligned levels (confirmed in the encoding reply and in its stats), while a
    client with the automatic step gets its own variant of the same frames."""
    server = start_server(queue_depth=64)
    async with connect(server.url + "?encoding=uint8&compress=1&step_db=1",
                       open_timeout=WAIT_S) as url_ws, \
            client(server) as asked, client(server) as automatic:
        assert (await next_json(url_ws))["type"] == "hello"
        assert await next_json(url_ws) == {"type": "encoding", "encoding": "uint8",
                                           "compress": True, "step_db": 1.0, "second_trace": False}
        await asked.send(json.dumps({"type": "set_encoding", "encoding": "uint8",
                                     "step_db": 2.5, "second_trace": False}))
        assert await next_json(asked) == {"type": "encoding", "encoding": "uint8",
                                          "compress": False, "step_db": 2.5, "second_trace": False}
        await automatic.send(json.dumps({"type": "set_encoding", "encoding": "uint8",
                                         "compress": True}))
        assert (await next_json(automatic))["step_db"] == 0.0
        await asked.send(json.dumps({"type": "stats"}))
        stats = (await next_json(asked))["client"]
        assert (stats["format"], stats["step_db"]) == ("uint8", 2.5)
        power = np.repeat(np.linspace(-120.3, -20.0, 128, dtype=np.float32), 16)
        for sequence in range(3):
            server.publish_frame(0, encode_frame(power, center_freq_hz=1e6, span_hz=1e6,
                                                 timestamp_ns=0, sequence=sequence))
        frames = {}
        for name, ws in [("url", url_ws), ("asked", asked), ("automatic", automatic)]:
            frames[name] = [(struct.unpack_from("<ff", frame, 56), decode_frame(frame))
                            for frame in await next_frames(ws, 3)]

    for name, step in [("url", 1.0), ("asked", 2.5)]:
        for (offset_db, step_db), frame in frames[name]:
            assert (frame.encoding, step_db) == (2, step)
            assert offset_db == np.floor(power.min() / step) * step
            assert np.abs(frame.power_db - power).max() <= step / 2 + 1e-4
    for (offset_db, step_db), frame in frames["automatic"]:
        assert (frame.encoding, frame.flags, offset_db) == (2, 1, np.float32(-120.3))
        assert step_db == pytest.approx(100.3 / 255, rel=1e-6)
    encodes = server.stats()["total"]["encodes"]
    assert set(encodes) <= {"uint8", "uint8+deflate"}  # the step is never a label


@pytest.mark.parametrize("bad", [0.001, 25, -1, "1", True, None])
async def test_a_bad_step_is_refused_naming_the_range_and_the_format_kept(
        start_server: StartServer, bad: Any) -> None:
    """set_encoding with a step that is not 0 or 0.01..20 dB (or not a number) gets an
    error naming the range, and the client keeps the format it had."""
    server = start_server(queue_depth=64)
    async with client(server) as ws:
        await ws.send(json.dumps({"type": "set_encoding", "encoding": "int16"}))
        assert (await next_json(ws))["encoding"] == "int16"
        await ws.send(json.dumps({"type": "set_encoding", "encoding": "uint8",
                                  "step_db": bad}))
        error = await next_json(ws)
        assert error["type"] == "error" and error["code"] == "bad_message"
        assert "step_db" in error["message"] and "0.01" in error["message"]
        assert "20" in error["message"]
        server.publish_frame(0, encode_frame(np.linspace(-120.0, -20.0, 64), center_freq_hz=1e6,
                                             span_hz=1e6, timestamp_ns=0, sequence=0))
        (frame,) = await next_frames(ws, 1)

    assert decode_frame(frame).encoding == 1


async def test_a_bad_step_in_the_url_is_refused_and_the_stream_default_kept(
        start_server: StartServer) -> None:
    """?step_db=50 gets an error naming the range; frames keep the stream's default."""
    server = start_server(queue_depth=64)
    async with connect(server.url + "?encoding=uint8&step_db=50", open_timeout=WAIT_S) as ws:
        assert (await next_json(ws))["type"] == "hello"
        error = await next_json(ws)
        assert error["code"] == "bad_message" and "from 0.01 to 20" in error["message"]
        server.publish_frame(0, encode_frame(np.linspace(-120.0, -20.0, 64), center_freq_hz=1e6,
                                             span_hz=1e6, timestamp_ns=0, sequence=0))
        (frame,) = await next_frames(ws, 1)

    assert decode_frame(frame).encoding == 0


async def test_a_stream_default_step_applies_to_clients_that_chose_none(
        start_server: StartServer) -> None:
    """A stream whose default is uint8 with step_db 1 sends such frames to a client that
    chose nothing."""
    server = start_server(queue_depth=64)
    server.update_stream(0, encoding=2, step_db=1.0)
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        hello = await next_json(ws)
        server.publish_frame(0, encode_frame(np.linspace(-120.4, -20.0, 64), center_freq_hz=1e6,
                                             span_hz=1e6, timestamp_ns=0, sequence=0))
        (frame,) = await next_frames(ws, 1)

    assert (hello["streams"][0]["encoding"], hello["streams"][0]["step_db"]) == ("uint8", 1.0)
    assert struct.unpack_from("<ff", frame, 56) == (-121.0, 1.0)
    assert decode_frame(frame).encoding == 2
