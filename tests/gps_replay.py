# SPDX-License-Identifier: GPL-3.0-or-later
"""Replaying an NMEA log through a real gpsd with gpsfake, for the GPS tests.

The log (tests/data/drive.nmea) holds 4 s without a fix, then 20 fixes at 1 Hz. gpsfake plays
it in a loop on a free port; :func:`gpsfake` kills gpsfake and the gpsd it starts (one new
session) on the way out.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

NMEA_LOG = Path(__file__).resolve().parent / "data" / "drive.nmea"
SENTENCE_INTERVAL_S = 0.03
WAIT_S = 60.0  # several loops of the log, on a loaded machine


# -- the log, read the way a receiver's sentences are meant ---------------------------------

def _degrees(value: str, hemisphere: str) -> float:
    """NMEA ddmm.mmmmm / dddmm.mmmmm -> signed degrees."""
    whole, minutes = divmod(float(value), 100)
    return (whole + minutes / 60) * (-1 if hemisphere in "SW" else 1)


def log_epochs(path: Path = NMEA_LOG) -> dict[str, tuple[float, float] | None]:
    """UTC time ("12:00:04") of each GGA in the log -> (lat, lon), or None without a fix."""
    epochs: dict[str, tuple[float, float] | None] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if not line.startswith("$GPGGA,"):
            continue
        fields = line.split("*")[0].split(",")
        hhmmss = fields[1]
        key = f"{hhmmss[0:2]}:{hhmmss[2:4]}:{hhmmss[4:6]}"
        epochs[key] = (None if fields[6] == "0" else
                       (_degrees(fields[2], fields[3]), _degrees(fields[4], fields[5])))
    return epochs


EPOCHS = log_epochs()
FIX_TIMES = {t for t, position in EPOCHS.items() if position is not None}
NO_FIX_TIMES = {t for t, position in EPOCHS.items() if position is None}


def epoch_of(message: dict[str, Any]) -> str | None:
    """HH:MM:SS of a gps message's ISO time (None without a time: gpsd's first report of a
    session may have none)."""
    return str(message["time"])[11:19] if "time" in message else None


# -- gpsfake ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class GpsFake:
    """gpsfake replaying a log in a loop through its own gpsd on ``port``."""

    def __init__(self, port: int, log: Path = NMEA_LOG) -> None:
        self.port = port
        # A new session: gpsfake and its gpsd form one process group, killed together.
        self.process = subprocess.Popen(
            ["gpsfake", "-q", "-c", str(SENTENCE_INTERVAL_S), "-P", str(port), str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)

    def wait_listening(self, timeout_s: float = 30.0) -> None:
        """Return once gpsd accepts connections on the port."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gpsfake exited with {self.process.returncode}: "
                            f"{self.process.stderr.read() if self.process.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"gpsd from gpsfake not listening on port {self.port} after {timeout_s} s")

    def kill(self) -> None:
        """Kill gpsfake and its gpsd (SIGTERM, then SIGKILL) and wait until the port is free."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=5)
                time.sleep(0.2)  # let gpsd, in the same group, finish dying
                os.killpg(self.process.pid, 0)  # raises once the whole group is gone
            except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
                if self.process.poll() is not None:
                    try:
                        os.killpg(self.process.pid, 0)
                    except ProcessLookupError:
                        break
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextmanager
def gpsfake(port: int) -> Iterator[GpsFake]:
    """A running gpsfake on ``port`` for a ``with`` block, killed on the way out."""
    fake = GpsFake(port)
    try:
        fake.wait_listening()
        yield fake
    except BaseException:
        # Shown with the failure: whether gpsfake (and its gpsd) still ran, and what it said.
        status = fake.process.poll()
        print(f"gpsfake on port {port}: {'running' if status is None else f'exited {status}'}")
        if status is not None and fake.process.stderr is not None:
            print(fake.process.stderr.read().decode(errors="replace")[-2000:])
        raise
    finally:
        fake.kill()


# -- the flowgraph and a client ---------------------------------------------------------------


def fix_times(messages: list[dict[str, Any]]) -> set[str]:
    return {time for m in messages if m["fix"] and (time := epoch_of(m)) is not None}


def assert_positions_match_the_log(messages: list[dict[str, Any]]) -> None:
    """Every fix is the log's position for its time (any of the log's positions if it has
    no time), within 1e-6 degrees."""
    for message in messages:
        if not message["fix"]:
            continue
        time = epoch_of(message)
        candidates = [EPOCHS[time]] if time is not None else [
            position for position in EPOCHS.values() if position is not None]
        assert any(message["lat"] == pytest.approx(lat, abs=1e-6)
                   and message["lon"] == pytest.approx(lon, abs=1e-6)
                   for lat, lon in candidates), message  # type: ignore[misc]


def gps_messages_until(websocket: Any,
                       done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """Read ``gps`` messages until ``done(messages)``; fail after WAIT_S."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_S
    while not done(messages):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"gave up after {WAIT_S:.0f} s; gps messages so far: {messages[-5:]}")
        try:
            message = websocket.recv(timeout=remaining)
        except TimeoutError:
            continue
        if isinstance(message, str):
            body = json.loads(message)
            if body.get("type") == "gps":
                messages.append(body)
    return messages
