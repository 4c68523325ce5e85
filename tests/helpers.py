# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the tests that run a real process and read it with a real WebSocket client.

``test_app_spectrum.py`` (argos-spectrum) and ``test_flowgraphs.py`` (the scripts grcc
generates) both start a program on port 0, read the ws:// URL it prints, connect a real
``websockets`` client and check the ``hello`` and the binary frames. This is a plain module,
not a plugin: the tests import it as ``from helpers import ...`` (``tests/`` has no
``__init__.py``, so pytest's default import mode puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from gr_argos.protocol import SpectrumFrame, decode_frame, decode_message

#: The repository root (the directory holding pyproject.toml).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The environment for a subprocess: this one, with the repository first on PYTHONPATH.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}

STARTUP_TIMEOUT_S = 60.0  # GNU Radio imports and flowgraph set-up on a loaded 2-core machine
RECEIVE_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0


class RunningProcess:
    """A program running as a subprocess; stdout and stderr are collected together.

    ``url_pattern``'s first group is the ws:// URL in the line the program prints once it
    serves; ``name`` says which program it is in failure messages; ``env`` replaces
    :data:`ENV` (the repository first on PYTHONPATH). With ``process_group`` the program
    and everything it starts (a display server, the flowgraph GRC runs) are one process group,
    stopped together.
    """

    def __init__(self, command: list[str], cwd: Path, *, url_pattern: re.Pattern[str],
                 name: str, env: dict[str, str] | None = None,
                 process_group: bool = False) -> None:
        self.process = subprocess.Popen(
            command, cwd=cwd, env=ENV if env is None else env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=process_group,
        )
        self._process_group = process_group
        self.name = name
        self.lines: list[str] = []
        self._url_pattern = url_pattern
        self._url: str | None = None
        self._new_lines: queue.Queue[str | None] = queue.Queue()
        # Drain the pipe for the whole run so the program never blocks writing to it.
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

    def wait_for_url(self, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
        """The ws:// URL the program prints once it serves (port 0 -> the real port)."""
        if self._url is not None:
            return self._url
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._new_lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"{self.name} exited with {self.process.wait()} before serving:\n"
                            f"{self.output()}")
            match = self._url_pattern.search(line)
            if match:
                self._url = match.group(1)
                return self._url
        pytest.fail(f"{self.name} printed no line matching {self._url_pattern.pattern!r} "
                    f"within {timeout_s:.0f} s:\n{self.output()}")

    def wait_for_exit(self) -> int:
        """Exit status once the program ends by itself; its whole output has been read."""
        try:
            status = self.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {EXIT_TIMEOUT_S:.0f} s:\n"
                        f"{self.output()}")
        self._reader.join(timeout=5)
        return status

    def stop(self) -> None:
        """SIGINT (the program stops its flowgraph cleanly), then SIGKILL if it hangs."""
        if self.process.poll() is None:
            self._signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=15)
        if self._process_group:  # what the program started may outlive it
            self._signal(signal.SIGKILL)
        self._reader.join(timeout=5)

    def _signal(self, signum: int) -> None:
        try:
            if self._process_group:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)
        except ProcessLookupError:
            pass


@contextmanager
def small_tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` with ``options`` (e.g. ``size=256k``), unmounted after
    (mounting needs root: the test is skipped without it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "argos-test", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def running(command: list[str], cwd: Path, *, url_pattern: re.Pattern[str],
            name: str, env: dict[str, str] | None = None,
            process_group: bool = False) -> Iterator[RunningProcess]:
    """Run ``command`` for the ``with`` block; stop it on the way out, whatever happened."""
    program = RunningProcess(command, cwd, url_pattern=url_pattern, name=name, env=env,
                             process_group=process_group)
    try:
        yield program
    finally:
        program.stop()


def receive(url: str, frame_count: int) -> tuple[dict[str, Any], list[SpectrumFrame]]:
    """Connect a real WebSocket client; return the hello message and the next frames."""
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


def expected_bin(offset_fraction: float, bins: int) -> int:
    """Index of the FFT-shifted bin (DC in the middle) of a signal at offset_fraction * span."""
    return round(bins / 2 + offset_fraction * bins)


def strongest_bin(frames: list[SpectrumFrame]) -> int:
    """Strongest bin of the frames' spectra averaged in linear power."""
    linear = np.mean([10 ** (frame.power_db.astype(np.float64) / 10) for frame in frames], axis=0)
    return int(np.argmax(linear))


def assert_stream_is(hello: dict[str, Any], frames: list[SpectrumFrame], *, bins: int,
                     center_freq_hz: float, span_hz: float, fps: float = 30.0) -> None:
    """The hello announces the stream and every frame carries the configured metadata.

    ``fps`` defaults to 30, the default frame rate of argos-spectrum and the sink block.
    """
    assert hello["type"] == "hello"
    streams = hello["streams"]
    assert isinstance(streams, list) and len(streams) == 1, streams
    (stream,) = streams
    assert stream["bins"] == bins
    assert stream["center_freq_hz"] == pytest.approx(center_freq_hz)
    assert stream["span_hz"] == pytest.approx(span_hz)
    # A frame period is a whole number of FFTs: the rate announced is the one produced,
    # within 1 % of the one asked for at these sample rates.
    assert stream["fps"] == pytest.approx(fps, rel=0.01)
    for frame in frames:
        assert frame.bin_count == bins
        assert frame.center_freq_hz == pytest.approx(center_freq_hz)
        assert frame.span_hz == pytest.approx(span_hz)
        assert np.all(np.isfinite(frame.power_db))
    sequences = [frame.sequence for frame in frames]
    assert all(later > earlier for earlier, later in zip(sequences, sequences[1:])), sequences


# -- headless Chromium -------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/setup.sh --test installs it)
# Headless as root, and quiet on a machine without internet: no background updates or sync.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (never Playwright's own browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
