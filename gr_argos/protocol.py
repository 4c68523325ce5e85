# SPDX-License-Identifier: GPL-3.0-or-later
"""The gr-argos wire protocol, version 1: binary spectrum frames and JSON messages.

This module is the one Python definition of the format described byte by byte in
docs/protocol.md. It imports neither GNU Radio nor any socket code, so the server, the
gateway, the clients and the tests all share it.

A spectrum frame is a fixed 64-byte little-endian header followed by the payload::

    offset size type  field
     0     4    4s    magic            b"ARGS"
     4     1    u8    version          1
     5     1    u8    msg_type         1 = spectrum frame
     6     2    u16   header_len       64 (a reader skips any longer header it does not know)
     8     2    u16   flags            bit 0: payload compressed (raw deflate, RFC 1951)
                                       bit 1: a second trace follows the first (opt-in)
    10     1    u8    encoding         0 = float32 dB, 1 = int16 cdB, 2 = uint8 scaled
    11     1    u8    detector         the trace's detector: 0 not stated, 1 sample,
                                       2 peak, 3 average (a reader may ignore it)
    12     2    u16   stream_id        which stream (channel) of the server
    14     1    u8    second_detector  the second trace's detector (0 without one)
    15     1    u8    replayed         bit 0: sent again from the server's resume ring (a
                                       resumed client's missed frames, a backfill); 0 live
    16     8    u64   sequence         per-stream frame counter, +1 per frame produced
    24     4    u32   missed           frames this client lost since the previous one it got
    28     4    u32   bin_count        number of spectrum bins in the payload
    32     8    i64   timestamp_ns     capture time, ns since the Unix epoch
    40     8    f64   center_freq_hz   centre frequency of the frame
    48     8    f64   span_hz          frequency span (the sample rate for an FFT frame)
    56     4    f32   scale_offset_db  for uint8: dB = offset + step * value
    60     4    f32   scale_step_db    (both 0 for float32 and int16)

The payload is the trace's ``bin_count`` values, then, with flag bit 1, the second trace's
(a client gets those only when it asked for them). It is quantized first (int16:
round(dB * 100); uint8: one range over both traces) and then, when flag bit 0 is set,
deflated; the header is never compressed, so ``missed`` can be
patched in any variant.

Everything that is not a spectrum frame travels as a JSON text message with a ``type``; the
``hello`` message describes each stream with :meth:`StreamInfo.describe`.

Why one module of this length: it is the one Python definition of the format, the header
table beside the codecs that read and write it, so that a change to one is seen with the other.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAGIC",
    "PROTOCOL_VERSION",
    "HEADER_SIZE",
    "MSG_SPECTRUM",
    "ENCODING_FLOAT32",
    "ENCODING_INT16",
    "ENCODING_UINT8",
    "ENCODING_NAMES",
    "ENCODING_CODES",
    "FLAG_COMPRESSED",
    "FLAG_SECOND_TRACE",
    "DETECTOR_CODES",
    "DETECTOR_NAMES",
    "FrameFormat",
    "ViewRequest",
    "VIEW_KEYS",
    "MAX_VIEW_BINS",
    "MAX_FPS_DIVISOR",
    "CLIENT_STEPS_DB",
    "UINT8_STEP_DB_MIN",
    "UINT8_STEP_DB_MAX",
    "check_step_db",
    "MAX_CLIENT_MESSAGE_BYTES",
    "ProtocolError",
    "SpectrumFrame",
    "StreamInfo",
    "encode_frame",
    "decode_frame",
    "with_missed",
    "with_replayed",
    "REPLAYED",
    "compress_frame",
    "reencode_frame",
    "encode_spectrum",
    "number_or_nan",
    "encode_message",
    "decode_message",
]

MAGIC = b"ARGS"
PROTOCOL_VERSION = 1
MSG_SPECTRUM = 1
ENCODING_FLOAT32 = 0
ENCODING_INT16 = 1
ENCODING_UINT8 = 2
ENCODING_NAMES = {ENCODING_FLOAT32: "float32", ENCODING_INT16: "int16", ENCODING_UINT8: "uint8"}
ENCODING_CODES = {name: code for code, name in ENCODING_NAMES.items()}
FLAG_COMPRESSED = 0x0001  # the payload is a raw deflate stream (RFC 1951)
FLAG_SECOND_TRACE = 0x0002  # a second trace of bin_count values follows the first
KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_SECOND_TRACE
#: Detector code (header bytes 11 and 14) -> name; 0: the producer did not say.
DETECTOR_NAMES = {0: "", 1: "sample", 2: "peak", 3: "average"}
DETECTOR_CODES = {name: code for code, name in DETECTOR_NAMES.items()}

# Inbound messages from clients larger than this are refused (close code 1009).
MAX_CLIENT_MESSAGE_BYTES = 4096

_HEADER = struct.Struct("<4sBBHHBBHBBQIIqddff")
HEADER_SIZE = _HEADER.size
_MISSED = struct.Struct("<I")
_MISSED_OFFSET = 24

#: Header byte 15, bit 0: the frame is sent again from the server's resume ring, not live.
#: Byte 15 was reserved (written 0, ignored by readers), so a reader that does not know it
#: reads such a frame as it always did.
REPLAYED = 0x01
_REPLAYED_OFFSET = 15
_FLAGS_OFFSET = 8
_FLAGS = struct.Struct("<H")
_MAX_U32 = 0xFFFFFFFF
_BYTES_PER_BIN = {ENCODING_FLOAT32: 4, ENCODING_INT16: 2, ENCODING_UINT8: 1}
_INT16_STEPS_PER_DB = 100
# Level 6 (zlib's default): levels above it cost much more time for a few bytes less.
_DEFLATE_LEVEL = 6
_RAW_DEFLATE_WBITS = -15  # no zlib or gzip wrapper: what DecompressionStream("deflate-raw") reads
# dB level of a uint8 frame without a single finite value (all bins empty or NaN).
_UINT8_EMPTY_OFFSET_DB = -327.68
# A fixed uint8 step (``step_db``) is 0 (automatic) or in this range, in dB.
UINT8_STEP_DB_MIN = 0.01
UINT8_STEP_DB_MAX = 20.0
#: The steps a client may choose (a request is rounded to the nearest): a server then makes
#: a bounded number of variants of each frame however many clients ask for how many steps.
CLIENT_STEPS_DB = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0,
                   10.0, 15.0, 20.0)


class ProtocolError(ValueError):
    """A message does not follow the gr-argos wire protocol; the text says how."""


@dataclass(frozen=True)
class SpectrumFrame:
    """One decoded spectrum frame: power per bin in dB plus where and when it was captured.

    Attributes:
        power_db: float32 array of ``bin_count`` values, lowest frequency first.
        center_freq_hz: centre frequency in Hz.
        span_hz: frequency span in Hz (the sample rate for an FFT spectrum).
        timestamp_ns: capture time in ns since the Unix epoch.
        sequence: per-stream frame counter.
        stream_id: the stream (channel) this frame belongs to.
        missed: frames this client lost (dropped for it) since its previous frame.
        encoding: payload encoding code as sent (``power_db`` is float32 dB whatever it was).
        flags: header flags as sent (bit 0: the payload was deflated; bit 1: a second trace).
        detector: what ``power_db`` shows of each frame period: ``"peak"``, ``"average"``,
            ``"sample"``, or ``""`` when the producer did not say.
        second_power_db: the second trace (float32 dB, ``bin_count`` values), or None.
        second_detector: its detector (``""`` without a second trace).
        replayed: the server sent this frame again from its resume ring (a resumed
            client's missed frames, or a backfill), not live.
    """

    power_db: npt.NDArray[np.float32]
    center_freq_hz: float
    span_hz: float
    timestamp_ns: int
    sequence: int
    stream_id: int = 0
    missed: int = 0
    encoding: int = ENCODING_FLOAT32
    flags: int = 0
    detector: str = ""
    second_power_db: npt.NDArray[np.float32] | None = None
    second_detector: str = ""
    replayed: bool = False

    @property
    def bin_count(self) -> int:
        return int(self.power_db.shape[0])

    def bin_freqs_hz(self) -> npt.NDArray[np.float64]:
        """Centre frequency of each bin in Hz (FFT-shifted layout, DC in the middle)."""
        n = self.bin_count
        return self.center_freq_hz + (np.arange(n) - n // 2) * (self.span_hz / n)


@dataclass(frozen=True)
class FrameFormat:
    """How a frame's payload travels: its encoding, whether it is deflated, and the uint8 step.

    Attributes:
        encoding: ``ENCODING_FLOAT32``, ``ENCODING_INT16`` or ``ENCODING_UINT8``.
        compress: deflate the payload; a frame it would not make smaller is sent
            uncompressed (flag bit 0 clear) all the same.
        step_db: uint8 only: 0 (automatic: 256 levels over each frame's own range) or a
            fixed step in dB, ``UINT8_STEP_DB_MIN`` .. ``UINT8_STEP_DB_MAX`` (see
            :func:`encode_frame`). Always 0 for float32 and int16, so that equal formats
            compare (and hash) equal.
        second_trace: send a frame's second trace too when it has one (flag bit 1); a
            client that did not ask gets the first trace only, as a v1 reader expects.

    Raises:
        ValueError: if ``encoding`` is not one of the three codes, or ``step_db`` is neither
            0 nor in 0.01..20 dB (a :class:`ProtocolError`).
    """

    encoding: int = ENCODING_FLOAT32
    compress: bool = False
    step_db: float = 0.0
    second_trace: bool = False

    def __post_init__(self) -> None:
        if self.encoding not in ENCODING_NAMES:
            raise ValueError(f"unknown payload encoding {self.encoding}; "
                             f"known: {sorted(ENCODING_NAMES)}")
        step_db = check_step_db(self.step_db)
        object.__setattr__(self, "step_db", step_db if self.encoding == ENCODING_UINT8 else 0.0)

    @property
    def name(self) -> str:
        """``"uint8"``, ``"int16+deflate"`` and the like (as in stats and metric labels).

        The step is left out on purpose: a client chooses it freely, and a metric label
        must not take unbounded values.
        """
        return (ENCODING_NAMES[self.encoding] + ("+deflate" if self.compress else "")
                + ("+second_trace" if self.second_trace else ""))

    @classmethod
    def parse(cls, encoding: object, compress: object = False,
              step_db: object = 0, second_trace: object = False) -> FrameFormat:
        """The format a client asked for in ``set_encoding`` or the URL query.

        Args:
            encoding: an encoding name (``"float32"``, ``"int16"``, ``"uint8"``).
            compress: a JSON boolean, or a URL query value ``1``/``0``/``true``/``false``.
            step_db: a JSON number or a URL query value: 0 (automatic) or a fixed uint8
                step of 0.01..20 dB, rounded to the nearest of ``CLIENT_STEPS_DB``;
                ignored (0) for float32 and int16.
            second_trace: like ``compress``: also send the second trace of frames that
                have one.

        Raises:
            ProtocolError: naming the accepted values, if any is not one of them.
        """
        if not isinstance(encoding, str) or encoding not in ENCODING_CODES:
            raise ProtocolError(
                f"unknown encoding {encoding!r}: use one of "
                + ", ".join(f'"{name}"' for name in ENCODING_CODES))
        step = check_step_db(step_db)
        if step:
            step = min(CLIENT_STEPS_DB, key=lambda allowed: abs(math.log(allowed / step)))
        return cls(ENCODING_CODES[encoding], _flag("compress", compress), step,
                   _flag("second_trace", second_trace))


#: The keys of a ``set_view`` message, and of the URL query, that describe a view.
VIEW_KEYS = ("stream_id", "center_freq_hz", "span_hz", "bins", "fps_divisor")
#: A client asking for more bins than this is refused (a stream's own bins are the real cap).
MAX_VIEW_BINS = 1 << 20
#: Every frame .. one frame in this many.
MAX_FPS_DIVISOR = 100


@dataclass(frozen=True)
class ViewRequest:
    """A view a client asks for with ``set_view`` or the URL query (docs/protocol.md):
    a stream's range, display bins and frame rate divisor; None: the stream's own (the
    first stream, its whole band, its bins; every frame)."""

    stream_id: int | None = None
    center_freq_hz: float | None = None
    span_hz: float | None = None
    bins: int | None = None
    fps_divisor: int = 1

    def query(self) -> list[tuple[str, str]]:
        """The request as URL query items (only the keys it sets)."""
        return [(key, format(value, ".15g")) for key in VIEW_KEYS
                if (value := getattr(self, key)) is not None
                and not (key == "fps_divisor" and value == 1)]

    @classmethod
    def parse(cls, fields: Mapping[str, object]) -> ViewRequest:
        """A request from a ``set_view`` message or the URL query (numbers as text there).

        Raises:
            ProtocolError: naming the key and what it must be.
        """
        center = _number(fields, "center_freq_hz")
        span = _number(fields, "span_hz")
        if span is not None and not span > 0:
            raise ProtocolError(f"span_hz must be more than 0 Hz, got {span:g}")
        fps_divisor = _integer(fields, "fps_divisor", 1, MAX_FPS_DIVISOR)
        return cls(_integer(fields, "stream_id", 0, 65535), center, span,
                   _integer(fields, "bins", 1, MAX_VIEW_BINS),
                   1 if fps_divisor is None else fps_divisor)


def _number(fields: Mapping[str, object], key: str) -> float | None:
    value = fields.get(key)
    if value is None:
        return None
    number = number_or_nan(value)
    if not math.isfinite(number):
        raise ProtocolError(f"{key} must be a finite number of Hz, got {value!r}")
    return number


def _integer(fields: Mapping[str, object], key: str, low: int, high: int) -> int | None:
    number = _number(fields, key) if fields.get(key) is not None else None
    if number is None:
        return None
    if number != int(number) or not low <= number <= high:
        raise ProtocolError(f"{key} must be a whole number from {low} to {high}, "
                            f"got {fields[key]!r}")
    return int(number)


def _flag(name: str, value: object) -> bool:
    """A JSON boolean, or a URL query value 1/0/true/false."""
    if isinstance(value, str):
        value = {"1": True, "true": True, "0": False, "false": False}.get(value.lower(), value)
    if not isinstance(value, bool):
        raise ProtocolError(f"{name} must be true or false (1 or 0 in a URL), got {value!r}")
    return value


def number_or_nan(value: object) -> float:
    """A JSON number, or its text (as in a URL query), as a float; NaN for anything else
    (booleans, other types, text that is no number)."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def check_step_db(step_db: object) -> float:
    """A fixed uint8 step in dB, checked: 0 (automatic) or ``UINT8_STEP_DB_MIN`` ..
    ``UINT8_STEP_DB_MAX``; a number, or its text (as in a URL query).

    Raises:
        ProtocolError: naming the accepted range, if it is not a number in it.
    """
    value = number_or_nan(step_db)
    if value == 0:
        return 0.0
    if not UINT8_STEP_DB_MIN <= value <= UINT8_STEP_DB_MAX:  # NaN and infinities too
        raise ProtocolError(
            f"step_db must be 0 (automatic) or a number of dB from {UINT8_STEP_DB_MIN:g} to "
            f"{UINT8_STEP_DB_MAX:g}, got {step_db!r}")
    return value


def encode_frame(
    power_db: npt.ArrayLike,
    *,
    center_freq_hz: float,
    span_hz: float,
    timestamp_ns: int,
    sequence: int,
    stream_id: int = 0,
    missed: int = 0,
    encoding: int = ENCODING_FLOAT32,
    compress: bool = False,
    step_db: float = 0.0,
    detector: str = "",
    second_power_db: npt.ArrayLike | None = None,
    second_detector: str = "",
) -> bytes:
    """Encode one spectrum as a v1 binary frame.

    Args:
        power_db: 1-D array of power values in dB, lowest frequency first.
        center_freq_hz: centre frequency in Hz.
        span_hz: frequency span in Hz.
        timestamp_ns: capture time in ns since the Unix epoch.
        sequence: per-stream frame counter (0 .. 2**64-1).
        stream_id: stream (channel) id (0 .. 65535).
        missed: frames missed by the receiving client (normally 0; the hub patches it).
        encoding: ``ENCODING_FLOAT32`` (exact), ``ENCODING_INT16`` (hundredths of a dB,
            saturating at +-327.68 dB) or ``ENCODING_UINT8`` (256 levels over the frame's
            own finite min..max). NaN and -inf become the lowest level, +inf the highest.
        compress: deflate the quantized payload (flag bit 0), unless that does not make
            the frame smaller.
        step_db: uint8 only (ignored otherwise): 0 spreads the 256 levels over the frame's
            own range; a fixed step (0.01..20 dB) makes the step the smallest multiple of
            ``step_db`` at which 256 levels still cover the frame (``step_db`` itself unless
            the range is wider than about 255 steps), and the offset a multiple of the step,
            so frames of similar range use the same levels. Either way each finite value is
            within half the header's step.
        detector: what the spectrum shows of its frame period (``DETECTOR_CODES``: "peak",
            "average", "sample"; "" does not say).
        second_power_db: a second trace of the same bins (flag bit 1), e.g. the average
            under a peak trace; uint8 then spreads its levels over both traces.
        second_detector: the second trace's detector.

    Returns:
        The frame as bytes: header then payload.

    Raises:
        ProtocolError: if a spectrum is not one-dimensional or the traces differ in
            length, a field is out of range, the encoding or a detector is unknown or
            ``step_db`` is out of range.
    """
    values = np.ascontiguousarray(power_db, dtype="<f4")
    if values.ndim != 1 or values.shape[0] == 0:
        raise ProtocolError(f"a spectrum must be a non-empty 1-D array, got shape {values.shape}")
    bin_count = values.shape[0]
    flags = 0
    if second_power_db is not None:
        second = np.ascontiguousarray(second_power_db, dtype="<f4")
        if second.shape != values.shape:
            raise ProtocolError(f"the second trace has shape {second.shape}; the first "
                                f"{values.shape}")
        values = np.concatenate((values, second))
        flags = FLAG_SECOND_TRACE
    elif second_detector:
        raise ProtocolError("second_detector without a second trace")
    detector_codes = []
    for name in (detector, second_detector):
        if name not in DETECTOR_CODES:
            raise ProtocolError(f"unknown detector {name!r}: use one of "
                                + ", ".join(repr(known) for known in DETECTOR_CODES))
        detector_codes.append(DETECTOR_CODES[name])
    if not 0 <= stream_id <= 0xFFFF:
        raise ProtocolError(f"stream_id must be in 0..65535, got {stream_id}")
    if not 0 <= sequence < 2**64:
        raise ProtocolError(f"sequence must be in 0..2**64-1, got {sequence}")
    if not -(2**63) <= timestamp_ns < 2**63:
        raise ProtocolError(
            f"timestamp_ns must fit in a signed 64-bit integer, got {timestamp_ns}"
        )
    if encoding not in ENCODING_NAMES:
        raise ProtocolError(f"unknown payload encoding {encoding}")
    payload, scale_offset_db, scale_step_db = _quantize(values, encoding,
                                                        check_step_db(step_db))
    header = _HEADER.pack(
        MAGIC,
        PROTOCOL_VERSION,
        MSG_SPECTRUM,
        HEADER_SIZE,
        flags,
        encoding,
        detector_codes[0],
        stream_id,
        detector_codes[1],
        0,
        sequence,
        min(max(missed, 0), _MAX_U32),
        bin_count,
        int(timestamp_ns),
        float(center_freq_hz),
        float(span_hz),
        scale_offset_db,
        scale_step_db,
    )
    frame = header + payload
    return compress_frame(frame) if compress else frame


def _quantize(
    values: npt.NDArray[np.float32], encoding: int, step_db: float = 0.0
) -> tuple[bytes, float, float]:
    """The payload of ``values`` in ``encoding``, with the header's scale offset and step
    (uint8: automatic when ``step_db`` is 0, else a multiple of it)."""
    if encoding == ENCODING_FLOAT32:
        return values.tobytes(), 0.0, 0.0
    if encoding == ENCODING_UINT8 and step_db == 0:
        quick = _uint8_finite(values)
        if quick is not None:
            return quick
    wide = values.astype(np.float64)
    if encoding == ENCODING_INT16:
        levels = np.nan_to_num(np.rint(wide * _INT16_STEPS_PER_DB),
                               nan=-32768.0, posinf=32767.0, neginf=-32768.0)
        return np.clip(levels, -32768, 32767).astype("<i2").tobytes(), 0.0, 0.0
    offset_db, step_db = (_uint8_fixed_range(values, step_db) if step_db > 0
                          else _uint8_range(values))
    levels = np.nan_to_num(np.rint((wide - offset_db) / step_db),
                           nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(levels, 0, 255).astype(np.uint8).tobytes(), offset_db, step_db


def _uint8_finite(values: npt.NDArray[np.float32]) -> tuple[bytes, float, float] | None:
    """The automatic uint8 payload of a frame whose every value is finite (the common
    case), as :func:`_quantize` makes it, in a few passes instead of a dozen: the hub
    encodes every view's slice of every frame with it. None for a frame with a NaN or an
    infinity (the general path handles those)."""
    low, high = float(values.min()), float(values.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    step_db = float(np.float32((high - low) / 255.0))
    if not step_db > 0:
        step_db = 1.0
    wide = values.astype(np.float64)
    wide -= low
    wide /= step_db
    np.rint(wide, out=wide)
    np.minimum(wide, 255.0, out=wide)
    return wide.astype(np.uint8).tobytes(), low, step_db


def _uint8_range(values: npt.NDArray[np.float32]) -> tuple[float, float]:
    """Offset and step (both exact float32 values) spreading 256 levels over the finite
    min..max of a frame; step 1 dB when the frame is flat or has no finite value."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float(np.float32(_UINT8_EMPTY_OFFSET_DB)), 1.0
    low, high = float(finite.min()), float(finite.max())
    step_db = float(np.float32((high - low) / 255.0))
    if not step_db > 0:  # a flat frame (or a range that underflows float32)
        step_db = 1.0
    return low, step_db


def _uint8_fixed_range(values: npt.NDArray[np.float32], step_db: float) -> tuple[float, float]:
    """Offset and step (exact float32 values) for a fixed step of ``step_db`` dB.

    The step is the smallest multiple of ``step_db`` at which the 256 levels from the
    offset, itself a multiple of the step at or below the frame's finite minimum, reach its
    finite maximum; a frame without a finite value sits at -327.68 dB. A frame so far from
    0 dB that float32 cannot hold such an offset gets the automatic range instead.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        low = high = float(np.float32(_UINT8_EMPTY_OFFSET_DB))
    else:
        low, high = float(finite.min()), float(finite.max())
    # 255 steps cover the range from the minimum; one more covers an offset up to a step
    # below it, so the multiple is one of these (mostly the first).
    fewest = max(1, math.ceil((high - low) / (255 * step_db)))
    enough = max(1, math.ceil((high - low) / (254 * step_db)))
    for multiple in sorted({fewest, fewest + 1, enough, enough + 1}):
        step = float(np.float32(multiple * step_db))
        offset = float(np.float32(math.floor(low / step) * step))
        if offset + 255 * step >= high and offset - low <= step / 2:
            return offset, step
    return _uint8_range(values)


def compress_frame(frame: bytes) -> bytes:
    """Deflate the payload of an uncompressed frame and set flag bit 0.

    The header stays as it is (so ``missed`` can still be patched); a frame that deflate
    would not make smaller comes back unchanged, flag clear.

    Raises:
        ProtocolError: if the frame is already compressed or its header is malformed.
    """
    header_len = _read_header_len(frame)
    (flags,) = _FLAGS.unpack_from(frame, _FLAGS_OFFSET)
    if flags & FLAG_COMPRESSED:
        raise ProtocolError("frame is already compressed (flags bit 0 set)")
    deflater = zlib.compressobj(_DEFLATE_LEVEL, zlib.DEFLATED, _RAW_DEFLATE_WBITS)
    compressed = deflater.compress(frame[header_len:]) + deflater.flush()
    if len(compressed) >= len(frame) - header_len:
        return bytes(frame)
    header = bytearray(frame[:header_len])
    _FLAGS.pack_into(header, _FLAGS_OFFSET, flags | FLAG_COMPRESSED)
    return bytes(header) + compressed


def reencode_frame(frame: bytes, frame_format: FrameFormat) -> bytes:
    """The same frame in another format: same header fields (``missed`` too), payload
    re-encoded (with its second trace only if ``frame_format.second_trace``); header
    extensions are dropped. Used by the hub, once per frame and format.

    Raises:
        ProtocolError: if ``frame`` does not decode.
    """
    return encode_spectrum(decode_frame(frame), frame_format)


def encode_spectrum(spectrum: SpectrumFrame, frame_format: FrameFormat) -> bytes:
    """Encode a decoded (or built) frame in ``frame_format``: every header field as it
    says (``missed`` too), its second trace only if ``frame_format.second_trace``.

    Raises:
        ProtocolError: as :func:`encode_frame`.
    """
    second = spectrum.second_power_db if frame_format.second_trace else None
    return encode_frame(
        spectrum.power_db,
        center_freq_hz=spectrum.center_freq_hz,
        span_hz=spectrum.span_hz,
        timestamp_ns=spectrum.timestamp_ns,
        sequence=spectrum.sequence,
        stream_id=spectrum.stream_id,
        missed=spectrum.missed,
        encoding=frame_format.encoding,
        compress=frame_format.compress,
        step_db=frame_format.step_db,
        detector=spectrum.detector,
        second_power_db=second,
        second_detector=spectrum.second_detector if second is not None else "",
    )


def _read_header_len(frame: bytes) -> int:
    if len(frame) < HEADER_SIZE or bytes(frame[:4]) != MAGIC:
        raise ProtocolError("not a gr-argos frame: too short or wrong magic")
    header_len: int = struct.unpack_from("<H", frame, 6)[0]
    if not HEADER_SIZE <= header_len <= len(frame):
        raise ProtocolError(f"bad header length {header_len} in a {len(frame)}-byte frame")
    return header_len


def with_missed(frame: bytes, missed: int) -> bytes:
    """Return a copy of an encoded frame whose ``missed`` field says ``missed``.

    The hub encodes a frame once for all clients (missed = 0) and patches these four
    bytes only for the clients that lost frames, so the common case costs no copy. The
    header is never compressed, so this works on every encoding and compressed frames.
    Counts above 2**32-1 saturate.
    """
    patched = bytearray(frame)
    _MISSED.pack_into(patched, _MISSED_OFFSET, min(max(missed, 0), _MAX_U32))
    return bytes(patched)


def with_replayed(frame: bytes, missed: int = 0) -> bytes:
    """Return a copy of an encoded frame marked as replayed (header byte 15, bit 0), with
    ``missed`` in its ``missed`` field: how the server sends a frame again from its resume
    ring. The header is never compressed, so this works on every variant."""
    patched = bytearray(frame)
    patched[_REPLAYED_OFFSET] |= REPLAYED
    _MISSED.pack_into(patched, _MISSED_OFFSET, min(max(missed, 0), _MAX_U32))
    return bytes(patched)


def decode_frame(data: bytes | bytearray | memoryview) -> SpectrumFrame:
    """Decode a v1 binary spectrum frame, inflating and dequantizing its payload.

    Raises:
        ProtocolError: if the frame is truncated, has the wrong magic or version, uses an
            encoding or flag this version does not know, has an invalid uint8 scale or no
            bins, its compressed payload is not a raw deflate stream or inflates to
            anything but ``bin_count`` bins (inflating stops there: no decompression
            bomb), or its payload length does not match its bin count. A bad frame never
            yields a wrong array.
    """
    view = memoryview(data).cast("B")
    if len(view) < HEADER_SIZE:
        raise ProtocolError(
            f"frame truncated: {len(view)} bytes is shorter than the {HEADER_SIZE}-byte header"
        )
    (
        magic,
        version,
        msg_type,
        header_len,
        flags,
        encoding,
        detector,
        stream_id,
        second_detector,
        replayed,
        sequence,
        missed,
        bin_count,
        timestamp_ns,
        center_freq_hz,
        span_hz,
        scale_offset_db,
        scale_step_db,
    ) = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolError(f"not a gr-argos frame: magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {version} (this decoder speaks {PROTOCOL_VERSION})"
        )
    if msg_type != MSG_SPECTRUM:
        raise ProtocolError(f"unknown binary message type {msg_type}")
    if header_len < HEADER_SIZE or header_len > len(view):
        raise ProtocolError(
            f"bad header length {header_len} in a {len(view)}-byte frame "
            f"(at least {HEADER_SIZE})"
        )
    if flags & ~KNOWN_FLAGS:
        raise ProtocolError(f"unknown flags 0x{flags:04x} for protocol version {version}")
    bytes_per_bin = _BYTES_PER_BIN.get(encoding)
    if bytes_per_bin is None:
        raise ProtocolError(f"unknown payload encoding {encoding}")
    if encoding == ENCODING_UINT8 and not (
        math.isfinite(scale_offset_db) and math.isfinite(scale_step_db) and scale_step_db > 0
    ):
        raise ProtocolError(
            f"bad uint8 scale: offset {scale_offset_db} dB, step {scale_step_db} dB "
            "(both must be finite and the step > 0)"
        )
    if bin_count == 0:
        # Before the payload checks, which would blame the payload's length or deflate data.
        raise ProtocolError("frame has no bins")
    traces = 2 if flags & FLAG_SECOND_TRACE else 1
    name = (f"{ENCODING_NAMES[encoding]} bins (encoding {encoding})"
            + (" in each of 2 traces" if traces == 2 else ""))
    expected = bin_count * bytes_per_bin * traces
    payload: bytes | memoryview = view[header_len:]
    if flags & FLAG_COMPRESSED:
        payload = _inflate(payload, expected, f"{bin_count} {name}")
    if len(payload) != expected:
        kind = "decompressed payload" if flags & FLAG_COMPRESSED else "payload"
        raise ProtocolError(
            f"{kind} is {len(payload)} bytes but {bin_count} {name} need {expected}"
            + (" (frame truncated)" if len(payload) < expected and kind == "payload" else "")
        )
    power_db = _dequantize(payload, encoding, scale_offset_db, scale_step_db)
    second_power_db = None
    if traces == 2:
        power_db, second_power_db = power_db[:bin_count], power_db[bin_count:]
    return SpectrumFrame(
        power_db=power_db,
        detector=DETECTOR_NAMES.get(detector, ""),
        second_power_db=second_power_db,
        second_detector=DETECTOR_NAMES.get(second_detector, "") if traces == 2 else "",
        center_freq_hz=center_freq_hz,
        span_hz=span_hz,
        timestamp_ns=timestamp_ns,
        sequence=sequence,
        stream_id=stream_id,
        missed=missed,
        encoding=encoding,
        flags=flags,
        replayed=bool(replayed & REPLAYED),
    )


def _inflate(payload: bytes | memoryview, expected: int, what: str) -> bytes:
    """Inflate a raw deflate payload, refusing to produce more than ``expected`` bytes."""
    inflater = zlib.decompressobj(_RAW_DEFLATE_WBITS)
    try:
        inflated = inflater.decompress(payload, expected + 1)
    except zlib.error as exc:
        raise ProtocolError(
            f"compressed payload (flags bit 0) is not a valid raw deflate stream: {exc}"
        ) from exc
    if len(inflated) > expected:
        raise ProtocolError(
            f"compressed payload inflates to more than the {expected} bytes {what} need; "
            "refused (decompression bomb guard)"
        )
    if not inflater.eof or inflater.unused_data:
        raise ProtocolError(
            "compressed payload (flags bit 0) is not a valid raw deflate stream: "
            + ("it is truncated" if not inflater.eof else "bytes follow its end")
        )
    return inflated


def _dequantize(
    payload: bytes | memoryview, encoding: int, scale_offset_db: float, scale_step_db: float
) -> npt.NDArray[np.float32]:
    """float32 dB from a payload, computed in float64 and rounded once (as JavaScript does)."""
    if encoding == ENCODING_FLOAT32:
        return np.frombuffer(payload, dtype="<f4").astype(np.float32)
    if encoding == ENCODING_INT16:
        levels = np.frombuffer(payload, dtype="<i2").astype(np.float64)
        return (levels / _INT16_STEPS_PER_DB).astype(np.float32)
    levels = np.frombuffer(payload, dtype=np.uint8).astype(np.float64)
    return (scale_offset_db + scale_step_db * levels).astype(np.float32)


@dataclass
class StreamInfo:
    """What a client is told about a stream in the ``hello`` message.

    ``encoding`` (a code, float32 by default) is the format, uncompressed, the stream's
    frames go out in to clients that did not choose one; ``step_db`` is its fixed uint8
    step in dB (0: automatic; see :class:`FrameFormat`). ``detector`` says what the
    frames show of each frame period ("" when the producer does not say) and
    ``second_detector`` the second trace the frames carry for clients that ask ("": none).
    """

    stream_id: int = 0
    name: str = "spectrum"
    bins: int = 2048
    center_freq_hz: float = 0.0
    span_hz: float = 0.0
    encoding: int = ENCODING_FLOAT32
    fps: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    step_db: float = 0.0
    detector: str = ""
    second_detector: str = ""

    @property
    def frame_format(self) -> FrameFormat:
        """The format clients that chose none get this stream's frames in."""
        return FrameFormat(self.encoding, step_db=self.step_db)

    def describe(self) -> dict[str, Any]:
        """The stream as ``hello`` announces it (a uint8 stream with its ``step_db`` too)."""
        described: dict[str, Any] = {
            "id": self.stream_id,
            "name": self.name,
            "bins": self.bins,
            "center_freq_hz": self.center_freq_hz,
            "span_hz": self.span_hz,
            "encoding": ENCODING_NAMES.get(self.encoding, str(self.encoding)),
            "fps": self.fps,
        }
        if self.encoding == ENCODING_UINT8:
            described["step_db"] = self.frame_format.step_db
        if self.detector:
            described["detector"] = self.detector
        if self.second_detector:
            described["second_detector"] = self.second_detector
        return {**described, **self.extra}


def _json_default(value: Any) -> Any:
    # numpy values (as pmt.to_python gives them) may hold NaN or inf too.
    if isinstance(value, np.generic):
        return _finite(value.item())
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _finite(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode_message(msg_type: str, body: Mapping[str, Any] | None = None) -> str:
    """Encode a JSON text message: ``{"type": msg_type, **body}``.

    ``type`` always comes from ``msg_type``. NaN and infinities become ``null``.

    Raises:
        ProtocolError: if a value cannot be represented in JSON.
    """
    message: dict[str, Any] = {"type": msg_type}
    for key, value in (body or {}).items():
        if key != "type":
            message[key] = value
    try:
        return json.dumps(_finite(message), default=_json_default, allow_nan=False,
                          separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:  # Recursion: nested too deeply
        raise ProtocolError(f"{msg_type} message cannot be sent as JSON: {exc}") from exc


def decode_message(text: str | bytes) -> dict[str, Any]:
    """Decode a JSON text message and check that it is an object with a string ``type``.

    Raises:
        ProtocolError: if the text is not UTF-8 JSON, not an object, or has no string ``type``.
    """
    if isinstance(text, bytes):
        # json.loads would guess UTF-16/32 for bytes and let encoded surrogates through.
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"message is not valid UTF-8: {exc}") from exc
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"message is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # e.g. 10,000 nested arrays: json gives up, so do we
        raise ProtocolError("message is not valid JSON: nested too deeply") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"message must be a JSON object, got {type(message).__name__}")
    msg_type = message.get("type")
    if not isinstance(msg_type, str) or not msg_type:
        raise ProtocolError('message must have a string "type" field')
    return message
