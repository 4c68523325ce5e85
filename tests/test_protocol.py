# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for gr_argos.protocol: the v1 frame codec, the shared test vectors, JSON messages."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import struct
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gr_argos.protocol import (
    CLIENT_STEPS_DB,
    ENCODING_FLOAT32,
    ENCODING_INT16,
    ENCODING_UINT8,
    FLAG_COMPRESSED,
    FLAG_SECOND_TRACE,
    HEADER_SIZE,
    MAX_CLIENT_MESSAGE_BYTES,
    FrameFormat,
    ProtocolError,
    compress_frame,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
    reencode_frame,
    with_missed,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
VECTORS_DIR = REPO_ROOT / "tests" / "vectors"
MANIFEST = json.loads((VECTORS_DIR / "vectors.json").read_text(encoding="utf-8"))
VALID_VECTORS = MANIFEST["valid"]
INVALID_VECTORS = MANIFEST["invalid"]

# A frame whose every field differs from its default, reused where the values do not matter.
FIELDS = dict(center_freq_hz=433.92e6, span_hz=2.4e6, timestamp_ns=1_700_000_000_123_456_789,
              sequence=42, stream_id=3)


def load_script(name: str) -> ModuleType:
    """Import scripts/<name>.py, which is not part of the package."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def header_field(frame: bytes, offset: int, fmt: str) -> Any:
    """One header field read straight from the bytes at its documented offset."""
    return struct.unpack_from("<" + fmt, frame, offset)[0]


# Round trips


@pytest.mark.parametrize("bin_count", [1, 2, 3, 4, 5, 63, 64, 1000, 1024, 2048, 4096, 65536])
def test_random_spectrum_round_trips_exactly(bin_count: int) -> None:
    """Any float32 spectrum and header comes back from decode_frame bit for bit."""
    rng = np.random.default_rng(bin_count)
    power_db = rng.uniform(-160.0, 20.0, bin_count).astype(np.float32)
    fields = dict(
        center_freq_hz=float(rng.uniform(0.0, 6e9)),
        span_hz=float(rng.uniform(1e3, 6e7)),
        timestamp_ns=int(rng.integers(0, 2**63, dtype=np.int64)),
        sequence=int(rng.integers(0, 2**64, dtype=np.uint64)),
        stream_id=int(rng.integers(0, 2**16)),
        missed=int(rng.integers(0, 2**32, dtype=np.uint64)),
    )

    frame = encode_frame(power_db, **fields)
    decoded = decode_frame(frame)

    assert len(frame) == HEADER_SIZE + 4 * bin_count
    assert decoded.power_db.dtype == np.float32
    assert np.array_equal(decoded.power_db, power_db)
    assert decoded.bin_count == bin_count
    assert {name: getattr(decoded, name) for name in fields} == fields
    assert (decoded.encoding, decoded.flags) == (0, 0)


@pytest.mark.parametrize("field, value", [
    ("sequence", 0), ("sequence", 2**64 - 1),
    ("stream_id", 0), ("stream_id", 65535),
    ("missed", 0), ("missed", 2**32 - 1),
    ("timestamp_ns", -(2**63)), ("timestamp_ns", 2**63 - 1),
    ("center_freq_hz", 0.0), ("center_freq_hz", -1.5e6), ("span_hz", 1e-3),
])
def test_header_field_limits_round_trip(field: str, value: int | float) -> None:
    """Each header field keeps its value at the ends of its range."""
    decoded = decode_frame(encode_frame([-50.0], **{**FIELDS, field: value}))

    assert getattr(decoded, field) == value


def test_float64_input_is_sent_as_float32() -> None:
    """A float64 spectrum is rounded to float32, the only v1 payload type."""
    decoded = decode_frame(encode_frame(np.array([0.1, -97.3]), **FIELDS))

    assert np.array_equal(decoded.power_db, np.array([0.1, -97.3], dtype=np.float32))


def test_header_bytes_follow_the_documented_layout() -> None:
    """Every field sits at the offset docs/protocol.md gives, little-endian, reserved bytes 0."""
    frame = encode_frame([-1.0, -2.0], missed=9, **FIELDS)

    assert frame[0:4] == b"ARGS"
    assert [header_field(frame, offset, fmt) for offset, fmt in [
        (4, "B"), (5, "B"), (6, "H"), (8, "H"), (10, "B"), (11, "B"), (12, "H"), (14, "H"),
        (16, "Q"), (24, "I"), (28, "I"), (32, "q"), (40, "d"), (48, "d"), (56, "f"), (60, "f"),
    ]] == [1, 1, 64, 0, 0, 0, 3, 0, 42, 9, 2, 1_700_000_000_123_456_789, 433.92e6, 2.4e6,
           0.0, 0.0]
    assert frame[64:] == struct.pack("<2f", -1.0, -2.0)


@pytest.mark.parametrize("power_db, changes, keyword", [
    ([[1.0, 2.0]], {}, "1-D"),
    ([], {}, "non-empty"),
    ([1.0], {"stream_id": -1}, "stream_id"),
    ([1.0], {"stream_id": 65536}, "stream_id"),
    ([1.0], {"sequence": -1}, "sequence"),
    ([1.0], {"sequence": 2**64}, "sequence"),
    ([1.0], {"timestamp_ns": 2**63}, "timestamp_ns"),
    ([1.0], {"timestamp_ns": -(2**63) - 1}, "timestamp_ns"),
])
def test_encode_frame_rejects_what_v1_cannot_carry(
    power_db: Any, changes: dict[str, Any], keyword: str
) -> None:
    """A spectrum or field that does not fit the v1 header raises ProtocolError naming it."""
    with pytest.raises(ProtocolError, match=keyword):
        encode_frame(power_db, **{**FIELDS, **changes})


@pytest.mark.parametrize("missed, sent", [(-5, 0), (2**32, 2**32 - 1), (2**40, 2**32 - 1)])
def test_encode_frame_clamps_missed_to_u32(missed: int, sent: int) -> None:
    """A missed count outside 0..2**32-1 is clamped, not an error."""
    assert decode_frame(encode_frame([0.0], missed=missed, **FIELDS)).missed == sent


@pytest.mark.parametrize("missed, sent", [
    (1, 1), (7, 7), (2**32 - 1, 2**32 - 1), (2**32, 2**32 - 1), (-3, 0),
])
def test_with_missed_changes_only_the_missed_bytes(missed: int, sent: int) -> None:
    """with_missed rewrites bytes 24..27 and leaves every other byte of the frame identical."""
    frame = encode_frame(np.linspace(-120.0, -20.0, 257), **FIELDS)

    patched = with_missed(frame, missed)

    assert len(patched) == len(frame)
    assert patched[:24] == frame[:24]
    assert patched[28:] == frame[28:]
    assert header_field(patched, 24, "I") == sent
    assert decode_frame(patched).missed == sent
    assert with_missed(patched, 0) == frame


def test_with_missed_works_on_a_frame_with_a_header_extension() -> None:
    """Patching missed in a frame with header_len > 64 leaves the extension and payload intact."""
    frame = (VECTORS_DIR / "header_extension.bin").read_bytes()

    patched = with_missed(frame, 12)

    assert patched[:24] + patched[28:] == frame[:24] + frame[28:]
    assert decode_frame(patched).missed == 12


def test_decode_frame_accepts_any_buffer_and_copies_the_payload() -> None:
    """bytes, bytearray and memoryview decode alike, and the array outlives the buffer."""
    frame = bytearray(encode_frame([-10.0, -20.0, -30.0], **FIELDS))

    from_bytes = decode_frame(bytes(frame))
    from_view = decode_frame(memoryview(frame))
    from_bytearray = decode_frame(frame)
    frame[HEADER_SIZE:] = bytes(len(frame) - HEADER_SIZE)

    for decoded in (from_bytes, from_view, from_bytearray):
        assert decoded.power_db.tolist() == [-10.0, -20.0, -30.0]


@pytest.mark.parametrize("bin_count, expected_hz", [
    (4, [98.0, 99.0, 100.0, 101.0]),
    (5, [98.0, 99.0, 100.0, 101.0, 102.0]),
    (1, [100.0]),
])
def test_bin_freqs_hz_put_bin_count_half_at_the_centre(
    bin_count: int, expected_hz: list[float]
) -> None:
    """Bin i is centred at center_freq_hz + (i - bin_count//2) * span_hz/bin_count."""
    frame = encode_frame(np.zeros(bin_count), center_freq_hz=100.0, span_hz=float(bin_count),
                         timestamp_ns=0, sequence=0)

    assert decode_frame(frame).bin_freqs_hz().tolist() == expected_hz


# The shared test vectors


def test_checked_in_vectors_are_what_the_encoder_produces() -> None:
    """tests/vectors/ holds exactly the bytes scripts/make_test_vectors.py makes today."""
    generator = load_script("make_test_vectors")

    files = generator.build()

    assert generator.stale_files(VECTORS_DIR, files) == []
    assert generator.build() == files


def test_manifest_lists_every_vector_file() -> None:
    """Every .bin file in tests/vectors/ has a manifest entry, so none goes untested."""
    on_disk = {path.relative_to(VECTORS_DIR).as_posix() for path in VECTORS_DIR.rglob("*.bin")}
    listed = {entry["file"] for entry in VALID_VECTORS + INVALID_VECTORS}

    assert on_disk == listed


def formula_values(p: dict[str, Any]) -> npt.NDArray[np.float64]:
    """The 2048-bin spectrum of the manifest's formula, in plain float64 arithmetic."""
    i = np.arange(p["bin_count"])
    return np.maximum(
        p["floor_db"] + ((7 * i * i + 3 * i) % p["ripple_modulus"]) * p["ripple_step_db"],
        p["peak_db"] - p["peak_slope_db_per_bin"] * np.abs(i - p["peak_bin"]))


@pytest.mark.parametrize("entry", VALID_VECTORS, ids=lambda entry: entry["file"])
def test_valid_vector_decodes_to_the_manifest_values(entry: dict[str, Any]) -> None:
    """Each valid vector decodes to exactly the header and payload its manifest entry lists."""
    frame = (VECTORS_DIR / entry["file"]).read_bytes()
    header = entry["header"]
    payload = entry["payload"]

    decoded = decode_frame(frame)

    assert len(frame) == entry["size_bytes"]
    assert frame[0:4] == header["magic"].encode("ascii")
    assert [header_field(frame, offset, "B") for offset in (4, 5)] == [
        header["version"], header["msg_type"]]
    assert header_field(frame, 6, "H") == header["header_len"]
    assert [header_field(frame, offset, "f") for offset in (56, 60)] == [
        header["scale_offset_db"], header["scale_step_db"]]
    for name in ("flags", "encoding", "stream_id", "sequence", "missed", "bin_count",
                 "timestamp_ns", "center_freq_hz", "span_hz"):
        assert getattr(decoded, name) == header[name], name
    assert header["sequence_str"] == str(decoded.sequence)
    assert header["timestamp_ns_str"] == str(decoded.timestamp_ns)
    codes = {"": 0, "sample": 1, "peak": 2, "average": 3}
    assert [codes[decoded.detector], codes[decoded.second_detector]] == [
        header["detector"], header["second_detector"]]
    assert [header_field(frame, offset, "B") for offset in (11, 14)] == [
        header["detector"], header["second_detector"]]
    if "values" in payload:
        assert decoded.power_db.tolist() == payload["values"]
        second = decoded.second_power_db
        assert (None if second is None else second.tolist()) == payload.get("second_values")
        assert decoded.bin_freqs_hz().tolist() == payload["bin_freqs_hz"]
    elif "decoded_sha256" in payload:
        values = decoded.power_db
        assert hashlib.sha256(values.astype("<f4").tobytes()).hexdigest() == (
            payload["decoded_sha256"])
        error_db = np.abs(values.astype(np.float64) - formula_values(payload["parameters"])).max()
        assert error_db <= payload["max_error_db"] * (1 + 1e-6)
        assert [[i, values[i]] for i, _ in payload["samples"]] == payload["samples"]
    else:
        values = decoded.power_db
        assert hashlib.sha256(frame[header["header_len"]:]).hexdigest() == payload["sha256"]
        assert [values.min(), values.max()] == [payload["min"], payload["max"]]
        assert [np.argmin(values), np.argmax(values)] == [payload["argmin"], payload["argmax"]]
        assert decoded.bin_freqs_hz()[payload["argmax"]] == payload["argmax_freq_hz"]
        assert [[i, values[i]] for i, _ in payload["samples"]] == payload["samples"]


def test_spectrum_2048_formula_reproduces_its_payload() -> None:
    """The manifest's formula and parameters, computed in plain arithmetic, give the payload."""
    (entry,) = [entry for entry in VALID_VECTORS if "sha256" in entry["payload"]]
    p = entry["payload"]["parameters"]
    frame = (VECTORS_DIR / entry["file"]).read_bytes()

    expected = [
        max(p["floor_db"] + ((7 * i * i + 3 * i) % p["ripple_modulus"]) * p["ripple_step_db"],
            p["peak_db"] - p["peak_slope_db_per_bin"] * abs(i - p["peak_bin"]))
        for i in range(p["bin_count"])
    ]

    assert frame[HEADER_SIZE:] == struct.pack(f"<{p['bin_count']}f", *expected)


@pytest.mark.parametrize("entry", INVALID_VECTORS, ids=lambda entry: entry["file"])
def test_invalid_vector_is_rejected_with_a_message_naming_the_problem(
    entry: dict[str, Any]
) -> None:
    """Each invalid vector raises ProtocolError whose message contains the manifest keyword."""
    frame = (VECTORS_DIR / entry["file"]).read_bytes()

    with pytest.raises(ProtocolError) as raised:
        decode_frame(frame)

    assert entry["error_keyword"] in str(raised.value).lower()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "deflated"])
def test_zero_bins_is_named_whatever_the_payload(compressed: bool) -> None:
    """A frame whose bin_count is 0 is refused as having no bins, with or without payload
    bytes after the header and compressed or not: the count is checked before the payload."""
    frame = encode_frame([-10.0] * 64, **FIELDS)
    if compressed:
        frame = compress_frame(frame)
        assert header_field(frame, 8, "H") == FLAG_COMPRESSED
    zero_bins = bytearray(frame)
    struct.pack_into("<I", zero_bins, 28, 0)

    for data in (bytes(zero_bins), bytes(zero_bins[:HEADER_SIZE])):
        with pytest.raises(ProtocolError, match="no bins"):
            decode_frame(data)


def test_client_example_in_the_docs_reads_the_vectors() -> None:
    """The struct-only decoder in docs/protocol.md agrees with the manifest on every vector."""
    docs = (REPO_ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    match = re.search(r"## Writing a client.*?```python\n(.*?)```", docs, re.DOTALL)
    assert match is not None
    example: dict[str, Any] = {"__name__": "protocol_docs_example"}
    exec(match.group(1), example)
    parse_frame = example["parse_frame"]

    for entry in VALID_VECTORS:
        frame = parse_frame((VECTORS_DIR / entry["file"]).read_bytes())
        for name in ("stream_id", "sequence", "missed", "timestamp_ns", "center_freq_hz",
                     "span_hz"):
            assert frame[name] == entry["header"][name], (entry["file"], name)
        detectors = {0: "", 1: "sample", 2: "peak", 3: "average"}
        assert frame["detector"] == detectors[entry["header"]["detector"]], entry["file"]
        assert frame["second_detector"] == detectors[entry["header"]["second_detector"]]
        if "values" in entry["payload"]:
            assert frame["power_db"] == entry["payload"]["values"]
            assert frame["second_power_db"] == entry["payload"].get("second_values")
            assert frame["freqs_hz"] == entry["payload"]["bin_freqs_hz"]
    for entry in INVALID_VECTORS:
        with pytest.raises(ValueError):
            parse_frame((VECTORS_DIR / entry["file"]).read_bytes())


# JSON messages


def test_message_round_trips() -> None:
    """decode_message(encode_message(t, body)) gives back the body with its type."""
    body = {"stream": 0, "lat": 52.2297, "fix": True, "sats": [3, 7, 19], "note": "żółw",
            "nested": {"a": None, "b": [1.5, "x"]}}

    assert decode_message(encode_message("gps", body)) == {"type": "gps", **body}


def test_encode_message_is_compact_json_with_type_first() -> None:
    """Messages go out as compact JSON objects that start with their type."""
    assert encode_message("pong", {"id": 1, "server_time_ns": 5}) == (
        '{"type":"pong","id":1,"server_time_ns":5}')
    assert encode_message("stats") == '{"type":"stats"}'


@pytest.mark.parametrize("value, sent", [
    (float("nan"), None),
    (float("inf"), None),
    (float("-inf"), None),
    (np.float32("nan"), None),
    (np.float64("-inf"), None),
    ([1.0, float("nan"), (float("inf"), 2)], [1.0, None, [None, 2]]),
    ({"snr_db": float("nan"), "gain_db": 40.0}, {"snr_db": None, "gain_db": 40.0}),
    (np.array([1.5, np.nan, -np.inf], dtype=np.float32), [1.5, None, None]),
])
def test_encode_message_sends_non_finite_numbers_as_null(value: Any, sent: Any) -> None:
    """NaN and infinities, also inside containers and numpy values, become null."""
    text = encode_message("status", {"value": value})

    assert json.loads(text) == {"type": "status", "value": sent}


def test_encode_message_type_cannot_be_overridden_by_the_body() -> None:
    """A "type" key in the body is dropped: the type is always the msg_type argument."""
    text = encode_message("status", {"stream": 0, "type": "hello", "gain_db": 40.0})

    assert json.loads(text) == {"type": "status", "stream": 0, "gain_db": 40.0}


def test_encode_message_converts_numpy_values_and_bytes() -> None:
    """numpy scalars and arrays become JSON numbers and arrays, bytes become hex strings."""
    body = {"gain": np.float32(40.5), "count": np.int64(3), "taps": np.arange(3, dtype=np.int16),
            "raw": b"\x01\xab"}

    assert json.loads(encode_message("status", body)) == {
        "type": "status", "gain": 40.5, "count": 3, "taps": [0, 1, 2], "raw": "01ab"}


def test_encode_message_rejects_values_json_cannot_carry() -> None:
    """A value with no JSON form raises ProtocolError naming the message type."""
    with pytest.raises(ProtocolError, match="status message cannot be sent as JSON"):
        encode_message("status", {"callback": object()})


@pytest.mark.parametrize("text, keyword", [
    ("[1, 2]", "object"),
    ('"ping"', "object"),
    ("42", "object"),
    ("null", "object"),
    ("{}", "type"),
    ('{"id": 1}', "type"),
    ('{"type": 3}', "type"),
    ('{"type": ""}', "type"),
    ('{"type": null}', "type"),
    ('{"type": "ping"', "JSON"),
    ("", "JSON"),
    ("ping", "JSON"),
    (b"\xff\xfe", "UTF-8"),
    ('{"type":"ping"}'.encode("utf-16"), "UTF-8"),
    (b'{"type":"ping","id":"\xed\xa0\x80"}', "UTF-8"),
])
def test_decode_message_rejects_anything_but_a_typed_json_object(
    text: str | bytes, keyword: str
) -> None:
    """Non-objects, a missing or empty type, bad JSON and non-UTF-8 bytes raise ProtocolError."""
    with pytest.raises(ProtocolError, match=keyword):
        decode_message(text)


def test_decode_message_accepts_utf8_bytes() -> None:
    """A message given as UTF-8 bytes decodes like the same text."""
    text = '{"type":"ping","id":"żółw"}'

    assert decode_message(text.encode("utf-8")) == decode_message(text) == {
        "type": "ping", "id": "żółw"}


def test_client_message_limit_is_the_documented_4096_bytes() -> None:
    """The inbound size limit matches the number docs/protocol.md promises clients."""
    docs = (REPO_ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")

    assert MAX_CLIENT_MESSAGE_BYTES == 4096
    assert "at most 4096 bytes" in docs


# Quantized encodings and compression


def random_spectrum(rng: np.random.Generator, bins: int = 2048) -> npt.NDArray[np.float32]:
    """A noisy spectrum with a few carriers, empty (-inf) and NaN bins."""
    power = (-100.0 + 4.0 * rng.standard_normal(bins)).astype(np.float32)
    power[rng.integers(0, bins, 5)] = rng.uniform(-60.0, 10.0, 5)
    power[rng.integers(0, bins, 3)] = -np.inf
    power[rng.integers(0, bins, 2)] = np.nan
    return power


def round_trip(power: npt.ArrayLike, encoding: int, compress: bool = False) -> tuple[bytes, Any]:
    data = encode_frame(power, center_freq_hz=100e6, span_hz=2e6, timestamp_ns=7,
                        sequence=3, encoding=encoding, compress=compress)
    return data, decode_frame(data)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_quantized_round_trips_stay_within_the_documented_bounds(seed: int,
                                                                 compress: bool) -> None:
    """float32 is exact, int16 within 0.005 dB, uint8 within step/2 of every finite bin;
    NaN and -inf read as the lowest level, compressed or not."""
    power = random_spectrum(np.random.default_rng(seed))
    finite = np.isfinite(power)

    _, exact = round_trip(power, ENCODING_FLOAT32, compress)
    _, cdb = round_trip(power, ENCODING_INT16, compress)
    data, levels = round_trip(power, ENCODING_UINT8, compress)

    assert exact.power_db.tobytes() == power.tobytes()
    assert np.abs(cdb.power_db[finite] - power[finite]).max() <= 0.005 + 1e-5
    assert (cdb.power_db[~finite] == np.float32(-327.68)).all()
    offset_db, step_db = struct.unpack_from("<ff", data, 56)
    assert offset_db == power[finite].min()
    assert step_db == pytest.approx((power[finite].max() - offset_db) / 255, rel=1e-6)
    assert np.abs(levels.power_db[finite] - power[finite]).max() <= step_db / 2 + 1e-5
    assert (levels.power_db[~finite] == np.float32(offset_db)).all()
    assert [f.encoding for f in (exact, cdb, levels)] == [0, 1, 2]


def test_uint8_of_finite_frames_matches_the_general_path() -> None:
    """A frame of finite values (quantized on a shorter path) gets exactly the levels, offset
    and step that the same values get beside a NaN (the general path), and each level is
    the nearest to its value."""
    rng = np.random.default_rng(7)
    for size in (1, 5, 1536, 65536):
        power = (-90 + 12 * rng.standard_normal(size)).astype(np.float32)
        finite_data = encode_frame(power, center_freq_hz=1e8, span_hz=2e6, timestamp_ns=0,
                                   sequence=0, encoding=ENCODING_UINT8)
        general_data = encode_frame(np.append(power, np.float32(np.nan)), center_freq_hz=1e8,
                                    span_hz=2e6, timestamp_ns=0, sequence=0,
                                    encoding=ENCODING_UINT8)

        offset_db, step_db = struct.unpack_from("<ff", finite_data, 56)
        assert struct.unpack_from("<ff", general_data, 56) == (offset_db, step_db)
        assert finite_data[64:] == general_data[64:-1]
        levels = np.frombuffer(finite_data[64:], dtype=np.uint8).astype(np.float64)
        assert np.abs(offset_db + step_db * levels - power).max() <= step_db / 2 + 1e-4


def test_int16_saturates_and_maps_infinities_to_its_ends() -> None:
    """Beyond +-327.67 dB int16 saturates; +inf is its top, -inf and NaN its bottom."""
    _, frame = round_trip([400.0, -400.0, np.inf, -np.inf, np.nan, 12.344], ENCODING_INT16)

    assert frame.power_db.tolist() == pytest.approx(
        [327.67, -327.68, 327.67, -327.68, -327.68, 12.34], abs=1e-4)


def test_uint8_of_a_flat_or_empty_frame_has_a_valid_scale() -> None:
    """A flat frame gets step 1 dB and decodes exactly; one without finite values reads
    -327.68 dB everywhere."""
    flat_data, flat = round_trip([-42.5] * 4, ENCODING_UINT8)
    _, empty = round_trip([-np.inf, np.nan], ENCODING_UINT8)

    assert struct.unpack_from("<ff", flat_data, 56) == (-42.5, 1.0)
    assert flat.power_db.tolist() == [-42.5] * 4
    assert empty.power_db.tolist() == pytest.approx([-327.68, -327.68])


def test_compression_flag_is_set_only_when_it_shrinks_the_frame() -> None:
    """A compressible spectrum is deflated (flag bit 0); white noise in float32 is not,
    and goes out uncompressed with the flag clear."""
    noise = np.random.default_rng(1).uniform(-200, 200, 64).astype(np.float32)

    smooth, _ = round_trip(np.full(2048, -90.0), ENCODING_UINT8, compress=True)
    noisy, decoded = round_trip(noise, ENCODING_FLOAT32, compress=True)

    assert header_field(smooth, 8, "H") == FLAG_COMPRESSED and len(smooth) < 64 + 2048
    assert header_field(noisy, 8, "H") == 0 and len(noisy) == 64 + 4 * 64
    assert decoded.power_db.tobytes() == noise.tobytes()


def test_a_decompression_bomb_is_refused_without_inflating_it() -> None:
    """A compressed payload that would inflate far beyond bin_count bins is refused."""
    small = compress_frame(encode_frame(np.full(256, -90.0), center_freq_hz=1.0, span_hz=1.0,
                                        timestamp_ns=0, sequence=0))
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = small[:HEADER_SIZE] + deflater.compress(bytes(64 * 2**20)) + deflater.flush()

    with pytest.raises(ProtocolError, match="decompression bomb"):
        decode_frame(bomb)


def test_missed_can_be_patched_into_a_compressed_quantized_frame() -> None:
    """with_missed patches the uncompressed header of any variant; the payload is intact."""
    data, original = round_trip(np.repeat(np.linspace(-120, -20, 64), 8), ENCODING_UINT8,
                                compress=True)

    patched = decode_frame(with_missed(data, 42))

    assert patched.missed == 42 and patched.flags == FLAG_COMPRESSED
    assert patched.power_db.tobytes() == original.power_db.tobytes()


def test_reencode_keeps_the_header_fields() -> None:
    """reencode_frame changes the payload format only."""
    source = with_missed(encode_frame(np.linspace(-120, -20, 64), center_freq_hz=5e6,
                                      span_hz=1e6, timestamp_ns=99, sequence=8, stream_id=3), 2)

    frame = decode_frame(reencode_frame(source, FrameFormat(ENCODING_INT16, True)))

    assert (frame.encoding, frame.sequence, frame.stream_id, frame.missed) == (1, 8, 3, 2)
    assert (frame.center_freq_hz, frame.span_hz, frame.timestamp_ns) == (5e6, 1e6, 99)


@pytest.mark.parametrize(("encoding", "compress"), [
    ("float16", False), (None, False), (2, False), ("uint8", "yes"), ("uint8", 1)])
def test_frame_format_parse_names_the_accepted_values(encoding: Any, compress: Any) -> None:
    """FrameFormat.parse refuses anything but the three names and a boolean."""
    with pytest.raises(ProtocolError, match="float32|true or false"):
        FrameFormat.parse(encoding, compress)
    assert FrameFormat.parse("uint8", "1") == FrameFormat(ENCODING_UINT8, True)


# -- a fixed uint8 step (step_db) ------------------------------------------------------------

def fixed_step_round_trip(power: npt.ArrayLike, step_db: float,
                          compress: bool = False) -> tuple[float, float, Any]:
    """Encode as uint8 with ``step_db``; the header's offset and step, and the decoded frame."""
    data = encode_frame(power, center_freq_hz=100e6, span_hz=2e6, timestamp_ns=7, sequence=3,
                        encoding=ENCODING_UINT8, compress=compress, step_db=step_db)
    offset_db, scale_step_db = struct.unpack_from("<ff", data, 56)
    return offset_db, scale_step_db, decode_frame(data)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("step_db", [0.01, 0.1, 0.25, 1.0, 3.0, 20.0])
@pytest.mark.parametrize("seed", range(3))
def test_fixed_step_round_trips_within_half_a_step_on_aligned_levels(
        seed: int, step_db: float, compress: bool) -> None:
    """With step_db the step is a multiple of it (itself when 256 levels suffice), the
    offset a multiple of the step at or below the minimum, and every finite bin decodes
    within step/2 (plus float32 rounding); NaN and -inf read as the offset."""
    power = random_spectrum(np.random.default_rng(seed))
    finite = np.isfinite(power)

    offset_db, step, frame = fixed_step_round_trip(power, step_db, compress)

    multiple = step / np.float32(step_db)
    assert multiple == pytest.approx(round(multiple), rel=1e-6) and round(multiple) >= 1
    value_range = float(power[finite].max()) - float(power[finite].min())
    if value_range <= 254 * step_db:
        assert step == np.float32(step_db)
    assert offset_db / step == pytest.approx(round(offset_db / step), abs=1e-3)
    assert offset_db - step / 2 <= power[finite].min()
    assert offset_db + 255 * step >= power[finite].max()
    error = np.abs(frame.power_db[finite].astype(np.float64) - power[finite]).max()
    assert error <= step / 2 + 1e-4
    assert (frame.power_db[~finite] == np.float32(offset_db)).all()


def test_fixed_step_keeps_the_same_levels_from_frame_to_frame() -> None:
    """Two frames of slightly different range share offset and step, so equal dB values
    get equal levels (what keeps a waterfall steady and deflate effective)."""
    first, second = [-100.3, -70.0, -20.6], [-100.9, -60.2, -30.0]

    offsets_steps = {fixed_step_round_trip(power, 1.0)[:2] for power in (first, second)}

    assert offsets_steps == {(-101.0, 1.0)}
    assert fixed_step_round_trip(first, 1.0)[2].power_db.tolist() == [-100.0, -70.0, -21.0]


def test_a_frame_wider_than_256_steps_widens_the_step() -> None:
    """A 0.1 dB step cannot cover 60 dB in 256 levels: the step becomes the smallest
    multiple of 0.1 dB that does, the offset stays aligned, the error within step/2."""
    power = np.linspace(-100.05, -40.0, 600, dtype=np.float32)

    offset_db, step, frame = fixed_step_round_trip(power, 0.1)

    assert step == pytest.approx(0.3, rel=1e-6)  # 255 * 0.2 = 51 dB < 60 dB <= 255 * 0.3
    assert offset_db + 255 * step >= power.max() and offset_db <= power.min() + step / 2
    assert offset_db / step == pytest.approx(round(offset_db / step), abs=1e-3)
    assert np.abs(frame.power_db - power).max() <= step / 2 + 1e-4


def test_fixed_step_of_a_flat_or_empty_frame() -> None:
    """A flat frame decodes within half a step; one without finite values reads one level."""
    offset_db, step, flat = fixed_step_round_trip([-42.5] * 4, 1.0)
    _, _, empty = fixed_step_round_trip([-np.inf, np.nan], 1.0)

    assert (offset_db, step) == (-43.0, 1.0)
    assert flat.power_db.tolist() == [-43.0] * 4  # level 0.5 rounds half to even: 0
    assert len(set(empty.power_db.tolist())) == 1


def test_fixed_step_is_smaller_once_deflated_than_the_automatic_step() -> None:
    """The point of a coarser step: the 2048-bin vector spectrum deflates smaller."""
    power = random_spectrum(np.random.default_rng(7))
    sizes = {step_db: len(encode_frame(power, center_freq_hz=1.0, span_hz=1.0, timestamp_ns=0,
                                       sequence=0, encoding=ENCODING_UINT8, compress=True,
                                       step_db=step_db))
             for step_db in (0.0, 1.0, 3.0)}

    assert sizes[3.0] < sizes[1.0] < sizes[0.0]


def test_frame_format_step_db_applies_to_uint8_only() -> None:
    """step_db is kept for uint8 and normalized to 0 otherwise, so equal formats are equal
    (the hub caches one variant per format); the name never carries the step."""
    assert FrameFormat(ENCODING_INT16, step_db=1.0) == FrameFormat(ENCODING_INT16)
    assert hash(FrameFormat(ENCODING_FLOAT32, True, 2.0)) == hash(FrameFormat(ENCODING_FLOAT32, True))
    assert FrameFormat(ENCODING_UINT8, step_db=1) == FrameFormat(ENCODING_UINT8, step_db=1.0)
    assert FrameFormat(ENCODING_UINT8, step_db=1.0) != FrameFormat(ENCODING_UINT8)
    assert FrameFormat(ENCODING_UINT8, True, 1.0).name == "uint8+deflate"
    assert FrameFormat.parse("uint8", "1", "0.5") == FrameFormat(ENCODING_UINT8, True, 0.5)
    assert FrameFormat.parse("uint8", False, 3) == FrameFormat(ENCODING_UINT8, False, 3.0)
    assert FrameFormat.parse("int16", False, "2").step_db == 0.0


@pytest.mark.parametrize("step_db", [-1, 0.001, 20.5, 1e400, float("nan"), float("inf"),
                                     "abc", "", True, None, [1]])
def test_frame_format_refuses_a_step_out_of_range_naming_the_range(step_db: Any) -> None:
    """A step that is not 0 or 0.01..20 dB is refused with the accepted range."""
    with pytest.raises(ProtocolError, match=r"step_db must be 0 \(automatic\) or a number of "
                                            r"dB from 0.01 to 20"):
        FrameFormat.parse("uint8", False, step_db)
    with pytest.raises(ValueError, match="from 0.01 to 20"):
        encode_frame([-1.0], center_freq_hz=1.0, span_hz=1.0, timestamp_ns=0, sequence=0,
                     encoding=ENCODING_UINT8, step_db=step_db)


def test_reencode_uses_the_format_step() -> None:
    """reencode_frame encodes uint8 with the format's step."""
    source = encode_frame(np.linspace(-120.2, -20.0, 64), center_freq_hz=5e6, span_hz=1e6,
                          timestamp_ns=99, sequence=8)

    data = reencode_frame(source, FrameFormat(ENCODING_UINT8, True, 2.0))

    assert struct.unpack_from("<ff", data, 56) == (-122.0, 2.0)
    assert decode_frame(data).sequence == 8


@pytest.mark.parametrize(("asked", "used"), [
    ("1", 1.0), (0.9, 1.0), (0.013, 0.05), (2.4, 2.5), (6.9, 6.0), (19.0, 20.0), (0, 0.0)])
def test_a_clients_step_is_rounded_to_the_nearest_offered_one(asked: object,
                                                              used: float) -> None:
    """A client's step_db becomes the nearest of CLIENT_STEPS_DB, so however many steps
    clients ask for, a frame has a bounded number of variants; the sink's own setting is
    used as given."""
    assert FrameFormat.parse("uint8", True, asked).step_db == used
    assert used == 0.0 or used in CLIENT_STEPS_DB
    assert FrameFormat(ENCODING_UINT8, True, 0.9).step_db == 0.9


# Detectors and a second trace


@pytest.mark.parametrize("encoding", [ENCODING_FLOAT32, ENCODING_INT16, ENCODING_UINT8])
@pytest.mark.parametrize("compress", [False, True])
def test_a_second_trace_round_trips_in_every_format(encoding: int, compress: bool) -> None:
    """Both traces come back within the encoding's bound; uint8 takes one range over both."""
    peak = np.repeat(np.linspace(-90.0, -10.0, 64, dtype=np.float32), 8)
    average = np.full_like(peak, -110.0)
    frame = encode_frame(peak, **FIELDS, encoding=encoding, compress=compress,
                         detector="peak", second_power_db=average, second_detector="average")
    decoded = decode_frame(frame)

    assert decoded.flags & FLAG_SECOND_TRACE
    assert (decoded.detector, decoded.second_detector) == ("peak", "average")
    assert decoded.second_power_db is not None
    bound = {ENCODING_FLOAT32: 0.0, ENCODING_INT16: 0.005,
             ENCODING_UINT8: header_field(frame, 60, "f") / 2 + 1e-4}[encoding]
    np.testing.assert_allclose(decoded.power_db, peak, atol=bound)
    np.testing.assert_allclose(decoded.second_power_db, average, atol=bound)
    if encoding == ENCODING_UINT8:
        assert header_field(frame, 56, "f") == -110.0  # the range spans both traces


def test_reencoding_keeps_the_second_trace_only_for_a_format_that_asks() -> None:
    frame = encode_frame([-50.0, -20.0], **FIELDS, detector="peak",
                         second_power_db=[-60.0, -30.0], second_detector="average")

    alone = decode_frame(reencode_frame(frame, FrameFormat(ENCODING_INT16)))
    both = decode_frame(reencode_frame(frame, FrameFormat(ENCODING_INT16, second_trace=True)))

    assert (alone.flags, alone.detector, alone.second_power_db) == (0, "peak", None)
    assert header_field(reencode_frame(frame, FrameFormat()), 14, "B") == 0
    assert both.second_power_db is not None and both.second_power_db.tolist() == [-60.0, -30.0]
    assert both.second_detector == "average"


@pytest.mark.parametrize(("arguments", "message"), [
    (dict(second_power_db=[-1.0, -2.0, -3.0]), "second trace has shape"),
    (dict(second_detector="average"), "second_detector without a second trace"),
    (dict(detector="max-hold"), "unknown detector 'max-hold'"),
    (dict(second_power_db=[-1.0, -2.0], second_detector="rms"), "unknown detector 'rms'"),
])
def test_bad_detectors_and_traces_are_refused_by_the_encoder(arguments: dict[str, Any],
                                                             message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        encode_frame([-1.0, -2.0], **FIELDS, **arguments)


def test_an_unknown_detector_code_reads_as_not_stated() -> None:
    """Bytes 11 and 14 were reserved in the first v1 readers: a later code is not an error."""
    frame = bytearray(encode_frame([-1.0, -2.0], **FIELDS, detector="peak"))
    frame[11] = 200
    assert decode_frame(bytes(frame)).detector == ""


def test_second_trace_is_parsed_from_set_encoding_and_the_url() -> None:
    assert FrameFormat.parse("uint8", True, 0, True).second_trace
    assert FrameFormat.parse("float32", "0", "0", "1").second_trace
    assert FrameFormat.parse("float32").name == "float32"
    assert FrameFormat.parse("int16", True, 0, True).name == "int16+deflate+second_trace"
    with pytest.raises(ProtocolError, match="second_trace must be true or false"):
        FrameFormat.parse("float32", False, 0, "yes")


def old_v1_reader(data: bytes) -> list[float]:
    """The first published v1 reader (docs/protocol.md before detectors): bytes 11 and 14
    reserved and ignored, every flag but bit 0 refused; float32 and uncompressed only."""
    header = struct.Struct("<4sBBHHBxHxxQIIqddff")
    (magic, version, msg_type, header_len, flags, encoding, _stream, _sequence, _missed,
     bin_count, *_rest) = header.unpack_from(data)
    if (magic, version, msg_type) != (b"ARGS", 1, 1) or flags & ~1 or encoding != 0:
        raise ValueError(f"refused: flags {flags:#x}, encoding {encoding}")
    payload = data[header_len:]
    if len(payload) != 4 * bin_count:
        raise ValueError("payload length does not match bin_count")
    return list(struct.unpack(f"<{bin_count}f", payload))


def test_an_old_v1_reader_still_reads_what_a_default_client_gets() -> None:
    """A stream with a detector and a second trace: the frame a client that asked for
    nothing gets decodes with the first v1 reader to the first trace; the two-trace frame,
    which only a client that asked gets, is refused by it rather than misread."""
    peak, average = [-40.0, -10.5, -70.25], [-60.0, -30.0, -80.0]
    published = encode_frame(peak, **FIELDS, detector="peak", second_power_db=average,
                             second_detector="average")
    default = reencode_frame(published, FrameFormat())

    assert old_v1_reader(default) == peak
    assert old_v1_reader(encode_frame(peak, **FIELDS, detector="average")) == peak
    with pytest.raises(ValueError, match="refused: flags 0x2"):
        old_v1_reader(published)
