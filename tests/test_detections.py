# SPDX-License-Identifier: GPL-3.0-or-later
"""The detection stage against known inputs: the floor, the grouping with hysteresis, the
tracker's start, update and end, and no events on noise alone."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from gr_argos.detections import (
    DetectionSettings,
    FrequencyRange,
    SignalFinder,
    find_runs,
    parse_ranges,
    ranges_text,
)
from gr_argos.settings import ConfigError
from gr_argos.stream import StreamSettings

BINS = 2048
SPAN_HZ = 2.048e6  # 1 kHz bins
CENTER_HZ = 100e6
PERIOD_S = 1 / 30
PERIOD_NS = round(PERIOD_S * 1e9)


def noise_frames(count: int, seed: int = 0, level_db: float = -100.0,
                 ffts: int = 130) -> np.ndarray:
    """Frames of a peak detector over white noise: per bin the largest of ``ffts``
    exponential powers (130 FFTs a period at 8 MS/s, 2048 bins, 30 frames/s; 1 is the
    sample detector), in dB, around ``level_db``; drawn from the maximum's own
    distribution, (1 - e^-x)^ffts."""
    rng = np.random.default_rng(seed)
    power = -np.log1p(-rng.random((count, BINS)) ** (1.0 / ffts))
    return (level_db + 10 * np.log10(power)).astype(np.float32)


def run(finder: SignalFinder, frames: np.ndarray) -> list[dict[str, Any]]:
    events = []
    for index, frame in enumerate(frames):
        for event in finder.process(frame, CENTER_HZ, SPAN_HZ, index * PERIOD_NS):
            events.append({**event, "frame": index})
    return events


def freq_of_bin(index: float) -> float:
    return CENTER_HZ + (index - BINS // 2) * 1e3


def test_runs_are_found_at_the_edges_too() -> None:
    mask = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    assert find_runs(mask) == [(0, 2), (4, 5), (6, 9)]
    assert find_runs(np.zeros(4, dtype=bool)) == []


def test_the_floor_settles_near_the_low_quantile_and_follows_a_step_slowly() -> None:
    """On noise the floor settles a few dB under the median level (a 20 % quantile); after
    the noise rises 10 dB it follows within a few seconds, and a 10 dB burst of a few frames
    barely moves it."""
    finder = SignalFinder(PERIOD_S)
    frames = noise_frames(300)
    run(finder, frames)
    assert finder.floor_db is not None
    settled = float(np.median(finder.floor_db))
    assert np.quantile(frames[-100:], 0.05) < settled < np.median(frames[-100:])
    burst = frames[:5] + 10.0
    run(finder, burst)
    assert float(np.median(finder.floor_db)) - settled < 1.0
    run(finder, noise_frames(300, seed=1, level_db=-90.0))
    assert abs(float(np.median(finder.floor_db)) - (settled + 10.0)) < 1.5


def test_a_burst_is_one_event_with_its_frequency_width_and_duration() -> None:
    """A 5-bin burst 20 dB over the noise for frames 100-109: one start (frame 100) and one
    end (after the hold), centre within a bin, 5 kHz wide, ten frame periods long, its SNR
    and peak level."""
    frames = noise_frames(160)
    frames[100:110, 1500:1505] = -80.0 + 0.5 * np.arange(5)
    events = run(SignalFinder(PERIOD_S), frames)
    assert [(e["event"], e["frame"]) for e in events] == [("start", 100), ("end", 113)]
    start, end = events
    assert start["id"] == end["id"]
    assert abs(end["center_freq_hz"] - freq_of_bin(1502)) <= 1e3
    assert end["bandwidth_hz"] == pytest.approx(5e3, abs=2e3)
    assert end["duration_s"] == pytest.approx(10 * PERIOD_S, abs=1e-6)
    assert end["peak_db"] == pytest.approx(-78.0, abs=0.01) and end["snr_db"] > 15


def test_a_notch_does_not_split_a_signal_and_a_blink_does_not_split_an_event() -> None:
    """A signal with bins 2 dB under the threshold inside it is one signal (hysteresis); a
    signal missing for two frames (under the hold of three) is one event."""
    frames = noise_frames(120)
    frames[20:80, 600:620] = -80.0
    # Three bins 6.5 dB over the floor (about -93.5 dB): under the threshold of 8, over 8 - 3,
    # too wide for the one-bin merge to bridge.
    frames[20:80, 609:612] = -87.0
    frames[50:52, 600:620] = frames[0, 600:620]  # gone for two frames
    events = run(SignalFinder(PERIOD_S), frames)
    assert [e["event"] for e in events] == ["start", "update", "end"]
    assert {e["id"] for e in events} == {events[0]["id"]}
    assert events[-1]["bandwidth_hz"] == pytest.approx(20e3, abs=2e3)


def test_a_carrier_present_from_the_start_is_reported_and_updated() -> None:
    """A narrow carrier on from the first frame (no history to learn it as floor) is found:
    the floor across frequency ignores it; a long one gets an update a second."""
    frames = noise_frames(100)
    frames[:, 300:303] = -70.0
    events = run(SignalFinder(PERIOD_S), frames)
    assert [e["event"] for e in events] == ["start", "update", "update", "update"]
    assert events[0]["frame"] == 0 and [e["frame"] for e in events[1:]] == [30, 60, 90]
    assert abs(events[0]["center_freq_hz"] - freq_of_bin(301.5)) <= 1e3


def test_minimum_bandwidth_and_duration_hold_back_small_and_short_signals() -> None:
    frames = noise_frames(120)
    frames[10:12, 100:102] = -75.0  # 2 kHz wide, 2 frames
    frames[40:100, 800:830] = -75.0  # 30 kHz wide, 2 s
    settings = DetectionSettings(min_bandwidth_hz=10e3, min_duration_s=0.5)
    events = run(SignalFinder(PERIOD_S, settings), frames)
    assert {e["event"] for e in events} == {"start", "update", "end"}
    assert all(abs(e["center_freq_hz"] - freq_of_bin(815)) <= 1e3 for e in events)
    assert events[0]["frame"] == 40 + 14  # 0.5 s = 15 frames


def test_a_drifting_signal_is_one_event_that_says_how_far_it_went() -> None:
    frames = noise_frames(90)
    for index in range(10, 70):
        frames[index, 200 + index:205 + index] = -75.0  # one bin a frame
    events = run(SignalFinder(PERIOD_S), frames)
    assert [e["event"] for e in events if e["event"] != "update"] == ["start", "end"]
    end = events[-1]
    assert end["low_freq_hz"] == pytest.approx(freq_of_bin(210) - 500, abs=1e3)
    assert end["high_freq_hz"] == pytest.approx(freq_of_bin(274) + 500, abs=1e3)
    assert end["bandwidth_hz"] <= 7e3


@pytest.mark.parametrize("ffts", [130, 8, 1])
def test_no_events_on_noise_alone(ffts: int) -> None:
    """1,800 frames (a minute at 30 frames/s) of noise at 2,048 bins: no event with the
    defaults, whether a frame is the peak of 130 FFTs, of 8, or one FFT (the sample
    detector, whose noise scatters over 20 dB: the threshold follows the spread)."""
    finder = SignalFinder(PERIOD_S)
    events = []
    for chunk in range(6):
        frames = noise_frames(300, seed=10 + chunk, ffts=ffts)
        events += run(finder, frames)
    assert events == []


# -- frequency ranges to watch or to ignore ------------------------------------------------

def test_ranges_are_read_from_text_sorted_and_written_back() -> None:
    """The compact text gives sorted ranges with their kind and threshold; written back it
    reads the same."""
    ranges = parse_ranges("433.05e6-434.79e6:watch:12, 100e6 - 100.2e6 : IGNORE,\n"
                          "868e6-868.6e6:watch")
    assert ranges == (FrequencyRange(100e6, 100.2e6, "ignore"),
                      FrequencyRange(433.05e6, 434.79e6, "watch", 12.0),
                      FrequencyRange(868e6, 868.6e6, "watch"))
    assert parse_ranges(", ".join(str(r) for r in ranges)) == ranges
    assert parse_ranges("") == parse_ranges(" , ") == ()


@pytest.mark.parametrize(("text", "problem"), [
    ("434.79e6-433.05e6:watch", "the low frequency must be below the high one"),
    ("100e6-100e6:ignore", "the low frequency must be below the high one"),
    ("100e6-101e6:listen", "kind 'listen' is not one of watch, ignore"),
    ("100e6-101e6:ignore:10", "an ignored range takes no threshold"),
    ("100e6-101e6:watch:0", "the threshold must be a number of dB above 0"),
    ("100e6:watch", "is not of the form LOW-HIGH:watch[:THRESHOLD_DB]"),
    ("-5e6-1e6:watch", "is not of the form"),
    ("100e6-101e6", "is not of the form"),
    ("100e6-101e6:watch:12, 100.5e6-102e6:ignore", "overlap: make them disjoint"),
])
def test_a_bad_range_is_refused_naming_it(text: str, problem: str) -> None:
    """Inverted or empty ranges, unknown kinds, thresholds that make no sense, malformed
    items and overlapping ranges raise ValueError saying what is wrong."""
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_ranges(text)


def test_the_setting_takes_text_or_a_yaml_list_and_names_itself_when_bad() -> None:
    """detect_ranges is one text setting; a YAML list (or a block argument's list) of texts
    or mappings becomes that text; a bad one is a ConfigError naming the setting and the
    range."""
    listed = ranges_text(["433.05e6-434.79e6:watch:12",
                          {"low_freq_hz": 100e6, "high_freq_hz": 100.2e6, "kind": "ignore"}])
    assert parse_ranges(listed) == parse_ranges("433.05e6-434.79e6:watch:12, "
                                                "100e6-100.2e6:ignore")
    settings = StreamSettings(detect_ranges=listed)
    assert settings.detection().ranges == parse_ranges(listed)
    as_argument = StreamSettings(detect_ranges=["1e6-2e6:ignore"])  # a block argument
    assert as_argument.detect_ranges == "1e6-2e6:ignore"
    with pytest.raises(ConfigError, match=r"StreamSettings: bad value .* for detect_ranges: "
                                          r"range '2e6-1e6:watch': the low frequency"):
        StreamSettings(detect_ranges="2e6-1e6:watch")
    with pytest.raises(ValueError, match="must have low_freq_hz, high_freq_hz, kind"):
        ranges_text([{"low_freq_hz": 1e6, "kind": "watch"}])


def test_an_ignored_carrier_gives_no_event_and_a_neighbour_still_does() -> None:
    """A strong carrier in an ignored range is never reported; a burst just outside it is,
    at its frequency, and the event says it is not watched."""
    frames = noise_frames(60)
    frames[:, 300:303] = -60.0
    frames[10:20, 320:325] = -75.0
    ignored = DetectionSettings(ranges=parse_ranges(
        f"{freq_of_bin(295)}-{freq_of_bin(310)}:ignore"))
    events = run(SignalFinder(PERIOD_S, ignored), frames)
    assert [e["event"] for e in events] == ["start", "end"]
    assert abs(events[0]["center_freq_hz"] - freq_of_bin(322)) <= 1e3
    assert not any(e["watched"] for e in events)
    assert any(abs(e["center_freq_hz"] - freq_of_bin(301)) <= 2e3
               for e in run(SignalFinder(PERIOD_S), frames))


def test_a_watched_range_reports_a_weak_signal_with_its_own_threshold() -> None:
    """A signal about 9.5 dB over the floor is under a threshold of 12 dB: not reported; in
    a range watched at 8 dB it is, with watched: true, while the same signal outside the
    range still is not; time_ns is the frame the event was decided on."""
    frames = noise_frames(120)
    level = float(np.median(frames)) + 8.5  # the floor (20 % quantile) is ~1 dB under it
    frames[40:80, 500:506] = level
    frames[40:80, 1500:1506] = level
    assert run(SignalFinder(PERIOD_S, DetectionSettings(threshold_db=12.0)), frames) == []
    watched = DetectionSettings(threshold_db=12.0, ranges=parse_ranges(
        f"{freq_of_bin(490)}-{freq_of_bin(520)}:watch:8"))
    events = run(SignalFinder(PERIOD_S, watched), frames)
    assert [e["event"] for e in events if e["event"] != "update"] == ["start", "end"]
    assert all(e["watched"] and abs(e["center_freq_hz"] - freq_of_bin(502.5)) <= 1e3
               for e in events)
    assert [e["time_ns"] for e in events] == [e["frame"] * PERIOD_NS for e in events]


def test_a_range_follows_the_tuning() -> None:
    """Ranges are absolute frequencies: after a retune the same bins are other
    frequencies, and a carrier that was ignored there is reported."""
    frames = noise_frames(80)
    frames[:, 300:303] = -60.0
    settings = DetectionSettings(ranges=parse_ranges(
        f"{freq_of_bin(295)}-{freq_of_bin(310)}:ignore"))
    finder = SignalFinder(PERIOD_S, settings)
    events = []
    for index, frame in enumerate(frames):
        center = CENTER_HZ if index < 40 else CENTER_HZ + 1e6
        events += finder.process(frame, center, SPAN_HZ, index * PERIOD_NS)
    assert [e["event"] for e in events][:1] == ["start"]
    assert abs(events[0]["center_freq_hz"] - (freq_of_bin(301) + 1e6)) <= 1e3


def test_a_retune_ends_the_signals_on_the_air_and_starts_the_floor_again() -> None:
    """After a retune the bins hold other frequencies: each signal on the air gets its end
    at once, and a carrier that the retune brings into a bin once held by noise is found
    (the floor learned before does not hide it, nor does an old one fire on noise)."""
    finder = SignalFinder(PERIOD_S)
    before = noise_frames(60, seed=1)
    before[:, 300:303] = -70.0
    events = run(finder, before)
    assert [e["event"] for e in events] == ["start", "update"]
    ended = finder.retuned(61 * PERIOD_NS)
    assert [(e["event"], e["id"]) for e in ended] == [("end", events[0]["id"])]
    after = noise_frames(40, seed=2)
    after[:, 900:903] = -70.0
    later = [e for index, frame in enumerate(after)
             for e in finder.process(frame, CENTER_HZ + 1e6, SPAN_HZ, (62 + index) * PERIOD_NS)]
    assert [e["event"] for e in later] == ["start", "update"]
    assert abs(later[0]["center_freq_hz"] - (freq_of_bin(901.5) + 1e6)) <= 1e3


def test_a_new_fft_size_ends_the_signals_and_finds_them_again_at_the_new_size() -> None:
    """Frames of another bin count (a client changed the FFT size): the signals found at
    the old size end at once (their bins are other frequencies now), and the same carrier
    is found again as a new signal at its frequency, by the new bins."""
    finder = SignalFinder(PERIOD_S)
    before = noise_frames(40, seed=1)
    before[:, 300:303] = -70.0
    events = run(finder, before)
    assert [e["event"] for e in events] == ["start", "update"]
    rng = np.random.default_rng(4)
    after = (-100.0 + 10 * np.log10(-np.log1p(-rng.random((10, 2 * BINS)) ** (1 / 65)))
             ).astype(np.float32)
    after[:, 600:606] = -70.0  # the same 3 kHz, in 500 Hz bins
    later = [e for index, frame in enumerate(after)
             for e in finder.process(frame, CENTER_HZ, SPAN_HZ, (41 + index) * PERIOD_NS)]
    assert [(e["event"], e["id"]) for e in later] == [("end", events[0]["id"]),
                                                      ("start", events[0]["id"] + 1)]
    assert later[1]["center_freq_hz"] == pytest.approx(events[0]["center_freq_hz"], abs=500)
