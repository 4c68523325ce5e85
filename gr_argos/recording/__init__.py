# SPDX-License-Identifier: GPL-3.0-or-later
"""Recordings: every frame and message a server published, on disk in the wire format.

- :mod:`~gr_argos.recording.files`: the layout of a recording (segments of records, their
  index and sidecar) and the reader;
- :mod:`~gr_argos.recording.recorder`: :class:`Recorder`, the server's lossless tap, which
  writes on a thread of its own and never makes the radio wait;
- :mod:`~gr_argos.recording.export`: CSV in the rtl_power / hackrf_sweep layout.

docs/recording.md describes the files byte by byte.
"""

from __future__ import annotations

from gr_argos.recording.files import (
    KIND_FRAME,
    KIND_MESSAGE,
    Record,
    RecordingError,
    read_recording,
    segments,
)
from gr_argos.recording.recorder import Recorder

__all__ = ["KIND_FRAME", "KIND_MESSAGE", "Record", "Recorder", "RecordingError",
           "read_recording", "segments"]
