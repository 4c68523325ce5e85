# SPDX-License-Identifier: GPL-3.0-or-later
"""Count the overflows a radio source reports the GNU Radio way: an ``O`` on stderr.

When a device's samples arrive faster than the flowgraph takes them, its driver drops a
buffer and writes ``O`` to the process's stderr (gr-osmosdr's HackRF, UHD, SoapySDR and
RTL-SDR sources all do); there is no API to ask how many. :class:`OverflowCounter` puts a
pipe in front of file descriptor 2, passes every byte on to the real stderr unchanged (the
``O`` characters too, as users of GNU Radio expect to see them), and counts each ``O``
that stands alone: one not inside a word (``Overflow`` in a log line is not one).

Only an application that owns its process should install it (argos-spectrum does); a
library block must not take over stderr.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from typing import Callable

__all__ = ["BOUNDARY", "IN_MARKERS", "IN_WORD", "OverflowCounter", "count_markers"]

_MARK = ord("O")


#: Where the previous chunk ended: outside a word, in a run of loose Os, or inside a word.
BOUNDARY, IN_MARKERS, IN_WORD = 0, 1, 2


def count_markers(chunk: bytes, state: int = BOUNDARY) -> tuple[int, int]:
    """The ``O`` markers in ``chunk``, and the state to pass with the next chunk.

    A marker is an ``O`` in a run of them (each counts) with no letter, digit or ``_`` on
    either side: drivers write it alone, so it sits between other output; an ``O``
    inside a word (``Overflow``, ``NOOB``) is not one. A run at the end of a chunk counts
    (a driver's write is a chunk of its own); a word cut by a chunk boundary stays a word.
    """
    count = 0
    run = 0
    for byte in chunk:
        if byte == _MARK and state != IN_WORD:
            run += 1
            state = IN_MARKERS
        elif _word(byte):
            run = 0  # a run of Os followed by a letter was the start of a word
            state = IN_WORD
        else:
            count += run
            run = 0
            state = BOUNDARY
    return count + run, state


def _word(byte: int) -> bool:
    return chr(byte).isalnum() or byte == ord("_")


class OverflowCounter:
    """Counts ``O`` markers written to this process's stderr, passing all output on.

    Args:
        on_change: called (on the counter's thread) with the new total after each chunk
            that held markers; it must not block.

    The counting thread only reads and writes; if it fails, stderr is given back at once,
    so the process never blocks on a full pipe.
    """

    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self.count = 0
        self._on_change = on_change
        self._saved: int | None = None
        self._read_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Put the pipe in front of stderr (fd 2)."""
        read_fd, write_fd = os.pipe()
        self._saved = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._read_fd = read_fd
        self._thread = threading.Thread(target=self._pump, name="argos-overflows",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Give stderr back (what was written before is passed on first)."""
        sys.stderr.flush()
        with self._lock:
            saved, self._saved = self._saved, None
            if saved is None:
                return
            os.dup2(saved, 2)  # closes the pipe's write end: the pump sees EOF
            os.close(saved)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _pump(self) -> None:
        assert self._read_fd is not None
        state = BOUNDARY
        try:
            with open(self._saved_copy(), "wb", buffering=0) as out:
                while True:
                    # After stop(), what is left is read; a child process that inherited
                    # the pipe (and so keeps it open) does not hold the pump.
                    readable, _, _ = select.select([self._read_fd], [], [], 0.2)
                    if not readable:
                        if self._saved is None:
                            break
                        continue
                    chunk = os.read(self._read_fd, 65536)
                    if not chunk:
                        break
                    out.write(chunk)
                    found, state = count_markers(chunk, state)
                    if found:
                        self.count += found
                        if self._on_change is not None:
                            self._on_change(self.count)
        except Exception:  # never leave stderr behind a pipe nobody reads
            self.stop()
        finally:
            os.close(self._read_fd)

    def _saved_copy(self) -> int:
        """A descriptor of the real stderr of the pump's own (closed with it)."""
        with self._lock:
            assert self._saved is not None
            return os.dup(self._saved)
