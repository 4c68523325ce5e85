# SPDX-License-Identifier: GPL-3.0-or-later
"""gpsd_source against a real gpsd: gpsfake replays tests/data/drive.nmea through gpsd, the
block feeds a websocket_sink, and a real WebSocket client reads the ``gps`` messages.

The log holds 4 s without a fix, then 20 fixes at 1 Hz. gpsfake plays it in a loop, 0.03 s
per sentence (about 4.5 s per loop), on a free port; every gpsfake (and the gpsd it starts,
in the same new session) is killed in a ``finally``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

gr = pytest.importorskip("gnuradio.gr")
from gnuradio import blocks  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from gr_argos.gpsd_source import gpsd_source  # noqa: E402
from gr_argos.websocket_sink import websocket_sink  # noqa: E402
from gps_replay import (  # noqa: E402
    WAIT_S, FIX_TIMES, NO_FIX_TIMES, epoch_of, free_port, gpsfake, fix_times, assert_positions_match_the_log,
    gps_messages_until,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("gpsfake") is None, reason="needs gpsfake (gpsd-clients)"),
]

@pytest.fixture
def gps_flowgraph(no_server_thread_left: None) -> Iterator[Callable[[int], tuple[Any, str]]]:
    """``make(gpsd_port)``: gpsd_source -> websocket_sink(msg_channel="gps") with a slow
    spectrum stream keeping the sink busy; returns (top block, ws:// URL), not started."""
    made: list[tuple[Any, websocket_sink, gpsd_source]] = []

    def make(gpsd_port: int) -> tuple[Any, str]:
        tb = gr.top_block()
        spectrum = blocks.vector_source_f([0.0] * 16, True, 16)
        throttle = blocks.throttle(gr.sizeof_float * 16, 10, True)
        throttle.set_max_noutput_items(1)  # else it sleeps for a whole buffer when stopped
        sink = websocket_sink(bins=16, port=0, msg_channel="gps")
        gps = gpsd_source(port=gpsd_port, reconnect_interval_s=0.5)
        tb.connect(spectrum, throttle, sink)
        tb.msg_connect(gps, "gps", sink, "msg")
        made.append((tb, sink, gps))  # a Python block must outlive its flowgraph's run
        return tb, sink.url

    yield make
    for tb, sink, _gps in made:
        tb.stop()
        tb.wait()
        sink.stop()


# -- tests ------------------------------------------------------------------------------------

def test_log_has_a_no_fix_start_and_twenty_fixes() -> None:
    """The shipped log is what the other tests assume: 4 epochs without, then 20 with a fix."""
    assert len(NO_FIX_TIMES) == 4 and len(FIX_TIMES) == 20
    assert max(NO_FIX_TIMES) < min(FIX_TIMES)


def test_clients_receive_the_logs_positions_and_no_fix(
        gps_flowgraph: Callable[[int], tuple[Any, str]]) -> None:
    """Through gpsd, the block and the sink a client gets every fix of the log with its
    position, altitude, speed and satellites, and the searching part as no fix without a
    position."""
    port = free_port()
    with gpsfake(port):
        tb, url = gps_flowgraph(port)
        with connect(url, open_timeout=WAIT_S) as websocket:
            tb.start()
            messages = gps_messages_until(websocket, lambda got: (
                fix_times(got) >= FIX_TIMES
                and any(not m["fix"] and epoch_of(m) in NO_FIX_TIMES for m in got)))

    assert_positions_match_the_log(messages)
    for message in messages:
        assert message["stream"] == 0 and message["connected"] is True
        if not message["fix"]:
            assert "lat" not in message and "lon" not in message, json.dumps(message)
        elif "alt_m" in message:  # gpsd's first reports of a session may lack it
            assert message["mode"] == 3 and 34.0 <= message["alt_m"] <= 36.2, message
    searching = [m for m in messages if epoch_of(m) in NO_FIX_TIMES]
    assert all(m["mode"] == 1 for m in searching), searching
    # Speed, track and satellite counts of the fixes, once gpsd has seen a whole epoch. Its
    # SKY comes after the TPV, so a report carries the counts of an earlier epoch: 0 used
    # while those are from the searching part.
    settled = [m for m in messages if m["fix"] and "time" in m and epoch_of(m) > "12:00:05"]
    assert settled and any("alt_m" in m for m in settled)
    for message in settled:
        assert message["speed_mps"] == pytest.approx(12.5, abs=0.01)
        assert 78.0 <= message["track_deg"] <= 88.0
        assert message["satellites_used"] in (0, 8) and message["satellites_visible"] == 10
    assert any(m["satellites_used"] == 8 for m in settled)


def test_block_reconnects_after_gpsd_restarts(
        gps_flowgraph: Callable[[int], tuple[Any, str]]) -> None:
    """Killing gpsd makes the block report connected false and no fix; once gpsd is back on
    the same port, positions from the log arrive again."""
    port = free_port()
    tb, url = gps_flowgraph(port)
    with connect(url, open_timeout=WAIT_S) as websocket:
        tb.start()
        with gpsfake(port):
            gps_messages_until(websocket, lambda got: any(m["fix"] for m in got))
        lost = gps_messages_until(websocket, lambda got: any(not m["connected"] for m in got))
        with gpsfake(port):
            after = gps_messages_until(websocket, lambda got: len(fix_times(got)) >= 3)

    assert lost[-1] == {"type": "gps", "stream": 0, "connected": False, "mode": 0,
                        "fix": False}
    assert all(m["connected"] for m in after)
    assert_positions_match_the_log(after)


def test_unreachable_gpsd_is_logged_and_retried_without_failing_the_flowgraph(
        gps_flowgraph: Callable[[int], tuple[Any, str]]) -> None:
    """With no gpsd on the port, the flowgraph runs and the spectrum still flows; a gpsd that
    appears later is picked up."""
    port = free_port()
    tb, url = gps_flowgraph(port)
    with connect(url, open_timeout=WAIT_S) as websocket:
        tb.start()
        assert isinstance(websocket.recv(timeout=WAIT_S), str)  # hello
        assert isinstance(websocket.recv(timeout=WAIT_S), bytes)  # spectrum keeps flowing
        time.sleep(1.0)  # a few failed attempts
        with gpsfake(port):
            messages = gps_messages_until(websocket, lambda got: any(m["fix"] for m in got))
    assert_positions_match_the_log(messages)
