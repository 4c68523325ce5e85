# SPDX-License-Identifier: GPL-3.0-or-later
"""What a source needs to play a SigMF recording, read from its ``.sigmf-meta`` file: the data
file, how its samples are stored, the sample rate, and the frequency of each capture segment.

Any SigMF recording with one channel of complex samples in a datatype listed in
:data:`DATATYPES` plays: gr-argos's own (``cf32_le``, docs/recording.md), hackrf_transfer's
(``ci8``), rtl_sdr's (``cu8``) and ``ci16_le``. Everything else is refused with an error that
says what is wrong and what to do. Plain code: no GNU Radio.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gr_argos.recording.sigmf import DATA_SUFFIX, META_SUFFIX

__all__ = ["DATATYPES", "Capture", "SigmfError", "SigmfRecording", "read_sigmf",
           "sigmf_paths", "sigmf_rate_and_freq"]

#: Datatypes played, with the bytes of one complex sample.
DATATYPES = {"cf32_le": 8, "ci16_le": 4, "ci8": 2, "cu8": 2}
#: A SigMF archive: a tar of recordings, which a file source cannot read in place.
ARCHIVE_SUFFIX = ".sigmf"


class SigmfError(ValueError):
    """A SigMF recording cannot be played; the message says why and what to do."""


@dataclass(frozen=True)
class Capture:
    """A capture segment: from sample ``sample_start`` on, samples centred on
    ``center_freq_hz``."""

    sample_start: int
    center_freq_hz: float


@dataclass(frozen=True)
class SigmfRecording:
    """A recording as read from its meta file.

    Attributes:
        meta_path, data_path: its two files.
        datatype: ``core:datatype`` (a key of :data:`DATATYPES`).
        samp_rate: ``core:sample_rate`` in S/s.
        captures: in sample order; the first starts at sample 0. A capture without
            ``core:frequency`` has the one before it (None for the first: not said).
        samples: complex samples in the data file.
    """

    meta_path: Path
    data_path: Path
    datatype: str
    samp_rate: float
    captures: tuple[Capture, ...]
    samples: int

    @property
    def center_freq(self) -> float | None:
        """The first capture's frequency in Hz (None: the meta file does not say)."""
        frequency = self.captures[0].center_freq_hz
        return None if math.isnan(frequency) else frequency


def sigmf_paths(path: str | Path) -> tuple[Path, Path]:
    """The meta and data file of a recording named by either file or their base name.

    Raises:
        SigmfError: a SigMF archive (``.sigmf``), which must be unpacked first.
    """
    if not str(path):
        raise SigmfError("no SigMF recording named: give its .sigmf-meta or .sigmf-data file, "
                         "or their base name")
    path = Path(path)
    if path.suffix == ARCHIVE_SUFFIX:
        raise SigmfError(f"{path} is a SigMF archive: unpack it (tar xf {path.name}) and "
                         f"name its .sigmf-meta file")
    base = path.with_suffix("") if path.suffix in (META_SUFFIX, DATA_SUFFIX) else path
    return Path(f"{base}{META_SUFFIX}"), Path(f"{base}{DATA_SUFFIX}")


def read_sigmf(path: str | Path) -> SigmfRecording:
    """Read a recording's meta file and check that its data file can be played.

    Args:
        path: the ``.sigmf-meta`` file, the ``.sigmf-data`` file or their base name.

    Raises:
        SigmfError: a file is missing or cannot be read, the meta file is not SigMF, the
            datatype or channel count cannot be played, the sample rate is not given, or
            there are no samples.
    """
    meta_path, data_path = sigmf_paths(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SigmfError(f"SigMF meta file not found: {meta_path} (name a recording's "
                         f".sigmf-meta or .sigmf-data file, or their base name)") from None
    except OSError as exc:
        raise SigmfError(f"cannot read {meta_path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SigmfError(f"{meta_path} is not a SigMF meta file (not JSON: {exc})") from None
    glob = meta.get("global") if isinstance(meta, dict) else None
    if not isinstance(glob, dict):
        raise SigmfError(f"{meta_path} is not a SigMF meta file: it has no \"global\" object")
    datatype = _field(glob, "core:datatype", str, meta_path)
    if datatype not in DATATYPES:
        raise SigmfError(f"{meta_path}: core:datatype {datatype!r} cannot be played; "
                         f"supported: {', '.join(DATATYPES)} (convert it, e.g. with "
                         f"GNU Radio or sox, to cf32_le)")
    channels = glob.get("core:num_channels", 1)
    if channels != 1:
        raise SigmfError(f"{meta_path}: core:num_channels is {channels!r}; only recordings "
                         f"of one channel can be played")
    if "core:sample_rate" not in glob:
        raise SigmfError(f"{meta_path} does not say its sample rate: add \"core:sample_rate\" "
                         f"(in S/s) to its \"global\" object")
    samp_rate = _field(glob, "core:sample_rate", float, meta_path)
    if not samp_rate > 0 or not math.isfinite(samp_rate):
        raise SigmfError(f"{meta_path}: core:sample_rate must be a positive number, "
                         f"got {samp_rate!r}")
    try:
        size = data_path.stat().st_size
    except FileNotFoundError:
        raise SigmfError(f"SigMF data file not found: {data_path} (it belongs beside "
                         f"{meta_path.name})") from None
    samples = size // DATATYPES[datatype]
    if not samples:
        raise SigmfError(f"{data_path} holds no samples")
    return SigmfRecording(meta_path, data_path, datatype, samp_rate,
                          _captures(meta.get("captures", []), samples, meta_path), samples)


def sigmf_rate_and_freq(path: str, fallback: tuple[float, float]) -> tuple[float, float]:
    """A recording's sample rate (S/s) and first frequency (Hz), for a GRC Variable that
    sets the blocks after a SigMF IQ Player.

    GRC evaluates Variables when it compiles a flowgraph, maybe before the recording is
    there: while it cannot be read this gives ``fallback`` (the player's own error stops the
    flowgraph at its start if it still cannot be read then). A recording without
    ``core:frequency`` gives ``fallback``'s frequency.
    """
    try:
        recording = read_sigmf(path)
    except SigmfError:
        return fallback
    center_freq = recording.center_freq
    return recording.samp_rate, fallback[1] if center_freq is None else center_freq


def _captures(captures: Any, samples: int, meta_path: Path) -> tuple[Capture, ...]:
    """The capture segments within the data, with their frequencies carried forward."""
    if not isinstance(captures, list) or not all(isinstance(c, dict) for c in captures):
        raise SigmfError(f"{meta_path}: \"captures\" must be a list of objects")
    found: list[Capture] = []
    frequency = math.nan
    for capture in sorted(captures, key=lambda c: _start(c, meta_path)):
        if capture.get("core:header_bytes", 0):
            raise SigmfError(f"{meta_path}: a capture has core:header_bytes; recordings with "
                             f"headers inside the data cannot be played")
        start = _start(capture, meta_path)
        if start >= samples:
            break  # past the data written (a recording cut short)
        if "core:frequency" in capture:
            frequency = _field(capture, "core:frequency", float, meta_path)
        if found and found[-1].sample_start == start:
            found.pop()  # an empty segment: the later one holds the samples
        if not found or found[-1].center_freq_hz != frequency:
            found.append(Capture(start, frequency))
    # Samples before the first capture (if it starts late) are taken as its own.
    found[:1] = [Capture(0, found[0].center_freq_hz if found else math.nan)]
    return tuple(found)


def _start(capture: dict[str, Any], meta_path: Path) -> int:
    start = capture.get("core:sample_start", 0)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise SigmfError(f"{meta_path}: core:sample_start must be a whole number of samples, "
                         f"got {start!r}")
    return start


def _field(obj: dict[str, Any], key: str, kind: type, meta_path: Path) -> Any:
    """``obj[key]`` as ``kind`` (float: any JSON number)."""
    value = obj.get(key)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    what = "a number" if kind is float else "a string"
    raise SigmfError(f"{meta_path}: {key} must be {what}, got {value!r}")
