# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for gr_argos.server.hub: per-client queues, drop-oldest, messages, ingress, counters.

The hub is plain code: these tests drive it on the test's own event loop, with no sockets.
Producers call it like a GNU Radio block would, from this thread or from other threads, and
each client's outlet behaves as the server's connection does: it takes an item at once when
it can, and otherwise is told that items are queued and sends them with ``pop`` and
``record_sent``, in order.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from gr_argos.server.hub import BroadcastHub, ClientQueue
from gr_argos.server.views import View, ViewSlice
from gr_argos.protocol import (
    FLAG_SECOND_TRACE,
    ENCODING_INT16,
    ENCODING_UINT8,
    FrameFormat,
    SpectrumFrame,
    decode_frame,
    encode_frame,
    with_missed,
)


def frame(sequence: int, stream_id: int = 0) -> bytes:
    """A small encoded frame whose payload also says its stream and sequence."""
    return encode_frame(
        np.array([stream_id, sequence, -120.5, 3.25], dtype=np.float32),
        center_freq_hz=100e6, span_hz=2e6, timestamp_ns=1_700_000_000_000_000_000 + sequence,
        sequence=sequence, stream_id=stream_id,
    )


class FakeOutlet:
    """A client's connection as the hub sees it.

    While ``open`` (and nothing of its own is ``in_flight``) it takes each item at once;
    otherwise the hub queues the item and calls :meth:`queued`, and :meth:`send_queued`
    sends the queue as the server's sender does.
    """

    def __init__(self, hub: BroadcastHub, is_open: bool) -> None:
        self.hub = hub
        self.open = is_open
        self.in_flight = False
        self.client: ClientQueue | None = None
        self.written: list[tuple[bytes, bytes, bool]] = []
        self.queued_calls = 0
        self.too_slow_calls = 0

    def write_now(self, data: bytes, wire: bytes, text: bool) -> bool:
        if not self.open or self.in_flight:
            return False
        self.written.append((data, wire, text))
        return True

    def queued(self) -> None:
        self.queued_calls += 1

    def too_slow(self) -> None:
        self.too_slow_calls += 1

    def send_queued(self) -> list[bytes | str]:
        assert self.client is not None
        items: list[bytes | str] = []
        while not self.client.too_slow and (item := self.client.pop()) is not None:
            items.append(item)
            self.hub.record_sent(self.client, item)
        return items


def add_client(hub: BroadcastHub, peer: str, is_open: bool = False) -> ClientQueue:
    """A client whose outlet takes items at once (``is_open``) or is behind (queues all)."""
    outlet = FakeOutlet(hub, is_open)
    client = outlet.client = hub.add_client(peer, outlet)
    return client


def outlet_of(client: ClientQueue) -> FakeOutlet:
    assert isinstance(client.outlet, FakeOutlet)
    return client.outlet


async def attached_hub(queue_depth: int = 8, message_queue_depth: int = 256,
                       **settings: Any) -> BroadcastHub:
    """A hub bound to the running loop, as the server binds it."""
    hub = BroadcastHub(queue_depth, message_queue_depth, **settings)
    hub.attach(asyncio.get_running_loop())
    return hub


async def let_hub_drain() -> None:
    """Yield once: the loop runs the drain that publish() scheduled before this call."""
    await asyncio.sleep(0)


async def receive_all(hub: BroadcastHub, client: ClientQueue) -> list[bytes | str]:
    """Everything queued for the client now, sent in the order the server's sender would."""
    return outlet_of(client).send_queued()


def decoded(items: list[bytes | str]) -> list[SpectrumFrame]:
    return [decode_frame(item) for item in items if isinstance(item, bytes)]


async def test_full_queue_drops_oldest_and_next_frame_reports_missed() -> None:
    """A client whose queue is full loses its oldest frames and its next frame says how many."""
    hub = await attached_hub(queue_depth=3)
    client = add_client(hub, "slow")
    published = [frame(sequence) for sequence in range(5)]
    for data in published:
        hub.publish_frame(0, data)
    await let_hub_drain()

    items = await receive_all(hub, client)

    assert [(f.sequence, f.missed) for f in decoded(items)] == [(2, 2), (3, 0), (4, 0)]
    assert items == [with_missed(published[2], 2), published[3], published[4]]
    assert client.frames_dropped == 2


async def test_missed_is_counted_per_stream() -> None:
    """Drops are reported per stream: each stream's next frame carries only its own losses."""
    hub = await attached_hub(queue_depth=2)
    client = add_client(hub, "slow")
    for stream_id, sequence in [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]:
        hub.publish_frame(stream_id, frame(sequence, stream_id))
    await let_hub_drain()

    first = decoded(await receive_all(hub, client))
    hub.publish_frame(0, frame(3, 0))
    await let_hub_drain()
    second = decoded(await receive_all(hub, client))

    assert [(f.stream_id, f.sequence, f.missed) for f in first] == [(1, 1, 1), (0, 2, 2)]
    assert [(f.stream_id, f.sequence, f.missed) for f in second] == [(0, 3, 0)]
    assert client.frames_dropped == 3


async def test_messages_are_never_displaced_and_come_before_frames() -> None:
    """JSON messages survive any number of frames and are sent, in order, before frames."""
    hub = await attached_hub(queue_depth=2)
    client = add_client(hub, "slow")
    hub.publish_frame(0, frame(0))
    hub.publish_message('{"type":"status","n":1}')
    for sequence in range(1, 10):
        hub.publish_frame(0, frame(sequence))
    hub.publish_message('{"type":"status","n":2}')
    await let_hub_drain()

    items = await receive_all(hub, client)

    assert items[:2] == ['{"type":"status","n":1}', '{"type":"status","n":2}']
    assert [(f.sequence, f.missed) for f in decoded(items[2:])] == [(8, 8), (9, 0)]


async def test_message_queue_overflow_marks_only_that_client_too_slow() -> None:
    """A client whose message queue overflows is told once to close and gets nothing more;
    others carry on."""
    hub = await attached_hub(message_queue_depth=2)
    slow = add_client(hub, "slow")
    reading = add_client(hub, "reading")
    for n in range(4):
        hub.publish_message(f'{{"type":"status","n":{n}}}')
        await let_hub_drain()
        assert await receive_all(hub, reading) == [f'{{"type":"status","n":{n}}}']

    assert (outlet_of(slow).too_slow_calls, outlet_of(reading).too_slow_calls) == (1, 0)
    assert slow.too_slow and slow.messages_dropped == 2
    assert await receive_all(hub, slow) == []
    hub.publish_frame(0, frame(0))
    await let_hub_drain()
    assert await receive_all(hub, reading) == [frame(0)]


async def test_replies_to_one_client_overflow_its_queue_alone() -> None:
    """Replies queued for one client (send_to) count against its message queue only."""
    hub = await attached_hub(message_queue_depth=2)
    asking = add_client(hub, "asking")
    other = add_client(hub, "other")
    for n in range(3):
        hub.send_to(asking, f'{{"type":"pong","id":{n}}}')

    assert (outlet_of(asking).too_slow_calls, outlet_of(other).too_slow_calls) == (1, 0)
    assert len(other.messages) == 0
    assert await receive_all(hub, asking) == []


async def test_publish_from_many_threads_is_safe_and_counts_every_frame() -> None:
    """Frames published from many threads at once are each counted, and delivered or counted
    as dropped, in each producer's order."""
    threads_count, frames_per_thread = 8, 400
    hub = await attached_hub(queue_depth=threads_count * frames_per_thread)
    client = add_client(hub, "reader")
    frames_by_thread = [[frame(seq, stream_id) for seq in range(frames_per_thread)]
                        for stream_id in range(threads_count)]
    start = threading.Barrier(threads_count)

    def produce(frames: list[bytes], stream_id: int) -> None:
        start.wait()
        for data in frames:
            hub.publish_frame(stream_id, data)

    producers = [threading.Thread(target=produce, args=(frames, stream_id))
                 for stream_id, frames in enumerate(frames_by_thread)]
    for producer in producers:
        producer.start()
    # The loop keeps draining while this coroutine waits for the producers in a thread.
    await asyncio.to_thread(lambda: [producer.join() for producer in producers])
    await let_hub_drain()
    items = await receive_all(hub, client)
    received = decoded(items)

    assert hub.frames_in == threads_count * frames_per_thread
    assert len(received) + hub.ingress_dropped == hub.frames_in
    assert client.frames_dropped == 0
    assert all(item == frames_by_thread[f.stream_id][f.sequence]
               for item, f in zip(items, received))
    for stream_id in range(threads_count):
        sequences = [f.sequence for f in received if f.stream_id == stream_id]
        assert sequences == sorted(set(sequences)), f"stream {stream_id} out of order"


async def test_ingress_overflow_while_loop_is_blocked_drops_oldest_frames_keeps_messages() -> None:
    """If the loop stalls, the ingress keeps the newest frames and every message, and counts
    the frames it dropped."""
    hub = await attached_hub(ingress_depth=4, queue_depth=100)
    client = add_client(hub, "reader")

    def produce() -> None:
        hub.publish_message('{"type":"status","n":1}')
        for sequence in range(10):
            hub.publish_frame(0, frame(sequence))
        hub.publish_message('{"type":"status","n":2}')

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join()  # deliberately blocks the event loop while the producer runs
    await let_hub_drain()
    items = await receive_all(hub, client)

    assert items[:2] == ['{"type":"status","n":1}', '{"type":"status","n":2}']
    assert [f.sequence for f in decoded(items[2:])] == [6, 7, 8, 9]
    assert hub.ingress_dropped == 6
    assert hub.frames_in == 10 and hub.messages_in == 2


def test_publish_before_attach_never_raises_and_counts_unsent() -> None:
    """Publishing to a hub with no loop yet is harmless and counted as unsent."""
    hub = BroadcastHub(8, 256)

    hub.publish_frame(0, frame(0))
    hub.publish_message('{"type":"status"}')

    assert hub.unsent_after_stop == 2
    assert hub.stats()["total"]["unsent_after_stop"] == 2


async def test_publish_after_close_never_raises_and_counts_unsent() -> None:
    """Frames and messages published after the hub closed are counted as unsent, never
    delivered, even while a drain from before the close is still pending."""
    hub = await attached_hub()
    client = add_client(hub, "reader")
    hub.publish_frame(0, frame(0))  # schedules a drain that runs only after close()
    hub.close()
    hub.publish_frame(0, frame(1))
    hub.publish_message('{"type":"status"}')
    await let_hub_drain()

    assert hub.unsent_after_stop == 3
    assert len(client.frames) == 0 and len(client.messages) == 0
    assert outlet_of(client).written == [] and outlet_of(client).queued_calls == 0


def test_publish_after_the_loop_closed_never_raises_and_counts_unsent() -> None:
    """Publishing to a hub whose event loop has closed is harmless and counted as unsent."""
    loop = asyncio.new_event_loop()
    hub = BroadcastHub(8, 256)
    hub.attach(loop)
    loop.close()

    hub.publish_frame(0, frame(0))
    hub.publish_message('{"type":"status"}')

    assert hub.unsent_after_stop == 2


async def test_a_removed_client_gets_nothing_more() -> None:
    """After remove_client the client's outlet is neither written to nor told of items."""
    hub = await attached_hub()
    removed = add_client(hub, "removed", is_open=True)
    outlet = outlet_of(removed)
    hub.remove_client(removed)
    hub.publish_frame(0, frame(0))
    hub.publish_message('{"type":"status"}')
    await let_hub_drain()

    assert outlet.written == [] and outlet.queued_calls == 0
    assert removed.outlet is None


async def test_stats_totals_include_departed_clients() -> None:
    """Server totals keep counting what departed clients were sent and lost."""
    hub = await attached_hub(queue_depth=2)
    departed = add_client(hub, "departed")
    add_client(hub, "staying")
    for sequence in range(3):
        hub.publish_frame(0, frame(sequence))
    await let_hub_drain()
    await receive_all(hub, departed)  # counted as sent, as the sender counts them
    hub.remove_client(departed)

    total = hub.stats()["total"]
    clients = hub.stats()["clients"]

    assert [c["peer"] for c in clients] == ["staying"]
    assert total["frames_sent"] == 2
    assert total["bytes_sent"] == 2 * len(frame(0))
    assert total["frames_dropped"] == 2  # one for each client
    assert total["clients"] == 1 and total["clients_total"] == 2
    assert total["frames_in"] == 3
    assert total["queue_depth"] == 2  # the frames still queued for the staying client


async def test_each_variant_is_encoded_once_per_frame_whatever_the_client_count() -> None:
    """Three uint8+deflate clients and one int16 client: every frame is quantized and
    deflated once, not once per client, and each client decodes its own format."""
    hub = await attached_hub(queue_depth=16)
    compressed = [add_client(hub, f"c{i}") for i in range(3)]
    for client in compressed:
        client.frame_format = FrameFormat(ENCODING_UINT8, compress=True)
    exact = add_client(hub, "exact")
    cdb = add_client(hub, "cdb")
    cdb.frame_format = FrameFormat(ENCODING_INT16)
    power = np.repeat(np.linspace(-120.0, -20.0, 64, dtype=np.float32), 16)
    for sequence in range(5):
        hub.publish_frame(0, encode_frame(power, center_freq_hz=1e6, span_hz=1e6,
                                          timestamp_ns=0, sequence=sequence))
    await let_hub_drain()

    received = {client.peer: await receive_all(hub, client)
                for client in [*compressed, exact, cdb]}

    assert hub.stats()["total"]["encodes"] == {"uint8": 5, "uint8+deflate": 5, "int16": 5}
    assert received["c0"] == received["c1"] == received["c2"]
    assert all(a is b for a, b in zip(received["c0"], received["c1"]))  # the same bytes
    assert [f.encoding for f in decoded(received["c0"])] == [2] * 5
    assert all(f.flags == 1 for f in decoded(received["c0"]))
    assert [f.encoding for f in decoded(received["exact"])] == [0] * 5
    assert [f.encoding for f in decoded(received["cdb"])] == [1] * 5


async def test_a_fixed_step_is_its_own_variant_also_when_deflated() -> None:
    """uint8+deflate with step_db 1 and with the automatic step are two cached variants
    (the deflated one deflates its own step's levels), counted under the one name."""
    hub = await attached_hub(queue_depth=16)
    stepped = [add_client(hub, f"s{i}") for i in range(2)]
    for client in stepped:
        client.frame_format = FrameFormat(ENCODING_UINT8, compress=True, step_db=1.0)
    automatic = add_client(hub, "automatic")
    automatic.frame_format = FrameFormat(ENCODING_UINT8, compress=True)
    power = np.repeat(np.linspace(-120.2, -20.0, 64, dtype=np.float32), 16)
    for sequence in range(3):
        hub.publish_frame(0, encode_frame(power, center_freq_hz=1e6, span_hz=1e6,
                                          timestamp_ns=0, sequence=sequence))
    await let_hub_drain()

    received = {client.peer: await receive_all(hub, client) for client in [*stepped, automatic]}

    assert hub.stats()["total"]["encodes"] == {"uint8": 6, "uint8+deflate": 6}
    assert all(a is b for a, b in zip(received["s0"], received["s1"]))
    for frame in decoded(received["s0"]):
        assert (frame.flags, frame.power_db.min()) == (1, -120.0)
        assert np.all(frame.power_db == np.round(frame.power_db))  # whole-dB levels
    assert all(f.flags == 1 for f in decoded(received["automatic"]))
    assert decoded(received["automatic"])[0].power_db.min() == np.float32(-120.2)
    snapshot = stepped[0].snapshot()
    assert (snapshot["format"], snapshot["step_db"]) == ("uint8+deflate", 1.0)


async def test_frames_dropped_for_every_client_are_never_encoded() -> None:
    """Variants are made when a frame is offered or sent, so frames a stalled client lost
    in its queue cost nothing, and its next frame still reports them in missed."""
    hub = await attached_hub(queue_depth=2)
    client = add_client(hub, "stalled")
    client.frame_format = FrameFormat(ENCODING_UINT8, compress=True)
    for sequence in range(6):
        hub.publish_frame(0, frame(sequence))
    await let_hub_drain()

    frames = decoded(await receive_all(hub, client))

    assert [(f.sequence, f.missed, f.encoding) for f in frames] == [(4, 4, 2), (5, 0, 2)]
    # Frame 0 was encoded when it was offered to the outlet (which declined it: the client
    # had just fallen behind); frames 1-3 died in the queue unencoded; 4 and 5 were sent.
    assert hub.stats()["total"]["encodes"]["uint8"] == 3


async def test_a_stream_default_format_applies_to_clients_that_chose_none() -> None:
    """set_stream_format re-encodes a stream for clients without a choice of their own."""
    hub = await attached_hub()
    client = add_client(hub, "default")
    hub.set_stream_format(0, FrameFormat(ENCODING_INT16))
    hub.publish_frame(0, frame(1))
    hub.publish_frame(1, frame(1, stream_id=1))
    await let_hub_drain()

    frames = decoded(await receive_all(hub, client))

    assert [(f.stream_id, f.encoding) for f in frames] == [(0, 1), (1, 0)]


def wrap(data: bytes, text: bool) -> bytes:
    return (b"T" if text else b"B") + data


async def test_a_client_that_keeps_up_gets_items_written_at_once_in_publish_order() -> None:
    """Frames and messages go straight to the writer, in order, framed once for everyone,
    and are counted as sent; nothing waits in the queue."""
    hub = await attached_hub(wrap=wrap)
    clients = [add_client(hub, f"c{n}", is_open=True) for n in range(2)]
    connections = [outlet_of(client) for client in clients]
    hub.publish_frame(0, frame(0))
    hub.publish_message('{"type":"status"}')
    hub.publish_frame(0, frame(1))
    await let_hub_drain()

    for client, connection in zip(clients, connections):
        assert [(data, text) for data, _, text in connection.written] == [
            (frame(0), False), (b'{"type":"status"}', True), (frame(1), False)]
        assert [wire for _, wire, _ in connection.written] == [
            b"B" + frame(0), b'T{"type":"status"}', b"B" + frame(1)]
        assert not client.frames and not client.messages and connection.queued_calls == 0
        assert (client.frames_sent, client.messages_sent) == (2, 1)
    # One wire copy per frame, shared by every client.
    assert connections[0].written[0][1] is connections[1].written[0][1]


async def test_a_client_whose_connection_is_full_is_queued_then_told_what_it_missed() -> None:
    """When the outlet declines, frames queue with drop-oldest and the outlet is told; once
    the queue is sent the next frame carries the count, and direct writes resume after it."""
    hub = await attached_hub(queue_depth=2, wrap=wrap)
    client = add_client(hub, "behind", is_open=False)
    connection = outlet_of(client)
    for sequence in range(5):
        hub.publish_frame(0, frame(sequence))
    await let_hub_drain()
    assert client.frames_dropped == 3 and len(client.frames) == 2
    assert connection.queued_calls == 5  # each frame queued said so

    connection.open = True
    queued = decoded(await receive_all(hub, client))  # what the sender would send
    hub.publish_frame(0, frame(5))
    hub.publish_frame(0, frame(6))
    await let_hub_drain()

    assert [(f.sequence, f.missed) for f in queued] == [(3, 3), (4, 0)]
    assert [(decode_frame(data).sequence, decode_frame(data).missed)
            for data, _, _ in connection.written] == [(5, 0), (6, 0)]


async def test_a_frame_in_flight_is_never_overtaken() -> None:
    """While the sender has an item in flight, new frames queue behind it."""
    hub = await attached_hub()
    client = add_client(hub, "sending", is_open=True)
    connection = outlet_of(client)
    connection.in_flight = True
    hub.publish_frame(0, frame(0))
    hub.publish_frame(0, frame(1))
    await let_hub_drain()
    assert connection.written == [] and len(client.frames) == 2
    connection.in_flight = False
    hub.publish_frame(0, frame(2))  # the queue is not empty: it waits its turn
    await let_hub_drain()
    assert connection.written == []
    assert [f.sequence for f in decoded(await receive_all(hub, client))] == [0, 1, 2]


async def test_a_second_trace_goes_only_to_clients_that_asked_for_it() -> None:
    """Frames published with a second trace reach a client that chose nothing, or a format
    without second_trace, as v1 frames of the first trace alone; a client that asked gets
    both, in its own encoding; a frame without a second trace goes to it unchanged."""
    hub = await attached_hub(queue_depth=16)
    plain = add_client(hub, "plain")
    uint8 = add_client(hub, "uint8")
    uint8.frame_format = FrameFormat(ENCODING_UINT8, compress=True)
    both = add_client(hub, "both")
    both.frame_format = FrameFormat(ENCODING_UINT8, compress=True, second_trace=True)
    exact_both = add_client(hub, "exact_both")
    exact_both.frame_format = FrameFormat(second_trace=True)
    peak = np.repeat(np.linspace(-90.0, -20.0, 64, dtype=np.float32), 16)
    average = peak - 12.0
    for sequence in range(3):
        hub.publish_frame(0, encode_frame(peak, center_freq_hz=1e6, span_hz=1e6,
                                          timestamp_ns=0, sequence=sequence,
                                          detector="peak", second_power_db=average,
                                          second_detector="average"))
    hub.publish_frame(0, encode_frame(peak, center_freq_hz=1e6, span_hz=1e6, timestamp_ns=0,
                                      sequence=3, detector="average"))
    await let_hub_drain()

    received = {client.peer: decoded(await receive_all(hub, client))
                for client in (plain, uint8, both, exact_both)}

    for peer in ("plain", "uint8"):
        assert [f.flags & FLAG_SECOND_TRACE for f in received[peer]] == [0] * 4, peer
        assert all(f.second_power_db is None and f.second_detector == "" for f in
                   received[peer])
        assert [f.detector for f in received[peer]] == ["peak"] * 3 + ["average"]
    np.testing.assert_array_equal(received["plain"][0].power_db, peak)
    for peer, tolerance in (("both", 0.2), ("exact_both", 0.0)):
        frames = received[peer]
        assert [f.second_detector for f in frames] == ["average"] * 3 + [""]
        for f in frames[:3]:
            assert f.second_power_db is not None
            np.testing.assert_allclose(f.power_db, peak, atol=tolerance)
            np.testing.assert_allclose(f.second_power_db, average, atol=tolerance)
        assert frames[3].second_power_db is None
    assert all(f.encoding == ENCODING_UINT8 for f in received["both"])


async def test_a_new_view_gets_the_current_frame_at_once_only_when_nothing_is_queued() -> None:
    """After a view change the hub sends the stream's latest frame again, cut to the new
    view, to a client that keeps up; a client that is behind or has lost frames gets
    nothing extra (its queued frames come in the new view), and nothing is dropped."""
    hub = await attached_hub(queue_depth=4, wrap=wrap)
    keeping_up = add_client(hub, "keeps up", is_open=True)
    behind = add_client(hub, "behind", is_open=False)
    assert not hub.send_current_frame(keeping_up, 0)  # no frame of the stream yet
    hub.publish_frame(0, frame(7))
    await let_hub_drain()
    cut = View(ViewSlice(1, 0, 2, 4))
    keeping_up.views[0] = behind.views[0] = cut

    assert hub.send_current_frame(keeping_up, 0)
    assert not hub.send_current_frame(behind, 0)
    resent = decode_frame(outlet_of(keeping_up).written[-1][0])
    assert (resent.sequence, resent.bin_count, resent.missed) == (7, 2, 0)
    assert resent.power_db.tolist() == [7.0, 3.25]  # the maximum of each pair of bins
    assert [f.sequence for f in decoded(await receive_all(hub, behind))] == [7]
    assert keeping_up.frames_dropped == behind.frames_dropped == 0
    assert hub.stats()["total"]["frames_resent"] == 1
