# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the argos-client command, run as a real subprocess against a real server."""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gr_argos.apps.client import format_status, frame_summary
from gr_argos.client import FrameEvent
from gr_argos.protocol import SpectrumFrame, encode_frame
from gr_argos.protocol import StreamInfo
from gr_argos.server import ServerConfig, SpectrumServer

BINS = 16
WAIT_S = 60.0  # a hang guard, not a speed requirement


class Publisher:
    """Publishes a 16-bin frame every 20 ms from a thread and remembers each one."""

    def __init__(self, server: SpectrumServer) -> None:
        self.server = server
        self.published: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sequence = 0
        while not self._stop.wait(0.02):
            peak_bin, peak_db = sequence % BINS, -30.0 - sequence % 5
            power = np.full(BINS, -100.0, dtype=np.float32)
            power[peak_bin] = peak_db
            timestamp_ns = time.time_ns()
            self.published[sequence] = {"peak_bin": peak_bin, "peak_db": peak_db,
                                        "timestamp_ns": timestamp_ns}
            self.server.publish_frame(0, encode_frame(
                power, center_freq_hz=433.92e6, span_hz=2e6, timestamp_ns=timestamp_ns,
                sequence=sequence))
            sequence += 1

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def serving(before_start: Any = None, **settings: Any) -> Iterator[SpectrumServer]:
    """A SpectrumServer on a free port with one 16-bin stream, stopped after the block;
    ``before_start(server)`` is called before it listens."""
    started = SpectrumServer(ServerConfig(**{"host": "127.0.0.1", "port": 0, "queue_depth": 8,
                                             **settings}))
    started.add_stream(StreamInfo(stream_id=0, name="spectrum", bins=BINS,
                                  center_freq_hz=433.92e6, span_hz=2e6, fps=50.0))
    if before_start is not None:
        before_start(started)
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def server() -> Iterator[SpectrumServer]:
    """A SpectrumServer on a free port with one 16-bin stream, stopped after the test."""
    with serving() as started:
        yield started


@pytest.fixture
def publisher(server: SpectrumServer) -> Iterator[Publisher]:
    """Frames flowing on ``server`` for the whole test."""
    with Publisher(server) as running:
        yield running


TOKEN = "correct-horse-battery-staple-7f3a"
WRONG_TOKEN = "wrong-token-0b9e"


@pytest.fixture
def token_server() -> Iterator[SpectrumServer]:
    """Like ``server``, with a token (and a 1 s handshake timeout), frames flowing."""
    with serving(token=TOKEN, handshake_timeout_s=1.0) as started, Publisher(started):
        yield started


def argos_client(*args: str) -> list[str]:
    return [sys.executable, "-m", "gr_argos.apps.client", *args]


def run(command: list[str], repo_root: Path,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end; ``env`` is added to a copy of this environment without
    ARGOS_TOKEN."""
    environment = {k: v for k, v in os.environ.items() if k != "ARGOS_TOKEN"}
    return subprocess.run(command, capture_output=True, text=True, timeout=WAIT_S,
                          cwd=repo_root, env={**environment, **(env or {})})


def token_file(directory: Path, token: str) -> Path:
    """A chmod 600 file holding ``token`` and a newline, as ``echo TOKEN > file`` makes."""
    path = directory / "token"
    path.write_text(token + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def test_json_count_prints_one_summary_per_published_frame(
        server: SpectrumServer, publisher: Publisher, repo_root: Path) -> None:
    """--json --count 5 prints five JSON lines that describe frames the server published."""
    result = run(argos_client(server.url, "--json", "--count", "5"), repo_root)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 5
    for line in lines:
        sent = publisher.published[line["sequence"]]
        assert line["peak_bin"] == sent["peak_bin"] and line["peak_db"] == sent["peak_db"]
        assert line["timestamp_ns"] == sent["timestamp_ns"]
        assert (line["bins"], line["center_freq_hz"], line["span_hz"]) == (BINS, 433.92e6, 2e6)
        assert line["stream_id"] == 0 and line["age_ms"] >= 0
    for before, after in itertools.pairwise(lines):
        assert after["gap"] == after["sequence"] - before["sequence"] - 1
        assert after["missed"] <= after["gap"]
    assert result.stderr.splitlines()[-1].startswith("argos-client: 5 frames,")


def test_detections_flag_prints_each_detection_message_as_a_json_line(
        server: SpectrumServer, publisher: Publisher, repo_root: Path) -> None:
    """--detections prints the detection messages, as sent, one per line, and nothing of
    the frames or other messages; a script can follow them."""
    stop = threading.Event()

    def detections() -> None:
        number = 0
        while not stop.wait(0.02):
            number += 1
            server.publish_message("detection", {"stream": 0, "event": "start", "id": number,
                                                 "center_freq_hz": 433.92e6 + number})
            server.publish_message("gps", {"stream": 0, "fix": False})

    thread = threading.Thread(target=detections, daemon=True)
    thread.start()
    try:
        result = run(argos_client(server.url, "--detections", "--count", "40"), repo_root)
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines and all(line["type"] == "detection" for line in lines)
    ids = [line["id"] for line in lines]
    assert ids == sorted(ids) and all(line["center_freq_hz"] == 433.92e6 + line["id"]
                                      for line in lines)


def detection(number: int, event: str = "start") -> dict[str, Any]:
    """A detection body as a sink publishes it, decided at a time that grows with number."""
    return {"stream": 0, "event": event, "id": number, "center_freq_hz": 433.92e6 + number,
            "time_ns": 1_700_000_000_000_000_000 + number * 1_000_000, "watched": False}


def printed_detections(program: Any, count: int) -> list[dict[str, Any]]:
    """The first ``count`` detection lines argos-client printed (waiting for them)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = [json.loads(line) for line in program.lines if line.startswith("{")]
        if len(found) >= count:
            return found
        assert program.process.poll() is None, program.output()
        time.sleep(0.05)
    pytest.fail(f"fewer than {count} detections printed:\n{program.output()}")


def test_recent_prints_the_kept_detections_first_then_the_live_ones(
        server: SpectrumServer, repo_root: Path) -> None:
    """--detections --recent: the events the server kept before the client came, oldest
    first, then each live one, each once and as a detection message."""
    from helpers import running

    for number in (1, 2, 3):
        server.publish_message("detection", detection(number))
    with running(argos_client(server.url, "--detections", "--recent"), repo_root,
                 url_pattern=re.compile("(never)"), name="argos-client") as program:
        printed_detections(program, 3)
        server.publish_message("detection", detection(4, "end"))
        lines = printed_detections(program, 4)
    assert lines == [{"type": "detection", **detection(n)} for n in (1, 2, 3)] + [
        {"type": "detection", **detection(4, "end")}]


def test_after_a_reconnect_the_detections_of_the_outage_are_printed(
        repo_root: Path) -> None:
    """--detections without --recent prints only live events; when the link comes back,
    the events the server kept from while it was down are printed first, none twice."""
    from helpers import running

    with serving() as first:
        url, port = first.url, first.port
        first.publish_message("detection", detection(1))  # before the client: not printed
        with running(argos_client(url, "--detections", "--backoff-base-s", "0.2"), repo_root,
                     url_pattern=re.compile("(never)"), name="argos-client") as program:
            deadline = time.monotonic() + WAIT_S
            while first.stats()["total"]["clients"] < 1:  # connected, its query answered
                assert time.monotonic() < deadline, program.output()
                time.sleep(0.05)
            time.sleep(0.5)
            first.publish_message("detection", detection(2))
            printed_detections(program, 1)
            first.stop()
            # The same server address comes back holding events of the outage (and 2 again)
            # before any client can connect: they can only come from the query.
            def outage(second: SpectrumServer) -> None:
                for number in (2, 3, 4):
                    second.publish_message("detection", detection(number))

            with serving(outage, port=port):
                lines = printed_detections(program, 3)
                time.sleep(0.5)  # nothing more comes
                lines = printed_detections(program, 3)
    assert [line["id"] for line in lines] == [2, 3, 4]


def test_shim_in_apps_runs_the_same_program(
        server: SpectrumServer, publisher: Publisher, repo_root: Path) -> None:
    """apps/argos-client is executable and behaves like the console script."""
    shim = repo_root / "apps" / "argos-client"
    assert os.access(shim, os.X_OK)
    result = run([sys.executable, str(shim), server.url, "--json", "--count", "2"], repo_root)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_status_lines_are_printed_one_per_line_when_not_a_tty(
        server: SpectrumServer, publisher: Publisher, repo_root: Path) -> None:
    """Without a terminal the status goes to stdout as whole lines, ending with the last frame."""
    result = run(argos_client(server.url, "--count", "3"), repo_root)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout
    last = result.stdout.splitlines()[-1]
    assert last.startswith("closed")
    assert "16 bins" in last and "433.920 MHz" in last and "frames/s" in last
    assert " lost " in last and " age " in last


def test_status_line_refreshes_in_place_on_a_tty(
        server: SpectrumServer, publisher: Publisher, repo_root: Path) -> None:
    """On a terminal the status line is redrawn with carriage returns and ends with a newline."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(argos_client(server.url, "--duration", "1.5"), cwd=repo_root,
                               stdout=terminal, stderr=subprocess.PIPE, text=True)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the program exited and closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, stderr
    text = output.decode()
    assert text.count("\r") >= 2
    assert "frames/s" in text and "433.920 MHz" in text
    assert text.endswith("\n")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/", "localhost:8765", "ws://h:70000/"])
def test_bad_url_gives_one_line_error_and_exit_2(url: str, repo_root: Path) -> None:
    """A URL the client cannot use is refused at once with one line that says what to type."""
    result = run(argos_client(url, "--count", "1"), repo_root)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("argos-client: error: bad URL")
    assert "ws://HOST:PORT/" in line


def test_no_server_gives_exit_1_after_duration(repo_root: Path) -> None:
    """With nobody listening, --duration ends the run with exit 1 and the reason."""
    stopped = SpectrumServer(ServerConfig(host="127.0.0.1", port=0))
    stopped.start()
    url = stopped.url
    stopped.stop()  # the port is free: every attempt is refused
    result = run(argos_client(url, "--duration", "1", "--backoff-base-s", "0.1",
                              "--backoff-cap-s", "0.2"), repo_root)
    assert result.returncode == 1
    assert "no frames received from" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_exits_130_without_a_traceback(
        server: SpectrumServer, publisher: Publisher, repo_root: Path) -> None:
    """SIGINT while frames flow stops the client cleanly with the conventional status 130."""
    process = subprocess.Popen(argos_client(server.url, "--json"), cwd=repo_root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # frames are flowing: the handler is installed
        assert json.loads(first)["bins"] == BINS
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=WAIT_S)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert "frames," in stderr.splitlines()[-1]


def frame_event(power_db: list[float], *, missed: int = 0, gap: int = 0) -> FrameEvent:
    frame = SpectrumFrame(np.array(power_db, dtype=np.float32), 100e6, 8e6, 1_000_000,
                          sequence=7, missed=missed)
    return FrameEvent(frame, gap=gap, received_ns=3_500_000, age_ms=2.5, size_bytes=80)


def test_frame_summary_finds_the_peak_and_ignores_non_finite_bins() -> None:
    """The JSON summary reports the strongest finite bin; NaN and +inf are not peaks."""
    summary = frame_summary(frame_event([-90.0, float("nan"), -40.0, float("inf"), -60.0],
                                        missed=1, gap=3))
    assert summary == {
        "stream_id": 0, "sequence": 7, "missed": 1, "gap": 3, "bins": 5,
        "center_freq_hz": 100e6, "span_hz": 8e6, "timestamp_ns": 1_000_000,
        "peak_bin": 2, "peak_db": -40.0, "age_ms": 2.5,
    }
    json.dumps(summary, allow_nan=False)


def test_frame_summary_of_an_all_nan_frame_has_no_peak() -> None:
    """A frame without a finite bin gives null peak fields, still valid JSON."""
    summary = frame_summary(frame_event([float("nan")] * 3))
    assert summary["peak_bin"] is None and summary["peak_db"] is None
    json.dumps(summary, allow_nan=False)


def test_status_shows_state_rate_bins_frequency_losses_and_age() -> None:
    """The status line has every figure a user watches, in MHz and ms."""
    line = format_status("open", 29.94, frame_event([-50.0] * 2048), frames_lost=12)
    assert line.split() == ["open", "29.9", "frames/s", "2048", "bins", "100.000", "MHz",
                            "lost", "12", "age", "2", "ms"]
    waiting = format_status("reconnecting", 0.0, None, 0, error="connection refused")
    assert waiting.split()[0] == "reconnecting" and waiting.endswith("(connection refused)")


def test_encoding_and_compress_flags_get_quantized_deflated_frames(
        server: SpectrumServer, publisher: Publisher, repo_root: Path) -> None:
    """--encoding uint8 --compress: the server sends deflated uint8 frames, and the summary's
    peak is the published one within half a uint8 step."""
    result = run(argos_client(server.url, "--json", "--count", "3", "--encoding", "uint8",
                              "--compress"), repo_root)

    assert result.returncode == 0, result.stderr
    for line in map(json.loads, result.stdout.splitlines()):
        sent = publisher.published[line["sequence"]]
        assert line["peak_bin"] == sent["peak_bin"]
        assert abs(line["peak_db"] - sent["peak_db"]) <= (100 - 30) / 255 / 2 + 1e-4
    assert server.stats()["total"]["encodes"]["uint8+deflate"] >= 3


def test_step_db_flag_gets_frames_with_that_step(
        server: SpectrumServer, publisher: Publisher, repo_root: Path) -> None:
    """--encoding uint8 --compress --step-db 1: the summary's peak is the published one
    within half of 1 dB."""
    result = run(argos_client(server.url, "--json", "--count", "3", "--encoding", "uint8",
                              "--compress", "--step-db", "1"), repo_root)

    assert result.returncode == 0, result.stderr
    for line in map(json.loads, result.stdout.splitlines()):
        sent = publisher.published[line["sequence"]]
        assert abs(line["peak_db"] - sent["peak_db"]) <= 0.5 + 1e-4
        assert line["peak_db"] == round(line["peak_db"])  # levels are whole dB


@pytest.mark.parametrize(("flags", "expected"), [
    (["--encoding", "uint8", "--step-db", "50"], "from 0.01 to 20"),
    (["--step-db", "1"], "uint8 encoding only"),
    (["--encoding", "int16", "--step-db", "1"], "uint8 encoding only"),
])
def test_a_bad_step_db_is_a_usage_error(flags: list[str], expected: str,
                                        repo_root: Path) -> None:
    """--step-db out of range, or without --encoding uint8, exits 2 saying why."""
    result = run(argos_client("ws://127.0.0.1:1/", *flags), repo_root)

    assert result.returncode == 2 and expected in result.stderr


def test_an_unknown_encoding_is_a_usage_error(repo_root: Path) -> None:
    """--encoding float16 exits 2 naming the choices."""
    result = run(argos_client("ws://127.0.0.1:1/", "--encoding", "float16"), repo_root)

    assert result.returncode == 2 and "uint8" in result.stderr


# -- a server with a token ------------------------------------------------------------------

@pytest.mark.parametrize("given_by", ["--token-file", "ARGOS_TOKEN"])
def test_the_token_from_a_file_or_the_environment_gets_frames(
        given_by: str, token_server: SpectrumServer, repo_root: Path, tmp_path: Path) -> None:
    """--token-file FILE or ARGOS_TOKEN admits the client: frames arrive, exit 0, and the
    token appears in no output."""
    if given_by == "--token-file":
        result = run(argos_client(token_server.url, "--json", "--count", "2", "--token-file",
                                  str(token_file(tmp_path, TOKEN))), repo_root)
    else:
        result = run(argos_client(token_server.url, "--json", "--count", "2"), repo_root,
                     env={"ARGOS_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert TOKEN not in result.stdout + result.stderr
    assert dict(token_server.counters.auth_failures) == {}


def test_a_wrong_token_exits_3_at_once_saying_so(
        token_server: SpectrumServer, repo_root: Path, tmp_path: Path) -> None:
    """A refused token ends the run with status 3 (no reconnect loop, no --duration
    needed), saying the token from --token-file was refused, without showing it."""
    path = token_file(tmp_path, WRONG_TOKEN)
    result = run(argos_client(token_server.url, "--token-file", str(path)), repo_root)
    assert result.returncode == 3, result.stderr
    assert "authentication failed" in result.stderr and "HTTP 401" in result.stderr
    assert f"did not accept the token from --token-file {path}" in result.stderr
    assert WRONG_TOKEN not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert dict(token_server.counters.auth_failures) == {"header": 1}


def test_no_token_for_a_server_that_needs_one_exits_3(
        token_server: SpectrumServer, repo_root: Path) -> None:
    """Without a token, the server's auth_failed ends the run with status 3 and a hint
    naming --token-file and ARGOS_TOKEN."""
    result = run(argos_client(token_server.url, "--json"), repo_root)
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert "needs a token" in result.stderr
    assert "--token-file" in result.stderr and "ARGOS_TOKEN" in result.stderr


def test_retry_auth_failure_keeps_trying_until_duration(
        token_server: SpectrumServer, repo_root: Path) -> None:
    """--retry-auth-failure retries a refused token; --duration then ends the run as one
    without frames (status 1), with the refusal as the last error."""
    result = run(argos_client(token_server.url, "--retry-auth-failure", "--duration", "1.5",
                              "--backoff-base-s", "0.1", "--backoff-cap-s", "0.2"), repo_root,
                 env={"ARGOS_TOKEN": WRONG_TOKEN})
    assert result.returncode == 1, result.stderr
    assert "no frames received" in result.stderr and "HTTP 401" in result.stderr
    assert token_server.counters.auth_failures["header"] >= 2


@pytest.mark.parametrize(("content", "expected"), [
    (None, "cannot read the token file"), ("", "empty"), ("  \n", "empty"),
    ("secret-part-1\nsecret-part-2", "control character")])
def test_a_bad_token_file_is_a_usage_error(content: str | None, expected: str,
                                           repo_root: Path, tmp_path: Path) -> None:
    """A missing, empty or multi-line token file exits 2 naming the file and the problem,
    before connecting."""
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = run(argos_client("ws://127.0.0.1:1/", "--token-file", str(path)), repo_root)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("argos-client: error:") and expected in line and str(path) in line
    assert "secret-part" not in line
