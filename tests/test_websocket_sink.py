# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for the websocket_sink block in real GNU Radio flowgraphs, with real clients.

The sink opens its server when it is made, so each test connects its client before it
starts the flowgraph and sees every vector from the first one on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest

gr = pytest.importorskip("gnuradio.gr")
import pmt  # noqa: E402
from gnuradio import blocks  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from gr_argos.protocol import SpectrumFrame, decode_frame  # noqa: E402
from gr_argos.server import ServerError  # noqa: E402
from gr_argos.websocket_sink import websocket_sink  # noqa: E402

pytestmark = pytest.mark.slow

WAIT_S = 20.0
VLEN = 16
VECTORS_PER_S = 20  # slow enough that a client on a loaded machine never falls behind
# Eight distinct spectra; vector k holds -10k dB plus a ramp, so any mix-up shows.
VECTORS = [np.float32(-10.0 * k) - np.arange(VLEN, dtype=np.float32) * np.float32(1.5)
           + np.float32(0.125) for k in range(8)]
RX_TIME_S, RX_TIME_FRAC = 1_700_000_000, 0.123456789
RX_TIME_NS = 1_700_000_000_123_456_789

MakeFlowgraph = Callable[..., tuple[Any, websocket_sink]]


def tag(vector_index: int, key: str, value: Any, vlen: int = VLEN) -> Any:
    """A stream tag on the first sample of a vector, as a source upstream would put it."""
    t = gr.tag_t()
    t.offset = vector_index * vlen
    t.key = pmt.intern(key)
    t.value = value
    return t


@pytest.fixture
def make_flowgraph(no_server_thread_left: None) -> Iterator[MakeFlowgraph]:
    """``make_flowgraph(vectors, tags=(), **sink_args)``: a top block feeding the vectors
    (repeated) through stream_to_vector and a throttle into a websocket_sink; returns
    (tb, sink). Periodic status messages are off unless ``status_interval_s`` is given.

    The sink's server runs as soon as it is made; flowgraphs and sinks are stopped afterwards.
    """
    made: list[tuple[Any, websocket_sink]] = []

    def make(vectors: Sequence[np.ndarray], tags: Sequence[Any] = (),
             **sink_args: Any) -> tuple[Any, websocket_sink]:
        vlen = len(vectors[0])
        tb = gr.top_block()
        source = blocks.vector_source_f(np.concatenate(vectors).tolist(), True, 1, list(tags))
        to_vector = blocks.stream_to_vector(gr.sizeof_float, vlen)
        throttle = blocks.throttle(gr.sizeof_float * vlen, VECTORS_PER_S, True)
        throttle.set_max_noutput_items(1)  # else its first call waits for a whole buffer
        sink_args.setdefault("status_interval_s", 0)  # periodic status only where a test asks
        sink = websocket_sink(bins=vlen, **sink_args)
        made.append((tb, sink))
        tb.connect(source, to_vector, throttle, sink)
        return tb, sink

    yield make
    for tb, sink in made:
        tb.stop()
        tb.wait()
        sink.stop()  # a sink whose flowgraph never ran still holds its server


def free_port() -> int:
    """A TCP port nobody listens on right now (another program could take it before use)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def next_message(ws: ClientConnection) -> str | bytes:
    async with asyncio.timeout(WAIT_S):
        return await ws.recv()


async def next_frames(ws: ClientConnection, count: int) -> list[SpectrumFrame]:
    """The next ``count`` spectrum frames; fails on any text message in between."""
    frames = []
    while len(frames) < count:
        message = await next_message(ws)
        assert isinstance(message, bytes), f"unexpected message {message!r}"
        frames.append(decode_frame(message))
    return frames


async def close_code_seen(ws: ClientConnection) -> int | None:
    """Read until the server closes the connection; the close code it sent."""
    try:
        while True:
            await next_message(ws)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


async def test_client_gets_every_vector_with_metadata_from_parameters_then_tags(
        make_flowgraph: MakeFlowgraph) -> None:
    """Each vector reaches the client bit for bit; centre and span come from the block's
    parameters until rx_freq/rx_rate tags change them, and the rx_time-tagged vector carries
    exactly that capture time."""
    rx_time = pmt.make_tuple(pmt.from_uint64(RX_TIME_S), pmt.from_double(RX_TIME_FRAC))
    tb, sink = make_flowgraph(
        VECTORS,
        tags=[tag(2, "rx_freq", pmt.from_double(433.92e6)),
              tag(3, "rx_rate", pmt.from_double(2.4e6)),
              tag(4, "rx_time", rx_time)],
        center_freq=100e6, span=2e6, port=0, queue_depth=256, stream_name="hackrf")

    async with connect(sink.url, open_timeout=WAIT_S) as ws:
        hello = json.loads(await next_message(ws))
        before_ns = time.time_ns()
        tb.start()
        frames = await next_frames(ws, len(VECTORS))
        after_ns = time.time_ns()
        async with connect(sink.url, open_timeout=WAIT_S) as late:
            late_hello = json.loads(await next_message(late))
        tb.stop()
        await asyncio.to_thread(tb.wait)
        code = await close_code_seen(ws)

    assert hello["streams"] == [{"id": 0, "name": "hackrf", "bins": VLEN,
                                 "center_freq_hz": 100e6, "span_hz": 2e6,
                                 "encoding": "float32", "fps": 30.0}]
    assert [f.sequence for f in frames] == list(range(len(VECTORS)))
    assert all(f.missed == 0 and f.stream_id == 0 for f in frames)
    assert [f.power_db.tobytes() for f in frames] == [v.tobytes() for v in VECTORS]
    assert [(f.center_freq_hz, f.span_hz) for f in frames] == (
        [(100e6, 2e6)] * 2 + [(433.92e6, 2e6)] + [(433.92e6, 2.4e6)] * 5)
    assert all(before_ns <= f.timestamp_ns <= after_ns for f in frames[:4])
    assert frames[4].timestamp_ns == RX_TIME_NS
    assert all(f.timestamp_ns >= RX_TIME_NS for f in frames[5:])
    assert (late_hello["streams"][0]["center_freq_hz"],
            late_hello["streams"][0]["span_hz"]) == (433.92e6, 2.4e6)
    assert code == 1001  # the flowgraph stopped: its server went away


async def test_pmt_dict_on_msg_port_reaches_clients_as_json(
        make_flowgraph: MakeFlowgraph) -> None:
    """A PMT dict posted to the msg port reaches clients as a JSON message whose type is the
    sink's msg_channel, with the stream id and the dict's keys."""
    tb, sink = make_flowgraph(VECTORS, port=0, stream_id=3, msg_channel="gps")

    async with connect(sink.url, open_timeout=WAIT_S) as ws:
        await next_message(ws)  # hello
        tb.start()
        sink._post(sink.MSG_PORT, pmt.to_pmt({"lat": 52.2297, "lon": 21.0122, "fix": True,
                                              "sats": 9, "fix_type": "3d"}))
        message = await next_message(ws)
        while isinstance(message, bytes):
            message = await next_message(ws)

    assert json.loads(message) == {"type": "gps", "stream": 3, "lat": 52.2297,
                                   "lon": 21.0122, "fix": True, "sats": 9, "fix_type": "3d"}


@pytest.mark.parametrize(
    "rejected",
    [pmt.from_long(42), pmt.intern("status"), pmt.to_pmt([1.0, 2.0]),
     pmt.dict_add(pmt.make_dict(), pmt.from_long(1), pmt.from_long(2))],
    ids=["integer", "symbol", "vector", "dict_with_integer_key"],
)
async def test_message_that_is_not_a_dict_of_symbols_is_dropped(
        make_flowgraph: MakeFlowgraph, rejected: Any) -> None:
    """A message that is not a PMT dict with symbol keys reaches no client and does not
    disturb the flowgraph: frames keep coming and later messages still arrive."""
    tb, sink = make_flowgraph(VECTORS, port=0, queue_depth=256)

    async with connect(sink.url, open_timeout=WAIT_S) as ws:
        await next_message(ws)  # hello
        tb.start()
        await next_frames(ws, 1)
        sink._post(sink.MSG_PORT, rejected)
        sink._post(sink.MSG_PORT, pmt.to_pmt({"after": 1}))
        texts: list[dict[str, Any]] = []
        frames: list[SpectrumFrame] = []
        while not texts or len(frames) < 3:
            message = await next_message(ws)
            if isinstance(message, bytes):
                frames.append(decode_frame(message))
            else:
                texts.append(json.loads(message))

    assert texts == [{"type": "gps", "stream": 0, "after": 1}]
    sequences = [f.sequence for f in frames]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))


async def test_periodic_status_reports_the_stream_and_what_the_source_posted(
        make_flowgraph: MakeFlowgraph) -> None:
    """Every status_interval_s the client gets a status message with the stream's frequency,
    span and bins, a growing frame count, and the fields sources posted on the status port
    (a probe_rate PDU's rate_avg as samp_rate_measured)."""
    tb, sink = make_flowgraph(VECTORS, port=0, center_freq=433.92e6, span=2e6,
                              status_interval_s=0.2)
    sink.set_source_status({"source": "test", "lna_gain": 16.0})
    async with connect(sink.url, open_timeout=WAIT_S) as ws:
        await next_message(ws)  # hello
        tb.start()
        # blocks.probe_rate posts a PDU: (metadata dict . nil)
        sink._post(sink.STATUS_PORT, pmt.cons(
            pmt.to_pmt({"rate_avg": 1.99e6, "rate_now": 2.01e6}), pmt.PMT_NIL))
        sink._post(sink.STATUS_PORT, pmt.intern("not a dict"))  # logged and dropped
        statuses: list[dict[str, Any]] = []
        while len(statuses) < 2 or "samp_rate_measured" not in statuses[-1] or (
                statuses[-1]["frames"] <= statuses[0]["frames"]):
            message = await next_message(ws)
            if isinstance(message, str):
                statuses.append(json.loads(message))

    last = statuses[-1]
    assert {s["type"] for s in statuses} == {"status"}
    assert last["stream"] == 0 and last["bins"] == VLEN
    assert last["center_freq_hz"] == 433.92e6 and last["span_hz"] == 2e6
    assert last["source"] == "test" and last["lna_gain"] == 16.0
    assert last["samp_rate_measured"] == 1.99e6 and "rate_now" not in last
    assert last["fps"] >= 0 and last["frames_skipped"] == 0


async def test_two_sinks_on_one_port_share_one_server(make_flowgraph: MakeFlowgraph) -> None:
    """Two sinks given the same port serve both streams from one server: one hello lists
    both, and a client receives the frames of each."""
    port = free_port()
    narrow = [np.full(4, -60.0 - k, dtype=np.float32) for k in range(4)]
    wide_tb, wide = make_flowgraph(VECTORS, port=port, stream_id=0, stream_name="wide",
                                   center_freq=100e6, span=20e6)
    narrow_tb, narrow_sink = make_flowgraph(narrow, port=port, stream_id=1,
                                            stream_name="narrow", center_freq=2.4e9,
                                            span=1e6)

    async with connect(wide.url, open_timeout=WAIT_S) as ws:
        hello = json.loads(await next_message(ws))
        wide_tb.start()
        narrow_tb.start()
        first_by_stream: dict[int, SpectrumFrame] = {}
        while len(first_by_stream) < 2:
            frame = (await next_frames(ws, 1))[0]
            first_by_stream.setdefault(frame.stream_id, frame)

    assert narrow_sink.url == wide.url == f"ws://127.0.0.1:{port}/"
    assert sorted((s["id"], s["name"], s["bins"], s["center_freq_hz"])
                  for s in hello["streams"]) == [(0, "wide", VLEN, 100e6),
                                                 (1, "narrow", 4, 2.4e9)]
    assert first_by_stream[0].power_db.tobytes() == VECTORS[0].tobytes()
    assert first_by_stream[1].power_db.tobytes() == narrow[0].tobytes()
    assert (first_by_stream[1].center_freq_hz, first_by_stream[1].span_hz) == (2.4e9, 1e6)


def test_port_in_use_fails_when_the_sink_is_made_naming_the_port(
        no_server_thread_left: None) -> None:
    """A sink asked for a port another program listens on fails at once with a ServerError
    that names the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(ServerError, match=f"port {port} .*in use"):
            websocket_sink(bins=VLEN, port=port)


async def test_default_encoding_applies_to_clients_that_choose_none(
        make_flowgraph: MakeFlowgraph) -> None:
    """A sink made with encoding="int16" sends int16 frames to a client that did not ask for
    an encoding, holding the spectrum within 0.005 dB."""
    tb, sink = make_flowgraph(VECTORS, port=0, encoding="int16")
    async with connect(sink.url, open_timeout=WAIT_S) as ws:
        hello = json.loads(await next_message(ws))
        assert hello["streams"][0]["encoding"] == "int16"
        tb.start()
        frames = await next_frames(ws, len(VECTORS))
    for frame in frames:
        assert frame.encoding == 1
        # the vector it came from is the nearest one (they lie 10 dB apart)
        error = min(float(np.max(np.abs(frame.power_db - v))) for v in VECTORS)
        assert error <= 0.005 + 1e-5  # the bound plus float32 rounding of the decoded value


async def test_default_step_applies_to_clients_that_choose_none(
        make_flowgraph: MakeFlowgraph) -> None:
    """A sink made with encoding="uint8", step_db=1 sends uint8 frames with a 1 dB step on
    whole-dB levels, within half a dB, to a client that did not ask for a format."""
    tb, sink = make_flowgraph(VECTORS, port=0, encoding="uint8", step_db=1.0)
    async with connect(sink.url, open_timeout=WAIT_S) as ws:
        hello = json.loads(await next_message(ws))
        assert hello["streams"][0]["encoding"] == "uint8"
        tb.start()
        frames = await next_frames(ws, len(VECTORS))
    for frame in frames:
        assert frame.encoding == 2
        assert np.array_equal(frame.power_db, np.round(frame.power_db))
        error = min(float(np.max(np.abs(frame.power_db - v))) for v in VECTORS)
        assert error <= 0.5 + 1e-5


@pytest.mark.parametrize("step_db", [-1.0, 0.001, 25.0])
def test_a_step_out_of_range_is_refused_when_the_sink_is_made(step_db: float) -> None:
    """A sink asked for a step outside 0.01..20 dB says which steps are accepted."""
    with pytest.raises(ValueError, match="from 0.01 to 20"):
        websocket_sink(bins=VLEN, port=0, encoding="uint8", step_db=step_db)


def test_unknown_encoding_is_refused_when_the_sink_is_made() -> None:
    """A sink asked for an encoding that does not exist says which ones do."""
    with pytest.raises(ValueError, match="float32, int16, uint8"):
        websocket_sink(bins=VLEN, port=0, encoding="float16")


async def test_a_second_input_is_the_second_trace_for_the_clients_that_ask(
        no_server_thread_left: None) -> None:
    """A sink made with detector="peak", second_detector="average" has a second input; hello
    says both; a client with second_trace=1 gets each frame with both traces, one without
    gets the peak alone, as before."""
    peak, average = VECTORS[0], VECTORS[0] - 10.0
    tb = gr.top_block()
    sink = websocket_sink(bins=VLEN, port=0, status_interval_s=0, detector="peak",
                          second_detector="average")
    try:
        for port, vector in enumerate((peak, average)):
            source = blocks.vector_source_f(vector.tolist(), True, VLEN)
            throttle = blocks.throttle(gr.sizeof_float * VLEN, VECTORS_PER_S, True)
            throttle.set_max_noutput_items(1)
            tb.connect(source, throttle, (sink, port))
        async with connect(sink.url + "?second_trace=1", open_timeout=WAIT_S) as both, \
                connect(sink.url, open_timeout=WAIT_S) as plain:
            hello = json.loads(await next_message(both))
            assert (hello["streams"][0]["detector"],
                    hello["streams"][0]["second_detector"]) == ("peak", "average")
            assert json.loads(await next_message(both))["second_trace"] is True
            await next_message(plain)
            tb.start()
            two, one = await next_frames(both, 3), await next_frames(plain, 3)
    finally:
        tb.stop()
        tb.wait()
        sink.stop()
    for frame in two:
        assert (frame.detector, frame.second_detector) == ("peak", "average")
        np.testing.assert_array_equal(frame.power_db, peak)
        assert frame.second_power_db is not None
        np.testing.assert_array_equal(frame.second_power_db, average)
    assert all(f.detector == "peak" and f.second_power_db is None for f in one)


async def test_setters_change_a_running_sink_as_grc_callbacks_do(
        make_flowgraph: MakeFlowgraph) -> None:
    """set_center_freq, set_span and set_fps (the callbacks of a variable or QT GUI range in
    GRC) change the frames from the next one on and the stream a new client is told about;
    a bad value raises the block's clear error and changes nothing."""
    from gr_argos.settings import ConfigError

    tb, sink = make_flowgraph(VECTORS, center_freq=100e6, span=2e6, port=0, queue_depth=256)
    async with connect(sink.url, open_timeout=WAIT_S) as ws:
        await next_message(ws)  # hello
        tb.start()
        before = await next_frames(ws, 2)
        sink.set_center_freq(433.92e6)
        sink.set_span(2.4e6)
        sink.set_fps(25)
        with pytest.raises(ConfigError, match="span"):
            sink.set_span(-1)
        after = await next_frames(ws, 40)
        async with connect(sink.url, open_timeout=WAIT_S) as late:
            stream = json.loads(await next_message(late))["streams"][0]
    assert {(f.center_freq_hz, f.span_hz) for f in before} == {(100e6, 2e6)}
    assert after[-1].center_freq_hz == 433.92e6 and after[-1].span_hz == 2.4e6
    changed = [(f.center_freq_hz, f.span_hz) != (100e6, 2e6) for f in after]
    assert changed == sorted(changed)  # once changed, every later frame has the new values
    assert (stream["center_freq_hz"], stream["span_hz"], stream["fps"]) == (433.92e6, 2.4e6, 25)


async def test_a_sink_fed_far_faster_than_its_frame_rate_skips_and_counts(
        no_server_thread_left: None) -> None:
    """Vectors at 400/s into a sink whose fps is 10 (an FFT not decimated): beyond max_fps
    (here 20) frames are skipped; the clients see the gaps in the sequence numbers and the
    status message counts them in frames_skipped."""
    tb = gr.top_block()
    source = blocks.vector_source_f(np.concatenate(VECTORS).tolist(), True, 1, [])
    to_vector = blocks.stream_to_vector(gr.sizeof_float, VLEN)
    throttle = blocks.throttle(gr.sizeof_float * VLEN, 400, True)
    sink = websocket_sink(bins=VLEN, fps=10, max_fps=20, port=0, queue_depth=256,
                          status_interval_s=0.5)
    tb.connect(source, to_vector, throttle, sink)
    frames: list[SpectrumFrame] = []
    skipped = 0
    try:
        async with connect(sink.url, open_timeout=WAIT_S) as ws:
            await next_message(ws)  # hello
            tb.start()
            while len(frames) < 30 or skipped == 0:
                message = await next_message(ws)
                if isinstance(message, bytes):
                    frames.append(decode_frame(message))
                elif (body := json.loads(message))["type"] == "status":
                    skipped = body["frames_skipped"]
    finally:
        tb.stop()
        await asyncio.to_thread(tb.wait)
        sink.stop()
    sequences = [f.sequence for f in frames]
    assert sequences == sorted(sequences) and sequences[-1] - sequences[0] > len(frames)
    assert skipped > 0
