# SPDX-License-Identifier: GPL-3.0-or-later
"""Signals found in the frames: start, updates and end of each transmission, with its
frequency, bandwidth, levels and duration. Plain code on frames (numpy; no GNU Radio, no
sockets), so the same stage runs in a sink, a gateway, or over a recording.

Per frame, in four steps:

1. **Noise floor**, per bin: a running low quantile over time (the ``FLOOR_QUANTILE``, 20 %,
   tracked by stochastic approximation: each frame moves the estimate up by
   ``FLOOR_STEP_DB * q`` where the bin is above it, down by ``FLOOR_STEP_DB * (1 - q)``
   where it is below), then across frequency the ``FLOOR_QUANTILE`` of blocks of
   ``bins / FLOOR_BLOCKS`` bins, interpolated between block centres. The first keeps a
   burst from lifting the floor (it takes 5 frames above the floor for every 1 below to
   rise), the second keeps a carrier that never goes off, narrower than about 3/4 of a block,
   from becoming floor. A signal wider than that, steady for a long time, does become floor:
   it is reported while the floor learns it, then ends.
2. **Bins over the threshold**: ``threshold_db`` over the floor (or ``SPREAD_FACTOR`` times
   the noise's spread between its 20 % and 80 % quantiles, tracked the same way, the median
   of a block, when that is more) and above ``floor_db``;
   a signal is a run of bins over ``threshold_db - HYSTERESIS_DB`` holding at least one over
   ``threshold_db`` (so a notch inside it does not split it), runs at most ``MERGE_BINS`` apart
   joined.
   Its frequency is the power-weighted centre of its bins within ``OCCUPIED_DB`` (20 dB) of
   its peak, and its bandwidth their span: a carrier switched on and off splatters over
   many bins far under its peak, and those do not count;
3. **Tracks**: a signal overlapping an open track in frequency continues it; otherwise it
   opens one. A track missing for more than ``hold_frames`` frames ends (so a signal that
   blinks faster than that is one event, not many).
4. **Events**: ``start`` once a track is ``min_duration_s`` long and ``min_bandwidth_hz``
   wide, ``update`` every ``update_interval_s`` while it lasts, ``end`` when it ends
   (a track that never qualified ends silently). Bursts shorter than a frame period count:
   with the ``peak`` detector a frame holds every burst of its period.

Frequency ranges (:class:`FrequencyRange`, absolute Hz) change step 2 where they lie: the
bins of an ``ignore`` range never hold a signal (a known local carrier), those of a
``watch`` range have its own threshold (the spread rule still applies), and an event whose
centre is in a watched range says ``watched: true``. Signals outside every range are
reported as usual.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import numpy.typing as npt

__all__ = ["DetectionSettings", "FrequencyRange", "RANGE_KINDS", "SignalFinder", "Track",
           "find_runs", "parse_ranges", "ranges_text"]

FLOOR_QUANTILE = 0.2
#: The spread of the noise is measured between the floor and this quantile...
SPREAD_QUANTILE = 0.8
#: ...and the threshold over the floor is at least this many times that spread: frames of a
#: detector over few FFTs (``sample``: one) scatter far more than ``peak`` over 130 do
#: (a 20-80 % spread of 8.6 dB against 1.6), and a fixed threshold would fire on their noise.
SPREAD_FACTOR = 4.0
FLOOR_STEP_DB = 0.5
FLOOR_BLOCKS = 32
HYSTERESIS_DB = 3.0
MERGE_BINS = 1
#: A signal's frequency and bandwidth are those of its bins within this of its peak.
OCCUPIED_DB = 20.0


#: What a frequency range asks for: ``watch`` (its own threshold, events flagged
#: ``watched``) or ``ignore`` (never reported there).
RANGE_KINDS = ("watch", "ignore")

_NUMBER = r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
_RANGE = re.compile(rf"\s*({_NUMBER})\s*-\s*({_NUMBER})\s*:\s*([A-Za-z]*)\s*"
                    rf"(?::\s*({_NUMBER})\s*)?")
_RANGE_FORM = "LOW-HIGH:watch[:THRESHOLD_DB] or LOW-HIGH:ignore, in Hz (e.g. " \
              "433.05e6-434.79e6:watch:12)"


@dataclass(frozen=True)
class FrequencyRange:
    """Frequencies (Hz, absolute: whatever the tuning) where detection is watched or ignored;
    ``str()`` gives its ``detect_ranges`` item, which :func:`parse_ranges` reads back.

    Attributes:
        low_freq_hz, high_freq_hz: the range; a bin belongs to it when its centre does.
        kind: ``watch`` or ``ignore`` (:data:`RANGE_KINDS`).
        threshold_db: a watched range's own threshold over the floor (None: the stream's).
    """

    low_freq_hz: float
    high_freq_hz: float
    kind: str
    threshold_db: float | None = None

    def __str__(self) -> str:
        text = f"{_plain(self.low_freq_hz)}-{_plain(self.high_freq_hz)}:{self.kind}"
        return text if self.threshold_db is None else f"{text}:{_plain(self.threshold_db)}"

    def contains(self, freq_hz: float) -> bool:
        return self.low_freq_hz <= freq_hz <= self.high_freq_hz


def _plain(value: float) -> str:
    """A number as written by hand: 433050000, 12, 2.5 (exact: it reads back the same)."""
    return str(int(value)) if value.is_integer() else repr(value)


def parse_ranges(text: str) -> tuple[FrequencyRange, ...]:
    """The ranges of a ``detect_ranges`` value: ``LOW-HIGH:KIND[:THRESHOLD_DB]`` items
    separated by commas (or new lines), in Hz; ``""`` is none. Sorted by frequency.

    Raises:
        ValueError: an item not of that form, a range whose low end is not below its high
            end, a kind other than watch or ignore, a threshold on an ignored range or one
            not above 0, or two ranges that overlap (which threshold would hold?). The
            message names the item.
    """
    ranges = []
    for item in (part.strip() for part in re.split(r"[,\n]", text)):
        if not item:
            continue
        match = _RANGE.fullmatch(item)
        if match is None:
            raise ValueError(f"range {item!r} is not of the form {_RANGE_FORM}")
        low, high, kind, threshold = match.groups()
        ranges.append(_checked_range(item, float(low), float(high), kind.lower(),
                                     None if threshold is None else float(threshold)))
    ranges.sort(key=lambda r: (r.low_freq_hz, r.high_freq_hz))
    for before, after in zip(ranges, ranges[1:]):
        if after.low_freq_hz <= before.high_freq_hz:
            raise ValueError(f"ranges {str(before)!r} and {str(after)!r} overlap: make them "
                             "disjoint (each frequency gets one rule)")
    return tuple(ranges)


def _checked_range(item: str, low: float, high: float, kind: str,
                   threshold: float | None) -> FrequencyRange:
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"range {item!r}: the low frequency must be below the high one "
                         f"(LOW-HIGH in Hz, e.g. 433.05e6-434.79e6)")
    if kind not in RANGE_KINDS:
        raise ValueError(f"range {item!r}: kind {kind!r} is not one of "
                         f"{', '.join(RANGE_KINDS)}")
    if threshold is not None and kind == "ignore":
        raise ValueError(f"range {item!r}: an ignored range takes no threshold")
    if threshold is not None and not (0 < threshold < math.inf):
        raise ValueError(f"range {item!r}: the threshold must be a number of dB above 0")
    return FrequencyRange(low, high, kind, threshold)


def ranges_text(value: Any) -> Any:
    """A ``detect_ranges`` value as its one-line text: a YAML list of items (each the text
    ``LOW-HIGH:KIND[:THRESHOLD_DB]`` or a mapping with ``low_freq_hz``, ``high_freq_hz``,
    ``kind`` and an optional ``threshold_db``) joined with commas; anything else as it is
    (the setting's kind check then judges it)."""
    if not isinstance(value, (list, tuple)):
        return value
    return ", ".join(_range_item_text(item) for item in value)


def _range_item_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):
        keys = {"low_freq_hz", "high_freq_hz", "kind", "threshold_db"}
        unknown = set(map(str, item)) - keys
        if unknown or not {"low_freq_hz", "high_freq_hz", "kind"} <= set(item):
            raise ValueError(f"range {dict(item)!r} must have low_freq_hz, high_freq_hz, kind "
                             "and optionally threshold_db")
        try:
            low, high = float(item["low_freq_hz"]), float(item["high_freq_hz"])
            threshold = item.get("threshold_db")
            text = f"{low!r}-{high!r}:{item['kind']}"
            return text if threshold is None else f"{text}:{float(threshold)!r}"
        except (TypeError, ValueError):
            raise ValueError(f"range {dict(item)!r}: its frequencies and threshold must be "
                             "numbers") from None
    raise ValueError(f"range {item!r} must be a text {_RANGE_FORM} or a mapping")


@dataclass(frozen=True)
class DetectionSettings:
    """What counts as a signal (the defaults keep false events rare on noise: see tests).

    ``ranges``: frequencies watched with their own threshold, or ignored (see
    :func:`parse_ranges`).
    """

    threshold_db: float = 8.0
    floor_db: float = -200.0
    min_bandwidth_hz: float = 0.0
    min_duration_s: float = 0.0
    hold_frames: int = 3
    update_interval_s: float = 1.0
    ranges: tuple[FrequencyRange, ...] = ()


def find_runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """The runs of True in ``mask``, as (first, end) bin pairs (end exclusive)."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


@dataclass
class Track:
    """One signal followed across frames: its bins in the latest frame it was in, and the
    lowest and highest frequency it reached (a drifting signal moves)."""

    track_id: int
    first_bin: int
    end_bin: int
    start_ns: int
    last_ns: int
    peak_db: float
    power_sum: float  # linear power summed over the frames, for the mean level
    frames: int = 1
    missed: int = 0
    snr_db: float = 0.0
    center_freq_hz: float = 0.0
    bandwidth_hz: float = 0.0  # the widest it was in one frame
    low_freq_hz: float = float("inf")
    high_freq_hz: float = float("-inf")
    started: bool = False
    last_update_ns: int = 0


class SignalFinder:
    """Turns one stream's frames into detection events (see the module).

    Args:
        frame_period_s: time between frames (their duration).
        settings: thresholds and durations.
    """

    def __init__(self, frame_period_s: float, settings: DetectionSettings | None = None) -> None:
        self.frame_period_s = frame_period_s
        self.settings = settings or DetectionSettings()
        self._time_floor: npt.NDArray[np.float32] | None = None
        self._time_high: npt.NDArray[np.float32] | None = None
        self._tracks: list[Track] = []
        self._next_id = 1
        self._bins = 0  # of the frame processed last
        self.floor_db: npt.NDArray[np.float32] | None = None
        # (centre, span, bins) -> the threshold per bin and the bins that may hold a signal
        self._ranges_key: tuple[float, float, int] | None = None
        self._range_rules: tuple[npt.NDArray[np.float32] | float,
                                 npt.NDArray[np.bool_] | None] = (self.settings.threshold_db, None)

    # -- the floor -----------------------------------------------------------------------

    def _update_floor(self, power_db: npt.NDArray[np.float32]
                      ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The floor per bin, and the threshold over it per bin."""
        if self._time_floor is None or self._time_floor.shape != power_db.shape:
            # The first frame's quantiles across frequency (noise is alike in time and in
            # frequency) start the running ones near where they settle.
            self._time_floor = _across_frequency(power_db, FLOOR_QUANTILE)
            self._time_high = _across_frequency(power_db, SPREAD_QUANTILE)
        else:
            assert self._time_high is not None
            _track_quantile(self._time_floor, power_db, FLOOR_QUANTILE)
            _track_quantile(self._time_high, power_db, SPREAD_QUANTILE)
        floor = _across_frequency(self._time_floor)
        spread = _across_frequency(self._time_high - self._time_floor, 0.5)
        self.floor_db = floor
        return floor, SPREAD_FACTOR * spread

    def _rules(self, center_freq_hz: float, span_hz: float, bins: int
               ) -> tuple[npt.NDArray[np.float32] | float, npt.NDArray[np.bool_] | None]:
        """The threshold per bin (a watched range's own where it has one) and the bins a
        signal may hold (None: all; an ignored range's are out), for this tuning."""
        ranges = self.settings.ranges
        if not ranges:
            return self.settings.threshold_db, None
        key = (center_freq_hz, span_hz, bins)
        if key != self._ranges_key:
            centres = _bin_centres_hz(center_freq_hz, span_hz, bins)
            threshold = np.full(bins, self.settings.threshold_db, dtype=np.float32)
            allowed = np.ones(bins, dtype=bool)
            for rule in ranges:
                inside = (centres >= rule.low_freq_hz) & (centres <= rule.high_freq_hz)
                if rule.kind == "ignore":
                    allowed &= ~inside
                elif rule.threshold_db is not None:
                    threshold[inside] = rule.threshold_db
            self._ranges_key = key
            self._range_rules = (threshold, None if allowed.all() else allowed)
        return self._range_rules

    def _watched(self, freq_hz: float) -> bool:
        """Whether ``freq_hz`` lies in a watched range."""
        return any(r.kind == "watch" and r.contains(freq_hz) for r in self.settings.ranges)

    # -- one frame -----------------------------------------------------------------------

    def process(self, power_db: npt.ArrayLike, center_freq_hz: float, span_hz: float,
                timestamp_ns: int) -> list[dict[str, Any]]:
        """Find the signals of one frame; return the events it completes (start, update,
        end), oldest track first. A frame of another bin count than the one before (a new
        FFT size) ends the signals found so far first, as a retune does."""
        values = np.asarray(power_db, dtype=np.float32)
        settings = self.settings
        events: list[dict[str, Any]] = []
        if self._tracks and values.size != self._bins:
            # A new FFT size: the tracks' bins are other frequencies now; start again.
            events = self.retuned(timestamp_ns)
        self._bins = values.size
        floor, spread_threshold = self._update_floor(values)
        bin_threshold, allowed = self._rules(center_freq_hz, span_hz, values.size)
        threshold = np.maximum(bin_threshold, spread_threshold)
        above = values - floor
        loud = values > settings.floor_db
        if allowed is not None:
            loud &= allowed
        seeds = (above > threshold) & loud
        extended = (above > threshold - HYSTERESIS_DB) & loud
        runs = [run for run in find_runs(extended) if seeds[run[0]:run[1]].any()]
        signals = _merge(runs, MERGE_BINS)
        bin_hz = span_hz / values.size
        low_edge = center_freq_hz - (values.size // 2 + 0.5) * bin_hz
        seen: set[int] = set()
        for first, end in signals:
            track = self._match(first, end, seen)
            part = values[first:end]
            peak = float(part.max())
            linear = float(np.mean(10.0 ** (part.astype(np.float64) / 10.0)))
            if track is None:
                track = Track(self._next_id, first, end, timestamp_ns, timestamp_ns, peak, linear)
                self._next_id += 1
                self._tracks.append(track)
            else:
                track.first_bin, track.end_bin = first, end
                track.last_ns = timestamp_ns
                track.peak_db = max(track.peak_db, peak)
                track.power_sum += linear
                track.frames += 1
                track.missed = 0
            seen.add(track.track_id)
            track.snr_db = max(track.snr_db, float((part - floor[first:end]).max()))
            # Occupied: the bins within OCCUPIED_DB of the peak (not the splatter of a
            # switched carrier far under it); the centre is their power-weighted mean.
            occupied = np.flatnonzero(part >= peak - OCCUPIED_DB)
            low, high = first + int(occupied[0]), first + int(occupied[-1]) + 1
            weights = 10.0 ** ((part[occupied] - peak).astype(np.float64) / 10.0)
            centre = first + float(np.dot(occupied, weights) / weights.sum()) + 0.5
            track.center_freq_hz = low_edge + centre * bin_hz
            track.bandwidth_hz = max(track.bandwidth_hz, (high - low) * bin_hz)
            track.low_freq_hz = min(track.low_freq_hz, low_edge + low * bin_hz)
            track.high_freq_hz = max(track.high_freq_hz, low_edge + high * bin_hz)
        for track in list(self._tracks):
            if track.track_id not in seen:
                track.missed += 1
                if track.missed > settings.hold_frames:
                    self._tracks.remove(track)
                    if track.started:
                        events.append(self._event("end", track, timestamp_ns))
                continue  # an update says what the signal does: only when it is there
            duration = (track.last_ns - track.start_ns) / 1e9 + self.frame_period_s
            if not track.started:
                # A microsecond of slack: frame times are whole nanoseconds.
                if duration >= settings.min_duration_s - 1e-6 and \
                        track.bandwidth_hz >= settings.min_bandwidth_hz:
                    track.started = True
                    track.last_update_ns = timestamp_ns
                    events.append(self._event("start", track, timestamp_ns))
            elif (timestamp_ns - track.last_update_ns) / 1e9 >= settings.update_interval_s - 1e-6:
                track.last_update_ns = timestamp_ns
                events.append(self._event("update", track, timestamp_ns))
        return events

    def _match(self, first: int, end: int, seen: set[int]) -> Track | None:
        """The open track this signal continues: the one overlapping it most (its bins,
        widened by MERGE_BINS), not yet continued by another signal of this frame."""
        best, best_overlap = None, 0
        for track in self._tracks:
            if track.track_id in seen:
                continue
            overlap = min(end, track.end_bin + MERGE_BINS) - max(first, track.first_bin - MERGE_BINS)
            if overlap > best_overlap:
                best, best_overlap = track, overlap
        return best

    def _event(self, kind: str, track: Track, time_ns: int) -> dict[str, Any]:
        """An event of ``track``, decided on the frame of ``time_ns``."""
        duration = (track.last_ns - track.start_ns) / 1e9 + self.frame_period_s
        mean = track.power_sum / track.frames
        return {
            "event": kind, "id": track.track_id,
            "center_freq_hz": round(track.center_freq_hz, 3),
            "bandwidth_hz": round(track.bandwidth_hz, 3),
            "low_freq_hz": round(track.low_freq_hz, 3), "high_freq_hz": round(track.high_freq_hz, 3),
            "peak_db": round(track.peak_db, 2), "mean_db": round(10 * np.log10(mean), 2),
            "snr_db": round(track.snr_db, 2),
            "start_ns": track.start_ns, "duration_s": round(duration, 6),
            "time_ns": time_ns, "watched": self._watched(track.center_freq_hz),
        }

    def open_tracks(self) -> list[Track]:
        return list(self._tracks)

    def retuned(self, time_ns: int) -> list[dict[str, Any]]:
        """The radio was retuned: the signals on the air end now (their ``end`` events),
        and the floor starts again from the next frame (the bins hold other frequencies)."""
        events = [self._event("end", track, time_ns) for track in self._tracks if track.started]
        self._tracks.clear()
        self._time_floor = self._time_high = None
        self._ranges_key = None
        return events


def _track_quantile(estimate: npt.NDArray[np.float32], values: npt.NDArray[np.float32],
                    quantile: float) -> None:
    """Move a running ``quantile`` of each bin one step towards this frame's values."""
    estimate += np.where(values > estimate, np.float32(FLOOR_STEP_DB * quantile),
                         np.float32(-FLOOR_STEP_DB * (1.0 - quantile)))


def _across_frequency(per_bin: npt.NDArray[np.float32],
                      quantile: float = FLOOR_QUANTILE) -> npt.NDArray[np.float32]:
    """The ``quantile`` of blocks of bins, interpolated between block centres: a narrow
    signal in a block does not lift it."""
    bins = per_bin.size
    block = max(1, bins // FLOOR_BLOCKS)
    blocks = bins // block
    rank = int(round(quantile * (block - 1)))  # the nearest rank: a partition, not a sort
    per_block = np.partition(per_bin[:blocks * block].reshape(blocks, block), rank,
                             axis=1)[:, rank]
    centres = np.arange(blocks) * block + (block - 1) / 2
    return np.interp(_bin_positions(bins), centres, per_block).astype(np.float32)


def _bin_centres_hz(center_freq_hz: float, span_hz: float, bins: int) -> npt.NDArray[np.float64]:
    """The centre frequency of each bin of an FFT-shifted frame (as :meth:`process` places
    a signal: bin ``bins // 2`` at the centre)."""
    bin_hz = span_hz / bins
    return center_freq_hz + (_bin_positions(bins) - bins // 2) * bin_hz


@functools.lru_cache(maxsize=8)
def _bin_positions(bins: int) -> npt.NDArray[np.float64]:
    return np.arange(bins, dtype=np.float64)


def _merge(runs: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, end in runs:
        if merged and first - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((first, end))
    return merged
