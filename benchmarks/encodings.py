# SPDX-License-Identifier: GPL-3.0-or-later
"""Bytes per frame and error of each spectrum encoding: no server, pure bytes and dB.

    .venv/bin/python -m benchmarks.encodings                 # sim + iq, 2048 + 4096 bins
    .venv/bin/python -m benchmarks.encodings --sets iq --bins 2048

For each frame set (``sim``: the simulated band; ``iq``: the IQ recording replayed through
gr-osmosdr's file source; both through ``fft.logpwrfft_c``, see ``benchmarks/frames.py``),
each bin count, and the frames as recorded (``avg_alpha`` 1.0, no averaging) and averaged
as the app does by default (``avg_alpha`` 0.5, the same single-pole IIR on linear power that
logpwrfft applies, computed here on the recorded frames), it reports per frame (mean over
the 300 frames) the message bytes and the error against the float32 values:

- ``json``: ``json.dumps({"t", "seq", "bins"})`` as the baseline sends it; ``json+pmd``: the
  same text through permessage-deflate as websockets does it by default (raw deflate,
  window 2**12, memLevel 5, context kept between messages, sync flush, 4-byte tail
  stripped); ``json+deflate``: each text deflated on its own (level 6, raw);
- ``float32``, ``int16``, ``uint8`` (the per-frame min..max range), ``uint8+deflate``: the
  real ``gr_argos.protocol`` frames (64-byte header included), decoded with
  ``decode_frame``;
- ``adpcm``: 4-bit IMA ADPCM as OpenWebRX sends its FFT (csdr ``compress_fft_adpcm_f_u8``):
  dB * 100 truncated to int16, 10 copies of the first bin in front (COMPRESS_FFT_PAD_N,
  dropped by the decoder), codec state reset (index 0, predictor 0) every frame, two
  samples per byte, low nibble first; 1 type byte in front as OpenWebRX's WebSocket
  messages have. ``adpcm+deflate`` is the same payload deflated (not something OpenWebRX
  does; for reference);
- ``uint8 step S +deflate``: protocol uint8 frames with a fixed, coarser step ``S`` dB
  (offset = the frame's minimum, both in the header as the format already allows),
  compressed and decoded with the protocol's own ``compress_frame``/``decode_frame``;
  ``S`` is chosen so the max error (``S / 2``) is at most ADPCM's max error on the same
  frames, and so the RMS error (``S / sqrt(12)``) matches ADPCM's RMS error;
- delta coding (not in the protocol, measured here only): uint8 levels minus the previous
  frame's levels (mod 256), deflated, with a key frame (a plain uint8+deflate frame) every
  ``K`` frames (K = 10, 30), averaged over all frames keys included; with the per-frame
  scale of today's uint8 and with a fixed scale per stream; and an intra-frame delta (bin
  minus previous bin, no state between frames) for comparison;
- a gap check of the delta scheme: a decoder that applies a delta only on top of the
  frame with the previous sequence number, with random drops and a late join, must decode
  every frame it accepts bit-identically to plain uint8, and the frames it has to skip
  until the next key frame are counted.

Writes ``$ARGOS_BENCH_CACHE/encodings.json`` (default ``/tmp/gr-argos-bench``) and prints
markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import time
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.frames import FRAME_SOURCES, cache_dir, load_frames
from gr_argos.protocol import (
    ENCODING_FLOAT32,
    ENCODING_INT16,
    ENCODING_UINT8,
    HEADER_SIZE,
    compress_frame,
    decode_frame,
    encode_frame,
)

# --- 4-bit IMA ADPCM (standard tables), as csdr / OpenWebRX use it for FFT frames ----------

IMA_INDEX = np.array([-1, -1, -1, -1, 2, 4, 6, 8, -1, -1, -1, -1, 2, 4, 6, 8], dtype=np.int64)
IMA_STEP = np.array([
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45,
    50, 55, 60, 66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307,
    337, 371, 408, 449, 494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552,
    1707, 1878, 2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484,
    7132, 7845, 8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385,
    24623, 27086, 29794, 32767], dtype=np.int64)
ADPCM_PAD = 10          # csdr COMPRESS_FFT_PAD_N
ADPCM_SCALE = 100       # csdr: (short)(dB * 100); openwebrx.js: int16 / 100
OWRX_TYPE_BYTES = 1     # OpenWebRX prefixes each binary WebSocket message with a type byte


def _adpcm_difference(step: npt.NDArray[np.int64], code: npt.NDArray[np.int64]
                      ) -> npt.NDArray[np.int64]:
    diff = step >> 3
    diff = diff + np.where(code & 1, step >> 2, 0)
    diff = diff + np.where(code & 2, step >> 1, 0)
    diff = diff + np.where(code & 4, step, 0)
    return np.where(code & 8, -diff, diff)


def adpcm_encode(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """IMA ADPCM of each row (state reset per row, as csdr resets it per FFT frame).

    ``samples``: (frames, n) int16 with n even. Returns (frames, n // 2) bytes, the first
    sample of each pair in the low nibble (csdr ``encode_ima_adpcm_i16_u8``).
    Vectorized over frames, sequential over samples.
    """
    rows, n = samples.shape
    x = samples.astype(np.int64)
    pred = np.zeros(rows, dtype=np.int64)
    index = np.zeros(rows, dtype=np.int64)
    codes = np.empty((rows, n), dtype=np.int64)
    for i in range(n):
        step = IMA_STEP[index]
        diff = x[:, i] - pred
        code = np.where(diff < 0, 8, 0)
        diff = np.abs(diff)
        for bit, part in ((4, step), (2, step >> 1), (1, step >> 2)):
            hit = diff >= part
            code = code | np.where(hit, bit, 0)
            diff = diff - np.where(hit, part, 0)
        pred = np.clip(pred + _adpcm_difference(step, code), -32768, 32767)
        index = np.clip(index + IMA_INDEX[code], 0, 88)
        codes[:, i] = code
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


def adpcm_decode(data: npt.NDArray[np.uint8], first_step_zero: bool = False
                 ) -> npt.NDArray[np.int16]:
    """Decode rows of IMA ADPCM bytes (state reset per row), low nibble first.

    ``first_step_zero``: start with step 0 instead of IMA_STEP[0], as openwebrx.js's
    ``ImaAdpcmCodec.reset()`` does (its first sample then differs from the encoder's).
    """
    rows, half = data.shape
    codes = np.empty((rows, half * 2), dtype=np.int64)
    codes[:, 0::2] = data & 0x0F
    codes[:, 1::2] = data >> 4
    pred = np.zeros(rows, dtype=np.int64)
    index = np.zeros(rows, dtype=np.int64)
    out = np.empty(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        step = IMA_STEP[index]
        if first_step_zero and i == 0:
            step = np.zeros(rows, dtype=np.int64)
        code = codes[:, i]
        pred = np.clip(pred + _adpcm_difference(step, code), -32768, 32767)
        index = np.clip(index + IMA_INDEX[code], 0, 88)
        out[:, i] = pred
    return out.astype(np.int16)


def adpcm_fft_encode(frames: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """OpenWebRX's FFT compression: pad, dB * 100 to int16 (C truncation), IMA ADPCM."""
    padded = np.concatenate([np.repeat(frames[:, :1], ADPCM_PAD, axis=1), frames], axis=1)
    hundredths = np.trunc(padded.astype(np.float64) * ADPCM_SCALE)
    return adpcm_encode(np.clip(hundredths, -32768, 32767).astype(np.int16))


def adpcm_fft_decode(data: npt.NDArray[np.uint8], first_step_zero: bool = False
                     ) -> npt.NDArray[np.float32]:
    """openwebrx.js: decode, drop the padding, int16 / 100."""
    return (adpcm_decode(data, first_step_zero)[:, ADPCM_PAD:].astype(np.float64)
            / ADPCM_SCALE).astype(np.float32)


# --- protocol frames -----------------------------------------------------------------------

_FRAME_ARGS = {"center_freq_hz": 100e6, "span_hz": 2e6, "timestamp_ns": 1_700_000_000_000_000_000}
_SCALE = struct.Struct("<ff")
_SCALE_OFFSET = 56  # scale_offset_db, scale_step_db (docs/protocol.md)


def protocol_frame(values: npt.NDArray[np.float32], seq: int, encoding: int,
                   compress: bool) -> bytes:
    return encode_frame(values, sequence=seq, encoding=encoding, compress=compress,
                        **_FRAME_ARGS)


def uint8_levels(values: npt.NDArray[np.float32], offset_db: float, step_db: float
                 ) -> npt.NDArray[np.uint8]:
    """uint8 levels for a given (float32-exact) offset and step, as protocol._quantize."""
    levels = np.rint((values.astype(np.float64) - offset_db) / step_db)
    return np.clip(levels, 0, 255).astype(np.uint8)


def uint8_frame_with_scale(values: npt.NDArray[np.float32], seq: int, offset_db: float,
                           step_db: float, compress: bool,
                           payload: bytes | None = None) -> bytes:
    """A protocol uint8 frame with the given scale in its header (the format allows any
    finite offset and step > 0); the payload is the levels, or ``payload`` if given.
    Compressed with the protocol's own ``compress_frame``."""
    offset_db, step_db = float(np.float32(offset_db)), float(np.float32(step_db))
    base = protocol_frame(values, seq, ENCODING_UINT8, False)
    header = bytearray(base[:HEADER_SIZE])
    _SCALE.pack_into(header, _SCALE_OFFSET, offset_db, step_db)
    if payload is None:
        payload = uint8_levels(values, offset_db, step_db).tobytes()
    frame = bytes(header) + payload
    return compress_frame(frame) if compress else frame


def _deflated_size(payload: bytes) -> int:
    """Bytes of a frame whose payload is ``payload``, deflated by the protocol's rule
    (raw deflate level 6, kept only if smaller)."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    return HEADER_SIZE + min(len(payload), len(deflater.compress(payload) + deflater.flush()))


SWEEP_STEPS_DB = (0.5, 1.0, 1.5, 2.0, 3.0)

# --- measurements --------------------------------------------------------------------------


PEAK_BINS = 5  # "peak error": the largest error on the 5 strongest bins of each frame


class Stat:
    """Bytes and errors of one encoding over a frame set: mean bytes; the largest error
    (``max``), its 99th percentile over all bins (``p99``), the RMS error, and the largest
    error on the ``PEAK_BINS`` strongest bins of each frame (``peak``: carrier levels)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.max_err: list[float] = []
        self.peak_err: list[float] = []
        self.abs_err: list[npt.NDArray[np.float32]] = []
        self.sq_sum = 0.0
        self.count = 0

    def add(self, size: int, reference: npt.NDArray[np.float32] | None = None,
            decoded: npt.NDArray[np.float32] | None = None) -> None:
        self.sizes.append(size)
        if reference is not None and decoded is not None:
            err = decoded.astype(np.float64) - reference.astype(np.float64)
            self.max_err.append(float(np.max(np.abs(err))))
            self.abs_err.append(np.abs(err).astype(np.float32))
            peaks = np.argpartition(reference, -PEAK_BINS)[-PEAK_BINS:]
            self.peak_err.append(float(np.max(np.abs(err[peaks]))))
            self.sq_sum += float(np.sum(err * err))
            self.count += err.size

    def result(self) -> dict[str, Any]:
        return {
            "bytes": float(np.mean(self.sizes)),
            "max_err_db": max(self.max_err) if self.max_err else 0.0,
            "mean_frame_max_err_db": float(np.mean(self.max_err)) if self.max_err else 0.0,
            "p99_err_db": float(np.percentile(np.concatenate(self.abs_err), 99))
            if self.abs_err else 0.0,
            "peak_max_err_db": max(self.peak_err) if self.peak_err else 0.0,
            "rms_err_db": math.sqrt(self.sq_sum / self.count) if self.count else 0.0,
        }


def averaged(frames: npt.NDArray[np.float32], alpha: float) -> npt.NDArray[np.float32]:
    """logpwrfft's average=True: single-pole IIR on linear power, then dB (started on the
    first frame instead of on zero)."""
    power = np.power(10.0, frames.astype(np.float64) / 10.0)
    out = np.empty_like(power)
    out[0] = power[0]
    for t in range(1, len(power)):
        out[t] = alpha * power[t] + (1.0 - alpha) * out[t - 1]
    return (10.0 * np.log10(out)).astype(np.float32)


def measure(frames: npt.NDArray[np.float32], keys: tuple[int, ...] = (10, 30)
            ) -> dict[str, dict[str, Any]]:
    """Every encoding on one frame set; {name: {bytes, max_err_db, ...}}."""
    stats: dict[str, Stat] = {}

    def stat(name: str) -> Stat:
        return stats.setdefault(name, Stat())

    # JSON as the baseline sends it, with permessage-deflate as websockets does by default.
    pmd = zlib.compressobj(6, zlib.DEFLATED, -12, 5)
    for n, values in enumerate(frames):
        text = json.dumps({"t": _FRAME_ARGS["timestamp_ns"] + n * 33_333_333, "seq": n,
                           "bins": values.tolist()}).encode()
        stat("json").add(len(text), values, np.asarray(json.loads(text)["bins"], np.float32))
        alone = zlib.compressobj(6, zlib.DEFLATED, -15)
        stat("json+deflate").add(len(alone.compress(text) + alone.flush()))
        stat("json+pmd").add(len(pmd.compress(text) + pmd.flush(zlib.Z_SYNC_FLUSH)) - 4)

    # The protocol's own encodings.
    levels = []
    for n, values in enumerate(frames):
        for name, encoding, compress in (("float32", ENCODING_FLOAT32, False),
                                         ("int16", ENCODING_INT16, False),
                                         ("int16+deflate", ENCODING_INT16, True),
                                         ("uint8", ENCODING_UINT8, False),
                                         ("uint8+deflate", ENCODING_UINT8, True)):
            frame = protocol_frame(values, n, encoding, compress)
            decoded = decode_frame(frame)
            stat(name).add(len(frame), values, decoded.power_db)
            if name == "uint8":
                levels.append(np.frombuffer(frame[HEADER_SIZE:], dtype=np.uint8))

    # OpenWebRX-style ADPCM.
    data = adpcm_fft_encode(frames)
    decoded_adpcm = adpcm_fft_decode(data)
    decoded_js = adpcm_fft_decode(data, first_step_zero=True)
    for n, values in enumerate(frames):
        payload = data[n].tobytes()
        stat("adpcm").add(OWRX_TYPE_BYTES + len(payload), values, decoded_adpcm[n])
        stat("adpcm (openwebrx.js decoder)").add(OWRX_TYPE_BYTES + len(payload), values,
                                                 decoded_js[n])
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        stat("adpcm+deflate").add(
            OWRX_TYPE_BYTES + min(len(payload), len(deflater.compress(payload)
                                                    + deflater.flush())),
            values, decoded_adpcm[n])
    adpcm = stats["adpcm"].result()

    # uint8 at a coarser fixed step, matched to ADPCM's max error and to its RMS error.
    float32_step = np.float32
    steps = {
        "max": float(float32_step(2 * adpcm["max_err_db"]) * (1 - 1e-6)),
        "rms": float(float32_step(math.sqrt(12) * adpcm["rms_err_db"])),
    }
    for fixed in SWEEP_STEPS_DB:
        steps[f"{fixed:g}"] = fixed
    labels = {"max": "uint8 step for ADPCM's max err", "rms": "uint8 step for ADPCM's RMS err"}
    for kind, step in steps.items():
        name = labels.get(kind, f"uint8 step {step:g} dB") + "+deflate"
        for n, values in enumerate(frames):
            finite_min = float(np.float32(values.min()))
            # A step finer than the frame's own range/255 would clip: never finer than that.
            frame_step = max(step, float(np.float32((float(values.max()) - finite_min) / 255.0)))
            frame = uint8_frame_with_scale(values, n, finite_min, frame_step, True)
            stat(name).add(len(frame), values, decode_frame(frame).power_db)

    # Delta coding (not in the protocol). Per-frame scale: today's uint8 levels.
    lv = np.stack(levels)
    plain = stats["uint8+deflate"].sizes
    key_sizes = np.array(plain, dtype=float)
    temporal = (lv - np.roll(lv, 1, axis=0)).astype(np.uint8)  # row 0 unused (a key frame)
    delta_sizes = np.array([_deflated_size(d.tobytes()) for d in temporal], dtype=float)
    intra = np.concatenate([lv[:, :1], np.diff(lv, axis=1)], axis=1).astype(np.uint8)
    uint8_err = stats["uint8"].result()
    for k in keys:
        is_key = np.arange(len(lv)) % k == 0
        stats[f"uint8 Δprev K={k}+deflate"] = _fixed_stat(
            np.where(is_key, key_sizes, delta_sizes), uint8_err)
    stats["uint8 Δprev only (no keys)+deflate"] = _fixed_stat(delta_sizes[1:], uint8_err)
    stats["uint8 Δbin (intra-frame)+deflate"] = _fixed_stat(
        np.array([_deflated_size(d.tobytes()) for d in intra], dtype=float), uint8_err)

    # Fixed scale per stream (the same offset and step in every frame), at 1 dB and at the
    # RMS-matched step: the only way temporal deltas see unchanged levels for unchanged bins.
    for wanted in (1.0, steps["rms"]):
        step = float(np.float32(max(wanted, float((frames.max() - frames.min()) / 255.0))))
        offset = float(np.float32(math.floor(float(frames.min()))))
        fixed_lv = np.stack([uint8_levels(v, offset, step) for v in frames])
        fixed_name = ("uint8 fixed scale step 1 dB" if wanted == 1.0
                      else "uint8 fixed scale, step for ADPCM's RMS err")
        fixed_plain = Stat()
        for n, values in enumerate(frames):
            frame = uint8_frame_with_scale(values, n, offset, step, True)
            fixed_plain.add(len(frame), values, decode_frame(frame).power_db)
        stats[fixed_name + "+deflate"] = fixed_plain
        fixed_err = fixed_plain.result()
        fixed_delta = (fixed_lv - np.roll(fixed_lv, 1, axis=0)).astype(np.uint8)
        fixed_delta_sizes = np.array([_deflated_size(d.tobytes()) for d in fixed_delta],
                                     dtype=float)
        for k in keys:
            is_key = np.arange(len(lv)) % k == 0
            stats[f"{fixed_name} Δprev K={k}+deflate"] = _fixed_stat(
                np.where(is_key, np.array(fixed_plain.sizes, dtype=float), fixed_delta_sizes),
                fixed_err)

    out = {name: s.result() if isinstance(s, Stat) else s for name, s in stats.items()}
    out["_steps"] = {"steps_db": steps}
    return out


def _fixed_stat(sizes: npt.NDArray[np.float64], err: dict[str, Any]) -> dict[str, Any]:
    """A lossless re-coding of the uint8 levels: its sizes, the uint8 errors."""
    return {**err, "bytes": float(np.mean(sizes))}


def gap_check(frames: npt.NDArray[np.float32], k: int, drop_rate: float, join_at: int,
              seed: int = 1) -> dict[str, Any]:
    """Delta frames against the previous frame, key every ``k``; a client that joins at
    ``join_at`` and loses ``drop_rate`` of the frames at random. Its decoder applies a delta
    only if it decoded the frame with the previous sequence; returns counts, and whether
    every decoded frame equals the plain uint8 decoding bit for bit."""
    rng = np.random.default_rng(seed)
    plain = [decode_frame(protocol_frame(v, n, ENCODING_UINT8, False)) for n, v in
             enumerate(frames)]
    lv = [np.frombuffer(protocol_frame(v, n, ENCODING_UINT8, False)[HEADER_SIZE:],
                        dtype=np.uint8) for n, v in enumerate(frames)]
    held: tuple[int, npt.NDArray[np.uint8]] | None = None
    received = decoded = skipped = 0
    exact = True
    for n in range(join_at, len(frames)):
        if rng.random() < drop_rate:
            continue
        received += 1
        if n % k == 0:
            levels = lv[n]
        elif held is not None and held[0] == n - 1:
            levels = (held[1] + (lv[n] - lv[n - 1]).astype(np.uint8)).astype(np.uint8)
        else:
            skipped += 1
            held = None
            continue
        held = (n, levels)
        decoded += 1
        exact &= bool(np.array_equal(_dequantize_like(frames[n], levels), plain[n].power_db))
    return {"k": k, "drop_rate": drop_rate, "join_at": join_at, "received": received,
            "decoded": decoded, "skipped_until_key": skipped, "bit_exact": exact}


def _dequantize_like(values: npt.NDArray[np.float32], levels: npt.NDArray[np.uint8]
                     ) -> npt.NDArray[np.float32]:
    """dB from levels with the frame's own uint8 scale (decode_frame on a rebuilt frame)."""
    frame = protocol_frame(values, 0, ENCODING_UINT8, False)
    return decode_frame(frame[:HEADER_SIZE] + levels.tobytes()).power_db


# --- report --------------------------------------------------------------------------------

ROWS = (
    "json", "json+pmd", "json+deflate", "float32", "int16", "int16+deflate", "uint8",
    "uint8+deflate", "adpcm", "adpcm (openwebrx.js decoder)", "adpcm+deflate",
)


def table(results: dict[str, dict[str, Any]], bins: list[int], avg: str) -> str:
    first = results[str(bins[0])][avg]
    names = list(ROWS) + [n for n in first if n not in ROWS and not n.startswith("_")]
    head = "| encoding | " + " | ".join(
        f"{b}: bytes | ×JSON+pmd | max err | p99 err | RMS err | peak err" for b in bins)
    head += " |\n|---|" + "---:|" * (6 * len(bins)) + "\n"
    rows = []
    for name in names:
        cells = []
        for b in bins:
            r = results[str(b)][avg]
            if name not in r:
                cells.append("- | - | - | - | - | -")
                continue
            e = r[name]
            ratio = r["json+pmd"]["bytes"] / e["bytes"]
            cells.append(f"{e['bytes']:.0f} | {ratio:.1f} | {e['max_err_db']:.2f} | "
                         f"{e['p99_err_db']:.2f} | {e['rms_err_db']:.3f} | "
                         f"{e['peak_max_err_db']:.2f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=FRAME_SOURCES, default=list(FRAME_SOURCES))
    parser.add_argument("--bins", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--avg-alpha", type=float, default=0.5,
                        help="second condition: frames averaged as logpwrfft does (1 = off)")
    parser.add_argument("--out", help="results JSON (default: cache dir / encodings.json)")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    info: dict[str, Any] = {"command": "python -m benchmarks.encodings", "sets": {}}
    conditions = {"raw": 1.0, f"avg{args.avg_alpha:g}": args.avg_alpha}
    for source in args.sets:
        per_bins: dict[str, Any] = {}
        for b in args.bins:
            raw = load_frames(b, source=source)
            per_bins[str(b)] = {}
            for cname, alpha in conditions.items():
                frames = raw if alpha >= 1.0 else averaged(raw, alpha)
                res = measure(frames)
                res["_frames"] = {"count": int(frames.shape[0]), "min_db": float(frames.min()),
                                  "max_db": float(frames.max()),
                                  "mean_range_db": float(np.mean(frames.max(1) - frames.min(1)))}
                res["_gap_checks"] = [
                    gap_check(frames, k, drop, join)
                    for k in (10, 30) for drop, join in ((0.0, 17), (0.01, 0), (0.05, 0))]
                per_bins[str(b)][cname] = res
        info["sets"][source] = per_bins
        for cname in conditions:
            print(f"\n### {source}, {cname} (per frame, mean over "
                  f"{per_bins[str(args.bins[0])][cname]['_frames']['count']} frames)\n")
            print(table(per_bins, args.bins, cname))
            for b in args.bins:
                r = per_bins[str(b)][cname]
                print(f"{b} bins: frames {r['_frames']}, steps {r['_steps']}")
                for g in r["_gap_checks"]:
                    print(f"  gap check {g}")
    info["elapsed_s"] = time.monotonic() - t0
    out = args.out or str(cache_dir() / "encodings.json")
    with open(out, "w") as f:
        json.dump(info, f, indent=1)
    print(f"\nresults: {out} ({info['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
