# SPDX-License-Identifier: GPL-3.0-or-later
"""hackrf_sweep's formats and the reassembly of sweeps (gr_argos.sweep), as plain code.

The segments are built here the way hackrf_sweep writes them: 5 MHz segments, two per 20 MHz
tuning step ([f, f+5) and [f+10, f+15) MHz) with the tunings interleaved (f, f+5, f+20, ...),
so one sweep arrives out of frequency order. The expected vectors are computed from the
"true" spectrum directly, without the assembler's arithmetic.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gr_argos.sweep import (
    FILL_FLOOR_DB,
    BinaryRecordParser,
    Segment,
    SweepAssembler,
    TextLineParser,
    parse_text_line,
)

START_HZ, STOP_HZ = 2400e6, 2500e6
BIN_HZ = 1e6  # hackrf_sweep -w 1000000: 5 bins per 5 MHz segment
SEGMENT_HZ = 5e6


def true_spectrum(seed: int = 0) -> np.ndarray:
    """100 float32 dB values, one per MHz from 2400 MHz, with a carrier at 2442.5 MHz."""
    rng = np.random.default_rng(seed)
    spectrum = (-90 + rng.uniform(-3, 3, 100)).astype(np.float32)
    spectrum[42] = -30.0
    return spectrum


def interleaved_lows_hz(start_hz: float = START_HZ, stop_hz: float = STOP_HZ) -> list[float]:
    """Segment start frequencies in hackrf_sweep's order for one sweep."""
    lows = []
    for step in np.arange(start_hz, stop_hz, 20e6):
        for tuning in (step, step + 5e6):
            lows += [tuning, tuning + 10e6]
    return [float(low) for low in lows]


def segments_of(spectrum: np.ndarray, lows: list[float] | None = None) -> list[Segment]:
    per_segment = int(SEGMENT_HZ / BIN_HZ)
    segments = []
    for low in lows if lows is not None else interleaved_lows_hz():
        first = int((low - START_HZ) / BIN_HZ)
        segments.append(Segment(low, low + SEGMENT_HZ, spectrum[first:first + per_segment]))
    return segments


def binary_record(segment: Segment) -> bytes:
    values = np.asarray(segment.power_db, dtype="<f4")
    return struct.pack("<IQQ", 16 + 4 * len(values), int(segment.hz_low),
                       int(segment.hz_high)) + values.tobytes()


def text_line(segment: Segment) -> bytes:
    values = ", ".join(f"{value:.2f}" for value in segment.power_db)
    return (f"2024-05-01, 12:00:00.123456, {int(segment.hz_low)}, {int(segment.hz_high)}, "
            f"{segment.bin_width_hz:.2f}, 20, {values}\n").encode("ascii")


def assemble(segments: list[Segment], bins: int, reduce: str = "max",
             freq_max_hz: float = STOP_HZ) -> list:
    """Every sweep the assembler yields for these segments, the last one flushed."""
    assembler = SweepAssembler(START_HZ, freq_max_hz, bins, reduce)  # type: ignore[arg-type]
    sweeps = [sweep for index, segment in enumerate(segments)
              if (sweep := assembler.add(segment, received_s=float(index))) is not None]
    last = assembler.flush()
    return sweeps + ([last] if last is not None else [])


def assert_same_segments(got: list[Segment], want: list[Segment]) -> None:
    assert [(s.hz_low, s.hz_high) for s in got] == [(s.hz_low, s.hz_high) for s in want]
    for got_segment, want_segment in zip(got, want):
        np.testing.assert_array_equal(got_segment.power_db, want_segment.power_db)


# -- binary records ---------------------------------------------------------------------------

def test_binary_records_parse_into_segments_exactly() -> None:
    """Records of one sweep, fed at once, come back as the same segments, float32 exact."""
    segments = segments_of(true_spectrum())
    parser = BinaryRecordParser()

    got = parser.feed(b"".join(binary_record(segment) for segment in segments))

    assert_same_segments(got, segments)
    assert parser.records == len(segments) and parser.pending_bytes == 0


def test_binary_records_survive_reads_of_any_size() -> None:
    """Fed one byte at a time, then in 7-byte pieces, the records parse the same."""
    segments = segments_of(true_spectrum())
    stream = b"".join(binary_record(segment) for segment in segments)
    for piece in (1, 7):
        parser = BinaryRecordParser()
        got = []
        for offset in range(0, len(stream), piece):
            got += parser.feed(stream[offset:offset + piece])
        assert_same_segments(got, segments)


def test_binary_garbage_is_skipped_and_counted() -> None:
    """Bytes that are no record (a truncated record, noise) are skipped, counted, and the
    records after them still parse."""
    segments = segments_of(true_spectrum())[:3]
    garbage = b"\x00\x01\x02" + b"\xff" * 10
    parser = BinaryRecordParser()

    got = parser.feed(garbage + binary_record(segments[0]) + binary_record(segments[1])[:9]
                      + binary_record(segments[2]))

    assert [s.hz_low for s in got] == [segments[0].hz_low, segments[2].hz_low]
    assert parser.bytes_skipped >= len(garbage) + 9


def test_binary_partial_record_waits_for_the_rest() -> None:
    """A record cut short yields nothing until its last byte arrives."""
    record = binary_record(segments_of(true_spectrum())[0])
    parser = BinaryRecordParser()

    assert parser.feed(record[:-1]) == []
    assert parser.pending_bytes == len(record) - 1
    assert len(parser.feed(record[-1:])) == 1


# -- text lines -------------------------------------------------------------------------------

def test_text_line_parses_frequencies_and_values() -> None:
    """A line as hackrf_sweep prints it gives its range and its dB values."""
    segment = parse_text_line("2019-01-03, 11:57:34.967805, 2400000000, 2405000000, "
                              "1000000.00, 20, -64.72, -63.36, -60.91, -61.74, -58.58")

    assert (segment.hz_low, segment.hz_high, segment.bin_width_hz) == (2400e6, 2405e6, 1e6)
    np.testing.assert_array_equal(
        segment.power_db, np.array([-64.72, -63.36, -60.91, -61.74, -58.58], dtype=np.float32))


@pytest.mark.parametrize("line", [
    "", "hello", "2019-01-03, 11:57:34, 2400000000, 2405000000, 1000000.00, 20",
    "2019-01-03, 11:57:34, 2405000000, 2400000000, 1000000.00, 20, -60.0",
    "2019-01-03, 11:57:34, x, 2405000000, 1000000.00, 20, -60.0",
], ids=["empty", "word", "no-values", "reversed-range", "not-a-number"])
def test_text_line_that_is_not_a_segment_is_refused(line: str) -> None:
    """Lines without values, with a reversed range or a non-number raise ValueError."""
    with pytest.raises(ValueError):
        parse_text_line(line)


def test_text_lines_split_anywhere_parse_the_same() -> None:
    """The text of a sweep, fed in 13-byte pieces, parses into the same segments (to the
    0.01 dB of the format)."""
    segments = segments_of(np.round(true_spectrum(), 2))
    stream = b"".join(text_line(segment) for segment in segments)
    parser = TextLineParser()
    got = []
    for offset in range(0, len(stream), 13):
        got += parser.feed(stream[offset:offset + 13])

    assert_same_segments(got, segments)
    assert parser.pending_bytes == 0


def test_text_garbage_lines_are_skipped_and_counted() -> None:
    """An unreadable line is skipped, counted and kept for the log; the next one parses."""
    segment = segments_of(true_spectrum())[0]
    parser = TextLineParser()

    got = parser.feed(b"Caught signal 15\n\xff\xfe\n" + text_line(segment))

    assert len(got) == 1 and got[0].hz_low == segment.hz_low
    assert parser.lines_skipped == 2


# -- reassembly -------------------------------------------------------------------------------

def test_interleaved_segments_stitch_into_the_true_spectrum() -> None:
    """One output bin per input bin: the sweep is exactly the spectrum in frequency order."""
    spectrum = true_spectrum()

    (sweep,) = assemble(segments_of(spectrum), bins=100)

    np.testing.assert_array_equal(sweep.power_db, spectrum)
    assert sweep.power_db.dtype == np.float32
    assert sweep.complete and sweep.coverage == 1.0 and sweep.segments == 20
    assert (sweep.freq_min_hz, sweep.freq_max_hz) == (START_HZ, STOP_HZ)
    assert (sweep.center_freq_hz, sweep.span_hz) == (2450e6, 100e6)
    assert int(np.argmax(sweep.power_db)) == 42


def test_max_keeps_the_strongest_of_the_bins_in_an_output_bin() -> None:
    """Four input bins per output bin with reduce="max": each output is their maximum."""
    spectrum = true_spectrum()

    (sweep,) = assemble(segments_of(spectrum), bins=25, reduce="max")

    np.testing.assert_array_equal(sweep.power_db, spectrum.reshape(25, 4).max(axis=1))


def test_mean_averages_power_in_linear_units() -> None:
    """Four input bins per output bin with reduce="mean": 10 log10 of their mean power."""
    spectrum = true_spectrum()

    (sweep,) = assemble(segments_of(spectrum), bins=25, reduce="mean")

    linear = 10 ** (spectrum.astype(np.float64) / 10)
    expected = 10 * np.log10(linear.reshape(25, 4).mean(axis=1))
    np.testing.assert_allclose(sweep.power_db, expected, atol=1e-4)


def test_output_bins_narrower_than_input_bins_repeat_them() -> None:
    """Two output bins per input bin: each input value fills both, for max and mean."""
    spectrum = true_spectrum()
    for reduce in ("max", "mean"):
        (sweep,) = assemble(segments_of(spectrum), bins=200, reduce=reduce)
        np.testing.assert_allclose(sweep.power_db, np.repeat(spectrum, 2), atol=1e-4)


def test_segments_beyond_the_range_are_dropped() -> None:
    """A 2400-2490 MHz range of a sweep that runs to 2500 MHz keeps the first 90 bins; the
    segments past it do not count."""
    spectrum = true_spectrum()

    (sweep,) = assemble(segments_of(spectrum), bins=90, freq_max_hz=2490e6)

    np.testing.assert_array_equal(sweep.power_db, spectrum[:90])
    assert sweep.complete and sweep.segments == 18


def test_a_segment_at_the_start_frequency_ends_the_sweep() -> None:
    """Two sweeps in a row: the first is returned when the second one's first segment
    arrives, the second by flush(); numbers 0 and 1, start times and durations from the
    arrival times."""
    first, second = true_spectrum(0), true_spectrum(1)
    segments = segments_of(first) + segments_of(second)

    sweeps = assemble(segments, bins=100)

    assert [sweep.number for sweep in sweeps] == [0, 1]
    np.testing.assert_array_equal(sweeps[0].power_db, first)
    np.testing.assert_array_equal(sweeps[1].power_db, second)
    assert (sweeps[0].start_time_s, sweeps[0].duration_s) == (0.0, 19.0)
    assert (sweeps[1].start_time_s, sweeps[1].duration_s) == (20.0, 19.0)


def test_a_repeated_segment_ends_the_sweep_when_the_start_was_lost() -> None:
    """If the second sweep's start segment is missing, its first repeated segment ends the
    first sweep all the same."""
    lows = interleaved_lows_hz()
    segments = segments_of(true_spectrum(0)) + segments_of(true_spectrum(1), lows[1:])

    sweeps = assemble(segments, bins=100)

    assert len(sweeps) == 2
    assert sweeps[0].complete and not sweeps[1].complete


def test_missing_segment_makes_an_incomplete_sweep_filled_with_its_floor() -> None:
    """A sweep without the 2415-2420 MHz segment is flagged incomplete, covers 95% and
    shows its lowest value in the 5 uncovered bins."""
    spectrum = true_spectrum()
    lows = [low for low in interleaved_lows_hz() if low != 2415e6]

    (sweep,) = assemble(segments_of(spectrum, lows), bins=100)

    assert not sweep.complete and sweep.coverage == pytest.approx(0.95)
    assert sweep.segments == 19
    expected = spectrum.copy()
    expected[15:20] = np.delete(spectrum, range(15, 20)).min()
    np.testing.assert_array_equal(sweep.power_db, expected)


def test_sweep_with_nothing_in_range_is_all_floor() -> None:
    """Segments all outside the range give an empty sweep at FILL_FLOOR_DB."""
    assembler = SweepAssembler(100e6, 200e6, 10)
    assembler.add(Segment(2400e6, 2405e6, np.zeros(5, dtype=np.float32)))

    sweep = assembler.flush()

    assert sweep is not None and sweep.coverage == 0 and sweep.segments == 0
    np.testing.assert_array_equal(sweep.power_db, np.full(10, FILL_FLOOR_DB, np.float32))


def test_non_finite_values_count_as_the_floor() -> None:
    """-inf (hackrf_sweep's log of zero power) and NaN become FILL_FLOOR_DB, never reach
    the output."""
    assembler = SweepAssembler(2400e6, 2405e6, 5)
    assembler.add(Segment(2400e6, 2405e6, np.array([-np.inf, np.nan, -50, -60, -70],
                                                   dtype=np.float32)))

    sweep = assembler.flush()

    assert sweep is not None
    np.testing.assert_array_equal(sweep.power_db[:2], [FILL_FLOOR_DB, FILL_FLOOR_DB])


def test_flush_with_nothing_pending_returns_none() -> None:
    """flush() right after a flush (or before any segment) has no sweep to give."""
    assembler = SweepAssembler(START_HZ, STOP_HZ, 100)
    assert assembler.flush() is None


@pytest.mark.parametrize(("args", "message"), [
    ((2500e6, 2400e6, 10), "freq_min_hz < freq_max_hz"),
    ((2400e6, 2500e6, 0), "bins must be at least 1"),
    ((2400e6, 2500e6, 10, "median"), "reduce must be 'max' or 'mean'"),
])
def test_bad_assembler_arguments_are_refused(args: tuple, message: str) -> None:
    """A reversed range, no bins or an unknown reduce raise ValueError saying which."""
    with pytest.raises(ValueError, match=message):
        SweepAssembler(*args)
