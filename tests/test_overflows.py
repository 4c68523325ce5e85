# SPDX-License-Identifier: GPL-3.0-or-later
"""The overflow counter of argos-spectrum: ``O`` markers on stderr are counted, all output
passes on unchanged (run in a child process, which owns its stderr)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from gr_argos.apps.overflows import BOUNDARY, count_markers
from helpers import ENV, REPO_ROOT


@pytest.mark.parametrize(("chunks", "expected"), [
    ([b"O"], 1),
    ([b"OOO"], 3),
    ([b"O", b"O"], 2),
    ([b"Overflow in a log line\n"], 0),
    ([b"INFO: started\nO"], 1),
    ([b"UOU"], 0),  # inside a word: not a driver's marker
    ([b"x O\n", b"O"], 2),
    ([b"NO", b"O"], 0),  # the second chunk continues the word of the first
    ([b"NOOB O"], 1),
    ([b""], 0),
])
def test_markers_are_the_os_that_stand_alone(chunks: list[bytes], expected: int) -> None:
    total, state = 0, BOUNDARY
    for chunk in chunks:
        found, state = count_markers(chunk, state)
        total += found
    assert total == expected


def test_a_process_counts_what_reaches_fd_2_and_still_shows_it() -> None:
    """Written straight to fd 2 (as a C++ driver does) or through Python's logging, every
    byte reaches the real stderr, and the O markers are counted."""
    script = textwrap.dedent("""
        import logging, os, sys, time
        from gr_argos.apps.overflows import OverflowCounter
        seen = []
        counter = OverflowCounter(seen.append)
        counter.start()
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        logging.info("Overflow words are not markers")
        for _ in range(5):
            os.write(2, b"O")
        os.write(2, b"\\n")
        deadline = time.monotonic() + 30
        while counter.count < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        counter.stop()
        print(counter.count, seen[-1] if seen else None)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["5", "5"]
    assert "Overflow words are not markers" in done.stderr
    assert "OOOOO" in done.stderr
