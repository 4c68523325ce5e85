# SPDX-License-Identifier: GPL-3.0-or-later
"""hackrf_sweep_source in real GNU Radio flowgraphs, fed by a stand-in hackrf_sweep.

``tests/tools/hackrf_sweep`` takes the real tool's flags and writes its real formats, with
the segments interleaved as the real tool writes them, and a deterministic spectrum that
these tests compute from its ``true_spectrum()`` (loaded from the script itself). Behaviour
switches (rate, hang, no device) are environment variables, which the block's child
inherits. Every top block is stopped and waited for in a ``finally``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from gr_argos.protocol import SpectrumFrame, decode_frame, decode_message

from helpers import (RECEIVE_TIMEOUT_S, REPO_ROOT, assert_stream_is, receive, running,
                     strongest_bin)

gr = pytest.importorskip("gnuradio.gr")
blocks = pytest.importorskip("gnuradio.blocks")
pmt = pytest.importorskip("pmt")

from gr_argos.hackrf_sweep_source import hackrf_sweep_source  # noqa: E402
from gr_argos.websocket_sink import websocket_sink  # noqa: E402

pytestmark = pytest.mark.slow

STAND_IN = REPO_ROOT / "tests" / "tools" / "hackrf_sweep"
DEADLINE_S = 60.0  # generous: a loaded 2-core machine; only a failing test waits this long
# 2400-2500 MHz at 1 MHz bins: hackrf_sweep's FFT size is 20, so 100 true bins, and a
# 100-bin output has exactly one true bin per output bin.
FREQ_MIN_HZ, FREQ_MAX_HZ, BIN_WIDTH_HZ, FFT_SIZE = 2400e6, 2500e6, 1e6, 20


def load_stand_in() -> ModuleType:
    """The stand-in script as a module (its name has no .py, so name the loader)."""
    loader = SourceFileLoader("fake_hackrf_sweep", str(STAND_IN))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


fake = load_stand_in()


def true_sweep(number: int) -> np.ndarray:
    """What the stand-in writes in its sweep ``number`` over 2400-2500 MHz, as float32."""
    return np.array(fake.true_spectrum(2400, 2500, FFT_SIZE, number), dtype=np.float32)


def wait_for(predicate: Callable[[], object], what: str,
             timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(autouse=True)
def stand_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A brisk stand-in by default; tests add their own switches."""
    monkeypatch.setenv("ARGOS_FAKE_SWEEP_RATE", "20")
    for name in ("ARGOS_FAKE_SWEEP_HANG_AFTER", "ARGOS_FAKE_SWEEP_FAIL",
                 "ARGOS_FAKE_SWEEP_SEED", "ARGOS_FAKE_SWEEP_SIGNAL_MHZ"):
        monkeypatch.delenv(name, raising=False)


class Captured:
    """A source -> vector sink top block, with the status port stored by a message_debug."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.bins = source.output_signature().sizeof_stream_item(0) // 4
        self.top = gr.top_block("hackrf_sweep_source test", catch_exceptions=False)
        self.sink = blocks.vector_sink_f(self.bins)
        self.debug = blocks.message_debug()
        self.top.connect(source, self.sink)
        self.top.msg_connect(source, "status", self.debug, "store")

    def vectors(self) -> np.ndarray:
        return np.array(self.sink.data(), dtype=np.float32).reshape(-1, self.bins)

    def tags(self, key: str) -> list[Any]:
        return [pmt.to_python(tag.value) for tag in sorted(self.sink.tags(),
                                                           key=lambda tag: tag.offset)
                if pmt.symbol_to_string(tag.key) == key]

    def statuses(self) -> list[dict[str, Any]]:
        return [pmt.to_python(self.debug.get_message(index))
                for index in range(self.debug.num_messages())]


@contextmanager
def capturing(**kwargs: Any) -> Iterator[Captured]:
    """Run hackrf_sweep_source(stand-in, **kwargs) -> vector sink for a ``with`` block."""
    source = hackrf_sweep_source(**{"freq_min": FREQ_MIN_HZ, "freq_max": FREQ_MAX_HZ,
                                    "bin_width": BIN_WIDTH_HZ, "bins": 100,
                                    "sweep_executable": str(STAND_IN), **kwargs})
    captured = Captured(source)
    captured.top.start()
    try:
        yield captured
    finally:
        captured.top.stop()
        captured.top.wait()


# -- what comes out ---------------------------------------------------------------------------

@pytest.mark.parametrize("output_format", ["binary", "text"])
def test_output_is_the_stitched_spectrum_of_every_sweep(output_format: str) -> None:
    """Sweep after sweep, each output vector is exactly the stand-in's true spectrum in
    frequency order, although its segments arrived interleaved, in either format."""
    with capturing(output_format=output_format) as run:
        wait_for(lambda: len(run.vectors()) >= 3, "three sweeps")
    vectors = run.vectors()

    for number, vector in enumerate(vectors[:3]):
        np.testing.assert_array_equal(vector, true_sweep(number))
    assert run.tags("sweep_number")[:3] == [0, 1, 2]
    assert all(run.tags("sweep_complete")[:3])


def test_many_bins_per_output_bin_keep_the_peak() -> None:
    """With 25 output bins, each holds the maximum of its 4 true bins (reduce="max")."""
    with capturing(bins=25) as run:
        wait_for(lambda: len(run.vectors()) >= 1, "a sweep")

    np.testing.assert_array_equal(run.vectors()[0], true_sweep(0).reshape(25, 4).max(axis=1))


def test_tags_describe_the_whole_sweep() -> None:
    """rx_freq is the centre of the range, rx_rate its span, rx_time the sweep's start."""
    before = time.time()
    with capturing() as run:
        wait_for(lambda: len(run.vectors()) >= 2, "two sweeps")

    assert run.tags("rx_freq")[:2] == [2450e6, 2450e6]
    assert run.tags("rx_rate")[:2] == [100e6, 100e6]
    seconds, fraction = run.tags("rx_time")[0]
    assert before - 1 <= seconds + fraction <= time.time()


def test_websocket_clients_see_the_sweep_range_and_spectrum() -> None:
    """source -> websocket_sink on port 0 -> a real WebSocket client: frames carry the
    sweep's centre and span (the sink was given none) and the stitched spectrum; the
    source's status port shows up in the sink's JSON status messages."""
    source = hackrf_sweep_source(freq_min=FREQ_MIN_HZ, freq_max=FREQ_MAX_HZ,
                                 bin_width=BIN_WIDTH_HZ, bins=100, sweep_executable=str(STAND_IN))
    sink = websocket_sink(bins=100, center_freq=0, span=0, port=0, fps=20)
    top = gr.top_block("sweep to websocket", catch_exceptions=False)
    top.connect(source, sink)
    top.msg_connect(source, "status", sink, "status")
    frames: list[SpectrumFrame] = []
    sweep_statuses: list[dict[str, Any]] = []
    top.start()
    try:
        with connect(sink.url, open_timeout=RECEIVE_TIMEOUT_S) as websocket:
            assert decode_message(websocket.recv(timeout=RECEIVE_TIMEOUT_S))["type"] == "hello"
            while len(frames) < 3 or not sweep_statuses:
                message = websocket.recv(timeout=RECEIVE_TIMEOUT_S)
                if isinstance(message, bytes):
                    frames.append(decode_frame(message))
                elif (status := decode_message(message)).get("source") == "hackrf_sweep":
                    sweep_statuses.append(status)
    finally:
        top.stop()
        top.wait()

    truths = [true_sweep(number) for number in range(200)]
    for frame in frames:
        assert (frame.center_freq_hz, frame.span_hz, frame.bin_count) == (2450e6, 100e6, 100)
        assert any(np.array_equal(frame.power_db, truth) for truth in truths)
    assert sweep_statuses[0]["type"] == "status"
    assert sweep_statuses[0]["freq_min_hz"] == FREQ_MIN_HZ
    assert sweep_statuses[0]["restarts"] == 0


# -- the child process ------------------------------------------------------------------------

def test_hung_child_is_restarted_by_the_watchdog(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """A stand-in that falls silent after 2 sweeps is killed after watchdog_timeout and a
    new one started; the restart is counted in the status and sweeps resume (numbered on)."""
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("ARGOS_FAKE_SWEEP_HANG_AFTER", "2")
    monkeypatch.setenv("ARGOS_FAKE_SWEEP_PIDFILE", str(pidfile))
    with capturing(watchdog_timeout_s=1.0) as run:
        wait_for(lambda: len(run.vectors()) >= 4, "sweeps from a restarted child")
        wait_for(lambda: any(status["restarts"] >= 1 for status in run.statuses()),
                 "a status message counting the restart")
        first_pid = int(pidfile.read_text().split()[0])
        assert not pid_alive(first_pid), "the hung child was not ended"

    vectors = run.vectors()
    # each child writes its sweeps 0 and 1, then hangs
    np.testing.assert_array_equal(vectors[2], true_sweep(0))
    np.testing.assert_array_equal(vectors[3], true_sweep(1))
    assert run.tags("sweep_number")[:4] == [0, 1, 2, 3]
    assert len(pidfile.read_text().split()) >= 2
    assert any("wrote nothing for 1 s" in status["last_error"] for status in run.statuses())


def test_stopping_the_flowgraph_ends_the_child(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """After stop() and wait() the hackrf_sweep process is gone, even a hung one."""
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("ARGOS_FAKE_SWEEP_PIDFILE", str(pidfile))
    monkeypatch.setenv("ARGOS_FAKE_SWEEP_HANG_AFTER", "1")
    with capturing(watchdog_timeout_s=60) as run:
        wait_for(lambda: len(run.vectors()) >= 1 or pidfile.exists(), "the child")
        wait_for(pidfile.exists, "the child's PID")
        pid = int(pidfile.read_text().split()[0])
        assert pid_alive(pid) and run.source.child_pid == pid

    assert not pid_alive(pid)


def test_no_hackrf_is_reported_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hackrf_sweep that finds no HackRF: the status says so in last_error, the block
    retries with backoff (restarts counted) and the flowgraph keeps running until stopped."""
    monkeypatch.setenv("ARGOS_FAKE_SWEEP_FAIL", "no-device")
    with capturing() as run:
        wait_for(lambda: any(status["restarts"] >= 2 for status in run.statuses()),
                 "two restarts")

    errors = [status["last_error"] for status in run.statuses() if status["last_error"]]
    assert errors and "no HackRF found" in errors[-1] and "hackrf_info" in errors[-1]
    assert len(run.vectors()) == 0


@pytest.mark.parametrize("output_format", ["binary", "text"])
def test_no_hackrf_with_a_serial_names_that_serial(monkeypatch: pytest.MonkeyPatch,
                                                   output_format: str) -> None:
    """With device_args (-d SERIAL) the no-device error names the serial number itself,
    whatever flag ends the command line (-B in binary mode)."""
    monkeypatch.setenv("ARGOS_FAKE_SWEEP_FAIL", "no-device")
    with capturing(device_args="0000abcd", output_format=output_format) as run:
        wait_for(lambda: any("no HackRF found" in status["last_error"]
                             for status in run.statuses()), "the no-device error")

    errors = [status["last_error"] for status in run.statuses()
              if "no HackRF found" in status["last_error"]]
    assert all("check the serial number '0000abcd'" in error for error in errors), errors
    assert not any("'-B'" in error for error in errors), errors


def test_a_failing_childs_messages_are_logged_once(monkeypatch: pytest.MonkeyPatch,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """A child that fails on every restart has its usage text, errors and exit logged
    once; later restarts log one line each that counts the repeats, and the status counts
    them in messages_repeated."""
    monkeypatch.setenv("ARGOS_FAKE_SWEEP_FAIL", "no-device")
    with capturing(restart_backoff_max_s=0.5) as run:
        wait_for(lambda: any(status["restarts"] >= 3 for status in run.statuses()),
                 "three restarts")
    logged = [line for line in capfd.readouterr().out.splitlines()
              if line.startswith("hackrf_sweep_source")]

    restart_lines = [line for line in logged if "restarting hackrf_sweep" in line]
    others = [line for line in logged if line not in restart_lines]
    log = "\n".join(logged)
    assert len(restart_lines) >= 3, log
    assert sum("hackrf_sweep: Usage:" in line for line in others) == 1, log
    assert len(others) == len(set(others)), log
    assert all("repeated message(s) not logged again" in line
               for line in restart_lines[1:]), restart_lines
    assert run.statuses()[-1]["messages_repeated"] > 0


def test_missing_executable_fails_at_construction() -> None:
    """A hackrf_sweep that is not installed fails when the block is made, saying what to
    install."""
    with pytest.raises(FileNotFoundError, match="apt-get install hackrf"):
        hackrf_sweep_source(sweep_executable="hackrf_sweep_not_installed_here")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"freq_min": 2500e6, "freq_max": 2400e6}, "freq_min .* must be below freq_max"),
    ({"freq_max": 8000e6}, "for freq_max: must be between 0 and 7.25e\\+09"),
    ({"bin_width": 100}, "for bin_width: must be between 2445 and 5000000"),
    ({"output_format": "csv"}, "for output_format: expected one of binary, text"),
    ({"lna_gain": 48}, "for lna_gain: must be between 0 and 40"),
    ({"watchdog_timeout": 0}, "for watchdog_timeout_s: must be greater than 0"),
])
def test_bad_parameters_fail_at_construction(kwargs: dict[str, Any], message: str) -> None:
    """Out-of-range settings raise a ValueError naming the setting and its limit, before
    anything runs (a former name, watchdog_timeout, is checked as the new one)."""
    with pytest.raises(ValueError, match=message):
        hackrf_sweep_source(sweep_executable=str(STAND_IN), **kwargs)


def test_command_line_is_the_real_tools() -> None:
    """The block passes -f in whole MHz (rounded outwards), -w, gains, amp, -d and -B."""
    source = hackrf_sweep_source(freq_min=2400.5e6, freq_max=2483.5e6, bin_width=500e3,
                                 lna_gain=24, vga_gain=30, amp=True, device_args="0000abcd",
                                 sweep_executable=str(STAND_IN))

    assert source.args == ["-f", "2400:2484", "-w", "500000", "-l", "24", "-g", "30",
                           "-a", "1", "-d", "0000abcd", "-B"]


def test_stand_in_takes_the_real_tools_flags() -> None:
    """The real hackrf_sweep (if installed) and the stand-in print the same usage."""
    real = shutil.which("hackrf_sweep")
    if real is None:
        pytest.skip("hackrf_sweep is not installed")
    usage = [subprocess.run([program, "-h"], capture_output=True, text=True,
                            timeout=30).stderr for program in (real, str(STAND_IN))]
    assert usage[0] == usage[1]


# -- GRC --------------------------------------------------------------------------------------

def test_sweep_flowgraph_serves_the_whole_range(tmp_path: Path) -> None:
    """flowgraphs/hackrf_sweep.grc, compiled with grcc and pointed at the stand-in with
    --executable, serves 100-bin frames over 2400-2500 MHz with the carrier's bin strongest."""
    grcc = shutil.which("grcc")
    if grcc is None:
        pytest.skip("grcc (GNU Radio Companion) is not installed")
    env = {**os.environ, "GRC_BLOCKS_PATH": str(REPO_ROOT / "grc")}
    result = subprocess.run([grcc, "-o", str(tmp_path), str(REPO_ROOT / "flowgraphs" /
                                                            "hackrf_sweep.grc")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    args = ["--port", "0", "--executable", str(STAND_IN), "--bins", "100",
            "--freq-min", "2400e6", "--freq-max", "2500e6", "--bin-width", "1e6"]
    with running([sys.executable, "-u", str(tmp_path / "hackrf_sweep.py"), *args], tmp_path,
                 url_pattern=re.compile(r"(ws://127\.0\.0\.1:\d+/)"), name="flowgraph") as fg:
        hello, frames = receive(fg.wait_for_url(), 3)

    assert fg.process.returncode == 0, f"unclean stop on SIGINT:\n{fg.output()}"
    assert_stream_is(hello, frames, bins=100, center_freq_hz=2450e6, span_hz=100e6, fps=10.0)
    assert strongest_bin(frames) == int(np.argmax(true_sweep(0)))
