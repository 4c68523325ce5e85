# SPDX-License-Identifier: GPL-3.0-or-later
"""argos-replay: a recording made by argos-spectrum (a real flowgraph) served again frame for
frame (sequence, timestamp and payload identical), status messages saying it is a replay,
and the replay controlled by clients: play, pause, seek, speed."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from gr_argos.protocol import decode_frame
from gr_argos.recording import KIND_FRAME, read_recording
from gr_argos.replay import RecordingPlayer, ReplaySettings, streams_of
from gr_argos.server import ServerConfig, SpectrumServer

from helpers import RECEIVE_TIMEOUT_S, running
from playwright.sync_api import BrowserContext
from viewer_page import WAIT_MS, open_viewer
from server_helpers import StartServer, spectrum_frame

SPECTRUM = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum", "--port", "0"]
REPLAY = [sys.executable, "-u", "-m", "gr_argos.apps.replay", "--port", "0"]
SPECTRUM_URL = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")
REPLAY_URL = re.compile(r"argos-replay: connect to (ws://127\.0\.0\.1:\d+/)")
RECORD_S = 4.0


def recorded_frames(path: Path) -> list[bytes]:
    return [r.body for r in read_recording(path) if r.kind == KIND_FRAME]


def receive_replay(url: str, expected: int, play: dict[str, Any] | None = None
                   ) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Frames and messages from a replay server until ``expected`` frames came (sending
    ``play`` first, if given)."""
    frames: list[bytes] = []
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    with connect(url, open_timeout=RECEIVE_TIMEOUT_S, max_size=None) as ws:
        if play is not None:
            ws.send(json.dumps(play))
        while len(frames) < expected and time.monotonic() < deadline:
            message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(message, bytes):
                frames.append(message)
            else:
                messages.append(json.loads(message))
    return frames, messages


@pytest.mark.slow
def test_a_recording_of_argos_spectrum_replays_frame_for_frame(tmp_path: Path) -> None:
    """argos-spectrum --source sim --record-dir records for a few seconds; argos-replay,
    started paused, plays it when a client says so: the client gets every recorded frame,
    byte for byte (sequence, timestamp, payload), and status messages that say replay."""
    record_dir = tmp_path / "rec"
    with running([*SPECTRUM, "--source", "sim", "--bins", "512", "--fps", "20",
                  "--record-dir", str(record_dir), "--status-interval-s", "0.5"],
                 tmp_path, url_pattern=SPECTRUM_URL, name="argos-spectrum") as app:
        app.wait_for_url()
        time.sleep(RECORD_S)
    recorded = recorded_frames(record_dir)
    assert len(recorded) >= RECORD_S * 20 / 2  # a busy machine may be slower than 20 fps
    sequences = [decode_frame(frame).sequence for frame in recorded]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))

    with running([*REPLAY, str(record_dir), "--paused", "--speed", "4"], tmp_path,
                 url_pattern=REPLAY_URL, name="argos-replay") as replay:
        url = replay.wait_for_url()
        # Frames of argos-spectrum hold a second trace (the average): ask for it too.
        frames, messages = receive_replay(url + "?second_trace=1", len(recorded),
                                          {"type": "replay", "action": "play"})
        assert replay.wait_for_exit() == 0  # the recording ended
    assert "the recording ended" in replay.output()
    assert frames == recorded
    hello = messages[0]
    assert hello["type"] == "hello" and hello["streams"][0]["bins"] == 512
    assert any(m["type"] == "replay" and m["paused"] is False for m in messages)
    statuses = [m for m in messages if m["type"] == "status"]
    assert statuses and all(m["replay"]["file"] == "rec" for m in statuses)
    assert all(m["replay"]["speed"] == 4 for m in statuses)


@pytest.fixture
def recording(tmp_path: Path, start_server: StartServer) -> Path:
    """A recording of 40 frames 50 ms apart (2 s) with a status message each 10 frames."""
    server = start_server(record_dir=str(tmp_path / "rec"))
    for sequence in range(40):
        server.publish_frame(0, spectrum_frame(sequence))
        if sequence % 10 == 0:
            server.publish_message("status", {"stream": 0, "fps": 20.0})
        time.sleep(0.05)
    server.stop()
    return tmp_path / "rec"


@pytest.fixture
def replaying(recording: Path, no_server_thread_left: None
              ) -> Iterator[tuple[SpectrumServer, RecordingPlayer]]:
    """The recording served by a server (as argos-replay does), paused, at 2x."""
    players: list[RecordingPlayer] = []
    server = SpectrumServer(ServerConfig(port=0),
                            handlers={"replay": lambda m: players[0].control(m)})
    for info in streams_of(recording):
        server.add_stream(info)
    player = RecordingPlayer(recording, server, ReplaySettings(paused=True, speed=2.0))
    players.append(player)
    server.start()
    player.start()
    try:
        yield server, player
    finally:
        player.stop()
        server.stop()


async def test_clients_pause_seek_and_change_the_speed(
        replaying: tuple[SpectrumServer, RecordingPlayer]) -> None:
    """play, then pause (no frames while paused, status says paused), seek back to the
    start (sequence 0 again), a speed and a bad action: each answered with the state."""
    from websockets.asyncio.client import connect as async_connect

    server, player = replaying

    async def next_of(ws: Any, kind: str) -> Any:
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while True:
                message = await ws.recv()
                if kind == "frame" and isinstance(message, bytes):
                    return decode_frame(message)
                if isinstance(message, str) and json.loads(message)["type"] == kind:
                    return json.loads(message)

    async with async_connect(server.url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "replay", "action": "play"}))
        assert (await next_of(ws, "replay"))["paused"] is False
        first = await next_of(ws, "frame")
        await ws.send(json.dumps({"type": "replay", "action": "pause"}))
        paused = await next_of(ws, "replay")
        assert paused["paused"] is True
        status = await next_of(ws, "status")  # repeated while paused
        assert status["replay"]["paused"] is True
        at_pause = player.frames_published
        await asyncio.sleep(0.5)
        assert player.frames_published == at_pause
        await ws.send(json.dumps({"type": "replay", "action": "seek", "offset_s": 0}))
        await next_of(ws, "replay")
        await ws.send(json.dumps({"type": "replay", "action": "speed", "speed": 8}))
        assert (await next_of(ws, "replay"))["speed"] == 8
        await ws.send(json.dumps({"type": "replay", "action": "play"}))
        await next_of(ws, "replay")
        again = await next_of(ws, "frame")
        await ws.send(json.dumps({"type": "replay", "action": "rewind"}))
        error = await next_of(ws, "error")
    assert first.sequence <= 1 and again.sequence == 0
    assert error["code"] == "bad_message" and "unknown action 'rewind'" in error["message"]


def test_a_path_that_is_no_recording_exits_1_saying_so(tmp_path: Path) -> None:
    import subprocess

    from helpers import ENV

    result = subprocess.run([*REPLAY, str(tmp_path)], env=ENV, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert f"{tmp_path} holds no recording" in result.stderr


def test_the_viewer_shows_the_replay_and_controls_it(
        replaying: tuple[SpectrumServer, RecordingPlayer], context: BrowserContext) -> None:
    """The viewer of a replay shows its bar: the recording's name, paused, where it is and
    how long it is (in the status bar too). Its buttons play and pause the replay, its
    slider seeks, its select changes the speed and its box loops it: the server's player
    does each, and the bar follows."""
    server, player = replaying
    viewer = open_viewer(context, server.url.replace("ws://", "http://"))
    page = viewer.page
    page.wait_for_selector("#replay-bar:not([hidden])", timeout=WAIT_MS)
    length = (player.end_ns - player.start_ns) / 1e9
    length_text = f"0:{length:04.1f}"
    assert page.text_content("#replay-name") == "rec"
    assert page.text_content("#replay-time") == f"0:00.0 / {length_text}"
    assert page.text_content("#replay-text") == f"paused 0:00.0 / {length_text}"
    assert page.text_content("#replay-play") == "Play"
    # The replay has a bar: not a blob in the device panel, nor a frame age of days.
    assert "Replay" not in page.inner_text("#device")
    assert not page.is_visible("#age")

    def player_shows(condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_MS / 1000
        while not condition(state := player.state()):
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        return state

    page.click("#replay-play")
    player_shows(lambda s: not s["paused"] and s["position_ns"] > player.start_ns)
    page.wait_for_function("document.querySelector('#replay-play').textContent === 'Pause'",
                           timeout=WAIT_MS)
    viewer.wait_for("s.framesReceived > 0")
    page.click("#replay-play")
    player_shows(lambda s: s["paused"])
    page.wait_for_function("document.querySelector('#replay-play').textContent === 'Play'",
                           timeout=WAIT_MS)
    page.eval_on_selector("#replay-position", """(slider) => {
        slider.value = '1'; slider.dispatchEvent(new Event('input'));
        slider.dispatchEvent(new Event('change')); }""")
    player_shows(lambda s: s["position_ns"] == player.start_ns + 1_000_000_000)
    page.wait_for_function("document.querySelector('#replay-time').textContent"
                           f".startsWith('0:01.0 / ')", timeout=WAIT_MS)
    page.select_option("#replay-speed", "8")
    player_shows(lambda s: s["speed"] == 8)
    page.check("#replay-loop")
    player_shows(lambda s: s["loop"])
    page.wait_for_function("document.querySelector('#replay-text').textContent"
                           ".startsWith('paused 0:01.0')", timeout=WAIT_MS)
    assert viewer.errors == []
