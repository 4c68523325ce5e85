# SPDX-License-Identifier: GPL-3.0-or-later
"""hackrf_sweep output: parsers for its two formats and the reassembler of whole sweeps.

``hackrf_sweep`` tunes a HackRF across a range in 20 MHz steps and, for every tuning, writes
two *segments* of ``fftSize / 4`` dB bins, each 5 MHz wide: ``[f, f + 5 MHz)`` and
``[f + 10 MHz, f + 15 MHz)``. The firmware interleaves the tunings (f, f + 5 MHz, f + 20 MHz,
f + 25 MHz, ...), so the segments of one sweep arrive out of frequency order. A sweep starts
over when the segment frequency wraps back to the start of the range. Two formats exist:

* text (default): one line per segment,
  ``date, time, hz_low, hz_high, hz_bin_width, num_samples, dB, dB, ...``;
* binary (``-B``): one record per segment, little-endian: ``uint32 record_length`` (bytes
  after this field), ``uint64 hz_low``, ``uint64 hz_high``, then
  ``(record_length - 16) / 4`` float32 dB values.

:class:`BinaryRecordParser` and :class:`TextLineParser` turn bytes, fed in pieces of any
size, into :class:`Segment` objects; :class:`SweepAssembler` places the segments' bins, by
their real frequencies, into a fixed-length vector over a chosen range and yields one
:class:`Sweep` per pass over the band. Pure code: no GNU Radio, no processes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Literal

from gr_argos.settings import ConfigError, in_range, positive, same_as, setting, validate
from gr_argos.stream import StreamSettings

import numpy as np
import numpy.typing as npt

__all__ = [
    "HACKRF",
    "SWEEP",
    "SweepSettings",
    "FILL_FLOOR_DB",
    "HACKRF_FREQ_MAX_HZ",
    "BinaryRecordParser",
    "Segment",
    "Sweep",
    "SweepAssembler",
    "TextLineParser",
    "parse_text_line",
]

#: Highest frequency hackrf_sweep accepts (-f ...:7250 MHz).
HACKRF_FREQ_MAX_HZ = 7250e6
#: Value of uncovered output bins when a sweep has no data at all, and of non-finite dB
#: values (hackrf_sweep writes -inf for a bin of exactly zero power).
FILL_FLOOR_DB = -200.0

_HEADER = struct.Struct("<IQQ")  # record_length, hz_low, hz_high
_RECORD_LENGTH = struct.Struct("<I")
# A record holds at most 8180 / 4 = 2045 bins (hackrf_sweep's largest FFT); allow headroom
# for other builds but refuse lengths that can only be garbage.
_MAX_RECORD_BINS = 1 << 16
# A segment is a quarter of the 20 MS/s band; allow any width up to the whole 20 MHz.
_MAX_SEGMENT_WIDTH_HZ = 20e6
_MAX_TEXT_LINE = 1 << 20


@dataclass(frozen=True)
class Segment:
    """One run of equally wide bins from hackrf_sweep, lowest frequency first.

    Bin ``i`` covers ``[hz_low + i * w, hz_low + (i + 1) * w)`` with
    ``w = (hz_high - hz_low) / len(power_db)``.
    """

    hz_low: float
    hz_high: float
    power_db: npt.NDArray[np.float32]

    @property
    def bin_width_hz(self) -> float:
        return (self.hz_high - self.hz_low) / len(self.power_db)


def _plausible(hz_low: float, hz_high: float, bins: int) -> bool:
    return (bins >= 1 and 0 <= hz_low < hz_high <= HACKRF_FREQ_MAX_HZ + _MAX_SEGMENT_WIDTH_HZ
            and hz_high - hz_low <= _MAX_SEGMENT_WIDTH_HZ)


class BinaryRecordParser:
    """Parses ``hackrf_sweep -B`` records from a byte stream fed in arbitrary pieces.

    A record whose header cannot be one (zero bins, a length not a whole number of floats,
    an impossible frequency range) means the stream is out of step: the parser skips one
    byte and tries again, counting the skipped bytes in :attr:`bytes_skipped`.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.records = 0
        self.bytes_skipped = 0

    def feed(self, data: bytes) -> list[Segment]:
        """Add bytes; return the segments completed by them (a partial record waits)."""
        self._buffer += data
        segments: list[Segment] = []
        buffer = self._buffer
        position = 0
        while len(buffer) - position >= _HEADER.size:
            record_length, hz_low, hz_high = _HEADER.unpack_from(buffer, position)
            value_bytes = record_length - 16
            bins = value_bytes // 4
            if (record_length < 20 or value_bytes % 4 or bins > _MAX_RECORD_BINS
                    or not _plausible(hz_low, hz_high, bins)):
                position += 1
                self.bytes_skipped += 1
                continue
            end = position + _RECORD_LENGTH.size + record_length
            if end > len(buffer):
                break
            values = np.frombuffer(buffer, dtype="<f4", count=bins,
                                   offset=position + _HEADER.size).astype(np.float32)
            segments.append(Segment(float(hz_low), float(hz_high), values))
            self.records += 1
            position = end
        del buffer[:position]
        return segments

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete record waiting for the rest."""
        return len(self._buffer)


def parse_text_line(line: str) -> Segment:
    """Parse one text line of hackrf_sweep into a segment.

    Raises:
        ValueError: the line is not ``date, time, hz_low, hz_high, hz_bin_width,
            num_samples, dB, ...`` with a plausible frequency range.
    """
    fields = [field.strip() for field in line.split(",")]
    if len(fields) < 7:
        raise ValueError(f"expected at least 7 comma-separated fields, got {len(fields)}")
    hz_low, hz_high = int(fields[2]), int(fields[3])
    float(fields[4]), int(fields[5])  # bin width and FFT size: checked, implied by the rest
    values = np.array([float(value) for value in fields[6:]], dtype=np.float32)
    if not _plausible(hz_low, hz_high, len(values)):
        raise ValueError(f"implausible segment {hz_low}..{hz_high} Hz with {len(values)} bins")
    return Segment(float(hz_low), float(hz_high), values)


class TextLineParser:
    """Parses hackrf_sweep's text lines from a byte stream fed in arbitrary pieces.

    Lines that do not parse are skipped and counted in :attr:`lines_skipped`; the last one is
    kept in :attr:`last_bad_line` for a log message. An incomplete last line waits for the
    rest (up to 1 MiB, beyond which it counts as garbage).
    """

    def __init__(self) -> None:
        self._partial = b""
        self.records = 0
        self.lines_skipped = 0
        self.last_bad_line = ""

    def feed(self, data: bytes) -> list[Segment]:
        """Add bytes; return the segments of the lines completed by them."""
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > _MAX_TEXT_LINE:
            self._skip(self._partial[:200])
            self._partial = b""
        segments = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                segments.append(parse_text_line(raw.decode("ascii")))
            except (UnicodeDecodeError, ValueError):
                self._skip(raw)
                continue
            self.records += 1
        return segments

    def _skip(self, raw: bytes) -> None:
        self.lines_skipped += 1
        self.last_bad_line = raw[:200].decode("ascii", "replace")

    @property
    def pending_bytes(self) -> int:
        return len(self._partial)


@dataclass(frozen=True)
class Sweep:
    """One pass of hackrf_sweep over the band, stitched into a fixed-length vector.

    Attributes:
        power_db: ``bins`` float32 dB values over ``[freq_min_hz, freq_max_hz)``, lowest
            frequency first; output bin ``j`` covers ``freq_min_hz + j * span / bins`` to the
            next. Bins no segment covered hold the lowest value of the sweep (FILL_FLOOR_DB if
            it had none), so a display shows them as floor, not as a signal.
        number: 0 for the first sweep an assembler yields, then 1, 2, ...
        freq_min_hz, freq_max_hz: the range of ``power_db``.
        coverage: fraction of the output bins that some segment covered (0..1).
        complete: every output bin was covered.
        segments: segments that contributed (those overlapping the range).
        duration_s: time from the first to the last segment of the sweep as received.
        start_time_s: when its first segment was received (the caller's clock, seconds).
    """

    power_db: npt.NDArray[np.float32]
    number: int
    freq_min_hz: float
    freq_max_hz: float
    coverage: float
    complete: bool
    segments: int
    duration_s: float
    start_time_s: float

    @property
    def center_freq_hz(self) -> float:
        return (self.freq_min_hz + self.freq_max_hz) / 2

    @property
    def span_hz(self) -> float:
        return self.freq_max_hz - self.freq_min_hz


Reduce = Literal["max", "mean"]

#: ``--help`` sections.
HACKRF = "HackRF / osmosdr gains"
SWEEP = "wideband sweep (--source sweep)"


@dataclass(frozen=True)
class SweepSettings:
    """Settings of a hackrf_sweep run (the hackrf_sweep_source block, argos-spectrum
    ``--source sweep``); the gains are the HackRF's, also for an osmosdr HackRF source."""

    freq_min: float = setting(2400e6, "start of the swept range in Hz (hackrf_sweep -f takes "
                              "whole MHz)", check=in_range(0, HACKRF_FREQ_MAX_HZ), group=SWEEP)
    freq_max: float = setting(2500e6, "end of the swept range in Hz",
                              check=in_range(0, HACKRF_FREQ_MAX_HZ), group=SWEEP)
    bin_width: float = setting(1e6, "hackrf_sweep FFT bin width in Hz (-w)",
                               check=in_range(2445, 5e6, "hackrf_sweep -w"), group=SWEEP)
    bins: int = same_as(StreamSettings, "bins", default=1024)
    lna_gain: float = setting(16.0, "HackRF LNA (IF) gain in dB, 0-40 in 8 dB steps",
                              check=in_range(0, 40), group=HACKRF)
    vga_gain: float = setting(20.0, "HackRF VGA (baseband) gain in dB, 0-62 in 2 dB steps",
                              check=in_range(0, 62), group=HACKRF)
    amp: bool = setting(False, "HackRF RF amplifier (+14 dB)", group=HACKRF)
    reduce: str = setting("max", "how input bins in one output bin combine: max keeps the "
                          "strongest, mean averages their power", choices=("max", "mean"),
                          group=SWEEP)
    sweep_executable: str = setting("hackrf_sweep", "the hackrf_sweep program (name or path)",
                                    group=SWEEP)
    output_format: str = setting("binary", "hackrf_sweep output: binary (-B, exact float32) "
                                 "or text (0.01 dB)", choices=("binary", "text"), group=SWEEP)
    watchdog_timeout_s: float = setting(5.0, "seconds without output before hackrf_sweep is "
                                        "restarted", check=positive, group=SWEEP)
    restart_backoff_max_s: float = setting(10.0, "longest pause in seconds between restarts",
                                           check=positive, group=SWEEP)
    device_args: str = setting("", "serial number of the HackRF to use (hackrf_sweep -d); "
                               "empty = the first one", group=SWEEP)

    def __post_init__(self) -> None:
        validate(self)
        if not self.freq_min < self.freq_max:
            raise ConfigError(f"freq_min ({self.freq_min:g}) must be below freq_max "
                              f"({self.freq_max:g})")


class SweepAssembler:
    """Stitches hackrf_sweep segments into one fixed-length vector per sweep.

    Every segment bin is spread over the output bins it overlaps. ``reduce="max"`` keeps the
    strongest value landing in an output bin (peaks survive when many input bins fall in one
    output bin); ``"mean"`` averages power in linear units, weighted by the overlap, and
    converts back to dB. When output bins are narrower than the input bins, an input bin
    fills every output bin it overlaps.

    A sweep ends when a segment starts at ``sweep_start_hz`` (where hackrf_sweep starts each
    pass) or when a segment repeats one already seen in the current sweep (the start segment
    was lost); :meth:`add` then returns the finished sweep. :meth:`flush` returns the one in
    progress (when the stream ends or the child process is restarted).

    Args:
        freq_min_hz, freq_max_hz: range of the output vector, ``freq_min_hz`` included.
        bins: length of the output vector.
        reduce: "max" or "mean", how values landing in one output bin combine.
        sweep_start_hz: hz_low of the first segment of each pass; by default ``freq_min_hz``
            rounded down to a whole MHz (hackrf_sweep's ``-f`` takes whole MHz).
    """

    def __init__(
        self,
        freq_min_hz: float,
        freq_max_hz: float,
        bins: int,
        reduce: Reduce = "max",
        sweep_start_hz: float | None = None,
    ) -> None:
        if not 0 <= freq_min_hz < freq_max_hz:
            raise ValueError(f"need 0 <= freq_min_hz < freq_max_hz, got {freq_min_hz:g} and "
                             f"{freq_max_hz:g} Hz")
        if int(bins) < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        if reduce not in ("max", "mean"):
            raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
        self.freq_min_hz = float(freq_min_hz)
        self.freq_max_hz = float(freq_max_hz)
        self.bins = int(bins)
        self.reduce: Reduce = reduce
        self.sweep_start_hz = (math.floor(freq_min_hz / 1e6) * 1e6 if sweep_start_hz is None
                               else float(sweep_start_hz))
        self._bin_width_hz = (self.freq_max_hz - self.freq_min_hz) / self.bins
        self.sweeps = 0
        self._reset()

    def _reset(self) -> None:
        self._seen: set[float] = set()
        self._contributing = 0
        self._first_s: float | None = None
        self._last_s = 0.0
        self._min_db = math.inf
        if self.reduce == "max":
            self._acc = np.full(self.bins, -np.inf)
        else:
            self._acc = np.zeros(self.bins)
        self._weight = np.zeros(self.bins)

    def add(self, segment: Segment, received_s: float = 0.0) -> Sweep | None:
        """Place one segment; return the previous sweep if this segment starts a new one.

        Args:
            segment: the segment, in the order hackrf_sweep wrote it.
            received_s: when it was received (any clock in seconds; used for the sweep's
                start time and duration).
        """
        finished = None
        starts_sweep = abs(segment.hz_low - self.sweep_start_hz) < 0.5
        if self._seen and (starts_sweep or segment.hz_low in self._seen):
            finished = self.flush()
        self._seen.add(segment.hz_low)
        if self._first_s is None:
            self._first_s = received_s
        self._last_s = received_s
        self._place(segment)
        return finished

    def flush(self) -> Sweep | None:
        """The sweep in progress, if any segment arrived since the last one; then start over."""
        if not self._seen:
            return None
        covered = self._weight > 0
        if self.reduce == "max":
            values = self._acc
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = 10.0 * np.log10(self._acc / np.where(covered, self._weight, 1.0))
        fill = self._min_db if math.isfinite(self._min_db) else FILL_FLOOR_DB
        power_db = np.where(covered, values, fill).astype(np.float32)
        covered_count = int(np.count_nonzero(covered))
        assert self._first_s is not None
        sweep = Sweep(
            power_db=power_db,
            number=self.sweeps,
            freq_min_hz=self.freq_min_hz,
            freq_max_hz=self.freq_max_hz,
            coverage=covered_count / self.bins,
            complete=covered_count == self.bins,
            segments=self._contributing,
            duration_s=self._last_s - self._first_s,
            start_time_s=self._first_s,
        )
        self.sweeps += 1
        self._reset()
        return sweep

    def _place(self, segment: Segment) -> None:
        values = np.asarray(segment.power_db, dtype=np.float64)
        values = np.nan_to_num(values, nan=FILL_FLOOR_DB, neginf=FILL_FLOOR_DB,
                               posinf=FILL_FLOOR_DB)
        count = len(values)
        edges = segment.hz_low + np.arange(count + 1) * segment.bin_width_hz
        # Output bins each input bin overlaps; the tolerance keeps an input bin that only
        # touches an output bin's edge (rounding aside) out of it.
        position = (edges - self.freq_min_hz) / self._bin_width_hz
        eps = 1e-9
        first = np.floor(position[:-1] + eps).astype(np.int64)
        last = np.ceil(position[1:] - eps).astype(np.int64) - 1
        first = np.maximum(first, 0)
        last = np.minimum(last, self.bins - 1)
        inside = last >= first
        if not inside.any():
            return
        self._contributing += 1
        values, first, last = values[inside], first[inside], last[inside]
        low_edges, high_edges = edges[:-1][inside], edges[1:][inside]
        self._min_db = min(self._min_db, float(values.min()))

        # One (input bin, output bin) pair per overlap, ordered by output bin.
        per_input = last - first + 1
        source = np.repeat(np.arange(len(values)), per_input)
        offsets = np.arange(len(source)) - np.repeat(np.cumsum(per_input) - per_input, per_input)
        target = first[source] + offsets
        out_low = self.freq_min_hz + target * self._bin_width_hz
        overlap = (np.minimum(high_edges[source], out_low + self._bin_width_hz)
                   - np.maximum(low_edges[source], out_low))
        starts = np.flatnonzero(np.r_[True, target[1:] != target[:-1]])
        targets = target[starts]
        self._weight[targets] += np.add.reduceat(overlap, starts)
        if self.reduce == "max":
            peaks = np.maximum.reduceat(values[source], starts)
            self._acc[targets] = np.maximum(self._acc[targets], peaks)
        else:
            linear = 10.0 ** (values[source] / 10.0) * overlap
            self._acc[targets] += np.add.reduceat(linear, starts)
