# SPDX-License-Identifier: GPL-3.0-or-later
"""The JSONL log of detection events on a real file system: lines appended and flushed as
they come, a path that cannot be written said once and counted without ever blocking the
caller, and a file that works again is written again."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gr_argos.detection_log import QUEUED, RETRY_S, DetectionLog

WAIT_S = 20.0  # a hang guard


def event(number: int) -> dict[str, Any]:
    return {"stream": 0, "event": "start", "id": number, "center_freq_hz": 433.92e6,
            "time_ns": 1_700_000_000_000_000_000 + number, "watched": number % 2 == 0,
            "gps": None}


def wait_until(condition: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_events_are_appended_one_json_object_a_line_and_readable_at_once(
        tmp_path: Path) -> None:
    """Each event is a line of the file as soon as it is written (flushed per line, while
    the log is open); a second log on the same file appends after the first's lines."""
    path = tmp_path / "detections.jsonl"
    counts: list[dict[str, int]] = []
    first = DetectionLog(path, counts.append)
    first.start()
    try:
        first.write(event(1))
        wait_until(lambda: path.exists() and path.read_text().count("\n") == 1)
        first.write(event(2))
        wait_until(lambda: path.read_text().count("\n") == 2)
    finally:
        first.stop()
    second = DetectionLog(path)
    second.start()
    second.write(event(3))
    second.stop()
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [event(1), event(2), event(3)]
    assert counts[-1] == {"detect_log_written": 2, "detect_log_failed": 0}


@pytest.mark.parametrize("kind", ["directory", "under_a_file"])
def test_an_unwritable_path_is_said_once_counted_and_never_blocks(
        tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """A path that is a directory, or lies under a regular file (so even root cannot create
    it): one error line naming the path and the counter, every event counted as failed,
    write() returning at once for each of many more events than the queue holds."""
    if kind == "directory":
        path = tmp_path
    else:
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "detections.jsonl"
    counts: list[dict[str, int]] = []
    detection_log = DetectionLog(path, counts.append)
    caplog.set_level(logging.WARNING, logger="gr_argos.detection_log")
    detection_log.start()
    try:
        for number in range(3 * QUEUED):
            detection_log.write(event(number))  # would hang here if it waited for the disk
        wait_until(lambda: detection_log.failed == 3 * QUEUED)
    finally:
        detection_log.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert str(path) in errors[0] and "detect_log_failed" in errors[0]
    assert detection_log.written == 0
    assert counts[-1] == {"detect_log_written": 0, "detect_log_failed": 3 * QUEUED}


def test_a_file_that_works_again_is_written_again(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A path that fails (its directory is missing) is tried again after RETRY_S; once the
    directory exists the next events are written, and the log says how many were lost."""
    now = [0.0]
    lock = threading.Lock()

    def clock() -> float:
        with lock:
            return now[0]

    path = tmp_path / "later" / "detections.jsonl"
    detection_log = DetectionLog(path, clock=clock)
    caplog.set_level(logging.WARNING, logger="gr_argos.detection_log")
    detection_log.start()
    try:
        detection_log.write(event(1))
        wait_until(lambda: detection_log.failed == 1)
        path.parent.mkdir()
        detection_log.write(event(2))  # within RETRY_S: not tried, counted
        wait_until(lambda: detection_log.failed == 2)
        with lock:
            now[0] += RETRY_S
        detection_log.write(event(3))
        wait_until(lambda: detection_log.written == 1)
    finally:
        detection_log.stop()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [event(3)]
    messages = [r.getMessage() for r in caplog.records]
    assert any("again (2 lost so far)" in m for m in messages), messages
