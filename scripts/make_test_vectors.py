# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the wire protocol v1 test vectors in tests/vectors/, byte for byte the same every run.

The vectors are the contract between every implementation of the protocol (the Python
codec in gr_argos/protocol.py, the JavaScript client, any third-party client): each valid
``.bin`` file is one frame made by the Python encoder, ``vectors.json`` lists what a
decoder must read from it, and each ``invalid/*.bin`` file is a frame a v1 decoder must
reject. tests/test_protocol.py fails if the checked-in files differ from what this script
makes, so a change to the encoder's bytes cannot go unnoticed.

Usage::

    python scripts/make_test_vectors.py            # (re)write tests/vectors/
    python scripts/make_test_vectors.py --check    # exit 1 if tests/vectors/ is stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parent.parent
VECTORS_DIR = REPO_ROOT / "tests" / "vectors"
MANIFEST_NAME = "vectors.json"

# Run from a checkout without installing the package.
sys.path.insert(0, str(REPO_ROOT))

from gr_argos.protocol import (  # noqa: E402
    ENCODING_FLOAT32,
    ENCODING_INT16,
    ENCODING_UINT8,
    FLAG_COMPRESSED,
    FLAG_SECOND_TRACE,
    HEADER_SIZE,
    compress_frame,
    decode_frame,
    encode_frame,
    with_missed,
)

# JavaScript numbers are exact only up to 2**53 - 1; the manifest repeats 64-bit fields as
# decimal strings so that a JS test can compare them as BigInt.
_U64_FIELDS = ("sequence", "timestamp_ns")

# The realistic vector: a noise floor with a deterministic ripple and one carrier, in steps
# of 1/8 dB between -110 and -20 dB, so every value is exact in float32 and any language
# computes the same bits with integer arithmetic and one multiply.
SPECTRUM_2048_FORMULA = (
    "max(floor_db + ((7*i*i + 3*i) % ripple_modulus) * ripple_step_db, "
    "peak_db - peak_slope_db_per_bin * abs(i - peak_bin)) for i in 0..bin_count-1"
)
SPECTRUM_2048_PARAMETERS: dict[str, Any] = {
    "bin_count": 2048,
    "floor_db": -110.0,
    "ripple_modulus": 61,
    "ripple_step_db": 0.125,
    "peak_db": -20.0,
    "peak_bin": 1536,
    "peak_slope_db_per_bin": 0.75,
}

# Byte offset and struct format of the header fields the invalid vectors corrupt, written
# out here independently of gr_argos.protocol so the two can disagree only visibly.
_FIELD_LAYOUT = {
    "magic": (0, "4s"),
    "version": (4, "B"),
    "msg_type": (5, "B"),
    "header_len": (6, "H"),
    "flags": (8, "H"),
    "encoding": (10, "B"),
    "detector": (11, "B"),
    "second_detector": (14, "B"),
    "bin_count": (28, "I"),
    "scale_offset_db": (56, "f"),
    "scale_step_db": (60, "f"),
}

# The documented error bound of each encoding, in dB (uint8: half its step, per frame).
_INT16_ERROR_DB = 0.005

# Filled by the future-extension vector's extra header bytes, which a v1 reader must skip.
_EXTENSION_BYTES = bytes(range(0xA0, 0xC0))


def spectrum_2048() -> npt.NDArray[np.float32]:
    """The realistic 2048-bin spectrum defined by SPECTRUM_2048_FORMULA, as float32 dB."""
    p = SPECTRUM_2048_PARAMETERS
    i = np.arange(p["bin_count"], dtype=np.int64)
    floor = p["floor_db"] + ((7 * i * i + 3 * i) % p["ripple_modulus"]) * p["ripple_step_db"]
    carrier = p["peak_db"] - p["peak_slope_db_per_bin"] * np.abs(i - p["peak_bin"])
    return np.maximum(floor, carrier).astype(np.float32)


def _valid_specs() -> list[dict[str, Any]]:
    """The valid vectors: file name, what it covers, encoder arguments and patches."""
    return [
        {
            "file": "basic.bin",
            "description": "The simplest frame: 4 bins, stream 0, nothing missed.",
            "power_db": [-100.0, -50.5, -3.25, 0.0],
            "frame": dict(center_freq_hz=100e6, span_hz=2e6,
                          timestamp_ns=1_700_000_000_000_000_000, sequence=1),
        },
        {
            "file": "odd_bin_count.bin",
            "description": "5 bins: the centre bin is index bin_count//2 = 2.",
            "power_db": [-90.0, -85.5, -40.0, -85.5, -90.0],
            "frame": dict(center_freq_hz=1e6, span_hz=5e3,
                          timestamp_ns=1_700_000_000_016_666_667, sequence=2),
        },
        {
            "file": "missed.bin",
            "description": "A client that lost 7 frames: missed patched in with with_missed.",
            "power_db": [-97.5, -96.25, -80.0, -60.5, -61.75, -95.0, -98.125, -99.0],
            "frame": dict(center_freq_hz=433.92e6, span_hz=1e6,
                          timestamp_ns=1_700_000_000_033_333_333, sequence=1000),
            "missed": 7,
        },
        {
            "file": "negative_db.bin",
            "description": "16 bins from -200 dB to +30.25 dB, stream 1, a fractional "
                           "centre frequency.",
            "power_db": [-200.0, -174.25, -150.5, -120.125, -100.0, -90.75, -80.5, -60.0,
                         -40.25, -20.5, -10.0, -3.0, -0.5, 0.0, 3.5, 30.25],
            "frame": dict(center_freq_hz=433_920_000.5, span_hz=250e3,
                          timestamp_ns=1_700_000_001_000_000_000, sequence=77, stream_id=1),
        },
        {
            "file": "extremes.bin",
            "description": "Every integer field at its maximum: sequence 2**64-1, missed "
                           "2**32-1, stream_id 65535, timestamp_ns 2**63-1.",
            "power_db": [-1.5, -2.5, -3.5, -4.5],
            "frame": dict(center_freq_hz=5.8e9, span_hz=56e6, timestamp_ns=2**63 - 1,
                          sequence=2**64 - 1, stream_id=65535),
            "missed": 2**32 - 1,
        },
        {
            "file": "header_extension.bin",
            "description": "header_len 96: 32 bytes of a future header extension that a v1 "
                           "reader must skip; the payload starts at byte 96.",
            "power_db": [-70.0, -65.5, -71.25, -72.0],
            "frame": dict(center_freq_hz=1.09e9, span_hz=2e6,
                          timestamp_ns=1_700_000_002_000_000_000, sequence=5),
            "extension": _EXTENSION_BYTES,
        },
        {
            "file": "spectrum_2048.bin",
            "description": "A realistic 2048-bin spectrum (noise floor and one carrier at "
                           "bin 1536), 1 kHz per bin; payload given by a formula.",
            "power_db": spectrum_2048(),
            "frame": dict(center_freq_hz=100e6, span_hz=2.048e6,
                          timestamp_ns=1_700_000_000_500_000_000, sequence=123_456),
            "formula": True,
        },
        {
            "file": "int16.bin",
            "description": "Encoding 1 (int16, hundredths of a dB) from -100, -50.5, -3.25, 0, "
                           "12.345, -0.004, 400, -400, -inf, NaN, +inf dB: values beyond "
                           "+-327.67 dB saturate, NaN and -inf become -327.68 dB, +inf 327.67.",
            "power_db": np.array([-100.0, -50.5, -3.25, 0.0, 12.345, -0.004, 400.0, -400.0,
                                  -np.inf, np.nan, np.inf], dtype=np.float32),
            "frame": dict(center_freq_hz=100e6, span_hz=2e6, encoding=ENCODING_INT16,
                          timestamp_ns=1_700_000_003_000_000_000, sequence=10),
        },
        {
            "file": "uint8.bin",
            "description": "Encoding 2 (uint8) from -inf, -100, -73.5, NaN, -20, -0.1, +inf dB: "
                           "the range is the finite min..max (-100..-0.1 dB), NaN and -inf "
                           "become level 0, +inf level 255.",
            "power_db": np.array([-np.inf, -100.0, -73.5, np.nan, -20.0, -0.1, np.inf],
                                 dtype=np.float32),
            "frame": dict(center_freq_hz=100e6, span_hz=2e6, encoding=ENCODING_UINT8,
                          timestamp_ns=1_700_000_004_000_000_000, sequence=11),
        },
        {
            "file": "uint8_flat.bin",
            "description": "Encoding 2 (uint8) of a flat spectrum (-42.5 dB everywhere): "
                           "offset -42.5 dB, step 1 dB, every level 0.",
            "power_db": [-42.5] * 6,
            "frame": dict(center_freq_hz=100e6, span_hz=2e6, encoding=ENCODING_UINT8,
                          timestamp_ns=1_700_000_005_000_000_000, sequence=12),
        },
        {
            "file": "float32_deflate.bin",
            "description": "The 2048-bin spectrum as float32 with a deflated payload "
                           "(flags bit 0); decodes exactly to the formula.",
            "power_db": spectrum_2048(),
            "frame": dict(center_freq_hz=100e6, span_hz=2.048e6, compress=True,
                          timestamp_ns=1_700_000_000_500_000_000, sequence=123_456),
            "formula": True,
        },
        {
            "file": "int16_deflate.bin",
            "description": "The 2048-bin spectrum as int16 with a deflated payload; "
                           "within 0.005 dB of the formula.",
            "power_db": spectrum_2048(),
            "frame": dict(center_freq_hz=100e6, span_hz=2.048e6, compress=True,
                          encoding=ENCODING_INT16, timestamp_ns=1_700_000_000_500_000_000,
                          sequence=123_456),
            "formula": True,
        },
        {
            "file": "uint8_deflate_missed.bin",
            "description": "The 2048-bin spectrum as uint8 with a deflated payload, missed "
                           "patched to 3 in the (uncompressed) header; within step/2 of the "
                           "formula.",
            "power_db": spectrum_2048(),
            "frame": dict(center_freq_hz=100e6, span_hz=2.048e6, compress=True,
                          encoding=ENCODING_UINT8, timestamp_ns=1_700_000_000_500_000_000,
                          sequence=123_456),
            "missed": 3,
            "formula": True,
        },
        {
            "file": "uint8_step.bin",
            "description": "Encoding 2 (uint8) with a fixed 1 dB step (step_db=1) from -100.3, "
                           "-99.6, -73.5, NaN, -20.2, -0.1 dB: offset -101 dB (a multiple of "
                           "the step at or below the minimum), step 1 dB, NaN level 0.",
            "power_db": np.array([-100.3, -99.6, -73.5, np.nan, -20.2, -0.1],
                                 dtype=np.float32),
            "frame": dict(center_freq_hz=100e6, span_hz=2e6, encoding=ENCODING_UINT8,
                          step_db=1.0, timestamp_ns=1_700_000_006_000_000_000, sequence=13),
        },
        {
            "file": "uint8_step_widened.bin",
            "description": "Encoding 2 (uint8) asked for a 0.5 dB step (step_db=0.5) from "
                           "-200, -120.25, -3, 30.25 dB: 230.25 dB need more than 256 levels "
                           "of 0.5 dB, so the step widens to 1 dB (the smallest multiple of "
                           "0.5 that covers the frame), offset -200 dB.",
            "power_db": [-200.0, -120.25, -3.0, 30.25],
            "frame": dict(center_freq_hz=100e6, span_hz=2e6, encoding=ENCODING_UINT8,
                          step_db=0.5, timestamp_ns=1_700_000_007_000_000_000, sequence=14),
        },
        {
            "file": "uint8_step_deflate.bin",
            "description": "The 2048-bin spectrum as uint8 with a fixed 1 dB step "
                           "(step_db=1) and a deflated payload; within step/2 = 0.5 dB of the "
                           "formula.",
            "power_db": spectrum_2048(),
            "frame": dict(center_freq_hz=100e6, span_hz=2.048e6, compress=True,
                          encoding=ENCODING_UINT8, step_db=1.0,
                          timestamp_ns=1_700_000_000_500_000_000, sequence=123_456),
            "formula": True,
        },
        {
            "file": "detector_peak.bin",
            "description": "The basic frame from a peak detector: detector 2 (byte 11). A "
                           "reader that does not look at the detector reads it as basic.bin.",
            "power_db": [-100.0, -50.5, -3.25, 0.0],
            "frame": dict(center_freq_hz=100e6, span_hz=2e6, detector="peak",
                          timestamp_ns=1_700_000_000_000_000_000, sequence=1),
        },
        {
            "file": "second_trace.bin",
            "description": "Two traces (flags bit 1): the peak of each bin over the frame "
                           "period, then the average (second_detector 3, byte 14), 4 float32 "
                           "bins each: 32 bytes of payload.",
            "power_db": [-90.0, -40.5, -12.25, -60.0],
            "second_power_db": [-101.0, -97.5, -30.75, -99.125],
            "frame": dict(center_freq_hz=433.92e6, span_hz=8e6, detector="peak",
                          second_detector="average",
                          timestamp_ns=1_700_000_008_000_000_000, sequence=15),
        },
        {
            "file": "second_trace_uint8_deflate.bin",
            "description": "Two traces of 64 bins as uint8 with a 1 dB step, deflated: one "
                           "scale (offset -110 dB, step 1 dB) covers both traces, the payload "
                           "inflates to 128 bytes (peak then average).",
            "power_db": [-80.0 + (i % 8) * 4.0 for i in range(64)],
            "second_power_db": [-110.0 + (i % 4) * 2.0 for i in range(64)],
            "frame": dict(center_freq_hz=2.44e9, span_hz=20e6, encoding=ENCODING_UINT8,
                          step_db=1.0, compress=True, detector="peak",
                          second_detector="average", stream_id=2,
                          timestamp_ns=1_700_000_009_000_000_000, sequence=16),
        },
    ]


def _encode_valid(spec: dict[str, Any]) -> bytes:
    """Encode a valid vector with the real encoder, then apply its per-client patches."""
    frame = encode_frame(spec["power_db"], second_power_db=spec.get("second_power_db"),
                         **spec["frame"])
    if spec.get("missed"):
        frame = with_missed(frame, spec["missed"])
    extension = spec.get("extension", b"")
    if extension:
        # The v1 encoder has no extension to write; splice one in as a later version would.
        header = _patched(frame[:HEADER_SIZE], "header_len", HEADER_SIZE + len(extension))
        frame = header + extension + frame[HEADER_SIZE:]
    return frame


def _patched(frame: bytes, field: str, value: Any) -> bytes:
    offset, fmt = _FIELD_LAYOUT[field]
    patched = bytearray(frame)
    struct.pack_into("<" + fmt, patched, offset, value)
    return bytes(patched)


def _invalid_specs(basic: bytes) -> list[dict[str, Any]]:
    """The invalid vectors, each the basic 4-bin frame broken in one way."""
    return [
        {"file": "invalid/empty.bin", "data": b"",
         "reason": "0 bytes: no header at all.", "error_keyword": "truncated"},
        {"file": "invalid/truncated_header.bin", "data": basic[:40],
         "reason": "Only the first 40 of the 64 header bytes.", "error_keyword": "truncated"},
        {"file": "invalid/truncated_payload.bin", "data": basic[:-4],
         "reason": "The last bin's 4 bytes are missing (payload 12 bytes, 4 bins need 16).",
         "error_keyword": "truncated"},
        {"file": "invalid/wrong_magic.bin", "data": _patched(basic, "magic", b"ARGX"),
         "reason": 'Magic is "ARGX" instead of "ARGS".', "error_keyword": "magic"},
        {"file": "invalid/wrong_version.bin", "data": _patched(basic, "version", 2),
         "reason": "Protocol version 2.", "error_keyword": "version"},
        {"file": "invalid/unknown_msg_type.bin", "data": _patched(basic, "msg_type", 2),
         "reason": "msg_type 2 (only 1 = spectrum frame exists).", "error_keyword": "type"},
        {"file": "invalid/unknown_encoding.bin", "data": _patched(basic, "encoding", 1),
         "reason": "Encoding 1 (int16) with a float32-sized payload: 16 bytes where 4 int16 "
                   "bins need 8.",
         "error_keyword": "encoding"},
        {"file": "invalid/unknown_flag.bin", "data": _patched(basic, "flags", 0x0001),
         "reason": "Flag bit 0 (compressed) set on a payload that is not a raw deflate stream.",
         "error_keyword": "flags"},
        {"file": "invalid/unknown_encoding_3.bin", "data": _patched(basic, "encoding", 3),
         "reason": "Encoding 3 (not defined).", "error_keyword": "encoding"},
        {"file": "invalid/unknown_flag_bit1.bin", "data": _patched(basic, "flags", 0x0002),
         "reason": "Flag bit 1 (a second trace) set, but the payload holds one trace: 16 "
                   "bytes where 2 x 4 float32 bins need 32.", "error_keyword": "2 traces"},
        {"file": "invalid/unknown_flag_bit2.bin", "data": _patched(basic, "flags", 0x0004),
         "reason": "Flag bit 2 (not defined) is set.", "error_keyword": "flags"},
        {"file": "invalid/payload_too_long.bin", "data": basic + basic[-4:],
         "reason": "bin_count says 4 but the payload holds 5 bins (20 bytes).",
         "error_keyword": "payload"},
        {"file": "invalid/bin_count_too_large.bin", "data": _patched(basic, "bin_count", 5),
         "reason": "bin_count says 5 but the payload holds 4 bins (16 bytes).",
         "error_keyword": "payload"},
        {"file": "invalid/zero_bins.bin",
         "data": _patched(basic[:HEADER_SIZE], "bin_count", 0),
         "reason": "bin_count 0 and no payload: a frame carries at least one bin.",
         "error_keyword": "no bins"},
        {"file": "invalid/header_len_too_small.bin",
         "data": _patched(basic, "header_len", 32),
         "reason": "header_len 32, smaller than the 64-byte v1 header.",
         "error_keyword": "header length"},
        {"file": "invalid/header_len_beyond_frame.bin",
         "data": _patched(basic, "header_len", 200),
         "reason": "header_len 200 in an 80-byte frame.", "error_keyword": "header length"},
        *_invalid_compressed_specs(),
        *_invalid_uint8_specs(),
    ]


def _compressible(bin_count: int) -> bytes:
    """An uncompressed float32 frame of ``bin_count`` bins at -100 dB (deflates well)."""
    return encode_frame(np.full(bin_count, -100.0, dtype=np.float32), center_freq_hz=100e6,
                        span_hz=2e6, timestamp_ns=1_700_000_000_000_000_000, sequence=1)


def _invalid_compressed_specs() -> list[dict[str, Any]]:
    """Compressed frames a decoder must refuse: bad deflate data and wrong inflated sizes."""
    compressed = compress_frame(_compressible(64))
    header, stream = compressed[:HEADER_SIZE], compressed[HEADER_SIZE:]
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw deflate, as the encoder
    bomb = deflater.compress(bytes(2**20)) + deflater.flush()
    return [
        {"file": "invalid/deflate_corrupt.bin",
         "data": header + b"\xff" + stream[1:],
         "reason": "Flag bit 0 set, but the payload's first deflate block has the reserved "
                   "block type 3.", "error_keyword": "deflate"},
        {"file": "invalid/deflate_truncated.bin", "data": header + stream[:-3],
         "reason": "Flag bit 0 set, but the deflate stream lacks its last 3 bytes.",
         "error_keyword": "deflate"},
        {"file": "invalid/deflate_size_mismatch.bin",
         "data": _patched(header, "bin_count", 65) + stream,
         "reason": "bin_count 65 but the deflate stream inflates to 64 float32 bins (256 "
                   "bytes, 260 needed).", "error_keyword": "decompressed"},
        {"file": "invalid/deflate_bomb.bin",
         "data": _patched(_patched(header, "bin_count", 4), "flags", 1) + bomb,
         "reason": f"A {len(bomb)}-byte deflate stream that inflates to 1 MiB for 4 float32 "
                   "bins (16 bytes): a decoder must stop inflating at 16 bytes.",
         "error_keyword": "bomb"},
    ]


def _invalid_uint8_specs() -> list[dict[str, Any]]:
    """uint8 frames whose scale makes no sense."""
    frame = encode_frame([-100.0, -50.0, -25.0, 0.0], center_freq_hz=100e6, span_hz=2e6,
                         timestamp_ns=1_700_000_000_000_000_000, sequence=1,
                         encoding=ENCODING_UINT8)
    return [
        {"file": "invalid/uint8_zero_step.bin",
         "data": _patched(frame, "scale_step_db", 0.0),
         "reason": "uint8 with scale_step_db 0.", "error_keyword": "scale"},
        {"file": "invalid/uint8_negative_step.bin",
         "data": _patched(frame, "scale_step_db", -1.0),
         "reason": "uint8 with scale_step_db -1.", "error_keyword": "scale"},
        {"file": "invalid/uint8_nan_offset.bin",
         "data": _patched(frame, "scale_offset_db", float("nan")),
         "reason": "uint8 with scale_offset_db NaN.", "error_keyword": "scale"},
        {"file": "invalid/uint8_infinite_step.bin",
         "data": _patched(frame, "scale_step_db", float("inf")),
         "reason": "uint8 with scale_step_db +inf.", "error_keyword": "scale"},
    ]


def _bin_freqs_hz(center_freq_hz: float, span_hz: float, bin_count: int) -> list[float]:
    """Bin centre frequencies as docs/protocol.md defines them (FFT-shifted, DC in the middle)."""
    bin_width_hz = span_hz / bin_count
    return [center_freq_hz + (i - bin_count // 2) * bin_width_hz for i in range(bin_count)]


def _header_entry(spec: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The header fields a decoder must read, taken from what the vector was made from
    (flags, whether deflate shrank the payload, and the uint8 scale from the bytes)."""
    flags, encoding, detector = struct.unpack_from("<HBB", data, 8)
    (second_detector,) = struct.unpack_from("<B", data, 14)
    scale_offset_db, scale_step_db = struct.unpack_from("<ff", data, 56)
    if encoding != spec["frame"].get("encoding", ENCODING_FLOAT32):
        raise ValueError(f"{spec['file']}: encoded with encoding {encoding}")
    if bool(flags & FLAG_COMPRESSED) != spec["frame"].get("compress", False):
        raise ValueError(f"{spec['file']}: compression flag {flags} is not what was asked")
    if bool(flags & FLAG_SECOND_TRACE) != ("second_power_db" in spec):
        raise ValueError(f"{spec['file']}: second-trace flag {flags} is not what was asked")
    frame = spec["frame"]
    header: dict[str, Any] = {
        "magic": "ARGS",
        "version": 1,
        "msg_type": 1,
        "header_len": HEADER_SIZE + len(spec.get("extension", b"")),
        "flags": flags,
        "encoding": encoding,
        "detector": detector,
        "stream_id": frame.get("stream_id", 0),
        "second_detector": second_detector,
        "sequence": frame["sequence"],
        "missed": spec.get("missed", 0),
        "bin_count": len(spec["power_db"]),
        "timestamp_ns": frame["timestamp_ns"],
        "center_freq_hz": frame["center_freq_hz"],
        "span_hz": frame["span_hz"],
        "scale_offset_db": scale_offset_db,
        "scale_step_db": scale_step_db,
    }
    for field in _U64_FIELDS:
        header[field + "_str"] = str(header[field])
    return header


def _payload_entry(spec: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The payload a decoder must read: the values, or the formula and a digest for 2048 bins.

    A quantized or compressed vector lists the values the decoder must produce (exactly,
    as float32), not the spectrum it was made from; with a formula, it gives the error
    bound against the formula and the SHA-256 of the decoded float32 values instead.
    """
    frame = spec["frame"]
    if frame.get("encoding", ENCODING_FLOAT32) != ENCODING_FLOAT32 or frame.get("compress"):
        return _decoded_payload_entry(spec, data)
    second = {}
    if "second_power_db" in spec:
        second = {"second_values": [float(v) for v in spec["second_power_db"]]}
    values = np.asarray(spec["power_db"], dtype=np.float64)
    if not np.array_equal(values.astype(np.float32), values):
        raise ValueError(f"{spec['file']}: payload values must be exact float32 values")
    frame = spec["frame"]
    freqs_hz = _bin_freqs_hz(frame["center_freq_hz"], frame["span_hz"], len(values))
    if not spec.get("formula"):
        return {"values": values.tolist(), **second, "bin_freqs_hz": freqs_hz}
    argmax = int(np.argmax(values))
    return {
        "formula": SPECTRUM_2048_FORMULA,
        "parameters": SPECTRUM_2048_PARAMETERS,
        "sha256": hashlib.sha256(values.astype("<f4").tobytes()).hexdigest(),
        "min": float(values.min()),
        "max": float(values.max()),
        "argmin": int(np.argmin(values)),
        "argmax": argmax,
        "argmax_freq_hz": freqs_hz[argmax],
        "samples": [[i, float(values[i])] for i in (0, 1, 1023, 1024, 1535, 1536, 2047)],
    }


def _decoded_payload_entry(spec: dict[str, Any], data: bytes) -> dict[str, Any]:
    decoded = decode_frame(data)
    frame = spec["frame"]
    values = decoded.power_db
    if not spec.get("formula"):
        second = {}
        if decoded.second_power_db is not None:
            second = {"second_values": decoded.second_power_db.astype(np.float64).tolist()}
        return {
            "values": values.astype(np.float64).tolist(),
            **second,
            "bin_freqs_hz": _bin_freqs_hz(frame["center_freq_hz"], frame["span_hz"],
                                          len(values)),
        }
    encoding = frame.get("encoding", ENCODING_FLOAT32)
    max_error_db = {ENCODING_FLOAT32: 0.0, ENCODING_INT16: _INT16_ERROR_DB,
                    ENCODING_UINT8: struct.unpack_from("<f", data, 60)[0] / 2}[encoding]
    error_db = float(np.max(np.abs(values.astype(np.float64) - spectrum_2048())))
    if error_db > max_error_db * (1 + 1e-6):
        raise ValueError(f"{spec['file']}: error {error_db} dB beyond {max_error_db} dB")
    return {
        "formula": SPECTRUM_2048_FORMULA,
        "parameters": SPECTRUM_2048_PARAMETERS,
        "max_error_db": max_error_db,
        "decoded_sha256": hashlib.sha256(values.astype("<f4").tobytes()).hexdigest(),
        "samples": [[i, float(values[i])] for i in (0, 1, 1023, 1024, 1535, 1536, 2047)],
    }


def build() -> dict[str, bytes]:
    """Every vector file, keyed by its path relative to tests/vectors/, manifest included."""
    files: dict[str, bytes] = {}
    valid_entries = []
    for spec in _valid_specs():
        frame = _encode_valid(spec)
        files[spec["file"]] = frame
        valid_entries.append({
            "file": spec["file"],
            "description": spec["description"],
            "size_bytes": len(frame),
            "header": _header_entry(spec, frame),
            "payload": _payload_entry(spec, frame),
        })
    invalid_entries = []
    for spec in _invalid_specs(files["basic.bin"]):
        files[spec["file"]] = spec["data"]
        invalid_entries.append({
            "file": spec["file"],
            "reason": spec["reason"],
            "error_keyword": spec["error_keyword"],
        })
    manifest = {
        "protocol_version": 1,
        "generator": "scripts/make_test_vectors.py",
        "spec": "docs/protocol.md",
        "valid": valid_entries,
        "invalid": invalid_entries,
    }
    files[MANIFEST_NAME] = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    return files


def stale_files(out_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Paths under out_dir that are missing, differ from ``files``, or are not in it."""
    stale = [name for name, data in files.items()
             if not (out_dir / name).is_file() or (out_dir / name).read_bytes() != data]
    on_disk = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.bin")}
    stale += sorted(on_disk - files.keys())
    return stale


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=VECTORS_DIR,
                        help="directory to write the vectors to (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the directory differs from what "
                             "this script would write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    files = build()
    stale = stale_files(args.out, files) if args.out.is_dir() else sorted(files)
    if args.check:
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        if stale:
            print("run scripts/make_test_vectors.py to rewrite them, and review the diff: "
                  "changed vector bytes mean a changed wire format", file=sys.stderr)
        return 1 if stale else 0
    for name, data in files.items():
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    extra = [name for name in stale if name not in files]
    for name in extra:
        print(f"not written by this script, delete it if obsolete: {args.out / name}",
              file=sys.stderr)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
