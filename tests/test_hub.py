"""Tests for gr_argos.hub: per-client queues, drop-oldest, messages, ingress, counters.

The hub is plain code: these tests drive it on the test's own event loop, with no sockets.
Producers call it like a GNU Radio block would, from this thread or from other threads.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from gr_argos.hub import BroadcastHub, ClientQueue, ClientTooSlow, HubClosed
from gr_argos.protocol import (
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


async def attached_hub(**settings: int) -> BroadcastHub:
    """A hub bound to the running loop, as the server binds it."""
    hub = BroadcastHub(**settings)
    hub.attach(asyncio.get_running_loop())
    return hub


async def let_hub_drain() -> None:
    """Yield once: the loop runs the drain that publish() scheduled before this call."""
    await asyncio.sleep(0)


async def receive_all(hub: BroadcastHub, client: ClientQueue) -> list[bytes | str]:
    """Everything queued for the client now, in the order the server would send it."""
    items = []
    while client.frames or client.messages:
        items.append(await hub.next_item(client))
    return items


def decoded(items: list[bytes | str]) -> list[SpectrumFrame]:
    return [decode_frame(item) for item in items if isinstance(item, bytes)]


async def test_full_queue_drops_oldest_and_next_frame_reports_missed() -> None:
    """A client whose queue is full loses its oldest frames and its next frame says how many."""
    hub = await attached_hub(queue_depth=3)
    client = hub.add_client("slow")
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
    client = hub.add_client("slow")
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
    client = hub.add_client("slow")
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
    """A client whose message queue overflows is reported and refused; others carry on."""
    reported: list[ClientQueue] = []
    hub = BroadcastHub(message_queue_depth=2)
    hub.attach(asyncio.get_running_loop(), on_too_slow=reported.append)
    slow = hub.add_client("slow")
    reading = hub.add_client("reading")
    for n in range(3):
        hub.publish_message(f'{{"type":"status","n":{n}}}')
        await let_hub_drain()
        assert await hub.next_item(reading) == f'{{"type":"status","n":{n}}}'

    assert reported == [slow]
    with pytest.raises(ClientTooSlow):
        await hub.next_item(slow)
    hub.publish_frame(0, frame(0))
    await let_hub_drain()
    assert await hub.next_item(reading) == frame(0)


async def test_replies_to_one_client_overflow_its_queue_alone() -> None:
    """Replies queued for one client (send_to) count against its message queue only."""
    reported: list[ClientQueue] = []
    hub = BroadcastHub(message_queue_depth=2)
    hub.attach(asyncio.get_running_loop(), on_too_slow=reported.append)
    asking = hub.add_client("asking")
    other = hub.add_client("other")
    for n in range(3):
        hub.send_to(asking, f'{{"type":"pong","id":{n}}}')

    assert reported == [asking]
    assert len(other.messages) == 0
    with pytest.raises(ClientTooSlow):
        await hub.next_item(asking)


async def test_publish_from_many_threads_is_safe_and_counts_every_frame() -> None:
    """Frames published from many threads at once are each counted, and delivered or counted
    as dropped, in each producer's order."""
    threads_count, frames_per_thread = 8, 400
    hub = await attached_hub(queue_depth=threads_count * frames_per_thread)
    client = hub.add_client("reader")
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
    client = hub.add_client("reader")

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
    hub = BroadcastHub()

    hub.publish_frame(0, frame(0))
    hub.publish_message('{"type":"status"}')

    assert hub.unsent_after_stop == 2
    assert hub.stats()["total"]["unsent_after_stop"] == 2


async def test_publish_after_close_never_raises_and_counts_unsent() -> None:
    """Frames and messages published after the hub closed are counted as unsent, never
    delivered, even while a drain from before the close is still pending."""
    hub = await attached_hub()
    client = hub.add_client("reader")
    hub.publish_frame(0, frame(0))  # schedules a drain that runs only after close()
    hub.close()
    hub.publish_frame(0, frame(1))
    hub.publish_message('{"type":"status"}')
    await let_hub_drain()

    assert hub.unsent_after_stop == 3
    assert len(client.frames) == 0 and len(client.messages) == 0
    with pytest.raises(HubClosed):
        await hub.next_item(client)


def test_publish_after_the_loop_closed_never_raises_and_counts_unsent() -> None:
    """Publishing to a hub whose event loop has closed is harmless and counted as unsent."""
    loop = asyncio.new_event_loop()
    hub = BroadcastHub()
    hub.attach(loop)
    loop.close()

    hub.publish_frame(0, frame(0))
    hub.publish_message('{"type":"status"}')

    assert hub.unsent_after_stop == 2


async def test_waiting_sender_is_released_by_close_and_by_removal() -> None:
    """A sender waiting for its next item ends (HubClosed) when its client is removed or the
    hub closes, so a server can always shut its senders down."""
    hub = await attached_hub()
    removed, remaining = hub.add_client("removed"), hub.add_client("remaining")
    waiting_removed = asyncio.create_task(hub.next_item(removed))
    waiting_remaining = asyncio.create_task(hub.next_item(remaining))
    await let_hub_drain()

    hub.remove_client(removed)
    with pytest.raises(HubClosed):
        await waiting_removed
    assert not waiting_remaining.done()
    hub.close()
    with pytest.raises(HubClosed):
        await waiting_remaining


async def test_stats_totals_include_departed_clients() -> None:
    """Server totals keep counting what departed clients were sent and lost."""
    hub = await attached_hub(queue_depth=2)
    departed = hub.add_client("departed")
    hub.add_client("staying")
    for sequence in range(3):
        hub.publish_frame(0, frame(sequence))
    await let_hub_drain()
    for item in await receive_all(hub, departed):
        departed.record_sent(item)
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
    compressed = [hub.add_client(f"c{i}") for i in range(3)]
    for client in compressed:
        client.frame_format = FrameFormat(ENCODING_UINT8, compress=True)
    exact = hub.add_client("exact")
    cdb = hub.add_client("cdb")
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
    stepped = [hub.add_client(f"s{i}") for i in range(2)]
    for client in stepped:
        client.frame_format = FrameFormat(ENCODING_UINT8, compress=True, step_db=1.0)
    automatic = hub.add_client("automatic")
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
    """Variants are made when a frame is sent, so frames a stalled client lost cost
    nothing, and its next frame still reports them in missed."""
    hub = await attached_hub(queue_depth=2)
    client = hub.add_client("stalled")
    client.frame_format = FrameFormat(ENCODING_UINT8, compress=True)
    for sequence in range(6):
        hub.publish_frame(0, frame(sequence))
    await let_hub_drain()

    frames = decoded(await receive_all(hub, client))

    assert [(f.sequence, f.missed, f.encoding) for f in frames] == [(4, 4, 2), (5, 0, 2)]
    assert hub.stats()["total"]["encodes"]["uint8"] == 2


async def test_a_stream_default_format_applies_to_clients_that_chose_none() -> None:
    """set_stream_format re-encodes a stream for clients without a choice of their own."""
    hub = await attached_hub()
    client = hub.add_client("default")
    hub.set_stream_format(0, FrameFormat(ENCODING_INT16))
    hub.publish_frame(0, frame(1))
    hub.publish_frame(1, frame(1, stream_id=1))
    await let_hub_drain()

    frames = decoded(await receive_all(hub, client))

    assert [(f.stream_id, f.encoding) for f in frames] == [(0, 1), (1, 0)]


class FakeConnection:
    """A client's connection as the hub's writer sees it: takes items while ``open``."""

    def __init__(self) -> None:
        self.open = True
        self.written: list[tuple[bytes, bytes, bool]] = []

    def write(self, data: bytes, wire: bytes, text: bool) -> bool:
        if self.open:
            self.written.append((data, wire, text))
        return self.open


def wrap(data: bytes, text: bool) -> bytes:
    return (b"T" if text else b"B") + data


async def test_a_client_that_keeps_up_gets_items_written_at_once_in_publish_order() -> None:
    """Frames and messages go straight to the writer, in order, framed once for everyone,
    and are counted as sent; nothing waits in the queue."""
    hub = BroadcastHub(wrap=wrap)
    hub.attach(asyncio.get_running_loop())
    connections = [FakeConnection(), FakeConnection()]
    clients = [hub.add_client(f"c{n}") for n in range(2)]
    for client, connection in zip(clients, connections):
        client.writer = connection.write
    hub.publish_frame(0, frame(0))
    hub.publish_message('{"type":"status"}')
    hub.publish_frame(0, frame(1))
    await let_hub_drain()

    for client, connection in zip(clients, connections):
        assert [(data, text) for data, _, text in connection.written] == [
            (frame(0), False), (b'{"type":"status"}', True), (frame(1), False)]
        assert [wire for _, wire, _ in connection.written] == [
            b"B" + frame(0), b'T{"type":"status"}', b"B" + frame(1)]
        assert not client.frames and not client.messages
        assert (client.frames_sent, client.messages_sent) == (2, 1)
    # One wire copy per frame, shared by every client.
    assert connections[0].written[0][1] is connections[1].written[0][1]


async def test_a_client_whose_connection_is_full_is_queued_then_told_what_it_missed() -> None:
    """When the writer declines, frames queue with drop-oldest; once the queue is empty
    again the next frame carries the count, and direct writes resume after it."""
    hub = await attached_hub(queue_depth=2)
    hub._wrap = wrap
    connection = FakeConnection()
    client = hub.add_client("behind")
    client.writer = connection.write
    connection.open = False
    for sequence in range(5):
        hub.publish_frame(0, frame(sequence))
    await let_hub_drain()
    assert client.frames_dropped == 3 and len(client.frames) == 2

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
    connection = FakeConnection()
    client = hub.add_client("sending")
    client.writer = connection.write
    client.sending = True
    hub.publish_frame(0, frame(0))
    await let_hub_drain()
    assert connection.written == [] and len(client.frames) == 1
    client.sending = False
    assert [f.sequence for f in decoded(await receive_all(hub, client))] == [0]
