# SPDX-License-Identifier: GPL-3.0-or-later
"""Clients tuning real flowgraphs: argos-spectrum on the simulated band and on an IQ
recording (gr-osmosdr's file source), and a grcc-compiled flowgraph whose sink's command
port is connected (docs/control.md).

Every frame around a retune must say the frequency its samples were taken at: its strongest
carrier is checked against where that carrier must be under the frame's own label.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from websockets.asyncio.client import ClientConnection, connect

from helpers import ENV, REPO_ROOT, RECEIVE_TIMEOUT_S, running
from gr_argos.protocol import SpectrumFrame, decode_frame

pytestmark = pytest.mark.slow

APP = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum"]
URL_PATTERN = re.compile(r"(ws://127\.0\.0\.1:\d+/)")
BINS = 2048
SAMP_RATE = 8e6
BIN_HZ = SAMP_RATE / BINS  # 3906.25 Hz
START_HZ = 100e6
STEP_BINS = 25  # a retune by a whole number of bins keeps a carrier on a bin centre


def carrier_bin(frame: SpectrumFrame, carrier_hz: float) -> int:
    """Where a carrier at ``carrier_hz`` must be in ``frame``, by the frame's own label."""
    return int(round((carrier_hz - frame.center_freq_hz) / (frame.span_hz / frame.bin_count)
                     + frame.bin_count // 2))


async def next_message(ws: ClientConnection, msg_type: str) -> dict[str, Any]:
    async with asyncio.timeout(RECEIVE_TIMEOUT_S):
        while True:
            message = await ws.recv()
            if isinstance(message, str) and (decoded := json.loads(message))["type"] == msg_type:
                return decoded


async def tune_and_watch(url: str, carrier_hz: float, new_center_hz: float,
                         frames_after: int = 30) -> tuple[list[SpectrumFrame], dict[str, Any]]:
    """Take control, retune to ``new_center_hz``, and collect the frames from before the
    change until ``frames_after`` frames carry the new label; the ``tuned`` message."""
    frames: list[SpectrumFrame] = []
    tuned: dict[str, Any] = {}
    async with connect(url, open_timeout=RECEIVE_TIMEOUT_S, max_size=None) as ws:
        await next_message(ws, "hello")
        await ws.send(json.dumps({"type": "control", "action": "acquire", "name": "test"}))
        await next_message(ws, "control")
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while len(frames) < 10:
                message = await ws.recv()
                if isinstance(message, bytes):
                    frames.append(decode_frame(message))
            await ws.send(json.dumps({"type": "tune", "center_freq": new_center_hz}))
            while sum(f.center_freq_hz == new_center_hz for f in frames) < frames_after:
                message = await ws.recv()
                if isinstance(message, bytes):
                    frames.append(decode_frame(message))
                elif json.loads(message)["type"] == "tuned":
                    tuned = json.loads(message)
    return frames, tuned


def assert_every_label_true(frames: list[SpectrumFrame], carrier_hz: float,
                            new_center_hz: float) -> None:
    """Each frame's strongest bin is the carrier's under its own label; the labels change
    once, from the start to the new centre; frames dropped across the change show as a
    gap in the sequence, nothing else."""
    labels = [f.center_freq_hz for f in frames]
    first_new = labels.index(new_center_hz)
    assert set(labels[:first_new]) == {START_HZ} and set(labels[first_new:]) == {new_center_hz}
    for frame in frames:
        assert abs(int(np.argmax(frame.power_db)) - carrier_bin(frame, carrier_hz)) <= 1, (
            frame.sequence, frame.center_freq_hz)
    before, after = carrier_bin(frames[0], carrier_hz), carrier_bin(frames[-1], carrier_hz)
    assert before - after == STEP_BINS  # the spectrum moved the right number of bins
    sequences = [f.sequence for f in frames]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)


def test_a_client_retunes_the_simulated_band_and_no_frame_is_mislabelled(
        tmp_path: Path) -> None:
    """argos-spectrum --source sim: the holder's tune moves the band (the strongest carrier
    stays at its frequency, so it moves 25 bins down), and every frame before, across and
    after the change is labelled with the frequency its samples had."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    carrier_hz = START_HZ + STRONGEST_CARRIER[0] * SAMP_RATE
    new_center_hz = START_HZ + STEP_BINS * BIN_HZ
    with running([*APP, "--port", "0", "--source", "sim", "--samp-rate", str(SAMP_RATE),
                  "--center-freq", str(START_HZ), "--bins", str(BINS), "--no-detect"],
                 tmp_path, url_pattern=URL_PATTERN, name="argos-spectrum") as app:
        frames, tuned = asyncio.run(tune_and_watch(app.wait_for_url(), carrier_hz,
                                                   new_center_hz))
    assert tuned["changes"] == {"center_freq": {"old": START_HZ, "new": new_center_hz}}
    assert_every_label_true(frames, carrier_hz, new_center_hz)
    assert "event=tune" in app.output() and "outcome=applied" in app.output()


def test_a_client_retunes_a_recording_through_osmosdrs_file_source(tmp_path: Path) -> None:
    """--source file=REC (gr-osmosdr's file source, as a device): a retune shifts the
    recording's band, and its tone is labelled right in every frame."""
    pytest.importorskip("osmosdr")
    tone_bins = 300
    samples = np.arange(BINS * 64)
    tone = np.exp(2j * np.pi * tone_bins / BINS * samples).astype(np.complex64)
    noise = (np.random.default_rng(3).standard_normal((samples.size, 2)) * 0.01).astype(
        np.float32).view(np.complex64)[:, 0]
    recording = tmp_path / "tone.cf32"
    (tone + noise).astype(np.complex64).tofile(recording)
    carrier_hz = START_HZ + tone_bins * BIN_HZ
    new_center_hz = START_HZ + STEP_BINS * BIN_HZ
    with running([*APP, "--port", "0", "--source", f"file={recording}", "--samp-rate",
                  str(SAMP_RATE), "--center-freq", str(START_HZ), "--bins", str(BINS),
                  "--no-detect"],
                 tmp_path, url_pattern=URL_PATTERN, name="argos-spectrum") as app:
        frames, _ = asyncio.run(tune_and_watch(app.wait_for_url(), carrier_hz, new_center_hz))
    assert_every_label_true(frames, carrier_hz, new_center_hz)


grcc = shutil.which("grcc")


@pytest.mark.skipif(grcc is None, reason="grcc (GNU Radio Companion) is not installed")
def test_a_grc_flowgraph_gets_the_change_on_the_sinks_command_port(tmp_path: Path) -> None:
    """sim_spectrum.grc with a Message Debug on the sink's command port, compiled by grcc:
    a client's tune arrives there as the PMT dict of a source's command port ({freq: ...})
    and the frames after it say the new frequency."""
    assert grcc is not None
    flowgraph = yaml.safe_load((REPO_ROOT / "flowgraphs" / "sim_spectrum.grc").read_text())
    flowgraph["options"]["parameters"]["id"] = "command_port"
    flowgraph["blocks"].append({
        "name": "blocks_message_debug_0", "id": "blocks_message_debug",
        "parameters": {"affinity": "", "alias": "", "comment": "", "en_uvec": "True",
                       "log_level": "info"},
        "states": {"coordinate": [900, 400], "rotation": 0, "state": "enabled"}})
    flowgraph["connections"].append(
        ["gr_argos_websocket_sink_0", "command", "blocks_message_debug_0", "print"])
    source = tmp_path / "command_port.grc"
    source.write_text(yaml.safe_dump(flowgraph))
    env = {**os.environ, "GRC_BLOCKS_PATH": str(REPO_ROOT / "grc"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    compiled = subprocess.run([grcc, "-o", str(tmp_path), str(source)], env=env,
                              capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    new_center_hz = START_HZ + STEP_BINS * BIN_HZ
    with running([sys.executable, "-u", str(tmp_path / "command_port.py"), "--port", "0",
                  "--center-freq", str(START_HZ), "--samp-rate", str(SAMP_RATE)],
                 tmp_path, url_pattern=URL_PATTERN, name="flowgraph") as graph:
        url = graph.wait_for_url()

        async def tune() -> tuple[dict[str, Any], list[SpectrumFrame]]:
            # The sink serves from its construction, but its command port is known to be
            # connected once the flowgraph runs: frames flowing say it does.
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as first:
                async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                    while not isinstance(await first.recv(), bytes):
                        pass
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as ws:
                hello = await next_message(ws, "hello")
                await ws.send(json.dumps({"type": "control", "action": "acquire"}))
                await ws.send(json.dumps({"type": "tune", "center_freq": new_center_hz}))
                tuned = await next_message(ws, "tuned")
                frames: list[SpectrumFrame] = []
                async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                    while len(frames) < 3:
                        message = await ws.recv()
                        if isinstance(message, bytes):
                            frame = decode_frame(message)
                            if frame.center_freq_hz == new_center_hz:
                                frames.append(frame)
                return {"hello": hello, "tuned": tuned}, frames

        answers, frames = asyncio.run(tune())
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while "freq" not in graph.output() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert set(answers["hello"]["control"]["settings"]) == {"center_freq", "gain", "bandwidth"}
    assert answers["tuned"]["changes"]["center_freq"]["new"] == new_center_hz
    assert re.search(r"\(\(freq \. 1\.00098e\+08\)\)", graph.output()), graph.output()[-2000:]
    assert len(frames) == 3


def test_a_client_moves_a_hackrf_sweep_to_another_range(tmp_path: Path) -> None:
    """--source sweep (the stand-in hackrf_sweep of tests/tools, a carrier at 960 MHz): a
    tune of freq_min and freq_max restarts hackrf_sweep on the new range at once (not as a
    failure), every frame says its own sweep's range, and the carrier sits where each
    frame's label puts it."""
    env = {**ENV, "ARGOS_FAKE_SWEEP_SIGNAL_MHZ": "960"}
    with running([*APP, "--port", "0", "--source", "sweep", "--sweep-executable",
                  str(REPO_ROOT / "tests" / "tools" / "hackrf_sweep"), "--freq-min", "900e6",
                  "--freq-max", "1000e6", "--bin-width", "1e6", "--bins", "100", "--fps", "10",
                  "--no-detect"],
                 tmp_path, url_pattern=URL_PATTERN, name="argos-spectrum", env=env) as app:

        async def retune() -> tuple[dict[str, Any], list[SpectrumFrame]]:
            frames: list[SpectrumFrame] = []
            async with connect(app.wait_for_url(), open_timeout=RECEIVE_TIMEOUT_S) as ws:
                await next_message(ws, "hello")
                async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                    while len(frames) < 3:  # the flowgraph runs: its tuner is there
                        message = await ws.recv()
                        if isinstance(message, bytes):
                            frames.append(decode_frame(message))
                    async with connect(app.wait_for_url()) as late:
                        hello = await next_message(late, "hello")
                    await ws.send(json.dumps({"type": "control", "action": "acquire"}))
                    await ws.send(json.dumps({"type": "tune", "freq_min": 950e6,
                                              "freq_max": 1050e6}))
                    while sum(f.center_freq_hz == 1000e6 for f in frames) < 3:
                        message = await ws.recv()
                        if isinstance(message, bytes):
                            frames.append(decode_frame(message))
                return hello, frames

        hello, frames = asyncio.run(retune())
    assert set(hello["control"]["settings"]) == {"freq_min", "freq_max", "lna_gain",
                                                  "vga_gain", "amp"}
    assert {(f.center_freq_hz, f.span_hz) for f in frames} == {(950e6, 100e6), (1000e6, 100e6)}
    for frame in frames:
        # The sweep in progress at the retune ends incomplete (without the carrier's
        # segment, maybe): a carrier is never anywhere but where the frame's label puts it.
        if frame.power_db.max() > -60:
            assert abs(int(np.argmax(frame.power_db)) - carrier_bin(frame, 960.5e6)) <= 1
    assert all(f.power_db.max() > -60 for f in frames[-3:])
    assert "restarting hackrf_sweep" not in app.output()  # a retune is no failure


def test_a_client_changes_the_sample_rate_frame_rate_and_detector_while_others_watch(
        tmp_path: Path) -> None:
    """samp_rate, fps and detector build the spectrum chain anew while the flowgraph runs:
    the watching client stays connected, the frames after the change say the new span and
    detector (and the band's carriers are where they must be at the new rate), and a new
    client's hello says the new frame rate."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    with running([*APP, "--port", "0", "--source", "sim", "--samp-rate", str(SAMP_RATE),
                  "--center-freq", str(START_HZ), "--bins", str(BINS), "--no-detect"],
                 tmp_path, url_pattern=URL_PATTERN, name="argos-spectrum") as app:
        url = app.wait_for_url()

        async def change() -> tuple[dict[str, Any], list[SpectrumFrame], dict[str, Any]]:
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S, max_size=None) as ws:
                await next_message(ws, "hello")
                async with asyncio.timeout(RECEIVE_TIMEOUT_S):  # the flowgraph runs
                    while not isinstance(await ws.recv(), bytes):
                        pass
                await ws.send(json.dumps({"type": "control", "action": "acquire"}))
                await ws.send(json.dumps({"type": "tune", "samp_rate": 4e6, "fps": 15,
                                          "detector": "sample"}))
                tuned = await next_message(ws, "tuned")
                frames: list[SpectrumFrame] = []
                async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                    while len(frames) < 10:
                        message = await ws.recv()
                        if isinstance(message, bytes):
                            frames.append(decode_frame(message))
                async with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as late:
                    hello = await next_message(late, "hello")
            return tuned, frames, hello

        tuned, frames, hello = asyncio.run(change())
    assert tuned["changes"]["samp_rate"] == {"old": SAMP_RATE, "new": 4e6}
    assert tuned["changes"]["detector"] == {"old": "peak", "new": "sample"}
    assert abs(tuned["changes"]["fps"]["new"] - 15) < 0.5
    assert frames[-1].span_hz == 4e6 and frames[-1].detector == "sample"
    assert abs(hello["streams"][0]["fps"] - 15) < 0.5
    assert hello["streams"][0]["span_hz"] == 4e6
    carrier_hz = START_HZ + STRONGEST_CARRIER[0] * 4e6
    for frame in frames:
        if frame.span_hz == 4e6:
            assert abs(int(np.argmax(frame.power_db)) - carrier_bin(frame, carrier_hz)) <= 1


def sim_app(tmp_path: Path, *extra: str) -> Any:
    """argos-spectrum on the simulated band at SAMP_RATE, START_HZ and BINS."""
    return running([*APP, "--port", "0", "--source", "sim", "--samp-rate", str(SAMP_RATE),
                    "--center-freq", str(START_HZ), "--bins", str(BINS), *extra],
                   tmp_path, url_pattern=URL_PATTERN, name="argos-spectrum")


async def next_frame(ws: ClientConnection, wanted: Any = lambda frame: True) -> SpectrumFrame:
    """The next frame ``wanted`` accepts (messages in between are skipped)."""
    async with asyncio.timeout(RECEIVE_TIMEOUT_S):
        while True:
            message = await ws.recv()
            if isinstance(message, bytes) and wanted(frame := decode_frame(message)):
                return frame


async def tune_as_holder(url: str, **changes: Any) -> dict[str, Any]:
    """Take control on a connection of its own, once frames flow (the flowgraph runs and
    its tuner is there), ask for ``changes``; the ``tuned`` message or the ``error``."""
    async with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as ws:
        await next_frame(ws)
        await ws.send(json.dumps({"type": "control", "action": "acquire", "name": "test"}))
        await ws.send(json.dumps({"type": "tune", **changes}))
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while True:
                message = await ws.recv()
                if isinstance(message, str) and json.loads(message)["type"] in ("tuned",
                                                                                 "error"):
                    return json.loads(message)


def test_a_client_changes_the_fft_size_while_others_watch_and_zoom(tmp_path: Path) -> None:
    """bins 2048 -> 4096 from a tune: a new sink with 4096-bin inputs takes over the stream.
    A client watching the whole band stays connected and its next frames have 4096 bins,
    the band's strongest carrier at its bin for the new size; a client zoomed on that
    carrier (set_view) is told its view is the same band at the new size and keeps getting
    it, carrier and all; a new client's hello says 4096 bins; status keeps reporting the
    measured sample rate (the rate probe's message connection went to the new sink)."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    carrier_hz = START_HZ + STRONGEST_CARRIER[0] * SAMP_RATE
    zoom = f"?center_freq_hz={carrier_hz:.0f}&span_hz=200e3&bins=100"
    with sim_app(tmp_path) as app:
        url = app.wait_for_url()

        async def change() -> dict[str, Any]:
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S, max_size=None) as watcher, \
                    connect(url + zoom, open_timeout=RECEIVE_TIMEOUT_S) as zoomed:
                await next_message(zoomed, "view")
                zoomed_before = await next_frame(zoomed)
                before = await next_frame(watcher)
                tuned = await tune_as_holder(url, bins=4096)
                after = [await next_frame(watcher, lambda f: f.bin_count == 4096)
                         for _ in range(5)]
                resnapped = await next_message(zoomed, "view")
                zoomed_after = [await next_frame(zoomed, lambda f: f.sequence > after[0].sequence)
                                for _ in range(5)]
                statuses = [await next_message(watcher, "status") for _ in range(6)]
                async with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as late:
                    hello = await next_message(late, "hello")
            return {"before": before, "tuned": tuned, "after": after, "hello": hello,
                    "zoomed_before": zoomed_before, "resnapped": resnapped,
                    "zoomed_after": zoomed_after, "statuses": statuses}

        seen = asyncio.run(change())
    assert seen["tuned"]["type"] == "tuned", seen["tuned"]
    assert seen["tuned"]["changes"]["bins"] == {"old": BINS, "new": 4096}
    assert seen["before"].bin_count == BINS
    for frame in [seen["before"], *seen["after"]]:
        assert int(np.argmax(frame.power_db)) == carrier_bin(frame, carrier_hz), frame.bin_count
    assert carrier_bin(seen["after"][0], carrier_hz) == 2 * 410 + 2048
    assert seen["hello"]["streams"][0]["bins"] == 4096
    assert {status["bins"] for status in seen["statuses"]} == {4096}
    # The rate probe reports to the new sink: the measured rate still moves.
    measured = {status.get("samp_rate_measured") for status in seen["statuses"]} - {None}
    assert len(measured) > 1
    resnapped, zoomed_before = seen["resnapped"], seen["zoomed_before"]
    assert resnapped["reset"] is True and "4096 bins" in resnapped["message"]
    # The same band, as many bins across it: each one half as wide in the stream's bins.
    assert resnapped["bins"] == zoomed_before.bin_count
    assert abs(resnapped["span_hz"] - zoomed_before.span_hz) < SAMP_RATE / 4096
    assert abs(resnapped["center_freq_hz"] - zoomed_before.center_freq_hz) < SAMP_RATE / 2048
    for frame in seen["zoomed_after"]:
        assert frame.bin_count == resnapped["bins"]
        assert (frame.center_freq_hz, frame.span_hz) == (resnapped["center_freq_hz"],
                                                         resnapped["span_hz"])
        assert abs(int(np.argmax(frame.power_db)) - carrier_bin(frame, carrier_hz)) <= 1
    assert "Traceback" not in app.output()


def test_fft_sizes_that_are_not_offered_are_refused_and_nothing_changes(
        tmp_path: Path) -> None:
    """bins not a power of two, or beyond the limits, is refused before anything is touched
    (tune_refused, saying the sizes offered); a size the frame rate does not fit at this
    sample rate (1 MS/s: 30 frames/s need at most 33333 bins) is refused by the rebuild,
    saying why; the frames keep their 2048 bins."""
    with running([*APP, "--port", "0", "--source", "sim", "--samp-rate", "1e6",
                  "--bins", str(BINS), "--no-detect"],
                 tmp_path, url_pattern=URL_PATTERN, name="argos-spectrum") as app:
        url = app.wait_for_url()

        async def refusals() -> tuple[list[dict[str, Any]], dict[str, Any], SpectrumFrame]:
            answers = [await tune_as_holder(url, bins=bins)
                       for bins in (3000, 8, 1 << 17, "4096", 65536)]
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S, max_size=None) as ws:
                hello = await next_message(ws, "hello")
                frame = await next_frame(ws)
            return answers, hello, frame

        answers, hello, frame = asyncio.run(refusals())
    for answer in answers:
        assert answer["type"] == "error" and answer["code"] == "tune_refused", answer
    for answer in answers[:4]:
        assert "bins must be one of 16, 32, " in answer["message"]
        assert answer["message"].endswith("32768, 65536")
    assert "fps" in answers[4]["message"]  # 1 MS/s / 65536 bins is 15 FFTs a second
    assert hello["streams"][0]["bins"] == BINS and frame.bin_count == BINS
    assert "Traceback" not in app.output()


def test_a_client_switches_the_second_trace_on_and_off(tmp_path: Path) -> None:
    """second_detector from none to average: the sink gets its second input, hello says
    it, and a client that asks for the second trace gets frames carrying two traces (the
    average under the peak); switched off again, frames carry one."""
    with sim_app(tmp_path, "--no-detect", "--second-detector", "") as app:
        url = app.wait_for_url()

        async def switch() -> dict[str, Any]:
            async with connect(url + "?second_trace=1", open_timeout=RECEIVE_TIMEOUT_S,
                               max_size=None) as ws:
                hello = await next_message(ws, "hello")
                single = await next_frame(ws)
                on = await tune_as_holder(url, second_detector="average")
                double = await next_frame(ws, lambda f: f.second_power_db is not None)
                async with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as late:
                    late_hello = await next_message(late, "hello")
                off = await tune_as_holder(url, second_detector="")
                await next_frame(ws, lambda f: f.second_power_db is None)
                last = [await next_frame(ws) for _ in range(3)]
            return {"hello": hello, "single": single, "on": on, "double": double,
                    "late_hello": late_hello, "off": off, "last": last}

        seen = asyncio.run(switch())
    assert "second_detector" not in seen["hello"]["streams"][0]
    assert seen["single"].second_power_db is None
    assert seen["on"]["changes"]["second_detector"] == {"old": "", "new": "average"}
    double = seen["double"]
    assert double.detector == "peak" and double.second_detector == "average"
    assert double.bin_count == BINS and double.second_power_db is not None
    assert np.all(double.second_power_db <= double.power_db + 0.01)  # an average under a peak
    assert seen["late_hello"]["streams"][0]["second_detector"] == "average"
    assert seen["off"]["changes"]["second_detector"] == {"old": "average", "new": ""}
    assert all(frame.second_power_db is None for frame in seen["last"])
    assert "Traceback" not in app.output()


def test_a_client_changes_the_fft_size_of_a_recording(tmp_path: Path) -> None:
    """--source file=REC (gr-osmosdr's file source): bins 2048 -> 1024; the recording's
    tone is at its bin for the new size."""
    pytest.importorskip("osmosdr")
    tone_bins = 300
    samples = np.arange(BINS * 64)
    tone = np.exp(2j * np.pi * tone_bins / BINS * samples).astype(np.complex64)
    recording = tmp_path / "tone.cf32"
    tone.tofile(recording)
    carrier_hz = START_HZ + tone_bins * BIN_HZ
    with running([*APP, "--port", "0", "--source", f"file={recording}", "--samp-rate",
                  str(SAMP_RATE), "--center-freq", str(START_HZ), "--bins", str(BINS),
                  "--no-detect"],
                 tmp_path, url_pattern=URL_PATTERN, name="argos-spectrum") as app:
        url = app.wait_for_url()

        async def change() -> tuple[dict[str, Any], list[SpectrumFrame]]:
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S, max_size=None) as ws:
                tuned = await tune_as_holder(url, bins=1024)
                return tuned, [await next_frame(ws, lambda f: f.bin_count == 1024)
                               for _ in range(3)]

        tuned, frames = asyncio.run(change())
    assert tuned["changes"]["bins"] == {"old": BINS, "new": 1024}
    for frame in frames:
        assert int(np.argmax(frame.power_db)) == carrier_bin(frame, carrier_hz) == 512 + 150


def test_the_spectrum_chain_is_rebuilt_again_and_again_while_a_client_watches(
        tmp_path: Path) -> None:
    """Twelve changes in a row of the FFT size, the second trace and the frame rate (each a
    new chain, most a new sink): every one is applied, the watcher's frames take each new
    size, and argos-spectrum keeps running (a thread waiting in GNU Radio's top_block.wait()
    during these crashed it within a few under load)."""
    changes = [{"bins": 4096}, {"bins": 1024, "second_detector": ""},
               {"second_detector": "average"}, {"bins": 2048, "fps": 20},
               {"bins": 8192, "second_detector": "", "fps": 30},
               {"bins": BINS, "second_detector": "average"}] * 2
    with sim_app(tmp_path, "--max-tunes-per-s", "0") as app:
        url = app.wait_for_url()

        async def rebuild() -> list[int]:
            sizes = []
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S, max_size=None) as watcher, \
                    connect(url, open_timeout=RECEIVE_TIMEOUT_S) as holder:
                await next_frame(watcher)
                await holder.send(json.dumps({"type": "control", "action": "acquire"}))
                for change in changes:
                    await holder.send(json.dumps({"type": "tune", **change}))
                    answer = await next_message(holder, "tuned")
                    assert set(answer["changes"]) == set(change)
                    bins = change.get("bins", sizes[-1] if sizes else BINS)
                    sizes.append((await next_frame(watcher, lambda f: f.bin_count == bins))
                                 .bin_count)
            return sizes

        sizes = asyncio.run(rebuild())
        assert app.process.poll() is None  # still running
    assert sizes == [4096, 1024, 1024, 2048, 8192, 2048] * 2
    assert "Traceback" not in app.output()


def test_retunes_after_a_rebuild_of_the_chain_label_every_frame_right(tmp_path: Path) -> None:
    """After a client's change has rebuilt the spectrum chain of a flowgraph that ran a
    while (here the frame rate), retunes at random moments of a frame period still label
    every frame right: no frame holds the tone at both its old and its new place, and the
    tone is where each frame's label puts it. (The rebuilt chain's blocks start inside a
    running flowgraph: its half-period delay and the tag path must still line up.)"""
    pytest.importorskip("osmosdr")
    tone_bins = 300
    samples = np.arange(BINS * 64)
    noise = (np.random.default_rng(5).standard_normal((samples.size, 2)) * 0.01).astype(
        np.float32).view(np.complex64)[:, 0]
    recording = tmp_path / "tone.cf32"
    (np.exp(2j * np.pi * tone_bins / BINS * samples) + noise).astype(np.complex64).tofile(
        recording)
    carrier_hz = START_HZ + tone_bins * BIN_HZ
    centres = [START_HZ + STEP_BINS * BIN_HZ * (k % 2 + 1) for k in range(6)]
    with running([*APP, "--port", "0", "--source", f"file={recording}", "--samp-rate",
                  str(SAMP_RATE), "--center-freq", str(START_HZ), "--bins", str(BINS),
                  "--no-detect", "--max-tunes-per-s", "0"],
                 tmp_path, url_pattern=URL_PATTERN, name="argos-spectrum") as app:
        url = app.wait_for_url()

        async def watch() -> tuple[list[SpectrumFrame], dict[str, Any]]:
            frames: list[SpectrumFrame] = []
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S, max_size=None) as ws:
                for _ in range(30):  # a chain that has run a while
                    await next_frame(ws)
                await ws.send(json.dumps({"type": "control", "action": "acquire"}))
                await ws.send(json.dumps({"type": "tune", "fps": 25}))
                assert "fps" in (await next_message(ws, "tuned"))["changes"]
                for centre in centres:
                    await ws.send(json.dumps({"type": "tune", "center_freq": centre}))
                    # every frame until a few carry the new place (a random number, so
                    # that the next change comes at another moment of a frame period)
                    wanted, start = 3 + int(np.random.default_rng().integers(3)), len(frames)
                    while sum(f.center_freq_hz == centre for f in frames[start:]) < wanted:
                        frames.append(await next_frame(ws))
                while (status := await next_message(ws, "status"))["frames"] <= \
                        frames[-1].sequence:
                    pass
            return frames, status

        frames, status = asyncio.run(watch())
    # A shift takes effect at a frame's first sample: no frame spans it, none is withheld.
    assert status["frames_retuning"] == 0
    places = {carrier_bin(f, carrier_hz) for f in frames}
    assert len(places) >= 2  # the tone was seen at its two places (and where it started)
    for frame in frames:
        here = carrier_bin(frame, carrier_hz)
        assert int(np.argmax(frame.power_db)) == here, frame.sequence
        # a frame of samples from both sides of a retune shows the tone at both places
        for elsewhere in places - {here}:
            assert frame.power_db[elsewhere] < frame.power_db[here] - 30, (
                frame.sequence, frame.center_freq_hz, frame.power_db[here],
                frame.power_db[elsewhere])


def test_sinks_replaced_by_fft_size_changes_are_freed() -> None:
    """A field computer's argos-spectrum may see thousands of FFT size changes: each makes
    a successor sink, and the one it replaces must not stay in memory (GNU Radio holds a
    block's message handlers, which refer to the block)."""
    import gc
    import weakref

    from gr_argos.apps.spectrum import SETTINGS, argument_parser, resolve
    from gr_argos.apps.spectrum_flowgraph import SpectrumFlowgraph

    args = argument_parser().parse_args(["--host", "127.0.0.1", "--port", "0", "--source",
                                         "sim", "--bins", str(BINS), "--no-detect"])
    flowgraph = SpectrumFlowgraph(resolve(args, SETTINGS, args.config))
    replaced = []
    flowgraph.start()
    try:
        assert flowgraph.tuner is not None
        for size in (1024, BINS, 1024, BINS):
            replaced.append(weakref.ref(flowgraph.sink))
            assert flowgraph.tuner.apply({"bins": size})["bins"] == size
        assert flowgraph.sink.settings.bins == BINS
    finally:
        flowgraph.stop()
        flowgraph.wait()
    gc.collect()
    assert [ref() is None for ref in replaced] == [True] * len(replaced)


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.2])
def test_argos_spectrum_stopped_while_a_change_is_made_exits_cleanly(
        tmp_path: Path, delay_s: float) -> None:
    """Ctrl-C while a client's change rebuilds the chain (at once, and a little later):
    argos-spectrum waits for the change, then stops: exit status 0, "stopped", no
    traceback, no crash."""
    with sim_app(tmp_path, "--max-tunes-per-s", "0") as app:
        url = app.wait_for_url()

        async def change_then_stop() -> None:
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as ws:
                await next_frame(ws)
                await ws.send(json.dumps({"type": "control", "action": "acquire"}))
                await next_message(ws, "control")
                await ws.send(json.dumps({"type": "tune", "bins": 4096, "fps": 20}))
                with contextlib.suppress(TimeoutError):  # reading meanwhile, as a viewer does
                    async with asyncio.timeout(delay_s):
                        async for _ in ws:
                            pass
                app.process.send_signal(signal.SIGINT)
                async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                    async for _ in ws:  # until the server closes the connection
                        pass

        asyncio.run(change_then_stop())
        status = app.wait_for_exit()
    assert status == 0, app.output()
    assert "argos-spectrum: stopped" in app.output()
    assert "Traceback" not in app.output()


def test_a_shift_the_rotator_read_too_late_is_sent_again_and_labels_stay_true(
        caplog: pytest.LogCaptureFixture) -> None:
    """GNU Radio's rotator drops a change whose sample it has passed. Here the first shift
    is scheduled at a frame long gone (as if the machine had starved the rotator's thread):
    the frames keep their true old label, the sink finds the frame without the tag, and the
    shift sent again moves the band; every frame's strongest carrier is where its label
    puts it."""
    import threading

    from gr_argos.apps.spectrum import SETTINGS, argument_parser, resolve
    from gr_argos.apps.spectrum_flowgraph import SpectrumFlowgraph
    from websockets.sync.client import connect as sync_connect

    from gr_argos.sim_band_source import STRONGEST_CARRIER

    args = argument_parser().parse_args([
        "--host", "127.0.0.1", "--port", "0", "--source", "sim", "--samp-rate",
        str(SAMP_RATE), "--center-freq", str(START_HZ), "--bins", str(BINS), "--no-detect"])
    flowgraph = SpectrumFlowgraph(resolve(args, SETTINGS, args.config))
    tuner = flowgraph.tuner
    assert tuner is not None
    real_frame_start_after = flowgraph.frame_start_after
    calls: list[int] = []

    def first_one_too_late(sample: int) -> int:
        calls.append(sample)
        return real_frame_start_after(0) if len(calls) == 1 else real_frame_start_after(sample)

    tuner._frame_start_after = first_one_too_late
    carrier_hz = START_HZ + STRONGEST_CARRIER[0] * SAMP_RATE
    new_center_hz = START_HZ + STEP_BINS * BIN_HZ
    flowgraph.start()
    try:
        url = flowgraph.sink.url
        frames: list[SpectrumFrame] = []
        watching = threading.Event()

        def watch() -> None:
            with sync_connect(url, open_timeout=RECEIVE_TIMEOUT_S) as ws:
                while len(frames) < 40:
                    message = ws.recv(timeout=RECEIVE_TIMEOUT_S)
                    if isinstance(message, bytes):
                        frames.append(decode_frame(message))
                        if len(frames) == 5:
                            watching.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert watching.wait(RECEIVE_TIMEOUT_S)
        with caplog.at_level("WARNING", logger="gr_argos.tuning"):
            assert tuner.apply({"center_freq": new_center_hz}) == {"center_freq": new_center_hz}
            watcher.join(timeout=60)
    finally:
        flowgraph.stop()
        flowgraph.wait()
    assert len(frames) == 40
    assert len(calls) >= 2  # sent again (again if a starved machine made it late too)
    assert "read the shift to" in caplog.text and "sending it again" in caplog.text
    assert frames[-1].center_freq_hz == new_center_hz
    assert_every_label_true(frames, carrier_hz, new_center_hz)
