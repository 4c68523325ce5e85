# SPDX-License-Identifier: GPL-3.0-or-later
"""Property-based fuzzing (hypothesis) of everything a remote peer can feed gr-argos.

* ``decode_frame``: random bytes, random headers, and bit flips / truncations / extensions
  of valid frames of every encoding, compressed or not, must either decode to a frame that
  agrees with its header or raise ``ProtocolError``; decompression bombs are refused fast.
* ``decode_message``: random text and bytes, random and huge JSON, JSON nested 10,000 deep,
  invalid UTF-8: ``ProtocolError`` or an object with a non-empty string ``type``.
* A real ``SpectrumServer`` fed hostile client messages (random JSON objects of known and
  unknown types, deep nesting under 4096 bytes, binary and oversized messages, invalid
  UTF-8 text frames on a raw socket, a permessage-deflate bomb): it answers with an
  ``error`` (or the normal reply) or closes with the documented code, never logs an error
  or traceback, and a healthy client connected throughout still gets its frames.

Every ``@given`` test is derandomized (reproducible in CI) and bounded (the file runs in
well under 30 s on a loaded 2-core machine).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gr_argos.protocol import (
    ENCODING_FLOAT32, ENCODING_INT16, ENCODING_UINT8, FLAG_COMPRESSED, HEADER_SIZE, MAGIC,
    MAX_CLIENT_MESSAGE_BYTES, ProtocolError, decode_frame, decode_message, encode_frame,
    encode_message,
)
from gr_argos.protocol import StreamInfo
from gr_argos.server import ServerConfig, SpectrumServer

from server_helpers import (
    OP_TEXT, WAIT_S, RawClient, StartServer, client, close_code_seen, next_json,
    spectrum_frame,
)

_HEADER = struct.Struct("<4sBBHHBBHHQIIqddff")
_BYTES_PER_BIN = {ENCODING_FLOAT32: 4, ENCODING_INT16: 2, ENCODING_UINT8: 1}
_F32_MAX = float(np.finfo(np.float32).max)
_ENCODINGS = (ENCODING_FLOAT32, ENCODING_INT16, ENCODING_UINT8)

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
SERVER = settings(max_examples=20, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow,
                                         HealthCheck.function_scoped_fixture,
                                         HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------
# decode_frame


def check_frame(data: bytes) -> None:
    """decode_frame(data) raises ProtocolError or returns a frame its header describes."""
    try:
        frame = decode_frame(data)
    except ProtocolError:
        return
    (magic, version, msg_type, header_len, flags, encoding, _r1, stream_id, _r2, sequence,
     missed, bin_count, timestamp_ns, center, span, offset_db, step_db) = _HEADER.unpack_from(data)
    assert (magic, version, msg_type) == (MAGIC, 1, 1)
    assert HEADER_SIZE <= header_len <= len(data)
    assert flags & ~FLAG_COMPRESSED == 0 and encoding in _BYTES_PER_BIN
    assert bin_count > 0
    assert frame.power_db.dtype == np.float32 and frame.power_db.shape == (bin_count,)
    assert (frame.stream_id, frame.sequence, frame.missed, frame.timestamp_ns) == (
        stream_id, sequence, missed, timestamp_ns)
    assert (frame.encoding, frame.flags) == (encoding, flags)
    assert frame.center_freq_hz == center or (math.isnan(center) and math.isnan(frame.center_freq_hz))
    if not flags & FLAG_COMPRESSED:
        assert len(data) - header_len == bin_count * _BYTES_PER_BIN[encoding]
    values = frame.power_db.astype(np.float64)
    if encoding == ENCODING_INT16:
        assert np.all(np.isfinite(values)) and np.all(np.abs(values) <= 327.68 + 1e-3)
    elif encoding == ENCODING_UINT8:
        assert math.isfinite(offset_db) and math.isfinite(step_db) and step_db > 0
        # Finite whenever the scale's 256 levels fit in float32 (the encoder's always do).
        if abs(offset_db) + 255 * step_db < _F32_MAX * 0.99:
            assert np.all(np.isfinite(values))
            low, high = offset_db, offset_db + 255 * step_db
            slack = 1e-6 * max(abs(low), abs(high), 1.0)
            assert np.all(values >= low - slack) and np.all(values <= high + slack)


spectra = st.lists(
    st.one_of(st.floats(-200, 50, width=32), st.floats(width=32)), min_size=1, max_size=64)


@st.composite
def valid_frames(draw: st.DrawFn) -> bytes:
    """A valid frame of any encoding, compressed (when that helps) or not."""
    power = draw(spectra)
    if draw(st.booleans()):  # compressible: repeated values
        power = power[:2] * draw(st.integers(1, 40))
    return encode_frame(
        np.array(power, dtype=np.float32),
        center_freq_hz=draw(st.floats(allow_nan=False)), span_hz=2e6,
        timestamp_ns=draw(st.integers(-(2**63), 2**63 - 1)),
        sequence=draw(st.integers(0, 2**64 - 1)), stream_id=draw(st.integers(0, 0xFFFF)),
        missed=draw(st.integers(0, 2**32)), encoding=draw(st.sampled_from(_ENCODINGS)),
        compress=draw(st.booleans()))


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with a few bit flips, byte overwrites, truncations or extensions."""
    data = bytearray(draw(valid_frames()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "extend", "header_field"]))
        if kind == "flip" and data:
            bit = draw(st.integers(0, len(data) * 8 - 1))
            data[bit // 8] ^= 1 << (bit % 8)
        elif kind == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=300))
        elif kind == "header_field" and len(data) >= HEADER_SIZE:
            # Overwrite one of header_len / flags / encoding / bin_count / scale fields.
            offset, fmt = draw(st.sampled_from(
                [(6, "<H"), (8, "<H"), (10, "<B"), (28, "<I"), (56, "<f"), (60, "<f")]))
            raw = draw(st.binary(min_size=struct.calcsize(fmt), max_size=struct.calcsize(fmt)))
            data[offset:offset + len(raw)] = raw
    return bytes(data)


@st.composite
def random_headers(draw: st.DrawFn) -> bytes:
    """A header that gets past the magic/version/type checks, then random fields and payload."""
    rest = draw(st.binary(min_size=HEADER_SIZE - 6, max_size=HEADER_SIZE - 6))
    head = bytearray(MAGIC + bytes([1, 1]) + rest)
    head[6:8] = struct.pack("<H", draw(st.sampled_from([HEADER_SIZE, HEADER_SIZE + 8,
                                                        draw(st.integers(0, 0xFFFF))])))
    head[8:10] = struct.pack("<H", draw(st.sampled_from([0, FLAG_COMPRESSED, 2, 0xFFFF])))
    head[10] = draw(st.integers(0, 3))
    head[28:32] = struct.pack("<I", draw(st.one_of(st.integers(0, 300),
                                                   st.integers(0, 2**32 - 1))))
    payload = draw(st.one_of(st.binary(max_size=600),
                             st.binary(max_size=200).map(
                                 lambda b: zlib.compress(b, 6, )[2:-4])))
    return bytes(head) + payload


@FAST
@given(st.binary(max_size=400))
def test_decode_frame_random_bytes(data: bytes) -> None:
    check_frame(data)
    check_frame(MAGIC + b"\x01\x01" + data)


@FAST
@given(random_headers())
def test_decode_frame_random_headers(data: bytes) -> None:
    check_frame(data)


@FAST
@given(valid_frames())
def test_decode_frame_valid_frames_decode(data: bytes) -> None:
    decode_frame(data)  # a frame the encoder made always decodes
    check_frame(data)


@settings(FAST, max_examples=400)
@given(mutated_frames())
def test_decode_frame_mutated_frames(data: bytes) -> None:
    check_frame(data)


def _bomb(bin_count: int, encoding: int, inflated_size: int, fill: bytes = b"\0") -> bytes:
    header = _HEADER.pack(MAGIC, 1, 1, HEADER_SIZE, FLAG_COMPRESSED, encoding, 0, 0, 0, 0, 0,
                          bin_count, 0, 100e6, 2e6,
                          0.0 if encoding != ENCODING_UINT8 else -100.0,
                          0.0 if encoding != ENCODING_UINT8 else 0.5)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = fill * (1 << 20)
    parts = [deflater.compress(chunk) for _ in range(inflated_size >> 20)]
    parts.append(deflater.compress(fill * (inflated_size & ((1 << 20) - 1))))
    return header + b"".join(parts) + deflater.flush()


@pytest.fixture(scope="module")
def big_bomb() -> bytes:
    """A 2048-bin float32 frame whose 47 KB payload inflates to 48 MiB."""
    return _bomb(2048, ENCODING_FLOAT32, 48 << 20)


def test_decode_frame_refuses_a_big_decompression_bomb_quickly(big_bomb: bytes) -> None:
    assert len(big_bomb) < 100_000
    started = time.perf_counter()
    with pytest.raises(ProtocolError, match="decompression bomb"):
        decode_frame(big_bomb)
    assert time.perf_counter() - started < 0.5


@settings(FAST, max_examples=60)
@given(st.integers(1, 4096), st.sampled_from(_ENCODINGS), st.integers(1, 5000),
       st.sampled_from([b"\0", b"\xff", b"ab"]))
def test_decode_frame_refuses_decompression_bombs(bin_count: int, encoding: int,
                                                  extra: int, fill: bytes) -> None:
    """A payload inflating to more than bin_count bins is refused, however much more."""
    expected = bin_count * _BYTES_PER_BIN[encoding]
    bomb = _bomb(bin_count, encoding, expected * (1 + extra % 50) + extra, fill)
    started = time.perf_counter()
    with pytest.raises(ProtocolError):
        decode_frame(bomb)
    assert time.perf_counter() - started < 0.5


# ---------------------------------------------------------------------------------------
# decode_message / encode_message


def check_message(text: str | bytes) -> dict[str, Any] | None:
    """decode_message(text) raises ProtocolError or returns an object with a string type."""
    try:
        message = decode_message(text)
    except ProtocolError:
        return None
    assert isinstance(message, dict)
    assert isinstance(message["type"], str) and message["type"]
    return message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)

KNOWN_TYPES = ["ping", "stats", "set_encoding", "auth"]
message_types = st.one_of(st.sampled_from(KNOWN_TYPES + ["", "hello", "error", "x" * 200]),
                          st.text(max_size=16), json_values)


@st.composite
def json_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object with a known or unknown type and known or random fields."""
    obj: dict[str, Any] = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4))
    for name in ("id", "encoding", "compress", "token"):
        if draw(st.booleans()):
            obj[name] = draw(st.one_of(
                json_values, st.sampled_from(["float32", "int16", "uint8", "int8"])))
    if draw(st.integers(0, 9)):
        obj["type"] = draw(message_types)
    return obj


def nested(depth: int, kind: str = "[]") -> str:
    return kind[0] * depth + kind[1] * depth if kind == "[]" else '{"a":' * depth + "1" + "}" * depth


@FAST
@given(st.one_of(st.text(), st.binary()))
def test_decode_message_random_text_and_bytes(text: str | bytes) -> None:
    check_message(text)


@FAST
@given(st.one_of(json_objects(), json_values))
def test_decode_message_random_json(value: Any) -> None:
    text = json.dumps(value)
    message = check_message(text)
    check_message(text.encode("utf-8"))
    if isinstance(value, dict) and isinstance(value.get("type"), str) and value["type"]:
        assert message is not None and message["type"] == value["type"]


@FAST
@given(st.binary(min_size=1, max_size=100))
def test_decode_message_invalid_utf8_is_a_protocol_error(data: bytes) -> None:
    raw = b'{"type":"ping","id":"' + data + b'\xff"}'
    with pytest.raises(ProtocolError, match="UTF-8"):
        decode_message(raw)
    check_message(data)


@pytest.mark.parametrize("text", [
    nested(10_000), nested(10_000, "{}"), "[" * 10_000, '{"type":"ping","id":' + nested(10_000) + "}",
    '{"type":"ping","id":' + "[" * 100_000, b"[" * 10_000,
])
def test_decode_message_deep_nesting_is_a_protocol_error(text: str | bytes) -> None:
    """json raises RecursionError on deep nesting: decode_message must not let it through."""
    with pytest.raises(ProtocolError):
        decode_message(text)


@pytest.mark.parametrize("text", [
    b"\xed\xa0\x80", '{"type":"ping"}'.encode("utf-16"), b'{"type":"\xc0\xaf"}',
    b'{"type":"\xf4\x90\x80\x80"}', b"\xff\xfe",
])
def test_decode_message_invalid_utf8_samples(text: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(text)


def test_decode_message_huge_json() -> None:
    """A 20 MB message decodes (size limits are the server's job) without trouble."""
    big = json.dumps({"type": "ping", "id": ["x" * 100] * 200_000})
    assert decode_message(big)["type"] == "ping"
    assert check_message("[" + "1," * 1_000_000 + "1]") is None


@pytest.mark.parametrize("depth", [50, 300, 900, 5000])
def test_encode_message_of_deeply_nested_values_is_a_protocol_error(depth: int) -> None:
    """Echoing a deeply nested ping id used to raise RecursionError out of encode_message."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    try:
        text = encode_message("pong", {"id": value})
    except ProtocolError:
        return
    assert json.loads(text)["type"] == "pong"


# ---------------------------------------------------------------------------------------
# the server


def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records
           if r.name.startswith(("gr_argos", "websockets")) and
           (r.levelno >= logging.ERROR or r.exc_info)]
    assert not bad, "server logged errors: " + "; ".join(
        f"{r.name}: {r.getMessage()}" for r in bad)


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client-to-server WebSocket frame (FIN set, masked)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _raw_text_close_code(port: int, payload: bytes) -> int:
    """Send ``payload`` as a text frame on a raw socket; the server's close code."""
    raw = RawClient(port)
    try:
        raw.sock.sendall(_masked_frame(OP_TEXT, payload))
        _frames, code = raw.read_until_close()
        return code
    finally:
        raw.close()


REPLY_TYPES = {"error", "pong", "stats", "encoding"}
ERROR_CODES = {"bad_json", "bad_message", "unknown_type"}


async def _send_and_collect(ws: Any, text: str, marker: int) -> list[dict[str, Any]]:
    """Send ``text`` then a marker ping; the replies to ``text`` (up to the marker's pong)."""
    await ws.send(text)
    await ws.send(json.dumps({"type": "ping", "id": f"marker-{marker}"}))
    replies = []
    while True:
        reply = await next_json(ws)
        if reply == {"type": "pong", "id": f"marker-{marker}",
                     "server_time_ns": reply.get("server_time_ns")}:
            return replies
        replies.append(reply)


async def _fuzz_one(server: SpectrumServer, ws: Any, item: tuple[str, Any], marker: int) -> Any:
    """Feed one hostile item; returns the (possibly new) fuzzing connection."""
    kind, value = item
    if kind == "text":
        replies = await _send_and_collect(ws, value, marker)
        assert len(replies) <= 1, (value, replies)
        for reply in replies:
            assert reply["type"] in REPLY_TYPES, (value, reply)
            if reply["type"] == "error":
                assert reply["code"] in ERROR_CODES and isinstance(reply["message"], str)
        if not replies:  # only an auth message with a valid token field goes unanswered
            assert json.loads(value)["type"] == "auth", value
        return ws
    if kind == "binary":
        await ws.send(value)
        error = await next_json(ws)
        assert (error["type"], error["code"]) == ("error", "binary_not_supported")
        assert await close_code_seen(ws) == 1003
    elif kind == "oversized":
        await ws.send(value)
        assert await close_code_seen(ws) == 1009
    elif kind == "invalid_utf8":
        code = await asyncio.to_thread(_raw_text_close_code, server.port, value)
        assert code == 1007  # websockets: invalid frame payload data
        return ws
    await ws.close()
    new = await connect(server.url, open_timeout=WAIT_S, compression=None)
    assert (await next_json(new))["type"] == "hello"
    return new


def _deep(depth: int, where: str) -> str:
    inner = nested(depth)
    return {"top": inner,
            "ping_id": '{"type":"ping","id":' + inner + "}",
            "encoding": '{"type":"set_encoding","encoding":' + inner + "}",
            "token": '{"type":"auth","token":' + inner + "}",
            "object": '{"type":"stats","x":' + nested(depth // 6, "{}") + "}",
            "type": '{"type":' + inner + "}"}[where]


hostile_items = st.one_of(
    json_objects().map(lambda obj: ("text", json.dumps(obj))),
    st.text(max_size=200).map(lambda t: ("text", t)),
    st.tuples(st.sampled_from([40, 330, 600, 1000, 1500, 2000]) | st.integers(1, 2000),
              st.sampled_from(
        ["top", "ping_id", "encoding", "token", "object", "type"])).map(
            lambda a: ("text", _deep(*a))),
    st.binary(max_size=64).map(lambda b: ("binary", b)),
    st.integers(MAX_CLIENT_MESSAGE_BYTES + 1, 20_000).map(lambda n: ("oversized", "[" * n)),
    st.binary(min_size=1, max_size=32).filter(lambda b: not _is_utf8(b))
    .map(lambda b: ("invalid_utf8", b)),
)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[SpectrumServer]:
    """One server for the module's hypothesis test: no rate limit, permessage-deflate on."""
    server = SpectrumServer(ServerConfig(port=0, max_messages_per_s=0, queue_depth=64,
                                         permessage_deflate=True))
    server.add_stream(StreamInfo(stream_id=0, name="spectrum", bins=2048,
                                 center_freq_hz=100e6, span_hz=2.048e6, fps=30.0))
    server.start()
    yield server
    server.stop()


_sequence = iter(range(1_000_000, 2_000_000))


async def _healthy_client_gets(server: SpectrumServer, healthy: Any) -> None:
    """Publish a frame; the healthy client receives exactly it."""
    sequence = next(_sequence)
    frame = spectrum_frame(sequence)
    server.publish_frame(0, frame)
    async with asyncio.timeout(WAIT_S):
        while True:
            message = await healthy.recv()
            if isinstance(message, bytes) and decode_frame(message).sequence == sequence:
                assert message == frame
                return


@SERVER
@given(st.lists(hostile_items, min_size=5, max_size=25))
def test_server_survives_hostile_messages(fuzz_server: SpectrumServer,
                                          caplog: pytest.LogCaptureFixture,
                                          items: list[tuple[str, Any]]) -> None:
    # Hypothesis raises the (process-wide) recursion limit while it runs a test, so deep
    # nesting here rarely reaches RecursionError: test_server_hostile_samples covers that.
    async def scenario() -> None:
        async with client(fuzz_server) as healthy:
            ws = await connect(fuzz_server.url, open_timeout=WAIT_S, compression=None)
            try:
                assert (await next_json(ws))["type"] == "hello"
                for marker, item in enumerate(items):
                    ws = await _fuzz_one(fuzz_server, ws, item, marker)
                # The fuzzing connection is still answered, the healthy one still served.
                assert (await _send_and_collect(ws, '{"type":"stats"}', -1))[0]["type"] == "stats"
                await _healthy_client_gets(fuzz_server, healthy)
            finally:
                await ws.close()

    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
    _no_errors_logged(caplog)


async def test_server_hostile_samples(start_server: StartServer,
                                      caplog: pytest.LogCaptureFixture) -> None:
    """Fixed hostile messages, each the worst of its kind, against a rate-limited server."""
    caplog.set_level(logging.INFO)
    server = start_server(queue_depth=64, max_messages_per_s=0, permessage_deflate=True)
    async with client(server) as healthy, client(server) as offender:
        deep = [_deep(d, w) for d in (330, 500, 1000, 2000)
                for w in ("top", "ping_id", "encoding", "token", "type")]
        deep = [text for text in deep if len(text) <= MAX_CLIENT_MESSAGE_BYTES]
        deep.append("[" * MAX_CLIENT_MESSAGE_BYTES)
        for marker, text in enumerate(deep):
            replies = await _send_and_collect(offender, text, marker)
            assert len(replies) == 1 and replies[0]["type"] in ("error", "pong"), (text, replies)
            if replies[0]["type"] == "error":
                assert replies[0]["code"] in ERROR_CODES
        for payload in (b"\xff", b'{"type":"ping"}\xed\xa0\x80', b"\xc0\xaf"):
            assert await asyncio.to_thread(_raw_text_close_code, server.port, payload) == 1007
        await _healthy_client_gets(server, healthy)
        assert (await _send_and_collect(offender, '{"type":"stats"}', -1))[0]["type"] == "stats"
    _no_errors_logged(caplog)


async def test_permessage_deflate_bomb_closes_1009_and_server_keeps_serving(
        start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    """A message compressed to a few kB that inflates to 8 MB is refused with 1009 (the
    4096-byte limit applies after inflating); other clients and new connections are fine."""
    caplog.set_level(logging.INFO)
    server = start_server(queue_depth=64, permessage_deflate=True)
    bomb = '{"type":"ping","id":"' + " " * (8 << 20) + '"}'
    async with client(server) as healthy:
        async with connect(server.url, open_timeout=WAIT_S, compression="deflate",
                           max_size=None) as offender:
            assert offender.protocol.extensions, "permessage-deflate was not negotiated"
            assert (await next_json(offender))["type"] == "hello"
            started = time.monotonic()
            try:
                await offender.send(bomb)
            except ConnectionClosed:
                pass
            assert await close_code_seen(offender) == 1009
            assert time.monotonic() - started < WAIT_S
        await _healthy_client_gets(server, healthy)
        async with client(server) as newcomer:
            await newcomer.send('{"type":"ping","id":1}')
            assert (await next_json(newcomer))["type"] == "pong"
    _no_errors_logged(caplog)


def test_raw_socket_still_works_after_garbage() -> None:
    """Plain TCP garbage instead of a handshake is refused without a traceback."""
    server = SpectrumServer(ServerConfig(port=0))
    server.start()
    try:
        for junk in (b"\x00" * 100, b"GET / HTTP/1.1\r\n\r\n", os.urandom(300)):
            with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
                sock.sendall(junk)
                try:
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(4096):
                        pass
                except OSError:
                    pass
        assert server.running
    finally:
        server.stop()
