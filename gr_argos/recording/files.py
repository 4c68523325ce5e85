# SPDX-License-Identifier: GPL-3.0-or-later
"""The files of a recording, and reading them.

A recording is a directory of **segments**, one file each, named
``argos-YYYYmmddTHHMMSSZ-NNNNNN.args`` so that they sort in the order they were written. A
segment is an 8-byte magic (``ARGSREC`` and the layout version, 1) followed by records::

    offset size type  field
     0     4    u32   length     bytes of the body
     4     1    u8    kind       1 = spectrum frame (the wire format), 2 = JSON message (UTF-8)
     5     3          reserved   0
     8     8    i64   time_ns    when the server published it (host clock, ns since the epoch)
    16     length     body

all little-endian. Beside each segment:

- ``.idx``: its **index**, 16-byte entries (``i64 time_ns``, ``u64 offset`` of a record), the
  first record and then the first of each new second: a reader seeks to a time without
  reading what comes before;
- ``.json``: its **sidecar**: the streams (as ``hello`` describes them), the recorder's
  settings, the server's session, start and end times, counts of frames, messages and bytes,
  the first and last sequence of each stream, and the gaps (frames and messages the disk was
  too slow for, or a write error lost).

A segment cut short (a power cut) ends at its last whole record. Plain code: no GNU Radio.
"""

from __future__ import annotations

import bisect
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FILE_MAGIC", "INDEX_ENTRY", "KIND_FRAME", "KIND_MESSAGE", "RECORD_HEADER", "Record",
           "RecordingError", "SEGMENT_SUFFIX", "index_path", "read_recording", "read_segment",
           "read_sidecar", "segments", "sidecar_path"]

FILE_MAGIC = b"ARGSREC\x01"
RECORD_HEADER = struct.Struct("<IB3xq")
INDEX_ENTRY = struct.Struct("<qQ")
KIND_FRAME = 1
KIND_MESSAGE = 2
SEGMENT_SUFFIX = ".args"
#: A record body longer than this is corrupt, not a frame (a frame of 2**20 float32 bins
#: with a second trace is 8 MiB).
MAX_BODY_BYTES = 64 * 2**20


class RecordingError(ValueError):
    """A path is no recording, or a segment is not one; the message says which and why."""


@dataclass(frozen=True)
class Record:
    """One recorded frame or message.

    Attributes:
        kind: :data:`KIND_FRAME` or :data:`KIND_MESSAGE`.
        time_ns: when the server published it (host clock, ns since the Unix epoch).
        body: the frame's bytes exactly as recorded, or the message's UTF-8 JSON.
        segment: the file it is in.
        offset: where its record starts in that file.
    """

    kind: int
    time_ns: int
    body: bytes
    segment: Path
    offset: int


def index_path(segment: Path) -> Path:
    return segment.with_suffix(".idx")


def sidecar_path(segment: Path) -> Path:
    return segment.with_suffix(".json")


def segments(path: str | Path) -> list[Path]:
    """The segments of a recording, oldest first: every ``.args`` file of a directory, or
    the one file named.

    Raises:
        RecordingError: the path does not exist, or a directory holds no segment.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*" + SEGMENT_SUFFIX))
        if not found:
            raise RecordingError(f"{path} holds no recording (no *{SEGMENT_SUFFIX} file): "
                                 "give the record_dir of a server that recorded")
        return found
    if not path.exists():
        raise RecordingError(f"no such recording: {path}")
    return [path]


def read_sidecar(segment: Path) -> dict[str, Any]:
    """A segment's sidecar (an empty dict when it is missing or unreadable: the segment
    itself is still read)."""
    try:
        data = json.loads(sidecar_path(segment).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _start_offset(segment: Path, from_ns: int) -> int:
    """The offset of the last indexed record at or before ``from_ns`` (the first record
    when there is none, or no index)."""
    try:
        raw = index_path(segment).read_bytes()
    except OSError:
        return len(FILE_MAGIC)
    entries = [INDEX_ENTRY.unpack_from(raw, at)
               for at in range(0, len(raw) - INDEX_ENTRY.size + 1, INDEX_ENTRY.size)]
    position = bisect.bisect_right([time_ns for time_ns, _ in entries], from_ns) - 1
    return entries[position][1] if position >= 0 else len(FILE_MAGIC)


def read_segment(segment: Path, from_ns: int | None = None) -> Iterator[Record]:
    """The records of one segment in order, from the first at or after ``from_ns`` (its
    index finds where to start reading).

    Raises:
        RecordingError: the file cannot be read or is not a segment.
    """
    try:
        handle = segment.open("rb")
    except OSError as exc:
        raise RecordingError(f"cannot read {segment}: {exc.strerror or exc}") from exc
    with handle:
        if handle.read(len(FILE_MAGIC)) != FILE_MAGIC:
            raise RecordingError(f"{segment} is not a gr-argos recording segment (no "
                                 f"{FILE_MAGIC[:7].decode()} magic)")
        offset = len(FILE_MAGIC)
        if from_ns is not None:
            offset = _start_offset(segment, from_ns)
            handle.seek(offset)
        while True:
            header = handle.read(RECORD_HEADER.size)
            if len(header) < RECORD_HEADER.size:
                return  # the end, or a record cut short by a power cut
            length, kind, time_ns = RECORD_HEADER.unpack(header)
            if length > MAX_BODY_BYTES:
                raise RecordingError(f"{segment}: corrupt record at byte {offset} "
                                     f"({length} bytes)")
            body = handle.read(length)
            if len(body) < length:
                return
            if from_ns is None or time_ns >= from_ns:
                yield Record(kind, time_ns, body, segment, offset)
            offset += RECORD_HEADER.size + length


def read_recording(path: str | Path, from_ns: int | None = None) -> Iterator[Record]:
    """Every record of a recording (a directory or one segment), oldest first, from the
    first at or after ``from_ns`` if given.

    Raises:
        RecordingError: see :func:`segments` and :func:`read_segment`.
    """
    for segment in segments(path):
        if from_ns is not None:
            end_ns = read_sidecar(segment).get("end_ns")
            if isinstance(end_ns, int) and end_ns < from_ns:
                continue
        yield from read_segment(segment, from_ns)
