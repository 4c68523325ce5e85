# SPDX-License-Identifier: GPL-3.0-or-later
"""The shipped GRC flowgraphs compile with grcc and serve the spectrum they promise.

Each ``flowgraphs/*.grc`` is compiled into a temporary directory (never into the repository).
The generated scripts then run as real processes on port 0; a real WebSocket client reads
the ``hello`` and the binary frames and checks what a user would see: the configured
frequencies and the strongest signal in the right bin. The GRC definitions of the blocks the
flowgraphs use are checked against the blocks' arguments.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import (REPO_ROOT, RunningProcess, assert_stream_is, expected_bin, receive,
                     running, strongest_bin)

pytestmark = pytest.mark.slow

FLOWGRAPHS = sorted((REPO_ROOT / "flowgraphs").glob("*.grc"))

FRAMES_TO_AVERAGE = 10
URL_PATTERN = re.compile(r"(ws://127\.0\.0\.1:\d+/)")

grcc = shutil.which("grcc")
needs_grcc = pytest.mark.skipif(grcc is None, reason="grcc (GNU Radio Companion) is not installed")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Compile every flowgraph with grcc; map flowgraph name -> generated script."""
    if grcc is None:
        pytest.skip("grcc (GNU Radio Companion) is not installed")
    out_dir = tmp_path_factory.mktemp("grcc")
    # GRC evaluates expressions such as gr_argos.sweep_bins(...) in a Variable: gr_argos must
    # be importable by the Python grcc runs on, as after an install.
    env = {**os.environ, "GRC_BLOCKS_PATH": str(REPO_ROOT / "grc"), "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    scripts = {}
    for flowgraph in FLOWGRAPHS:
        result = subprocess.run(
            [grcc, "-o", str(out_dir), str(flowgraph)],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, (
            f"grcc failed on {flowgraph.name} (exit {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
        scripts[flowgraph.stem] = out_dir / f"{flowgraph.stem}.py"
    return scripts


def running_flowgraph(script: Path, args: list[str],
                      cwd: Path) -> AbstractContextManager[RunningProcess]:
    """A generated flowgraph script for a ``with`` block; SIGINT (the generated script stops
    the flowgraph cleanly), then SIGKILL, on the way out."""
    return running([sys.executable, "-u", str(script), *args], cwd,
                   url_pattern=URL_PATTERN, name="flowgraph")


def test_there_are_flowgraphs_to_check() -> None:
    """The flowgraphs this test is about exist: an example for every block."""
    assert {path.stem for path in FLOWGRAPHS} >= {
        "sim_spectrum", "hackrf_spectrum", "hackrf_spectrum_zmq", "hackrf_sweep",
        "sim_spectrum_gps", "hackrf_retune_sweep", "sim_spectrum_sigmf", "sigmf_spectrum"}
    used = {block["id"] for path in FLOWGRAPHS
            for block in yaml.safe_load(path.read_text())["blocks"]}
    blocks = {path.name.split(".")[0] for path in (REPO_ROOT / "grc").glob("*.block.yml")}
    assert blocks <= used, f"no example flowgraph uses {sorted(blocks - used)}"


@pytest.mark.parametrize("block", ["websocket_sink", "zmq_sink", "spectrum_detector",
                                   "hackrf_sweep_source", "sim_band_source", "gpsd_source",
                                   "sigmf_sink", "sigmf_source"])
def test_grc_block_parameters_are_the_block_arguments(block: str) -> None:
    """Each GRC parameter is a constructor argument of the same name, with the same default,
    passed by the block's make template, and named in its documentation by its label."""
    cls = getattr(import_module(f"gr_argos.{block}"), block)
    arguments = dict(inspect.signature(cls.__init__).parameters)
    del arguments["self"]
    definition = yaml.safe_load((REPO_ROOT / "grc" / f"gr_argos_{block}.block.yml").read_text())
    parameters = {parameter["id"]: parameter for parameter in definition["parameters"]
                  if parameter.get("hide") != "all"}  # hidden: kept for old flowgraphs
    assert set(parameters) == set(arguments)
    make = definition["templates"]["make"]
    documentation = definition["documentation"]
    for name, parameter in parameters.items():
        assert f"{name}=${{{name}}}" in make, f"{name} not passed by the make template"
        label = parameter["label"].split(" (")[0]
        assert label in documentation, f"{name} ({label}) not in the documentation"
        if parameter["default"] == "samp_rate":
            # GRC convention: default to the flowgraph's samp_rate variable
            assert name in ("samp_rate", "span")
        elif parameter["dtype"] in ("string", "file_open", "file_save", "dir_select"):  # Python strings
            assert parameter["default"] == arguments[name].default, name
        else:
            assert ast.literal_eval(str(parameter["default"])) == arguments[name].default, name


@pytest.mark.parametrize("block", ["websocket_sink", "zmq_sink"])
def test_rarely_used_sink_parameters_are_on_tabs_of_their_own(block: str) -> None:
    """The General tab (and the canvas) keeps what every user sets; the security limits and
    the per-client tuning, signal detection, clients' control of the radio and recording sit
    on GRC's Security, Advanced, Detection, Control and Recording tabs."""
    definition = yaml.safe_load((REPO_ROOT / "grc" / f"gr_argos_{block}.block.yml").read_text())
    general = {p["id"] for p in definition["parameters"]
               if "category" not in p and p.get("hide") != "all"}
    assert general == {"bins", "center_freq", "span", "fps", "detector", "second_detector",
                       "encoding", "step_db"} | ({"host", "port"} if block == "websocket_sink"
                                                 else {"zmq_endpoint"})
    tabs = {p["id"]: p["category"] for p in definition["parameters"] if "category" in p}
    assert set(tabs.values()) <= {"Advanced", "Security", "Detection", "Control", "Recording"}
    assert block == "zmq_sink" or tabs["token"] == tabs["tls_cert"] == "Security"


@needs_grcc
@pytest.mark.parametrize("flowgraph", FLOWGRAPHS, ids=lambda path: path.name)
def test_flowgraph_compiles_with_grcc(flowgraph: Path, generated: dict[str, Path]) -> None:
    """grcc turns every shipped flowgraph into a Python script (exit status 0)."""
    script = generated[flowgraph.stem]
    assert script.is_file()
    assert "gr_argos.websocket_sink(" in script.read_text() or (
        "gr_argos.zmq_sink(" in script.read_text())


@needs_grcc
def test_changing_a_variable_in_grc_reaches_the_running_sink(generated: dict[str, Path]) -> None:
    """The sink's callbacks are in the generated code: the flowgraph's setter of its centre
    frequency, sample rate and frame rate passes the new value to the running sink (no stale
    frequency labels after a retune from GRC)."""
    script = generated["sim_spectrum"].read_text()
    for call in ("websocket_sink_0.set_center_freq(self.center_freq)",
                 "websocket_sink_0.set_span(self.samp_rate)", "websocket_sink_0.set_fps(self.fps)"):
        assert call in script, call


@needs_grcc
def test_sim_spectrum_serves_the_simulated_band(generated: dict[str, Path],
                                                tmp_path: Path) -> None:
    """sim_spectrum.py serves 2048-bin frames whose strongest bin is the strongest carrier."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    center_freq_hz, samp_rate = 433.92e6, 4e6
    args = ["--port", "0", "--center-freq", str(center_freq_hz), "--samp-rate", str(samp_rate)]
    with running_flowgraph(generated["sim_spectrum"], args, tmp_path) as flowgraph:
        url = flowgraph.wait_for_url()
        hello, frames = receive(url, FRAMES_TO_AVERAGE + 2)

    assert flowgraph.process.returncode == 0, f"unclean stop on SIGINT:\n{flowgraph.output()}"
    # The sink's URL is not buried in GNU Radio's buffer lines (GRC's console shows it all).
    assert "set_min_output_buffer" not in flowgraph.output()
    assert_stream_is(hello, frames, bins=2048, center_freq_hz=center_freq_hz, span_hz=samp_rate)
    # The stream offers the average under the peak; a client that did not ask gets the peak.
    assert (hello["streams"][0]["detector"], hello["streams"][0]["second_detector"]) == (
        "peak", "average")
    assert all(f.detector == "peak" and f.second_power_db is None for f in frames)
    carrier_bin = expected_bin(STRONGEST_CARRIER[0], 2048)
    assert abs(strongest_bin(frames[2:]) - carrier_bin) <= 1


@needs_grcc
def test_sim_spectrum_sigmf_records_the_band_it_serves(generated: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """sim_spectrum_sigmf.py serves the band and records its samples as SigMF: a cf32_le
    recording at the flowgraph's rate and frequency, whose strongest line is the band's
    strongest carrier, and a meta file complete when the flowgraph stops."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    center_freq_hz, samp_rate = 433.92e6, 2e6
    record_dir = tmp_path / "iq"
    args = ["--port", "0", "--center-freq", str(center_freq_hz), "--samp-rate", str(samp_rate),
            "--record-iq-dir", str(record_dir)]
    with running_flowgraph(generated["sim_spectrum_sigmf"], args, tmp_path) as flowgraph:
        receive(flowgraph.wait_for_url(), FRAMES_TO_AVERAGE)
        deadline = time.monotonic() + 60
        while sum(p.stat().st_size for p in record_dir.glob("*.sigmf-data")) < 8 * samp_rate:
            assert time.monotonic() < deadline, "no second of samples recorded in 60 s"
            time.sleep(0.2)
    assert flowgraph.process.returncode == 0, f"unclean stop on SIGINT:\n{flowgraph.output()}"
    (data,) = record_dir.glob("*.sigmf-data")
    meta = json.loads(data.with_suffix(".sigmf-meta").read_text())
    assert meta["global"]["core:datatype"] == "cf32_le"
    assert meta["global"]["core:sample_rate"] == samp_rate
    assert [c["core:frequency"] for c in meta["captures"]] == [center_freq_hz]
    samples = np.fromfile(data, dtype="<c8")[: 2048 * 200].reshape(-1, 2048)
    power = (np.abs(np.fft.fftshift(np.fft.fft(samples, axis=1), axes=1)) ** 2).mean(axis=0)
    assert abs(int(np.argmax(power)) - expected_bin(STRONGEST_CARRIER[0], 2048)) <= 1


@needs_grcc
def test_sigmf_spectrum_serves_a_recording_at_its_rate_and_frequency(
        generated: dict[str, Path], tmp_path: Path) -> None:
    """sigmf_spectrum.py, given a SigMF recording (ci8, as hackrf_transfer writes), serves
    frames at the recording's rate and frequency (from its meta file, with no flag for
    either) with its tone in its bin."""
    samp_rate, center_freq_hz, tone_bins = 4e6, 868e6, -333
    samples = np.arange(2048 * 64)
    tone = 0.5 * np.exp(2j * np.pi * tone_bins / 2048 * samples)
    noise = np.random.default_rng(1).standard_normal((samples.size, 2)) * 0.01
    iq = np.stack([tone.real, tone.imag], axis=1) + noise
    (tmp_path / "tone.sigmf-data").write_bytes(np.round(iq * 127).astype("i1").tobytes())
    (tmp_path / "tone.sigmf-meta").write_text(json.dumps({
        "global": {"core:datatype": "ci8", "core:sample_rate": samp_rate,
                   "core:version": "1.2.0"},
        "captures": [{"core:sample_start": 0, "core:frequency": center_freq_hz}]}))

    args = ["--port", "0", "--recording", str(tmp_path / "tone.sigmf-meta")]
    with running_flowgraph(generated["sigmf_spectrum"], args, tmp_path) as flowgraph:
        hello, frames = receive(flowgraph.wait_for_url(), FRAMES_TO_AVERAGE)

    assert flowgraph.process.returncode == 0, f"unclean stop on SIGINT:\n{flowgraph.output()}"
    assert_stream_is(hello, frames, bins=2048, center_freq_hz=center_freq_hz,
                     span_hz=samp_rate)
    assert strongest_bin(frames) == expected_bin(tone_bins / 2048, 2048)


@needs_grcc
def test_hackrf_spectrum_serves_an_osmosdr_file_source(generated: dict[str, Path],
                                                      tmp_path: Path) -> None:
    """hackrf_spectrum.py, pointed at an osmosdr file= source, shows the file's tone in its bin."""
    pytest.importorskip("osmosdr")
    samp_rate, center_freq_hz = 2e6, 915e6
    tone_offset_hz = -333 / 2048 * samp_rate  # a bin centre; 2048 samples hold whole cycles
    samples = np.arange(2048 * 32)
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(samples.size) + 1j * rng.standard_normal(samples.size)) * 0.007
    iq = 0.5 * np.exp(2j * np.pi * tone_offset_hz / samp_rate * samples) + noise
    iq_file = tmp_path / "tone.cfile"
    iq.astype(np.complex64).tofile(iq_file)

    args = [
        "--port", "0",
        "--device-args", f"file={iq_file},rate={samp_rate:g},repeat=true,throttle=true",
        "--samp-rate", str(samp_rate),
        "--center-freq", str(center_freq_hz),
    ]
    with running_flowgraph(generated["hackrf_spectrum"], args, tmp_path) as flowgraph:
        url = flowgraph.wait_for_url()
        hello, frames = receive(url + "?second_trace=1", FRAMES_TO_AVERAGE + 2)

    assert flowgraph.process.returncode == 0, f"unclean stop on SIGINT:\n{flowgraph.output()}"
    # The sink's URL is not buried in GNU Radio's buffer lines (GRC's console shows it all).
    assert "set_min_output_buffer" not in flowgraph.output()
    assert_stream_is(hello, frames, bins=2048, center_freq_hz=center_freq_hz, span_hz=samp_rate)
    tone_bin = expected_bin(tone_offset_hz / samp_rate, 2048)
    assert abs(strongest_bin(frames[2:]) - tone_bin) <= 1
    # Asked for, the average comes under the peak: the same tone, never above the peak.
    for frame in frames[2:]:
        assert (frame.detector, frame.second_detector) == ("peak", "average")
        assert frame.second_power_db is not None
        assert np.all(frame.second_power_db <= frame.power_db + 1e-3)
        assert abs(int(np.argmax(frame.second_power_db)) - tone_bin) <= 1
        # A steady tone reads the same level in both traces.
        assert frame.power_db[tone_bin] - frame.second_power_db[tone_bin] < 1.0


@needs_grcc
def test_hackrf_retune_sweep_sweeps_past_one_capture(generated: dict[str, Path],
                                                     tmp_path: Path) -> None:
    """hackrf_retune_sweep.py on an osmosdr file= source: one frame per sweep of 88 to
    112 MHz (four 6 MHz steps of 8 MS/s), as many bins as gr_argos.sweep_bins says; the
    sink's frame rate is the sweep's, so nothing is skipped."""
    pytest.importorskip("osmosdr")
    from gr_argos import sweep_bins

    rng = np.random.default_rng(2)
    noise = (rng.standard_normal(2048 * 64) + 1j * rng.standard_normal(2048 * 64)) * 0.01
    iq_file = tmp_path / "noise.cfile"
    noise.astype(np.complex64).tofile(iq_file)
    args = ["--port", "0", "--device-args", f"file={iq_file},rate=8e6,repeat=true,throttle=true"]
    with running_flowgraph(generated["hackrf_retune_sweep"], args, tmp_path) as flowgraph:
        hello, frames = receive(flowgraph.wait_for_url(), 3)

    bins = sweep_bins(88e6, 108e6, 8e6, 2048, 0.75)
    assert bins == 4 * 1536
    assert_stream_is(hello, frames, bins=bins, center_freq_hz=100e6, span_hz=24e6,
                     fps=250 / (8 + 4) / 4)
    assert "frames_skipped" not in flowgraph.output() and "vectors/s arrive" not in (
        flowgraph.output())


@needs_grcc
@pytest.mark.skipif(shutil.which("gpsfake") is None, reason="needs gpsfake (gpsd-clients)")
def test_sim_spectrum_gps_sends_gpsds_fixes_beside_the_frames(generated: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """sim_spectrum_gps.py with gpsd (gpsfake replaying a drive): a client gets the
    simulated band's frames and gps messages with the log's positions."""
    from websockets.sync.client import connect

    from gps_replay import (assert_positions_match_the_log, fix_times, free_port,
                            gps_messages_until, gpsfake)

    port = free_port()
    with gpsfake(port), running_flowgraph(
            generated["sim_spectrum_gps"], ["--port", "0", "--gpsd-port", str(port)],
            tmp_path) as flowgraph:
        hello, frames = receive(flowgraph.wait_for_url(), 3)
        with connect(flowgraph.wait_for_url(), open_timeout=30) as websocket:
            messages = gps_messages_until(websocket, lambda got: len(fix_times(got)) >= 2)
    assert hello["streams"][0]["bins"] == 2048 and len(frames) == 3
    assert_positions_match_the_log(messages)
