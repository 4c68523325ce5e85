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
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from gr_argos.protocol import SpectrumFrame, decode_frame, decode_message

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
FLOWGRAPHS = sorted((REPO_ROOT / "flowgraphs").glob("*.grc"))

URL_TIMEOUT_S = 60.0  # start-up on a loaded 2-core machine, including GNU Radio imports
RECEIVE_TIMEOUT_S = 30.0
FRAMES_TO_AVERAGE = 10
URL_PATTERN = re.compile(r"ws://127\.0\.0\.1:(\d+)/")

grcc = shutil.which("grcc")
needs_grcc = pytest.mark.skipif(grcc is None, reason="grcc (GNU Radio Companion) is not installed")


def expected_bin(offset_hz: float, frame: SpectrumFrame) -> int:
    """Index of the FFT-shifted bin (DC in the middle) holding a signal at offset_hz."""
    bin_width_hz = frame.span_hz / frame.bin_count
    return round(frame.bin_count / 2 + offset_hz / bin_width_hz)


def strongest_bin(frames: list[SpectrumFrame]) -> int:
    """Strongest bin of the frames' spectra averaged in linear power."""
    linear = np.mean([10 ** (frame.power_db.astype(np.float64) / 10) for frame in frames], axis=0)
    return int(np.argmax(linear))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Compile every flowgraph with grcc; map flowgraph name -> generated script."""
    if grcc is None:
        pytest.skip("grcc (GNU Radio Companion) is not installed")
    out_dir = tmp_path_factory.mktemp("grcc")
    env = {**os.environ, "GRC_BLOCKS_PATH": str(REPO_ROOT / "grc")}
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


class RunningFlowgraph:
    """A generated flowgraph script running as a subprocess; its output is collected."""

    def __init__(self, script: Path, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(script), *args],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._new_lines: queue.Queue[str | None] = queue.Queue()
        # Drain the pipe for the whole run so a chatty flowgraph never blocks on it.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self._new_lines.put(line)
        self._new_lines.put(None)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_url(self, timeout_s: float = URL_TIMEOUT_S) -> str:
        """Return the ws:// URL the sink logs once it listens (port 0 -> the real port)."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._new_lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"flowgraph exited with {self.process.wait()} before serving:\n"
                            f"{self.output()}")
            match = URL_PATTERN.search(line)
            if match:
                return match.group(0)
        pytest.fail(f"no ws://127.0.0.1:PORT/ line within {timeout_s:.0f} s:\n{self.output()}")

    def stop(self) -> None:
        """SIGINT (the generated script stops the flowgraph cleanly), then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._reader.join(timeout=5)


@contextmanager
def running(script: Path, args: list[str], cwd: Path) -> Iterator[RunningFlowgraph]:
    flowgraph = RunningFlowgraph(script, args, cwd)
    try:
        yield flowgraph
    finally:
        flowgraph.stop()


def receive(url: str, frame_count: int) -> tuple[dict[str, Any], list[SpectrumFrame]]:
    """Connect a real WebSocket client; return the hello message and the next frames."""
    from websockets.sync.client import connect

    frames: list[SpectrumFrame] = []
    with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as websocket:
        first = websocket.recv(timeout=RECEIVE_TIMEOUT_S)
        assert isinstance(first, str), "the first message must be the JSON hello"
        hello = decode_message(first)
        while len(frames) < frame_count:
            message = websocket.recv(timeout=RECEIVE_TIMEOUT_S)
            if isinstance(message, bytes):  # JSON status messages may come in between
                frames.append(decode_frame(message))
    return hello, frames


def assert_stream_is(hello: dict[str, Any], frames: list[SpectrumFrame], *, bins: int,
                     center_freq_hz: float, span_hz: float) -> None:
    """The hello announces the stream and every frame carries the configured metadata."""
    assert hello["type"] == "hello"
    streams = hello["streams"]
    assert isinstance(streams, list) and len(streams) == 1
    assert streams[0]["bins"] == bins
    assert streams[0]["fps"] == pytest.approx(30.0)
    for frame in frames:
        assert frame.bin_count == bins
        assert frame.center_freq_hz == pytest.approx(center_freq_hz)
        assert frame.span_hz == pytest.approx(span_hz)
        assert np.all(np.isfinite(frame.power_db))
    sequences = [frame.sequence for frame in frames]
    assert all(later > earlier for earlier, later in zip(sequences, sequences[1:])), sequences


def test_there_are_flowgraphs_to_check() -> None:
    """The flowgraphs this test is about exist."""
    assert {path.stem for path in FLOWGRAPHS} >= {"sim_spectrum", "hackrf_spectrum"}


@pytest.mark.parametrize("block", ["websocket_sink", "sim_band_source"])
def test_grc_block_parameters_are_the_block_arguments(block: str) -> None:
    """Each GRC parameter is a constructor argument of the same name, with the same default."""
    cls = getattr(import_module(f"gr_argos.{block}"), block)
    arguments = dict(inspect.signature(cls.__init__).parameters)
    del arguments["self"]
    definition = yaml.safe_load((REPO_ROOT / "grc" / f"gr_argos_{block}.block.yml").read_text())
    parameters = {parameter["id"]: parameter for parameter in definition["parameters"]}
    assert set(parameters) == set(arguments)
    for name, parameter in parameters.items():
        if name == "samp_rate":  # GRC convention: default to the flowgraph's samp_rate variable
            assert parameter["default"] == "samp_rate"
        elif parameter["dtype"] == "string":
            assert parameter["default"] == arguments[name].default, name
        else:
            assert ast.literal_eval(str(parameter["default"])) == arguments[name].default, name


@needs_grcc
@pytest.mark.parametrize("flowgraph", FLOWGRAPHS, ids=lambda path: path.name)
def test_flowgraph_compiles_with_grcc(flowgraph: Path, generated: dict[str, Path]) -> None:
    """grcc turns every shipped flowgraph into a Python script (exit status 0)."""
    script = generated[flowgraph.stem]
    assert script.is_file()
    assert "gr_argos.websocket_sink(" in script.read_text()


@needs_grcc
def test_sim_spectrum_serves_the_simulated_band(generated: dict[str, Path],
                                                tmp_path: Path) -> None:
    """sim_spectrum.py serves 2048-bin frames whose strongest bin is the strongest carrier."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    center_freq_hz, samp_rate = 433.92e6, 4e6
    args = ["--port", "0", "--center-freq", str(center_freq_hz), "--samp-rate", str(samp_rate)]
    with running(generated["sim_spectrum"], args, tmp_path) as flowgraph:
        url = flowgraph.wait_for_url()
        hello, frames = receive(url, FRAMES_TO_AVERAGE + 2)

    assert flowgraph.process.returncode == 0, f"unclean stop on SIGINT:\n{flowgraph.output()}"
    assert_stream_is(hello, frames, bins=2048, center_freq_hz=center_freq_hz, span_hz=samp_rate)
    carrier_bin = expected_bin(STRONGEST_CARRIER[0] * samp_rate, frames[0])
    assert abs(strongest_bin(frames[2:]) - carrier_bin) <= 1


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
    with running(generated["hackrf_spectrum"], args, tmp_path) as flowgraph:
        url = flowgraph.wait_for_url()
        hello, frames = receive(url, FRAMES_TO_AVERAGE + 2)

    assert flowgraph.process.returncode == 0, f"unclean stop on SIGINT:\n{flowgraph.output()}"
    assert_stream_is(hello, frames, bins=2048, center_freq_hz=center_freq_hz, span_hz=samp_rate)
    assert abs(strongest_bin(frames[2:]) - expected_bin(tone_offset_hz, frames[0])) <= 1
