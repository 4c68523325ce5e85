// SPDX-License-Identifier: GPL-3.0-or-later
// The JavaScript decoder against the shared wire protocol v1 test vectors (tests/vectors/):
// every valid frame decodes to exactly what vectors.json says, every invalid one is refused
// with a ProtocolError naming the same problem as the Python decoder.
//
// Run: node --test tests/js/vectors.test.mjs

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  ENCODINGS, HEADER_SIZE, PROTOCOL_VERSION, ProtocolError, binFreqsHz, decodeFrame,
  decodeFrameAsync,
} from "../../gr_argos/web/argos-client.js";

const VECTORS = new URL("../vectors/", import.meta.url);
// Header bytes 11 (detector) and 14 (second_detector): the table in docs/protocol.md.
const DETECTOR_NAMES = ["", "sample", "peak", "average"];
const FLAG_SECOND_TRACE = 2;
const manifest = JSON.parse(readFileSync(new URL("vectors.json", VECTORS), "utf8"));

function load(file) {
  return readFileSync(new URL(file, VECTORS));
}

/** A file's bytes as a standalone ArrayBuffer, as a WebSocket delivers them. */
function arrayBuffer(file) {
  const bytes = load(file);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

function formulaPayload(p) {
  const expected = new Float32Array(p.bin_count);
  for (let i = 0; i < p.bin_count; i++) {
    expected[i] = Math.max(
      p.floor_db + ((7 * i * i + 3 * i) % p.ripple_modulus) * p.ripple_step_db,
      p.peak_db - p.peak_slope_db_per_bin * Math.abs(i - p.peak_bin));
  }
  return expected;
}

test("the manifest is for the protocol version this decoder speaks", () => {
  assert.equal(manifest.protocol_version, PROTOCOL_VERSION);
  assert.equal(HEADER_SIZE, 64);
  assert.ok(manifest.valid.length >= 19 && manifest.invalid.length >= 24);
  assert.deepEqual(ENCODINGS, ["float32", "int16", "uint8"]);
});

test("this Node has DecompressionStream, which compressed frames need", () => {
  assert.equal(typeof DecompressionStream, "function");
});

for (const entry of manifest.valid) {
  test(`${entry.file} decodes to every header field and bin the manifest gives`, async () => {
    const data = arrayBuffer(entry.file);
    assert.equal(data.byteLength, entry.size_bytes);
    const frame = await decodeFrameAsync(data);
    if (entry.header.flags & 1) {
      assert.throws(() => decodeFrame(data), /compressed.*decodeFrameAsync/);
    } else {
      assert.deepEqual(decodeFrame(data), frame);
    }
    const h = entry.header;
    assert.equal(h.magic, "ARGS");
    assert.equal(frame.version, h.version);
    assert.equal(frame.msgType, h.msg_type);
    assert.equal(frame.headerLen, h.header_len);
    assert.equal(frame.flags, h.flags);
    assert.equal(frame.encoding, h.encoding);
    assert.equal(frame.streamId, h.stream_id);
    assert.equal(frame.sequenceBig, BigInt(h.sequence_str));
    assert.equal(frame.sequence, Number(BigInt(h.sequence_str)));
    assert.equal(frame.missed, h.missed);
    assert.equal(frame.binCount, h.bin_count);
    assert.equal(frame.timestampNs, BigInt(h.timestamp_ns_str));
    assert.equal(frame.timestampMs, Number(BigInt(h.timestamp_ns_str)) / 1e6);
    assert.equal(frame.centerFreqHz, h.center_freq_hz);
    assert.equal(frame.spanHz, h.span_hz);
    assert.equal(frame.scaleOffsetDb, h.scale_offset_db);
    assert.equal(frame.scaleStepDb, h.scale_step_db);
    assert.equal(frame.detector, DETECTOR_NAMES[h.detector]);
    assert.ok(frame.power instanceof Float32Array);
    assert.equal(frame.power.length, h.bin_count);

    const payload = entry.payload;
    if (h.flags & FLAG_SECOND_TRACE) {
      assert.equal(frame.secondDetector, DETECTOR_NAMES[h.second_detector]);
      assert.ok(frame.secondPowerDb instanceof Float32Array);
      assert.deepEqual(Array.from(frame.secondPowerDb), payload.second_values);
    } else {
      assert.equal(h.second_detector, 0);
      assert.equal(frame.secondDetector, "");
      assert.equal(frame.secondPowerDb, null);
      assert.equal(payload.second_values, undefined);
    }
    if (payload.values !== undefined) {
      assert.deepEqual(Array.from(frame.power), payload.values);
      assert.deepEqual(Array.from(binFreqsHz(frame)), payload.bin_freqs_hz);
    } else if (payload.decoded_sha256 !== undefined) {
      const decodedBytes = new Uint8Array(frame.power.buffer);
      assert.equal(createHash("sha256").update(decodedBytes).digest("hex"), payload.decoded_sha256);
      const formula = formulaPayload(payload.parameters);
      for (let i = 0; i < formula.length; i++) {
        assert.ok(Math.abs(frame.power[i] - formula[i]) <= payload.max_error_db * (1 + 1e-6),
          `bin ${i}: ${frame.power[i]} vs ${formula[i]}`);
      }
      for (const [index, value] of payload.samples) assert.equal(frame.power[index], value);
    } else {
      assert.deepEqual(frame.power, formulaPayload(payload.parameters));
      const payloadBytes = load(entry.file).subarray(h.header_len);
      assert.equal(createHash("sha256").update(payloadBytes).digest("hex"), payload.sha256);
      const power = Array.from(frame.power);
      assert.equal(Math.min(...power), payload.min);
      assert.equal(Math.max(...power), payload.max);
      assert.equal(power.indexOf(payload.min), payload.argmin);
      assert.equal(power.indexOf(payload.max), payload.argmax);
      assert.equal(binFreqsHz(frame)[payload.argmax], payload.argmax_freq_hz);
      for (const [index, value] of payload.samples) assert.equal(frame.power[index], value);
    }
  });
}

test("a frame decodes the same from a Node Buffer, a Uint8Array at an offset and a DataView", () => {
  const bytes = load("basic.bin");
  const expected = decodeFrame(arrayBuffer("basic.bin"));
  const padded = new Uint8Array(bytes.length + 3);
  padded.set(bytes, 3); // payload not 4-byte aligned in its buffer
  for (const data of [bytes, padded.subarray(3), new DataView(padded.buffer, 3)]) {
    assert.deepEqual(decodeFrame(data), expected);
  }
});

test("the decoded traces are copies: changing the message buffer later does not change them", () => {
  const data = arrayBuffer("second_trace.bin");
  const frame = decodeFrame(data);
  new Uint8Array(data).fill(0);
  const { payload } = manifest.valid.find((entry) => entry.file === "second_trace.bin");
  assert.deepEqual(Array.from(frame.power), payload.values);
  assert.deepEqual(Array.from(frame.secondPowerDb), payload.second_values);
});

test("a second trace decodes from a buffer where it is not 4-byte aligned", () => {
  const bytes = load("second_trace.bin");
  const padded = new Uint8Array(bytes.length + 1);
  padded.set(bytes, 1);
  assert.deepEqual(decodeFrame(padded.subarray(1)), decodeFrame(arrayBuffer("second_trace.bin")));
});

test("a two-trace frame one byte short of its second trace is refused, saying 2 traces", () => {
  const bytes = load("second_trace.bin");
  assert.throws(() => decodeFrame(bytes.subarray(0, bytes.length - 1)),
    /payload is 31 bytes but 4 float32 bins \(encoding 0\) in each of 2 traces need 32 \(frame truncated\)/);
});

for (const entry of manifest.invalid) {
  test(`${entry.file} is refused with a ProtocolError mentioning "${entry.error_keyword}"`, async () => {
    const check = (error) => {
      assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${error}`);
      assert.equal(error.name, "ProtocolError");
      assert.match(error.message, new RegExp(entry.error_keyword, "i"));
      return true;
    };
    await assert.rejects(decodeFrameAsync(arrayBuffer(entry.file)), check);
    assert.throws(() => decodeFrame(arrayBuffer(entry.file)), ProtocolError);
  });
}

test("something that is not binary data is refused with a ProtocolError", () => {
  for (const data of ["ARGS", null, undefined, [1, 2, 3]]) {
    assert.throws(() => decodeFrame(data), ProtocolError);
  }
});
