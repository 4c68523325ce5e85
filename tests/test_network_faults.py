# SPDX-License-Identifier: GPL-3.0-or-later
"""Network faults between a real SpectrumServer and its clients, through a TCP proxy.

Each test runs a real :class:`~gr_argos.server.SpectrumServer` fed by a producer that
publishes 2048-bin frames with consecutive sequence numbers at about 40 frames/s, one client
connected through :class:`fault_proxy.FaultProxy` (which the test cuts, stalls or throttles)
and one healthy client connected directly. They check what a user relies on:

- the faulted client reconnects when the link is cut, and the gaps it reports add up
  *exactly* to the sequence numbers it did not receive (each missing sequence in exactly one
  gap, no gap over a frame it did receive);
- frames the server drops for a stalled or throttled client are the ones it reports, and the
  server's queue for it never grows past ``queue_depth``;
- the healthy client receives every frame, with no gap and no reconnect, whatever happens to
  the other one.

The browser test runs ``argos-client.js`` in Debian's headless Chromium on a page served
through the proxy. Every wait is on a condition with a generous deadline; nothing asserts on
speed. Every server, proxy, client, task and browser is stopped also when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest

from gr_argos.client import (
    GAP_DROPPED_BY_SERVER,
    GAP_SEQUENCE_JUMP,
    ArgosClient,
    FrameEvent,
    GapEvent,
    MessageEvent,
    StateEvent,
)
from gr_argos.server import SpectrumServer

from fault_proxy import FaultProxy
from helpers import CHROMIUM, CHROMIUM_ARGS
from server_helpers import StartServer, client_stats, spectrum_frame

FPS = 40.0  # 2048 float32 bins: about 330 kB/s
QUEUE_DEPTH = 8
WAIT_S = 30.0  # a hang guard for conditions that normally hold within a second or two
LOST_WHILE_DOWN = 10  # frames produced while a cut link stays down
THROTTLE_BYTES_PER_S = 80_000.0  # about a quarter of the stream

WaitUntil = Callable[..., Any]

#: (from_sequence, to_sequence, lost) of one reported gap.
Gap = tuple[int, int, int]


class Producer:
    """Publishes frames 0, 1, 2, ... to a server at about ``FPS`` from the event loop."""

    def __init__(self, server: SpectrumServer) -> None:
        self.server = server
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Producer:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            self.server.publish_frame(0, spectrum_frame(self.published))
            self.published += 1
            await asyncio.sleep(1 / FPS)

    async def stop(self) -> int:
        """Stop publishing; return the last sequence published."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        return self.published - 1


@dataclass
class Recording:
    """What one ArgosClient yielded: frame sequences, gaps and state changes."""

    client: ArgosClient
    sequences: list[int] = field(default_factory=list)
    replayed: list[int] = field(default_factory=list)  # sequences of replayed frames
    missed: int = 0  # the sum of the frames' missed fields
    gaps: list[GapEvent] = field(default_factory=list)
    states: list[StateEvent] = field(default_factory=list)
    hellos: int = 0

    async def run(self) -> None:
        async with self.client:
            async for event in self.client:
                self.record(event)

    def record(self, event: object) -> None:
        if isinstance(event, FrameEvent):
            self.sequences.append(event.frame.sequence)
            if event.frame.replayed:
                self.replayed.append(event.frame.sequence)
            self.missed += event.frame.missed
        elif isinstance(event, GapEvent):
            self.gaps.append(event)
        elif isinstance(event, StateEvent):
            self.states.append(event)
        elif isinstance(event, MessageEvent) and event.type == "hello":
            self.hellos += 1

    def last(self) -> int | None:
        return self.sequences[-1] if self.sequences else None

    def state_names(self) -> list[str]:
        return [event.state for event in self.states]


@contextlib.asynccontextmanager
async def recording(url: str, resume: bool = True) -> AsyncIterator[Recording]:
    """An ArgosClient on ``url`` (fast backoff) whose events are recorded by a task; closed
    and awaited on the way out."""
    client = ArgosClient(url, backoff_base_s=0.1, backoff_cap_s=0.5, rng=random.Random(0),
                         resume=resume)
    record = Recording(client)
    task = asyncio.create_task(record.run())
    try:
        yield record
    finally:
        await client.close()
        async with asyncio.timeout(WAIT_S):
            await task


# -- checks -------------------------------------------------------------------------------

def assert_gaps_are_exact(sequences: Sequence[int], gaps: Sequence[Gap]) -> None:
    """Every sequence from the first received (or the first lost, when a gap came before
    it) to the last is either received once or lost in exactly one reported gap."""
    assert sequences, "no frame received"
    assert list(sequences) == sorted(set(sequences)), "frames repeated or out of order"
    leading = [g for g in gaps[:1] if g[1] == sequences[0]]  # lost before the first frame
    jumps = [(earlier, later) for earlier, later in pairwise(sequences) if later - earlier > 1]
    assert [(start, end) for start, end, _ in gaps[len(leading):]] == jumps
    for start, end, lost in gaps:
        assert lost == end - start - 1, (start, end, lost)
    first = leading[0][0] + 1 if leading else sequences[0]
    assert len(sequences) + sum(lost for _, _, lost in gaps) == sequences[-1] - first + 1


def assert_client_gaps_are_exact(record: Recording) -> None:
    """The ArgosClient's gaps are exact, and its counters say the same."""
    assert_gaps_are_exact(record.sequences, [(g.from_sequence, g.to_sequence, g.lost)
                                             for g in record.gaps])
    stats = record.client.stats
    assert (stats.gaps, stats.frames_lost) == (len(record.gaps),
                                               sum(g.lost for g in record.gaps))


def assert_saw_every_frame(record: Recording, last: int) -> None:
    """The healthy client got frames 0..last, none missed, on its one connection."""
    assert record.sequences == list(range(last + 1))
    assert (record.gaps, record.missed) == ([], 0)
    assert record.state_names() == ["connecting", "open", "closed"]
    assert record.client.stats.reconnects == 0


# -- set-up helpers -------------------------------------------------------------------------

async def wait_for_frames(wait_until: WaitUntil, record: Recording, count: int,
                          what: str) -> None:
    """Wait until ``record`` holds ``count`` more frames than now."""
    target = len(record.sequences) + count
    await wait_until(lambda: len(record.sequences) >= target, timeout=WAIT_S, what=what)


async def finish(wait_until: WaitUntil, producer: Producer, *records: Recording) -> int:
    """Stop the producer and wait until every client got its last frame; return it."""
    last = await producer.stop()
    await wait_until(lambda: all(r.last() == last for r in records), timeout=WAIT_S,
                     what=f"every client to receive the last frame ({last})")
    return last


def only_link(proxy: FaultProxy) -> str:
    """The peer, as the server sees it, of the one connection through the proxy."""
    (peer,) = proxy.server_side_peers()
    return peer


class ServerView:
    """The server's counters for one client, sampled whenever a condition is polled."""

    def __init__(self, server: SpectrumServer, peer: str) -> None:
        self.server = server
        self.peer = peer
        self.samples: list[dict[str, Any]] = []

    def frames_dropped(self) -> int:
        stats = client_stats(self.server, self.peer)
        assert stats is not None, f"the server no longer serves {self.peer}"
        self.samples.append(stats)
        return int(stats["frames_dropped"])

    def max_queue_depth(self) -> int:
        return max(s["queue_depth"] for s in self.samples)


# -- Python client --------------------------------------------------------------------------

async def test_cut_links_reconnect_and_report_exactly_the_frames_missed(
        start_server: StartServer, wait_until: WaitUntil) -> None:
    """Cut twice, each time with the link down for a while: the proxied client (without
    resume) goes reconnecting, retries with backoff while refused, comes back open, and its
    gaps account for every frame it missed; the direct client sees every frame."""
    server = start_server(queue_depth=QUEUE_DEPTH)
    async with FaultProxy(server.port) as proxy, recording(server.url) as healthy, \
            recording(proxy.url(), resume=False) as faulted:
        await wait_until(lambda: healthy.hellos == faulted.hellos == 1, timeout=WAIT_S,
                         what="both clients to get their hello")
        async with Producer(server) as producer:
            for cut in (1, 2):
                await wait_for_frames(wait_until, faulted, 20, "frames through the proxy")
                proxy.refuse_new(True)
                assert proxy.cut() == 1
                await wait_until(lambda: faulted.client.state == "reconnecting",
                                 timeout=WAIT_S, what="the cut to be noticed")
                down_from = producer.published
                await wait_until(
                    lambda: (faulted.client.stats.failed_attempts >= cut
                             and producer.published >= down_from + LOST_WHILE_DOWN),
                    timeout=WAIT_S, what="a refused retry while frames go by")
                proxy.refuse_new(False)
                await wait_until(lambda: faulted.client.stats.reconnects == cut,
                                 timeout=WAIT_S, what=f"reconnect {cut}")
            await wait_for_frames(wait_until, faulted, 20, "frames after the reconnect")
            last = await finish(wait_until, producer, healthy, faulted)

    assert faulted.state_names() == ["connecting", "open", "reconnecting", "open",
                                     "reconnecting", "open", "closed"]
    assert all(s.error for s in faulted.states if s.state == "reconnecting")
    assert faulted.hellos == 3 and proxy.connections_refused >= 2
    down_gaps = [g for g in faulted.gaps if g.reason == GAP_SEQUENCE_JUMP]
    assert len(down_gaps) == 2 and all(g.lost >= LOST_WHILE_DOWN for g in down_gaps)
    assert not any(g.session_changed for g in faulted.gaps)  # the same server all along
    assert_client_gaps_are_exact(faulted)
    assert faulted.sequences[0] == 0 and faulted.last() == last
    assert_saw_every_frame(healthy, last)


CUT_S = 3.0  # a short outage: the default ring holds it


async def cut_for(wait_until: WaitUntil, proxy: FaultProxy, producer: Producer,
                  faulted: Recording, frames_down: int) -> None:
    """Cut the proxied link and keep it down (refusing reconnects) while ``frames_down``
    frames are published, then let the client reconnect; return once it has."""
    await wait_for_frames(wait_until, faulted, 20, "frames through the proxy")
    proxy.refuse_new(True)
    assert proxy.cut() == 1
    await wait_until(lambda: faulted.client.state == "reconnecting", timeout=WAIT_S,
                     what="the cut to be noticed")
    down_from = producer.published
    await wait_until(lambda: producer.published >= down_from + frames_down,
                     timeout=WAIT_S, what="frames to go by while the link is down")
    proxy.refuse_new(False)
    await wait_until(lambda: faulted.client.stats.reconnects == 1, timeout=WAIT_S,
                     what="the reconnect")


async def test_a_3_s_cut_loses_no_frame_with_the_default_ring(
        start_server: StartServer, wait_until: WaitUntil) -> None:
    """With the server's default resume ring, a client cut off for 3 s reconnects and gets
    every frame it missed (marked replayed) before the live ones: no gap, no frame twice,
    none out of order; the direct client sees every frame too."""
    server = start_server(queue_depth=QUEUE_DEPTH)
    async with FaultProxy(server.port) as proxy, recording(server.url) as healthy, \
            recording(proxy.url()) as faulted:
        await wait_until(lambda: healthy.hellos == faulted.hellos == 1, timeout=WAIT_S,
                         what="both clients to get their hello")
        async with Producer(server) as producer:
            await cut_for(wait_until, proxy, producer, faulted, round(CUT_S * FPS))
            await wait_for_frames(wait_until, faulted, 20, "frames after the reconnect")
            last = await finish(wait_until, producer, healthy, faulted)

    assert faulted.state_names() == ["connecting", "open", "reconnecting", "open", "closed"]
    assert faulted.sequences == list(range(last + 1))
    assert (faulted.gaps, faulted.client.stats.frames_lost) == ([], 0)
    assert len(faulted.replayed) >= CUT_S * FPS
    # The replayed frames are the ones right after the last received before the cut.
    first = faulted.sequences.index(faulted.replayed[0])
    assert faulted.replayed == faulted.sequences[first:first + len(faulted.replayed)]
    assert faulted.client.stats.frames_replayed == len(faulted.replayed)
    assert_saw_every_frame(healthy, last)


async def test_a_cut_longer_than_the_ring_reports_the_gap_exactly(
        start_server: StartServer, wait_until: WaitUntil) -> None:
    """A ring of 20 frames and a cut through 60 (as a long outage is with the default
    ring): the client gets the 20 the ring holds, replayed, and reports the frames before
    them as one gap, exactly."""
    ring_frames = 20
    server = start_server(queue_depth=QUEUE_DEPTH,
                          resume_buffer_bytes=ring_frames * len(spectrum_frame(0)))
    async with FaultProxy(server.port) as proxy, recording(server.url) as healthy, \
            recording(proxy.url()) as faulted:
        await wait_until(lambda: healthy.hellos == faulted.hellos == 1, timeout=WAIT_S,
                         what="both clients to get their hello")
        async with Producer(server) as producer:
            await cut_for(wait_until, proxy, producer, faulted, 3 * ring_frames)
            await wait_for_frames(wait_until, faulted, 20, "frames after the reconnect")
            last = await finish(wait_until, producer, healthy, faulted)

    assert faulted.state_names() == ["connecting", "open", "reconnecting", "open", "closed"]
    (gap,) = faulted.gaps
    assert gap.reason == GAP_SEQUENCE_JUMP and gap.lost >= 2 * ring_frames
    assert faulted.replayed[0] == gap.to_sequence
    assert ring_frames - 2 <= len(faulted.replayed)
    assert_client_gaps_are_exact(faulted)
    assert faulted.sequences[0] == 0 and faulted.last() == last
    assert_saw_every_frame(healthy, last)


def assert_server_drops_reported_exactly(faulted: Recording, view: ServerView, dropped: int,
                                         healthy: Recording, last: int) -> None:
    """The faulted client stayed connected, the server's queue for it stayed within
    queue_depth, and it reported exactly the frames the server dropped for it, no more;
    the direct client saw every frame."""
    assert faulted.state_names() == ["connecting", "open", "closed"]
    assert view.max_queue_depth() <= QUEUE_DEPTH
    assert faulted.missed == dropped == faulted.client.stats.frames_lost
    assert {g.reason for g in faulted.gaps} == {GAP_DROPPED_BY_SERVER}
    assert_client_gaps_are_exact(faulted)
    assert_saw_every_frame(healthy, last)

async def test_stalled_link_loses_the_oldest_frames_and_reports_them(
        start_server: StartServer, wait_until: WaitUntil) -> None:
    """While the proxy holds back the server's bytes the server drops the stalled client's
    oldest frames (its queue stays within queue_depth); after resume the client reports
    exactly what the server dropped, on the same connection. The server's keepalive is off,
    so the stall closes nothing and the outcome does not depend on timing."""
    server = start_server(queue_depth=QUEUE_DEPTH, ping_interval_s=0)
    async with FaultProxy(server.port) as proxy, recording(server.url) as healthy, \
            recording(proxy.url()) as faulted:
        await wait_until(lambda: healthy.hellos == faulted.hellos == 1, timeout=WAIT_S,
                         what="both clients to get their hello")
        async with Producer(server) as producer:
            await wait_for_frames(wait_until, faulted, 20, "frames through the proxy")
            view = ServerView(server, only_link(proxy))
            proxy.stall()
            await wait_until(lambda: view.frames_dropped() >= 3 * QUEUE_DEPTH,
                             timeout=WAIT_S, what="the server to drop the stalled frames")
            proxy.resume()
            await wait_for_frames(wait_until, faulted, 20, "frames after the stall")
            last = await finish(wait_until, producer, healthy, faulted)
        dropped = view.frames_dropped()

    assert dropped >= 3 * QUEUE_DEPTH
    assert_server_drops_reported_exactly(faulted, view, dropped, healthy, last)


async def test_throttled_link_keeps_receiving_with_counted_drops(
        start_server: StartServer, wait_until: WaitUntil) -> None:
    """Throttled to about a quarter of the stream's byte rate, the client keeps receiving
    frames, the server drops the rest with its queue within queue_depth, and the client
    reports exactly those drops; the direct client sees every frame. The server's keepalive
    is off: a ping queued behind the throttled backlog must not decide the outcome."""
    server = start_server(queue_depth=QUEUE_DEPTH, ping_interval_s=0)
    async with FaultProxy(server.port) as proxy, recording(server.url) as healthy, \
            recording(proxy.url()) as faulted:
        await wait_until(lambda: healthy.hellos == faulted.hellos == 1, timeout=WAIT_S,
                         what="both clients to get their hello")
        async with Producer(server) as producer:
            await wait_for_frames(wait_until, faulted, 20, "frames through the proxy")
            view = ServerView(server, only_link(proxy))
            proxy.throttle(THROTTLE_BYTES_PER_S)
            before = view.frames_dropped()
            received_before = len(faulted.sequences)
            # The server's socket buffer (grown by TCP autotuning while the link was fast)
            # must fill before the server drops anything; the client learns of the drops
            # once that backlog has reached it.
            await wait_until(
                lambda: (view.frames_dropped() >= before + 4 * QUEUE_DEPTH
                         and len(faulted.sequences) >= received_before + 20),
                timeout=2 * WAIT_S, what="throttled frames and counted drops")
            proxy.throttle(None)
            await wait_for_frames(wait_until, faulted, 20, "frames after the throttle")
            last = await finish(wait_until, producer, healthy, faulted)
        dropped = view.frames_dropped()

    assert dropped >= 4 * QUEUE_DEPTH
    assert_server_drops_reported_exactly(faulted, view, dropped, healthy, last)


# -- browser client -------------------------------------------------------------------------

# Any document the server serves puts the page on the server's origin (through the proxy),
# so the script can import /argos-client.js from it and Chromium lets it connect to 127.0.0.1.
PAGE_PATH = "/healthz"
# Records what argos-client.js reports; it connects to the page's server, through the proxy.
SCRIPT = """
  import { ArgosClient } from "/argos-client.js";
  const log = { sequences: [], replayed: [], missed: 0, gaps: [], states: [] };
  const client = new ArgosClient(undefined,
    { backoffBaseMs: 100, backoffCapMs: 500, resume: RESUME });
  client.addEventListener("frame", (e) => {
    log.sequences.push(e.detail.frame.sequence);
    if (e.detail.frame.replayed) log.replayed.push(e.detail.frame.sequence);
    log.missed += e.detail.frame.missed;
  });
  client.addEventListener("gap", (e) => log.gaps.push(
    [e.detail.fromSequence, e.detail.toSequence, e.detail.lost, e.detail.reason]));
  client.addEventListener("state", (e) => {
    if (log.states.at(-1) !== e.detail.state) log.states.push(e.detail.state);
  });
  window.faultTest = { log, client };
  client.connect();
"""


@pytest.mark.slow
@pytest.mark.parametrize("resume", [False, True])
async def test_browser_client_reconnects_after_a_cut_and_reports_exact_gaps(
        start_server: StartServer, wait_until: WaitUntil, resume: bool) -> None:
    """argos-client.js in headless Chromium, in a page loaded through the proxy: after a
    cut (and a while refused) it reconnects; without resume its gap events add up exactly to
    the frames it missed, with resume (its default) it gets them all, replayed; the direct
    Python client sees every frame."""
    from playwright.async_api import async_playwright

    wait_ms = WAIT_S * 1000
    server = start_server(queue_depth=QUEUE_DEPTH)
    async with async_playwright() as playwright, FaultProxy(server.port) as proxy:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            async with recording(server.url) as healthy:
                await page.goto(proxy.url("http", PAGE_PATH))
                await page.add_script_tag(
                    content=SCRIPT.replace("RESUME", "true" if resume else "false"),
                    type="module")
                await page.wait_for_function("window.faultTest?.client.hello != null",
                                             timeout=wait_ms)
                await wait_until(lambda: healthy.hellos == 1, timeout=WAIT_S,
                                 what="the direct client's hello")
                async with Producer(server) as producer:
                    await page.wait_for_function(
                        "window.faultTest.log.sequences.length >= 20", timeout=wait_ms)
                    proxy.refuse_new(True)
                    assert proxy.cut() >= 1  # the WebSocket, and any idle HTTP connection
                    await page.wait_for_function(
                        "window.faultTest.client.state === 'reconnecting'", timeout=wait_ms)
                    down_from = producer.published
                    await page.wait_for_function(
                        "window.faultTest.client.stats.failedAttempts >= 1", timeout=wait_ms)
                    await wait_until(lambda: producer.published >= down_from + LOST_WHILE_DOWN,
                                     timeout=WAIT_S, what="frames to go by while down")
                    proxy.refuse_new(False)
                    await page.wait_for_function(
                        "window.faultTest.client.stats.reconnects === 1 && "
                        "window.faultTest.client.state === 'open'", timeout=wait_ms)
                    after = await page.evaluate("window.faultTest.log.sequences.length")
                    await page.wait_for_function(
                        f"window.faultTest.log.sequences.length >= {after + 20}",
                        timeout=wait_ms)
                    last = await finish(wait_until, producer, healthy)
                await page.wait_for_function(
                    f"window.faultTest.log.sequences.at(-1) === {last}", timeout=wait_ms)
                log = await page.evaluate("window.faultTest.log")
                stats = await page.evaluate("window.faultTest.client.stats")
                await page.evaluate("window.faultTest.client.close()")
        finally:
            await browser.close()

    assert errors == []
    assert log["states"] == ["connecting", "open", "reconnecting", "open"]
    assert stats["reconnects"] == 1 and stats["failedAttempts"] >= 1
    assert log["sequences"][0] == 0 and log["sequences"][-1] == last
    assert_saw_every_frame(healthy, last)
    if resume:
        assert log["sequences"] == list(range(last + 1)) and log["gaps"] == []
        assert len(log["replayed"]) >= LOST_WHILE_DOWN
        assert stats["replayed"] == len(log["replayed"])
        return
    gaps: list[Gap] = [(start, end, lost) for start, end, lost, _ in log["gaps"]]
    assert_gaps_are_exact(log["sequences"], gaps)
    jumps = [g for g in log["gaps"] if g[3] == GAP_SEQUENCE_JUMP]
    assert len(jumps) == 1 and jumps[0][2] >= LOST_WHILE_DOWN
    assert (stats["gaps"], stats["lost"]) == (len(gaps), sum(g[2] for g in gaps))

