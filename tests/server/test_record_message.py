# SPDX-License-Identifier: GPL-3.0-or-later
"""Clients start and stop a real server's recording with the ``record`` message: operators
and admins may, viewers are refused with record_refused, every request is audited and
counted, and every client is told the new state (docs/protocol.md, docs/recording.md).
Through raw websockets clients, the Python client, argos-client, and the viewer's device
panel (headless Chromium)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from gr_argos.client import ArgosClient, MessageEvent
from gr_argos.protocol import decode_frame
from gr_argos.recording import KIND_FRAME, read_recording, segments
from gr_argos.server import SpectrumServer
from helpers import ENV
from server_helpers import WAIT_S, StartServer, samples, scrape, spectrum_frame, value
from viewer_page import open_viewer
from tests.server.test_control import (
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    joined,
    next_message,
    send,
)

CLIENT = [sys.executable, "-m", "gr_argos.apps.client"]


def recorded_sequences(record_dir: Path) -> list[int]:
    return [decode_frame(record.body).sequence for record in read_recording(record_dir)
            if record.kind == KIND_FRAME]


@pytest.fixture
def recording_server(start_server: StartServer, tmp_path: Path) -> SpectrumServer:
    return start_server(token=VIEWER_TOKEN, operator_tokens=(OPERATOR_TOKEN,),
                        record_dir=str(tmp_path / "rec"))


async def test_an_operator_stops_and_starts_the_recording_and_everyone_is_told(
        recording_server: SpectrumServer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A viewer's stop is refused (record_refused, saying an operator token is needed); an
    operator's stop is told to both clients; frames published while stopped are not
    recorded and not counted as dropped; the operator's start records again into a new
    segment. Each request is an audit line and counted in /metrics."""
    caplog.set_level(logging.INFO, "gr_argos.audit")
    server = recording_server
    record_dir = tmp_path / "rec"
    async with joined(server, VIEWER_TOKEN) as (viewer, _), \
            joined(server, OPERATOR_TOKEN) as (operator, _):
        for sequence in range(5):
            server.publish_frame(0, spectrum_frame(sequence))
        await send(viewer, "record", action="stop")
        refused = await next_message(viewer, "error")
        await send(operator, "record", action="stop", kind="spectrum")
        stopped = [await next_message(ws, "recording") for ws in (viewer, operator)]
        for sequence in range(5, 10):
            server.publish_frame(0, spectrum_frame(sequence))
        await send(operator, "record", action="start")
        started = await next_message(viewer, "recording")
        for sequence in range(10, 15):
            server.publish_frame(0, spectrum_frame(sequence))
        server.publish_message("status", {"stream": 0})
        status = await next_message(viewer, "status")
        found = samples(await asyncio.to_thread(scrape, server.port, VIEWER_TOKEN))
    recorder = server.recorder
    assert recorder is not None
    server.stop()

    assert refused["code"] == "record_refused"
    assert "operator or admin token" in refused["message"]
    assert stopped[0] == stopped[1]
    assert stopped[0]["event"] == "stopped" and stopped[0]["kinds"] == ["spectrum"]
    assert stopped[0]["role"] == "operator"
    assert stopped[0]["recording"]["spectrum"]["started"] is False
    assert started["event"] == "started" and started["recording"]["spectrum"]["started"]
    assert status["server"]["recorder"]["started"] is True
    assert recorded_sequences(record_dir) == [*range(5), *range(10, 15)]
    assert len(segments(record_dir)) == 2
    assert recorder.dropped_frames == 0
    audit = [r.getMessage() for r in caplog.records if r.name == "gr_argos.audit"]
    assert any("event=record action=stop" in line and "role=operator" in line
               and "outcome=accepted" in line for line in audit)
    assert any("event=record action=stop" in line and "outcome=refused" in line
               for line in audit)
    assert value(found, "argos_control_events_total", action="record_stop",
                 outcome="refused") == 1
    assert value(found, "argos_control_events_total", action="record_start",
                 outcome="accepted") == 1


async def test_a_server_without_that_recording_says_which_setting_makes_it(
        start_server: StartServer) -> None:
    """No record_dir: a start is refused, naming record_dir; a bad kind is a bad_message."""
    server = start_server()
    async with joined(server) as (ws, hello_control):
        await send(ws, "record", action="start")
        nothing = await next_message(ws, "error")
        await send(ws, "record", action="start", kind="video")
        bad = await next_message(ws, "error")
    assert nothing["code"] == "record_refused" and "record_dir" in nothing["message"]
    assert bad["code"] == "bad_message" and "spectrum or iq" in bad["message"]


async def test_the_python_client_records_and_stops(recording_server: SpectrumServer) -> None:
    """ArgosClient.record: the answer is a recording MessageEvent with the state."""
    client = ArgosClient(recording_server.url, token=OPERATOR_TOKEN)
    answers = []
    async with asyncio.timeout(WAIT_S):
        async with client:
            async for event in client:
                if isinstance(event, MessageEvent) and event.type == "hello":
                    await client.record("stop")
                elif isinstance(event, MessageEvent) and event.type == "recording":
                    answers.append(event.message)
                    if len(answers) == 2:
                        break
                    await client.record("start", "spectrum")
    assert [a["event"] for a in answers] == ["stopped", "started"]
    assert answers[1]["recording"]["spectrum"]["started"] is True


@pytest.mark.parametrize("token, code", [(OPERATOR_TOKEN, 0), (VIEWER_TOKEN, 4)])
def test_argos_client_record_prints_the_state_or_exits_4(
        recording_server: SpectrumServer, tmp_path: Path, token: str, code: int) -> None:
    """argos-client --record stop: an operator gets the state as JSON (exit 0), a viewer
    the refusal on stderr (exit 4)."""
    token_file = tmp_path / "token"
    token_file.write_text(token)
    result = subprocess.run([*CLIENT, recording_server.url, "--token-file", str(token_file),
                             "--record", "stop"], env=ENV, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == code, result.stderr
    if code == 0:
        assert json.loads(result.stdout)["spectrum"]["started"] is False
    else:
        assert result.stdout == "" and "operator or admin token" in result.stderr


def test_the_viewer_records_and_stops_and_says_so(
        start_server: StartServer, tmp_path: Path, context: BrowserContext) -> None:
    """A page that may control (on the server's machine) has a Stop recording button while
    the server records, and its device panel a Recording line: on with what it wrote. The
    button stops the server's recorder (the line says stopped, the button Record), and
    starts it again."""
    server = start_server(record_dir=str(tmp_path / "rec"))
    recorder = server.recorder
    assert recorder is not None
    viewer = open_viewer(context, server.url.replace("ws://", "http://"))
    page = viewer.page
    viewer.wait_for("s.state === 'open'")

    def recording_line() -> str:
        lines = dict(page.eval_on_selector_all(
            "#device dt", "dts => dts.map((dt) => [dt.textContent, "
            "dt.nextElementSibling.textContent.replace(/\\u00a0/g, ' ')])"))
        return str(lines.get("Recording", ""))

    def status_until(expected: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while not (line := recording_line()).startswith(expected):
            assert time.monotonic() < deadline, line
            server.publish_frame(0, spectrum_frame(0))
            server.publish_message("status", {"stream": 0})
            time.sleep(0.2)
        return line

    def button_says(text: str) -> None:
        page.wait_for_function(f"document.querySelector('#record').textContent === '{text}'",
                               timeout=WAIT_S * 1000)

    on = status_until("on · ")
    button_says("Stop recording")
    page.click("#record")
    button_says("Record")
    stopped = status_until("stopped")
    assert not recorder.started
    page.click("#record")
    button_says("Stop recording")
    assert recorder.started
    assert on.endswith(" MB") and stopped == "stopped"
    assert viewer.errors == []


def test_a_viewer_page_has_no_record_button(
        recording_server: SpectrumServer, context: BrowserContext) -> None:
    """A page with the viewers' token may not record: no button, though the server records."""
    page = context.new_page()
    page.goto(recording_server.url.replace("ws://", "http://"))
    page.fill("#login-token", VIEWER_TOKEN)
    page.press("#login-token", "Enter")
    page.wait_for_function("window.argosViewer?.stats().state === 'open'",
                           timeout=WAIT_S * 1000)
    deadline = time.monotonic() + WAIT_S
    while not page.is_visible("#device-panel"):  # a status may reach a page still starting
        assert time.monotonic() < deadline, "no device panel"
        recording_server.publish_message("status", {"stream": 0})
        time.sleep(0.2)
    assert page.is_hidden("#record")
