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
     8     2    u16   flags            bit 0: payload compressed (reserved, must be 0 in v1)
    10     1    u8    encoding         0 = float32 dB (others reserved for later versions)
    11     1    u8    reserved         0
    12     2    u16   stream_id        which stream (channel) of the server
    14     2    u16   reserved         0
    16     8    u64   sequence         per-stream frame counter, +1 per frame produced
    24     4    u32   missed           frames this client lost since the previous one it got
    28     4    u32   bin_count        number of spectrum bins in the payload
    32     8    i64   timestamp_ns     capture time, ns since the Unix epoch
    40     8    f64   center_freq_hz   centre frequency of the frame
    48     8    f64   span_hz          frequency span (the sample rate for an FFT frame)
    56     4    f32   scale_offset_db  for quantized encodings: dB = offset + step * value
    60     4    f32   scale_step_db    (both 0 for float32)

Everything that is not a spectrum frame travels as a JSON text message with a ``type``.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAGIC",
    "PROTOCOL_VERSION",
    "HEADER_SIZE",
    "MSG_SPECTRUM",
    "ENCODING_FLOAT32",
    "ENCODING_NAMES",
    "MAX_CLIENT_MESSAGE_BYTES",
    "ProtocolError",
    "SpectrumFrame",
    "encode_frame",
    "decode_frame",
    "with_missed",
    "encode_message",
    "decode_message",
]

MAGIC = b"ARGS"
PROTOCOL_VERSION = 1
MSG_SPECTRUM = 1
ENCODING_FLOAT32 = 0
ENCODING_NAMES = {ENCODING_FLOAT32: "float32"}
KNOWN_FLAGS = 0  # bit 0 (compressed payload) is reserved; no flag is defined in v1

# Inbound messages from clients larger than this are refused (close code 1009).
MAX_CLIENT_MESSAGE_BYTES = 4096

_HEADER = struct.Struct("<4sBBHHBBHHQIIqddff")
HEADER_SIZE = _HEADER.size
_MISSED = struct.Struct("<I")
_MISSED_OFFSET = 24
_MAX_U32 = 0xFFFFFFFF

_BYTES_PER_BIN = {ENCODING_FLOAT32: 4}


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
        encoding: payload encoding code (``ENCODING_FLOAT32`` in v1).
        flags: header flags as sent.
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

    @property
    def bin_count(self) -> int:
        return int(self.power_db.shape[0])

    def bin_freqs_hz(self) -> npt.NDArray[np.float64]:
        """Centre frequency of each bin in Hz (FFT-shifted layout, DC in the middle)."""
        n = self.bin_count
        return self.center_freq_hz + (np.arange(n) - n // 2) * (self.span_hz / n)


def encode_frame(
    power_db: npt.ArrayLike,
    *,
    center_freq_hz: float,
    span_hz: float,
    timestamp_ns: int,
    sequence: int,
    stream_id: int = 0,
    missed: int = 0,
) -> bytes:
    """Encode one spectrum as a v1 binary frame (float32 dB payload).

    Args:
        power_db: 1-D array of power values in dB, lowest frequency first.
        center_freq_hz: centre frequency in Hz.
        span_hz: frequency span in Hz.
        timestamp_ns: capture time in ns since the Unix epoch.
        sequence: per-stream frame counter (0 .. 2**64-1).
        stream_id: stream (channel) id (0 .. 65535).
        missed: frames missed by the receiving client (normally 0; the hub patches it).

    Returns:
        The frame as bytes: header then payload.

    Raises:
        ProtocolError: if the spectrum is not one-dimensional or a field is out of range.
    """
    values = np.ascontiguousarray(power_db, dtype="<f4")
    if values.ndim != 1 or values.shape[0] == 0:
        raise ProtocolError(f"a spectrum must be a non-empty 1-D array, got shape {values.shape}")
    if not 0 <= stream_id <= 0xFFFF:
        raise ProtocolError(f"stream_id must be in 0..65535, got {stream_id}")
    if not 0 <= sequence < 2**64:
        raise ProtocolError(f"sequence must be in 0..2**64-1, got {sequence}")
    if not -(2**63) <= timestamp_ns < 2**63:
        raise ProtocolError(
            f"timestamp_ns must fit in a signed 64-bit integer, got {timestamp_ns}"
        )
    header = _HEADER.pack(
        MAGIC,
        PROTOCOL_VERSION,
        MSG_SPECTRUM,
        HEADER_SIZE,
        0,
        ENCODING_FLOAT32,
        0,
        stream_id,
        0,
        sequence,
        min(max(missed, 0), _MAX_U32),
        values.shape[0],
        int(timestamp_ns),
        float(center_freq_hz),
        float(span_hz),
        0.0,
        0.0,
    )
    return header + values.tobytes()


def with_missed(frame: bytes, missed: int) -> bytes:
    """Return a copy of an encoded frame whose ``missed`` field says ``missed``.

    The hub encodes a frame once for all clients (missed = 0) and patches these four
    bytes only for the clients that lost frames, so the common case costs no copy.
    Counts above 2**32-1 saturate.
    """
    patched = bytearray(frame)
    _MISSED.pack_into(patched, _MISSED_OFFSET, min(max(missed, 0), _MAX_U32))
    return bytes(patched)


def decode_frame(data: bytes | bytearray | memoryview) -> SpectrumFrame:
    """Decode a v1 binary spectrum frame.

    Raises:
        ProtocolError: if the frame is truncated, has the wrong magic or version, uses an
            encoding or flag this version does not know, or its payload length does not
            match its bin count. A bad frame never yields a wrong array.
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
        _reserved1,
        stream_id,
        _reserved2,
        sequence,
        missed,
        bin_count,
        timestamp_ns,
        center_freq_hz,
        span_hz,
        _scale_offset_db,
        _scale_step_db,
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
    payload = view[header_len:]
    expected = bin_count * bytes_per_bin
    if len(payload) != expected:
        raise ProtocolError(
            f"payload is {len(payload)} bytes but {bin_count} {ENCODING_NAMES[encoding]} bins "
            f"need {expected}" + (" (frame truncated)" if len(payload) < expected else "")
        )
    if bin_count == 0:
        raise ProtocolError("frame has no bins")
    power_db = np.frombuffer(payload, dtype="<f4").astype(np.float32)
    return SpectrumFrame(
        power_db=power_db,
        center_freq_hz=center_freq_hz,
        span_hz=span_hz,
        timestamp_ns=timestamp_ns,
        sequence=sequence,
        stream_id=stream_id,
        missed=missed,
        encoding=encoding,
        flags=flags,
    )


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
    except (TypeError, ValueError) as exc:
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
    if not isinstance(message, dict):
        raise ProtocolError(f"message must be a JSON object, got {type(message).__name__}")
    msg_type = message.get("type")
    if not isinstance(msg_type, str) or not msg_type:
        raise ProtocolError('message must have a string "type" field')
    return message
