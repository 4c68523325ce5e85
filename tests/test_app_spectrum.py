# SPDX-License-Identifier: GPL-3.0-or-later
"""argos-spectrum as a user runs it: a real process, real GNU Radio, a real WebSocket client.

The app runs as ``python -m gr_argos.apps.spectrum --port 0``; the tests read the URL from its
``argos-spectrum: connect to ws://...`` line, connect, and check what a client sees. Every
process is stopped in a ``finally`` (SIGINT, then SIGKILL) so none outlives its test. The tests
that only read frames share one simulated-band app, since every start loads GNU Radio.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gr_argos.apps.spectrum import SETTINGS
from gr_argos.protocol import SpectrumFrame, decode_message

from helpers import (ENV, EXIT_TIMEOUT_S, RECEIVE_TIMEOUT_S, REPO_ROOT, STARTUP_TIMEOUT_S,
                     RunningProcess, assert_stream_is, expected_bin, receive, running,
                     strongest_bin)

pytestmark = pytest.mark.slow

APP = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum"]
FRAMES_TO_AVERAGE = 8
URL_LINE = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")


def running_app(args: list[str], cwd: Path) -> AbstractContextManager[RunningProcess]:
    """argos-spectrum on port 0 for a ``with`` block; stopped on the way out."""
    return running([*APP, "--port", "0", *args],  # a later --port in args wins
                   cwd, url_pattern=URL_LINE, name="argos-spectrum")


def app_messages(stream: str) -> list[str]:
    """The app's own lines (GNU Radio and gr-osmosdr print banners to stderr as well)."""
    return [line for line in stream.splitlines() if line.startswith("argos-spectrum:")]


def error_of_failed_run(args: list[str], cwd: Path, status: int) -> str:
    """Run the app expecting it to exit by itself with ``status``; return its one error line."""
    result = subprocess.run([*APP, *args], cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S)
    assert result.returncode == status, result.stdout + result.stderr
    messages = app_messages(result.stderr)
    assert len(messages) == 1, result.stderr
    return messages[0]


def assert_peak_at(frames: list[SpectrumFrame], offset_fraction: float) -> None:
    """The strongest bin of the averaged frames lies within one bin of the given offset."""
    want = expected_bin(offset_fraction, frames[0].bin_count)
    got = strongest_bin(frames)
    assert abs(got - want) <= 1, f"strongest bin {got}, expected {want} +- 1"


# -- the simulated band ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """One argos-spectrum --source sim with default settings, shared by read-only tests."""
    with running_app([], tmp_path_factory.mktemp("sim_app")) as app:
        app.wait_for_url()
        yield app


def test_sim_source_serves_the_simulated_band_with_defaults(sim_app: RunningProcess) -> None:
    """With no flags a client gets hello, then 2048-bin frames at 100 MHz / 8 MHz span whose
    strongest bin is the strongest simulated carrier."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    hello, frames = receive(sim_app.wait_for_url(), FRAMES_TO_AVERAGE)

    assert_stream_is(hello, frames, bins=2048, center_freq_hz=100e6, span_hz=8e6, fps=30.0)
    assert_peak_at(frames, STRONGEST_CARRIER[0])
    assert "argos-spectrum: streaming sim at 100 MHz, 8 MS/s, 2048 bins, 30 frames/s" in (
        sim_app.output())


def test_two_clients_get_the_same_stream(sim_app: RunningProcess) -> None:
    """A second client connecting while the first one is open gets the same stream."""
    url = sim_app.wait_for_url()
    with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as first:
        assert decode_message(first.recv(timeout=RECEIVE_TIMEOUT_S))["type"] == "hello"
        hello, frames = receive(url, 2)
    assert_stream_is(hello, frames, bins=2048, center_freq_hz=100e6, span_hz=8e6, fps=30.0)


def test_status_messages_describe_the_source_and_its_measured_rate(
        sim_app: RunningProcess) -> None:
    """Clients get periodic status messages naming the source, the stream and the sample
    rate the source really delivers (measured, so only checked to be there and positive)."""
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    status: dict = {}
    with connect(sim_app.wait_for_url(), open_timeout=RECEIVE_TIMEOUT_S) as ws:
        while "samp_rate_measured" not in status and time.monotonic() < deadline:
            message = ws.recv(timeout=RECEIVE_TIMEOUT_S)
            if isinstance(message, str) and decode_message(message)["type"] == "status":
                status = decode_message(message)
    assert status.get("samp_rate_measured", 0) > 0, status
    assert status["source"] == "sim" and status["samp_rate"] == 8e6
    assert status["stream"] == 0 and status["bins"] == 2048
    assert status["center_freq_hz"] == 100e6 and status["span_hz"] == 8e6
    assert status["frames"] > 0
    # Overflows the source's driver reports (an "O" on stderr) are counted: none here.
    assert status["overflows"] == 0
    assert (status["detector"], status["second_detector"]) == ("peak", "average")
    assert status["fft_sample_fraction"] == 1.0


def test_flags_set_frequency_rate_bins_and_fps(tmp_path: Path) -> None:
    """--center-freq, --samp-rate, --fft-size and --fps show in the hello and the frames."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    args = ["--center-freq", "433.92e6", "--samp-rate", "2e6", "--bins", "1024",
            "--fps", "10"]
    with running_app(args, tmp_path) as app:
        hello, frames = receive(app.wait_for_url(), 4)

    assert_stream_is(hello, frames, bins=1024, center_freq_hz=433.92e6, span_hz=2e6, fps=10.0)
    assert_peak_at(frames, STRONGEST_CARRIER[0])


def test_config_file_applies_and_flags_override_it(tmp_path: Path) -> None:
    """YAML keys with underscores and dashes apply; the --rate alias overrides samp_rate."""
    config = tmp_path / "field.yaml"
    config.write_text("center_freq: 145.8e6\nfft-size: 512\nsamp_rate: 4e6\nfps: 15\n",
                      encoding="utf-8")
    with running_app(["--config", str(config), "--rate", "1e6"], tmp_path) as app:
        hello, frames = receive(app.wait_for_url(), 3)

    assert_stream_is(hello, frames, bins=512, center_freq_hz=145.8e6, span_hz=1e6, fps=15.0)


def test_step_db_from_the_file_or_a_flag_reaches_the_stream(tmp_path: Path) -> None:
    """encoding uint8 and step_db from the YAML file, --step-db overriding it: clients that
    choose nothing get uint8 frames on levels that are multiples of that step."""
    config = tmp_path / "slow-link.yaml"
    config.write_text("encoding: uint8\nstep_db: 3\n", encoding="utf-8")
    with running_app(["--config", str(config), "--step-db", "2", "--bins", "256"],
                     tmp_path) as app:
        hello, frames = receive(app.wait_for_url(), 2)

    assert hello["streams"][0]["encoding"] == "uint8"
    for frame in frames:
        assert frame.encoding == 2
        levels = frame.power_db.astype(np.float64) / 2
        assert np.array_equal(levels, np.round(levels)), "levels are not multiples of 2 dB"


# -- an IQ recording through gr-osmosdr's file source ----------------------------------------

def test_file_source_plays_an_iq_recording(tmp_path: Path) -> None:
    """A raw complex64 file with one tone, under a path with a space and a comma, plays
    through gr-osmosdr's file source with its peak at the tone's bin."""
    samp_rate, offset_fraction = 2e6, 256 / 2048  # a 250 kHz tone, 8 samples per cycle
    samples = np.arange(int(samp_rate))  # 1 s, a whole number of cycles: it loops seamlessly
    rng = np.random.default_rng(1)
    tone = 0.5 * np.exp(2j * np.pi * offset_fraction * samples)
    noise = 0.01 * (rng.standard_normal(samples.size) + 1j * rng.standard_normal(samples.size))
    recording = tmp_path / "field captures, day 1" / "tone.cfile"
    recording.parent.mkdir()
    (tone + noise).astype(np.complex64).tofile(recording)

    args = ["--source", f"file={recording}", "--samp-rate", "2e6", "--center-freq", "50e6",
            "--fps", "10"]
    with running_app(args, tmp_path) as app:
        hello, frames = receive(app.wait_for_url(), 4)

    assert_stream_is(hello, frames, bins=2048, center_freq_hz=50e6, span_hz=2e6, fps=10.0)
    assert_peak_at(frames, offset_fraction)


# -- a wideband sweep through hackrf_sweep (here the stand-in of tests/tools) ----------------

SWEEP_STAND_IN = REPO_ROOT / "tests" / "tools" / "hackrf_sweep"


def test_sweep_source_serves_one_frame_per_sweep_over_the_range(tmp_path: Path) -> None:
    """--source sweep with the stand-in hackrf_sweep: frames of --bins bins whose centre and
    span are the swept range, with the stand-in's carrier (40% into the range) strongest."""
    args = ["--source", "sweep", "--sweep-executable", str(SWEEP_STAND_IN),
            "--freq-min", "900e6", "--freq-max", "1000e6", "--bin-width", "1e6",
            "--bins", "100", "--fps", "10"]
    with running_app(args, tmp_path) as app:
        hello, frames = receive(app.wait_for_url(), 3)

    assert_stream_is(hello, frames, bins=100, center_freq_hz=950e6, span_hz=100e6, fps=10.0)
    assert strongest_bin(frames) == 40
    # hackrf_sweep's bins are averages: the stream and every frame say so.
    assert hello["streams"][0]["detector"] == "average"
    assert "second_detector" not in hello["streams"][0]
    assert all(frame.detector == "average" for frame in frames)
    assert ("argos-spectrum: streaming sweep of 900-1000 MHz, 100 bins, hackrf_sweep bin width "
            "1000 kHz") in app.output()


def test_sweep_source_without_hackrf_sweep_exits_1_saying_what_to_install(
        tmp_path: Path) -> None:
    """--source sweep when hackrf_sweep is not installed exits 1 naming the package."""
    message = error_of_failed_run(["--source", "sweep", "--sweep-executable",
                                   "hackrf_sweep_not_installed_here"], tmp_path, 1)
    assert "apt-get install hackrf" in message and "--source sim" in message


def test_sweep_range_the_wrong_way_round_exits_2(tmp_path: Path) -> None:
    """--freq-min above --freq-max is refused as a configuration error naming both flags."""
    message = error_of_failed_run(["--source", "sweep", "--freq-min", "2500e6",
                                   "--freq-max", "2400e6"], tmp_path, 2)
    assert "--freq-min" in message and "--freq-max" in message


# -- GPS from gpsd (a real gpsd, fed by gpsfake) ---------------------------------------------

def test_gps_flag_sends_gpsd_fixes_to_clients(tmp_path: Path) -> None:
    """--gps HOST:PORT: clients get 'gps' messages with the log's positions beside the
    spectrum frames."""
    from gps_replay import assert_positions_match_the_log, free_port, gpsfake

    port = free_port()
    with gpsfake(port), running_app(["--gps", f"127.0.0.1:{port}", "--fps", "10"],
                                    tmp_path) as app:
        fixes, frames = [], 0
        with connect(app.wait_for_url(), open_timeout=RECEIVE_TIMEOUT_S) as websocket:
            deadline = time.monotonic() + 60
            while len(fixes) < 3 and time.monotonic() < deadline:
                message = websocket.recv(timeout=RECEIVE_TIMEOUT_S)
                if isinstance(message, bytes):
                    frames += 1
                elif (body := decode_message(message))["type"] == "gps" and body["fix"]:
                    fixes.append(body)

    assert len(fixes) == 3, app.output()
    assert frames > 0
    assert_positions_match_the_log(fixes)


def detection_events(url: str, until: Any, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """The detection messages a client gets until ``until(events)`` (or the deadline)."""
    events: list[dict[str, Any]] = []
    with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as websocket:
        deadline = time.monotonic() + timeout_s
        while not until(events) and time.monotonic() < deadline:
            message = websocket.recv(timeout=RECEIVE_TIMEOUT_S)
            if isinstance(message, str) and (body := decode_message(message))["type"] == \
                    "detection":
                events.append(body)
    return events


def test_the_simulated_bands_signals_are_reported_as_what_they_are(
        sim_app: RunningProcess) -> None:
    """Detection is on by default: the 300 us pulse (4 a second) comes as one-frame events
    at its frequency, the carrier blinking at 3 Hz as events of about a sixth of a second,
    the strongest steady carrier as one long event with updates; each with the tuning and
    a null GPS fix (no gpsd)."""
    from gr_argos.sim_band_source import BURST, BURST_RATE_HZ, PULSE, STRONGEST_CARRIER

    bin_hz = 8e6 / 2048

    def near(event: dict[str, Any], fraction: float) -> bool:
        return abs(event["center_freq_hz"] - (100e6 + fraction * 8e6)) <= 2 * bin_hz

    def enough(events: list[dict[str, Any]]) -> bool:
        ends = [e for e in events if e["event"] == "end"]
        return (sum(near(e, PULSE[0]) for e in ends) >= 4 and sum(near(e, BURST[0]) for e in ends)
                >= 3 and any(e["event"] == "update" and near(e, STRONGEST_CARRIER[0])
                             for e in events))

    events = detection_events(sim_app.wait_for_url(), enough)
    assert enough(events), events[-10:]
    frame_s = 1 / 30
    pulses = [e for e in events if e["event"] == "end" and near(e, PULSE[0])]
    assert all(e["duration_s"] <= 2 * frame_s + 1e-3 for e in pulses)
    bursts = [e for e in events if e["event"] == "end" and near(e, BURST[0])]
    on_s = 0.5 / BURST_RATE_HZ
    assert all(abs(e["duration_s"] - on_s) <= 2 * frame_s for e in bursts)
    assert all(e["snr_db"] >= 8 and e["tuning"] == {"center_freq_hz": 100e6, "span_hz": 8e6}
               and e["gps"] is None and e["stream"] == 0 for e in events)


def test_ranges_ignore_a_carrier_and_watch_a_weak_one_and_the_events_are_logged(
        tmp_path: Path) -> None:
    """--detect-ranges on the simulated band, with --detect-threshold-db 30: the strongest
    carrier (52 dB over the floor) in an ignored range gives no event; the weakest (about
    25 dB, under the threshold) in a range watched at 10 dB is reported, watched: true,
    while every other event has its 30 dB and watched: false. --detect-log holds every
    event the client got, one JSON object a line, as sent; the detections query answers
    with the kept ones, the weak carrier's start among them."""
    from gr_argos.sim_band_source import CARRIERS, STRONGEST_CARRIER

    weakest = min(CARRIERS, key=lambda carrier: carrier[1])
    strong_hz, weak_hz = (100e6 + c[0] * 8e6 for c in (STRONGEST_CARRIER, weakest))
    ranges = f"{strong_hz - 50e3}-{strong_hz + 50e3}:ignore, {weak_hz - 10e3}-{weak_hz + 10e3}:watch:10"
    log_path = tmp_path / "events.jsonl"

    def enough(events: list[dict[str, Any]]) -> bool:
        return sum(e["watched"] for e in events) >= 2 and len(events) >= 20

    with running_app(["--detect-threshold-db", "30", "--detect-ranges", ranges,
                      "--detect-log", str(log_path)], tmp_path) as app:
        url = app.wait_for_url()
        events = detection_events(url, enough)
        with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as websocket:
            websocket.send('{"type": "detections"}')
            deadline = time.monotonic() + RECEIVE_TIMEOUT_S
            while not (isinstance(reply := websocket.recv(timeout=RECEIVE_TIMEOUT_S), str)
                       and decode_message(reply)["type"] == "detections"):
                assert time.monotonic() < deadline
            kept = decode_message(reply)["events"]
    assert enough(events), (events[-10:], app.output())
    assert not any(abs(e["center_freq_hz"] - strong_hz) < 60e3 for e in events + kept)
    watched = [e for e in events if e["watched"]]
    assert all(abs(e["center_freq_hz"] - weak_hz) <= 2 * 8e6 / 2048 and e["snr_db"] < 30
               for e in watched)
    assert all(e["snr_db"] > 30 for e in events if not e["watched"])
    assert any(e["event"] == "start" and e["watched"] for e in kept)
    logged = [json.loads(line) for line in log_path.read_text().splitlines()]
    received = [{k: v for k, v in e.items() if k != "type"} for e in events]
    assert received and all(event in logged for event in received)


def test_an_unwritable_detection_log_is_said_once_and_the_app_serves_on(
        tmp_path: Path) -> None:
    """--detect-log naming a directory: the app logs one error naming it, serves frames
    and detections as usual, and its status messages count the events it could not
    write in detect_log_failed."""
    with running_app(["--detect-log", str(tmp_path), "--fps", "10"], tmp_path) as app:
        url = app.wait_for_url()
        failed, frames, detections = 0, 0, 0
        with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as websocket:
            deadline = time.monotonic() + 60
            while not (failed >= 3 and frames >= 10 and detections >= 3):
                assert time.monotonic() < deadline, app.output()
                message = websocket.recv(timeout=RECEIVE_TIMEOUT_S)
                if isinstance(message, bytes):
                    frames += 1
                elif (body := decode_message(message))["type"] == "status":
                    failed = body.get("detect_log_failed", 0)
                elif body["type"] == "detection":
                    detections += 1
        output = app.output()
    assert output.count(f"cannot write detection events to {tmp_path}") == 1, output


def test_detections_carry_the_latest_gps_fix(tmp_path: Path) -> None:
    """With --gps, each detection carries gpsd's latest fix (from a real gpsd fed by
    gpsfake): a position of the log and how old it is."""
    from gps_replay import assert_positions_match_the_log, free_port, gpsfake

    port = free_port()
    with gpsfake(port), running_app(["--gps", f"127.0.0.1:{port}"], tmp_path) as app:
        events = detection_events(app.wait_for_url(), lambda got: sum(
            1 for e in got if e["gps"] and e["gps"]["fix"]) >= 3)
    located = [e["gps"] for e in events if e["gps"] and e["gps"]["fix"]]
    assert len(located) >= 3, app.output()
    assert_positions_match_the_log(located)
    assert all(0 <= fix["age_s"] < 5 for fix in located)


def test_bad_gps_value_exits_2_naming_the_setting(tmp_path: Path) -> None:
    """--gps without HOST:PORT exits 2 with one line naming the flag and the expected form."""
    message = error_of_failed_run(["--gps", "nohostport"], tmp_path, 2)
    assert "--gps" in message and "for gps" in message and "HOST:PORT" in message


def test_gpsd_not_running_is_not_fatal(tmp_path: Path) -> None:
    """--gps naming a port where no gpsd listens: the app serves the spectrum anyway and
    logs that it cannot reach gpsd and will retry."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        with running_app(["--gps", f"127.0.0.1:{port}", "--fps", "10"], tmp_path) as app:
            hello, frames = receive(app.wait_for_url(), 2)
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while f"cannot reach gpsd at 127.0.0.1:{port}" not in app.output():
                assert time.monotonic() < deadline, app.output()
                time.sleep(0.1)

    assert_stream_is(hello, frames, bins=2048, center_freq_hz=100e6, span_hz=8e6, fps=10.0)
    assert "Retrying every 2 s" in app.output()
    assert app.process.returncode == 0, app.output()


# -- stopping --------------------------------------------------------------------------------

def test_sigterm_closes_clients_with_1001_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM with a client connected: the client sees close code 1001, the app exits 0."""
    with running_app(["--fps", "10"], tmp_path) as app:
        with connect(app.wait_for_url(), open_timeout=RECEIVE_TIMEOUT_S) as websocket:
            assert decode_message(websocket.recv(timeout=RECEIVE_TIMEOUT_S))["type"] == "hello"
            assert isinstance(websocket.recv(timeout=RECEIVE_TIMEOUT_S), bytes)
            app.process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # frames already queued may still arrive before the close
                    websocket.recv(timeout=EXIT_TIMEOUT_S)
        status = app.wait_for_exit()

    assert closed.value.rcvd is not None, "the server dropped the connection without a close"
    assert closed.value.rcvd.code == 1001
    assert status == 0, app.output()
    assert "argos-spectrum: stopped" in app_messages(app.output())


# -- failures: exit 1 for the source or server, exit 2 for configuration ---------------------

def test_port_in_use_exits_1_naming_the_port(tmp_path: Path) -> None:
    """A port another program listens on makes the app exit 1 with a message naming it."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        message = error_of_failed_run(["--port", str(port)], tmp_path, 1)

    assert f"port {port}" in message and "already in use" in message


def test_missing_hackrf_exits_1_suggesting_sim(tmp_path: Path) -> None:
    """--source hackrf without a HackRF exits 1 with one line saying so and naming --source sim."""
    message = error_of_failed_run(["--source", "hackrf"], tmp_path, 1)
    assert "no HackRF found" in message and "--source sim" in message


def test_missing_iq_file_exits_1_naming_it(tmp_path: Path) -> None:
    """--source file=PATH for a file that does not exist exits 1 with one line naming it."""
    message = error_of_failed_run(["--source", "file=/nonexistent"], tmp_path, 1)
    assert "/nonexistent" in message


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("center_freq: 1e6\ncentre_freq: 2e6\n", ["unknown key 'centre_freq'", "known keys:"]),
    ("fft_size: abc\n", ["'fft_size'", "expected an integer"]),
    ("port: 70000\n", ["'port'", "must be between 0 and 65535"]),
    ("source: bogus\n",
     ["'source'", "expected sim, sweep, hackrf[=ARGS], osmosdr=ARGS, file=PATH or sigmf=PATH"]),
    ("center_freq: [1e6\n", ["is not valid YAML"]),
    ("step_db: 50\n", ["'step_db'", "must be 0 (automatic) or from 0.01 to 20 dB"]),
], ids=["unknown-key", "fft_size-abc", "port-70000", "source-bogus", "invalid-yaml",
        "step_db-50"])
def test_bad_config_file_exits_2_saying_why(tmp_path: Path, yaml_text: str,
                                            expected: list[str]) -> None:
    """A config file with an unknown key, a bad value or broken YAML exits 2 saying why."""
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    message = error_of_failed_run(["--config", str(config)], tmp_path, 2)
    assert str(config) in message
    for text in expected:
        assert text in message


@pytest.mark.parametrize(
    "as_given", ["{dir}", "{dir}/argos-0001.args", "file={dir}/argos-0001.args"],
    ids=["directory", "segment", "file="])
def test_a_recording_of_spectra_as_source_exits_2_naming_argos_replay(
        tmp_path: Path, as_given: str) -> None:
    """--source given a gr-argos recording of spectra (its directory or a segment) exits 2
    saying that argos-replay serves it (--source takes IQ samples)."""
    recording = tmp_path / "spectra"
    recording.mkdir()
    (recording / "argos-0001.args").write_bytes(b"")
    message = error_of_failed_run(["--source", as_given.format(dir=recording)], tmp_path, 2)
    assert "a gr-argos recording of spectra, not of IQ samples" in message
    assert f"argos-replay {recording}" in message


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    """--config naming a file that does not exist exits 2 with a message naming it."""
    missing = tmp_path / "absent.yaml"
    message = error_of_failed_run(["--config", str(missing)], tmp_path, 2)
    assert f"cannot read config file {missing}" in message


def test_bad_flag_value_exits_2_naming_the_flag(tmp_path: Path) -> None:
    """A flag value that is not an integer exits 2 with one line naming flag and setting."""
    message = error_of_failed_run(["--bins", "1024.5"], tmp_path, 2)
    assert "--bins" in message and "expected an integer" in message


# -- the shim and the reference --------------------------------------------------------------

def test_shim_runs_the_app(tmp_path: Path) -> None:
    """apps/argos-spectrum is executable and runs the same program (--help lists the flags)."""
    shim = REPO_ROOT / "apps" / "argos-spectrum"
    assert os.access(shim, os.X_OK)
    result = subprocess.run([sys.executable, str(shim), "--help"], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: argos-spectrum")
    for setting in SETTINGS:
        assert setting.flag in result.stdout


def test_reference_lists_every_setting_with_its_flag_and_default() -> None:
    """docs/app.md has one table row per setting whose flags and default match SETTINGS."""
    text = (REPO_ROOT / "docs" / "app.md").read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n#", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells

    assert set(rows) == {setting.name for setting in SETTINGS}
    for setting in SETTINGS:
        _name, flags, default, _meaning = rows[setting.name]
        aliases = ["--" + alias.replace("_", "-") for alias in setting.aliases]
        negation = ["--no-" + setting.flag[2:]] if setting.kind is bool else []
        assert re.findall(r"`(--[a-z-]+)`", flags) == [setting.flag, *aliases, *negation]
        assert setting.coerce(default.strip("`"), "docs/app.md") == setting.default, setting.name


def test_transport_zmq_publishes_frames_for_gateways(tmp_path: Path) -> None:
    """--transport zmq publishes the sim band's frames and descriptor on the ipc endpoint."""
    from gr_argos.protocol import decode_frame
    from gr_argos.zmq_transport import FrameSubscriber

    endpoint = f"ipc://{tmp_path / 'argos.sock'}"
    command = [*APP, "--transport", "zmq", "--zmq-endpoint", endpoint, "--bins", "256"]
    with running(command, tmp_path, url_pattern=re.compile(r"publishing on (\S+)"),
                 name="argos-spectrum") as app:
        assert app.wait_for_url() == endpoint
        subscriber = FrameSubscriber([endpoint])
        try:
            beat, frames = None, []
            deadline = time.monotonic() + RECEIVE_TIMEOUT_S
            while (beat is None or len(frames) < 3) and time.monotonic() < deadline:
                event = subscriber.receive(1.0)
                if event is not None and event[0] == "heartbeat":
                    beat = event[1]
                elif event is not None and event[0] == "frame":
                    frames.append(decode_frame(event[2]))
        finally:
            subscriber.close()
    assert beat is not None and [d["bins"] for d in beat["streams"]] == [256]
    assert len(frames) >= 3 and all(frame.bin_count == 256 for frame in frames)
    assert app.process.returncode == 0, app.output()


def test_the_detector_as_its_own_second_trace_leaves_one_trace(tmp_path: Path) -> None:
    """--detector average with the default second trace (the average) serves one trace."""
    with running_app(["--detector", "average", "--fps", "10"], tmp_path) as app:
        hello, frames = receive(app.wait_for_url() + "?second_trace=1", 2)
    assert hello["streams"][0]["detector"] == "average"
    assert "second_detector" not in hello["streams"][0]
    assert all(f.detector == "average" and f.second_power_db is None for f in frames)


def test_the_second_trace_reaches_a_client_that_asks(tmp_path: Path) -> None:
    """By default the stream offers the average under the peak: hello says so, and a client
    with second_trace=1 gets both traces of the same frame periods."""
    with running_app(["--fps", "10"], tmp_path) as app:
        url = app.wait_for_url()
        hello, frames = receive(url + "?second_trace=1", 3)
    assert (hello["streams"][0]["detector"], hello["streams"][0]["second_detector"]) == (
        "peak", "average")
    for frame in frames:
        assert frame.second_power_db is not None
        assert np.all(frame.second_power_db <= frame.power_db + 1e-3)
