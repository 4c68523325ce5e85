# SPDX-License-Identifier: GPL-3.0-or-later
"""Views through a real server: set_view and the URL, shared encodes, the cap, bad views,
the frame rate divisor and the second trace (real websockets clients on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, AsyncIterator

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from gr_argos.protocol import SpectrumFrame, decode_frame, encode_frame
from gr_argos.server import SpectrumServer
from tests.server_helpers import WAIT_S, StartServer, client, next_json

STREAM_HZ = np.float64(100e6) + (np.arange(2048) - 1024) * 1e3  # the conftest stream's bins


def carrier_frame(sequence: int, carrier_bin: int = 1300) -> bytes:
    """A 2048-bin peak frame of the conftest stream: a ramp with a one-bin carrier, and an
    average trace 10 dB under it."""
    peak = np.linspace(-120.0, -60.0, 2048, dtype=np.float32)
    peak[carrier_bin] = -20.0
    return encode_frame(peak, center_freq_hz=100e6, span_hz=2.048e6, timestamp_ns=sequence,
                        sequence=sequence, detector="peak", second_power_db=peak - 10.0,
                        second_detector="average")


@contextlib.asynccontextmanager
async def viewer(server: SpectrumServer, query: str = "") -> AsyncIterator[ClientConnection]:
    """A client connected with ``query`` whose hello has been read."""
    async with connect(server.url + query, open_timeout=WAIT_S) as ws:
        assert (await next_json(ws))["type"] == "hello"
        yield ws


async def frames_of(ws: ClientConnection, count: int) -> list[SpectrumFrame]:
    """The next ``count`` frames, failing on any text message among them."""
    frames = []
    async with asyncio.timeout(WAIT_S):
        while len(frames) < count:
            message = await ws.recv()
            assert isinstance(message, bytes), message
            frames.append(decode_frame(message))
    return frames


async def ask(ws: ClientConnection, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "set_view", **fields}))
    return await next_json(ws)


async def test_many_clients_on_a_few_views_share_one_encode_per_view(
        start_server: StartServer) -> None:
    """Twelve clients over three views (URL or set_view, panned a little apart) each get
    frames of their slice, exact in header and bins; the server encodes each view once per
    frame, not once per client, and a client without a view still gets the whole stream."""
    server = start_server(queue_depth=64)
    asks = [dict(center_freq_hz=100.3e6 + 1e3 * (i % 3), span_hz=200e3, bins=100)
            if i % 3 else dict(bins=512) for i in range(12)]
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for i, fields in enumerate(asks):
            if i < 6:
                query = "?" + "&".join(f"{key}={value}" for key, value in fields.items())
                ws = await stack.enter_async_context(viewer(server, query))
                reply = await next_json(ws)
            else:
                ws = await stack.enter_async_context(viewer(server))
                reply = await ask(ws, **fields)
            assert reply["type"] == "view" and reply["stream_id"] == 0
            clients.append((ws, reply))
        whole = await stack.enter_async_context(client(server))
        for sequence in range(4):
            server.publish_frame(0, carrier_frame(sequence))
        got = [await frames_of(ws, 4) for ws, _ in clients]
        assert [f.bin_count for f in await frames_of(whole, 4)] == [2048] * 4

    assert {reply["bins"] for _, reply in clients} == {512, 128}
    for (_, reply), frames in zip(clients, got):
        for frame in frames:
            assert (frame.center_freq_hz, frame.span_hz, frame.bin_count) == (
                reply["center_freq_hz"], reply["span_hz"], reply["bins"])
            merged = 2 ** reply["level"]
            first = int(round((frame.bin_freqs_hz()[0] - STREAM_HZ[0]) / 1e3 - (merged - 1) / 2))
            expected_db = np.linspace(-120.0, -60.0, 2048, dtype=np.float32)
            expected_db[1300] = -20.0
            expected = expected_db[first:first + merged * frame.bin_count]
            np.testing.assert_array_equal(frame.power_db, expected.reshape(-1, merged).max(1))
            assert frame.power_db.max() == -20.0 and frame.second_power_db is None
    distinct = len({(r["center_freq_hz"], r["bins"]) for _, r in clients})
    assert distinct == 2  # the three panned asks snapped to one lattice slice
    assert server.stats()["total"]["encodes"]["float32+view"] == 4 * distinct


async def test_bad_views_are_refused_and_the_view_kept(start_server: StartServer) -> None:
    """Inverted, outside, zero-bin, absurd and mistyped views each get a bad_message error
    naming the problem; the connection stays open on the view it had."""
    server = start_server()
    async with viewer(server) as ws:
        good = await ask(ws, center_freq_hz=100.5e6, span_hz=100e3, bins=50)
        assert good["type"] == "view"
        for fields, words in [
            (dict(span_hz=-100e3), "span_hz"), (dict(center_freq_hz=2.4e9, span_hz=1e6),
                                                "outside the stream"),
            (dict(bins=0), "bins"), (dict(bins=10 ** 9), "bins"), (dict(bins="many"), "bins"),
            (dict(fps_divisor=0), "fps_divisor"), (dict(center_freq_hz=True), "center_freq_hz"),
            (dict(stream_id=7), "no stream 7"),
        ]:
            error = await ask(ws, **fields)
            assert error["type"] == "error" and error["code"] == "bad_message", fields
            assert words in error["message"] and "set_view" in error["message"]
        server.publish_frame(0, carrier_frame(0))
        [frame] = await frames_of(ws, 1)
    assert (frame.center_freq_hz, frame.bin_count) == (good["center_freq_hz"], good["bins"])


async def test_past_the_cap_a_new_view_is_snapped_to_one_in_use(
        start_server: StartServer) -> None:
    """With max_views_per_stream=1, a second client's new view is the first client's, and
    its reply says so; the whole stream is always there; the cap counts views, not clients."""
    server = start_server(max_views_per_stream=1)
    async with viewer(server) as first, viewer(server) as second, viewer(server) as third:
        taken = await ask(first, center_freq_hz=100.5e6, span_hz=100e3, bins=50)
        assert "snapped" not in taken
        snapped = await ask(second, center_freq_hz=100.45e6, span_hz=300e3, bins=200,
                            fps_divisor=2)
        assert snapped["snapped"] is True and "at most 1 views" in snapped["message"]
        assert {k: snapped[k] for k in ("center_freq_hz", "span_hz", "bins")} == {
            k: taken[k] for k in ("center_freq_hz", "span_hz", "bins")}
        assert snapped["fps_divisor"] == 2
        assert "snapped" not in await ask(third)
        same = await ask(third, center_freq_hz=100.5e6, span_hz=100e3, bins=50)
        assert "snapped" not in same and same["bins"] == taken["bins"]


async def test_fps_divisor_sends_every_nth_frame_and_missed_stays_zero(
        start_server: StartServer) -> None:
    """A client at fps_divisor 3 gets the frames whose sequence is a multiple of 3, with
    missed 0 (frames left out by its rate are not drops); a client at full rate gets all."""
    server = start_server(queue_depth=64)
    async with viewer(server, "?fps_divisor=3") as slow, viewer(server) as fast:
        assert (await next_json(slow))["fps_divisor"] == 3
        for sequence in range(10):
            server.publish_frame(0, carrier_frame(sequence))
        slow_frames = await frames_of(slow, 4)
        fast_frames = await frames_of(fast, 10)
    assert [f.sequence for f in slow_frames] == [0, 3, 6, 9]
    assert [f.missed for f in slow_frames] == [0, 0, 0, 0]
    assert [f.bin_count for f in slow_frames] == [2048] * 4
    assert [f.sequence for f in fast_frames] == list(range(10))


async def test_a_view_reduces_the_second_trace_by_mean_of_power(
        start_server: StartServer) -> None:
    """A client asking for the second trace and a view gets the peak trace merged by max
    and the average trace by the mean of linear power, in uint8+deflate too."""
    server = start_server()
    async with viewer(server, "?encoding=uint8&compress=1&second_trace=1&bins=256") as ws:
        assert (await next_json(ws))["type"] == "encoding"
        reply = await next_json(ws)
        assert (reply["bins"], reply["level"]) == (256, 3)
        published = decode_frame(carrier_frame(0))
        server.publish_frame(0, carrier_frame(0))
        [frame] = await frames_of(ws, 1)
    assert frame.second_power_db is not None and frame.flags == 3
    assert published.second_power_db is not None
    linear = 10.0 ** (published.second_power_db.astype(np.float64) / 10.0)
    mean_db = 10.0 * np.log10(linear.reshape(256, 8).mean(axis=1))
    step = 100.0 / 255  # the uint8 range is -130 .. -20 dB: half a step each side
    assert np.abs(frame.second_power_db - mean_db).max() <= step
    assert np.abs(frame.power_db - published.power_db.reshape(256, 8).max(axis=1)).max() <= step


async def test_a_new_bin_count_resnaps_each_view_to_its_band_once(
        start_server: StartServer, caplog: Any) -> None:
    """When the stream's FFT size changes, each client with a slice of it is told with one
    view message saying reset before the first frame of the new size: its view is the same
    band at the new size (as many bins across it, its frame rate kept), and its frames
    follow it until it asks again; one log line says it, not one per frame or client; stats
    count the resets."""
    caplog.set_level(logging.INFO, logger="gr_argos.server.hub")
    server = start_server(queue_depth=64)
    async with viewer(server, "?center_freq_hz=100.9e6&span_hz=100e3&bins=100&fps_divisor=2") \
            as high, viewer(server, "?center_freq_hz=99.5e6&span_hz=100e3&bins=100") as low:
        high_view, low_view = await next_json(high), await next_json(low)
        assert high_view["bins"] == low_view["bins"] == 128  # 1 kHz bins
        assert server.stats()["total"]["views"] == {"0": 2}
        server.publish_frame(0, carrier_frame(0))
        assert (await frames_of(high, 1))[0].bin_count == high_view["bins"]
        assert (await frames_of(low, 1))[0].bin_count == low_view["bins"]
        server.update_stream(0, bins=1024)  # as a sink does when its FFT size changes
        for sequence in range(2, 8):
            small = np.full(1024, -90.0, dtype=np.float32)
            server.publish_frame(0, encode_frame(small, center_freq_hz=100e6, span_hz=2.048e6,
                                                 timestamp_ns=sequence, sequence=sequence))
        reset = await next_json(high)
        assert reset["type"] == "view" and reset["reset"] is True
        # The same 128 kHz in 2 kHz bins, from the same first frequency (a quarter of a
        # 1 kHz bin apart: bins are centred on their frequencies).
        assert (reset["bins"], reset["span_hz"], reset["fps_divisor"]) == (64, 128e3, 2)
        assert reset["center_freq_hz"] - reset["span_hz"] / 2 == pytest.approx(
            high_view["center_freq_hz"] - high_view["span_hz"] / 2, abs=1e3)
        assert "1024 bins" in reset["message"] and "set_view" in reset["message"]
        resnapped = await frames_of(high, 3)
        assert [(f.sequence, f.bin_count, f.center_freq_hz) for f in resnapped] == [
            (sequence, 64, reset["center_freq_hz"]) for sequence in (2, 4, 6)]
        low_reset = await next_json(low)
        assert low_reset["reset"] is True and low_reset["fps_divisor"] == 1
        assert low_reset["bins"] == 64
        assert [f.bin_count for f in await frames_of(low, 6)] == [64] * 6
        stats = server.stats()["total"]
        assert stats["views_reset"] == 2 and stats["views"] == {"0": 2}
        again = await ask(high, center_freq_hz=100.5e6, span_hz=100e3, bins=50)
        assert again["type"] == "view" and "reset" not in again
        server.publish_frame(0, encode_frame(np.full(1024, -90.0, dtype=np.float32),
                                             center_freq_hz=100e6, span_hz=2.048e6,
                                             timestamp_ns=8, sequence=8))
        assert (await frames_of(high, 1))[0].bin_count == again["bins"]
    resets = [r for r in caplog.records if "views_reset" in r.getMessage()]
    assert len(resets) == 1 and "clients=2" in resets[0].getMessage()


async def test_a_new_view_gets_the_current_frame_at_once(start_server: StartServer) -> None:
    """A zoom does not wait for the next published frame: right after its ``view`` reply a
    client gets the frame it already has, cut to the new view, with the same sequence (and
    the carrier at full level); asking for the view it has sends nothing again, and
    unzooming sends the whole frame at once too."""
    server = start_server()
    async with viewer(server) as ws:
        server.publish_frame(0, carrier_frame(7))
        [whole] = await frames_of(ws, 1)
        zoom = dict(center_freq_hz=float(STREAM_HZ[1300]), span_hz=200e3, bins=50)
        reply = await ask(ws, **zoom)
        [now] = await frames_of(ws, 1)
        again = await ask(ws, **zoom)
        server.publish_frame(0, carrier_frame(8))
        [following] = await frames_of(ws, 1)
        await ask(ws)
        [unzoomed] = await frames_of(ws, 1)
        stats = server.stats()["total"]

    assert (whole.sequence, whole.bin_count) == (7, 2048)
    assert (now.sequence, now.bin_count, now.center_freq_hz) == (7, reply["bins"],
                                                                reply["center_freq_hz"])
    assert now.power_db.max() == np.float32(-20.0)
    assert again == reply and following.sequence == 8  # no second copy of frame 7
    assert (unzoomed.sequence, unzoomed.bin_count) == (8, 2048)
    assert stats["frames_resent"] == 2
