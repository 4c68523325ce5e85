// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos JavaScript client: decode wire protocol v1 spectrum frames and receive them
// from a gr-argos server over a WebSocket that reconnects by itself.
//
// An ES module with no dependencies and no build step. It runs in browsers and in Node 20+
// (pass a WebSocket constructor there, see docs/js-client.md). The wire format is defined
// in docs/protocol.md; gr_argos/protocol.py is the Python codec and gr_argos/client/ the
// Python client whose reconnect and gap rules this module follows. Both codecs are tested
// against the shared vectors in tests/vectors/.
//
//   import { ArgosClient } from "/argos-client.js";
//   const client = new ArgosClient("ws://127.0.0.1:8765/");
//   client.addEventListener("frame", (e) => draw(e.detail.frame.power));
//   client.connect();

/** Size of the v1 frame header in bytes (a frame's header_len may be larger). */
export const HEADER_SIZE = 64;
/** The wire protocol version this module speaks: the version byte of every frame. */
export const PROTOCOL_VERSION = 1;

const MAGIC = "ARGS";
const MSG_SPECTRUM = 1;
const ENCODING_FLOAT32 = 0;
const ENCODING_INT16 = 1;
const ENCODING_UINT8 = 2;
const ENCODING_NAMES = {
  [ENCODING_FLOAT32]: "float32", [ENCODING_INT16]: "int16", [ENCODING_UINT8]: "uint8",
};
const BYTES_PER_BIN = { [ENCODING_FLOAT32]: 4, [ENCODING_INT16]: 2, [ENCODING_UINT8]: 1 };
const INT16_STEPS_PER_DB = 100;
const FLAG_COMPRESSED = 0x0001; // the payload is a raw deflate stream (RFC 1951)
const FLAG_SECOND_TRACE = 0x0002; // a second trace of bin_count values follows the first
const KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_SECOND_TRACE;
// Header bytes 11 and 14; a code this module does not know reads as "" (not stated).
const DETECTOR_NAMES = { 0: "", 1: "sample", 2: "peak", 3: "average" };
/** The payload encodings a client can ask for (the `encoding` option, `set_encoding`). */
export const ENCODINGS = Object.freeze(Object.values(ENCODING_NAMES));
// A fixed uint8 step (the `stepDb` option, `step_db` on the wire) is 0 or in this range, dB.
const STEP_DB_MIN = 0.01;
const STEP_DB_MAX = 20;
// A view (the `view` option, setView; `set_view` on the wire): its keys and limits.
const VIEW_KEYS = {
  streamId: "stream_id", centerFreqHz: "center_freq_hz", spanHz: "span_hz", bins: "bins",
  fpsDivisor: "fps_divisor",
};
const MAX_VIEW_BINS = 1 << 20;
const MAX_FPS_DIVISOR = 100;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export const GAP_DROPPED_BY_SERVER = "dropped by server"; // the frame's missed field says so
export const GAP_SEQUENCE_JUMP = "sequence jump"; // e.g. frames produced while reconnecting
export const GAP_STREAM_RESTARTED = "stream restarted"; // the sequence went backwards

const MAX_PINGS_IN_FLIGHT = 8;
const WS_OPEN = 1;
const CLOSE_POLICY_VIOLATION = 1008; // before hello: authentication failed
const MAX_TOKEN_CHARS = 4096;

/** A message does not follow the gr-argos wire protocol; the message says how. */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

// -- frames -------------------------------------------------------------------------------

/**
 * Decode one v1 binary spectrum frame (a whole binary WebSocket message) whose payload is
 * not compressed; use decodeFrameAsync for any frame.
 *
 * The rules, and the order they are checked in, are those of decode_frame in
 * gr_argos/protocol.py, so both reject the same frames with the same words.
 *
 * @param {ArrayBuffer | ArrayBufferView} data the frame: header then payload.
 * @returns {object} the frame; `power` is a new Float32Array of the bins in dB, and
 *   `secondPowerDb` another one for the second trace of a frame with flag bit 1 (else null).
 * @throws {ProtocolError} if the frame is truncated, is not a v1 spectrum frame, uses a
 *   flag or encoding v1 does not define, has a bad uint8 scale or no bins, its payload
 *   length does not match bin_count (twice bin_count with flag bit 1), or its payload is
 *   compressed (flags bit 0).
 */
export function decodeFrame(data) {
  const header = readHeader(data);
  if (header.flags & FLAG_COMPRESSED) {
    throw new ProtocolError("frame has a compressed payload (flags bit 0): decode it with " +
      "decodeFrameAsync, which inflates it with DecompressionStream");
  }
  return finishFrame(header, header.bytes.subarray(header.headerLen), false);
}

/**
 * Decode any v1 binary spectrum frame, inflating a compressed payload (flags bit 0) with
 * `DecompressionStream("deflate-raw")`; inflating stops at the bytes bin_count needs (in
 * each of 2 traces with flag bit 1), so a decompression bomb is refused, not expanded.
 *
 * @param {ArrayBuffer | ArrayBufferView} data the frame: header then payload (copied
 *   before this returns its promise, so the caller may reuse the buffer).
 * @returns {Promise<object>} the frame, as decodeFrame returns it.
 * @throws {ProtocolError} (as a rejection) for everything decodeFrame refuses except
 *   compression, and for a payload that is not a raw deflate stream or inflates to
 *   anything but bin_count bins per trace.
 */
export async function decodeFrameAsync(data) {
  const header = readHeader(data);
  if (!(header.flags & FLAG_COMPRESSED)) {
    return finishFrame(header, header.bytes.subarray(header.headerLen), false);
  }
  const compressed = header.bytes.slice(header.headerLen);
  const payload = await inflateRaw(compressed, header.payloadBytes,
    `${header.binCount} ${binsName(header)}`);
  return finishFrame(header, payload, true);
}

function readHeader(data) {
  const bytes = asBytes(data);
  if (bytes.byteLength < HEADER_SIZE) {
    throw new ProtocolError(
      `frame truncated: ${bytes.byteLength} bytes is shorter than the ${HEADER_SIZE}-byte header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]);
  if (magic !== MAGIC) {
    throw new ProtocolError(
      `not a gr-argos frame: magic ${JSON.stringify(magic)}, expected ${JSON.stringify(MAGIC)}`);
  }
  const version = view.getUint8(4);
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      `unsupported protocol version ${version} (this decoder speaks ${PROTOCOL_VERSION})`);
  }
  const msgType = view.getUint8(5);
  if (msgType !== MSG_SPECTRUM) {
    throw new ProtocolError(`unknown binary message type ${msgType}`);
  }
  const headerLen = view.getUint16(6, true);
  if (headerLen < HEADER_SIZE || headerLen > bytes.byteLength) {
    throw new ProtocolError(
      `bad header length ${headerLen} in a ${bytes.byteLength}-byte frame (at least ${HEADER_SIZE})`);
  }
  const flags = view.getUint16(8, true);
  if (flags & ~KNOWN_FLAGS) {
    throw new ProtocolError(
      `unknown flags 0x${flags.toString(16).padStart(4, "0")} for protocol version ${version}`);
  }
  const encoding = view.getUint8(10);
  if (BYTES_PER_BIN[encoding] === undefined) {
    throw new ProtocolError(`unknown payload encoding ${encoding}`);
  }
  const scaleOffsetDb = view.getFloat32(56, true);
  const scaleStepDb = view.getFloat32(60, true);
  if (encoding === ENCODING_UINT8 &&
      !(Number.isFinite(scaleOffsetDb) && Number.isFinite(scaleStepDb) && scaleStepDb > 0)) {
    throw new ProtocolError(`bad uint8 scale: offset ${scaleOffsetDb} dB, step ${scaleStepDb} dB ` +
      "(both must be finite and the step > 0)");
  }
  const binCount = view.getUint32(28, true);
  if (binCount === 0) {
    // Before the payload checks, which would blame the payload's length or deflate data.
    throw new ProtocolError("frame has no bins");
  }
  const traces = flags & FLAG_SECOND_TRACE ? 2 : 1;
  return {
    bytes, view, version, msgType, headerLen, flags, encoding, scaleOffsetDb, scaleStepDb,
    binCount, traces, payloadBytes: traces * binCount * BYTES_PER_BIN[encoding],
  };
}

function binsName(header) {
  return `${ENCODING_NAMES[header.encoding]} bins (encoding ${header.encoding})` +
    (header.traces === 2 ? " in each of 2 traces" : "");
}

function finishFrame(header, payload, inflated) {
  const { view, binCount, payloadBytes: expectedBytes } = header;
  if (payload.byteLength !== expectedBytes) {
    const kind = inflated ? "decompressed payload" : "payload";
    throw new ProtocolError(
      `${kind} is ${payload.byteLength} bytes but ${binCount} ${binsName(header)} ` +
      `need ${expectedBytes}` +
      (payload.byteLength < expectedBytes && !inflated ? " (frame truncated)" : ""));
  }
  const second = header.traces === 2;
  const sequenceBig = view.getBigUint64(16, true);
  const timestampNs = view.getBigInt64(32, true);
  return {
    power: readPower(header, payload, 0),
    detector: DETECTOR_NAMES[view.getUint8(11)] ?? "",
    secondPowerDb: second ? readPower(header, payload, binCount) : null,
    secondDetector: second ? DETECTOR_NAMES[view.getUint8(14)] ?? "" : "",
    centerFreqHz: view.getFloat64(40, true),
    spanHz: view.getFloat64(48, true),
    binCount,
    sequence: Number(sequenceBig),
    sequenceBig,
    missed: view.getUint32(24, true),
    // Byte 15, bit 0: sent again from the server's resume ring (a resume, a backfill).
    replayed: (view.getUint8(15) & 1) === 1,
    streamId: view.getUint16(12, true),
    timestampNs,
    timestampMs: Number(timestampNs) / 1e6,
    encoding: header.encoding,
    flags: header.flags,
    headerLen: header.headerLen,
    version: header.version,
    msgType: header.msgType,
    scaleOffsetDb: header.scaleOffsetDb,
    scaleStepDb: header.scaleStepDb,
  };
}

/** Inflate a raw deflate stream, refusing to produce more than `expected` bytes. */
async function inflateRaw(compressed, expected, what) {
  if (typeof DecompressionStream !== "function") {
    throw new ProtocolError("cannot inflate a compressed frame: this JavaScript runtime has no " +
      "DecompressionStream (browsers and Node 18+ have one)");
  }
  const stream = new DecompressionStream("deflate-raw");
  const writer = stream.writable.getWriter();
  writer.write(compressed).catch(() => {}); // failures surface on the reading side
  writer.close().catch(() => {});
  const reader = stream.readable.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    let result;
    try {
      result = await reader.read();
    } catch (error) {
      throw new ProtocolError("compressed payload (flags bit 0) is not a valid raw deflate " +
        `stream: ${error?.message ?? error}`);
    }
    if (result.done) break;
    total += result.value.byteLength;
    if (total > expected) {
      reader.cancel().catch(() => {});
      throw new ProtocolError(`compressed payload inflates to more than the ${expected} bytes ` +
        `${what} need; refused (decompression bomb guard)`);
    }
    chunks.push(result.value);
  }
  const payload = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    payload.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return payload;
}

/**
 * Centre frequency of every bin of a frame, in Hz (FFT-shifted: DC in the middle, bin
 * `floor(binCount / 2)` at `centerFreqHz`), computed as docs/protocol.md gives it.
 *
 * @param {{centerFreqHz: number, spanHz: number, binCount: number}} frame
 * @returns {Float64Array}
 */
export function binFreqsHz(frame) {
  const { centerFreqHz, spanHz, binCount } = frame;
  const binWidthHz = spanHz / binCount;
  const half = Math.floor(binCount / 2);
  const freqs = new Float64Array(binCount);
  for (let i = 0; i < binCount; i++) freqs[i] = centerFreqHz + (i - half) * binWidthHz;
  return freqs;
}

function asBytes(data) {
  if (Object.prototype.toString.call(data) === "[object ArrayBuffer]") return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new ProtocolError(
    `a frame must be an ArrayBuffer or a typed array, got ${Object.prototype.toString.call(data)}`);
}

/** The bin_count bins from bin `first` of the payload (0: the first trace, bin_count: the
 * second) in dB as a new Float32Array (a copy: the frame must not change when the caller
 * reuses the message buffer). Quantized values are computed as Numbers (float64) and
 * rounded to float32 once, as gr_argos/protocol.py does. */
function readPower(header, payload, first) {
  const count = header.binCount;
  const values = new Float32Array(count);
  const bytesPerBin = BYTES_PER_BIN[header.encoding];
  const bins = payload.subarray(first * bytesPerBin, (first + count) * bytesPerBin);
  const view = new DataView(bins.buffer, bins.byteOffset, bins.byteLength);
  if (header.encoding === ENCODING_INT16) {
    for (let i = 0; i < count; i++) values[i] = view.getInt16(2 * i, true) / INT16_STEPS_PER_DB;
  } else if (header.encoding === ENCODING_UINT8) {
    const { scaleOffsetDb: offsetDb, scaleStepDb: stepDb } = header;
    for (let i = 0; i < count; i++) values[i] = offsetDb + stepDb * bins[i];
  } else if (LITTLE_ENDIAN_HOST) {
    new Uint8Array(values.buffer).set(bins);
  } else {
    for (let i = 0; i < count; i++) values[i] = view.getFloat32(4 * i, true);
  }
  return values;
}

function isCompressedFrame(data) {
  try {
    const bytes = asBytes(data);
    return bytes.byteLength > 8 && (bytes[8] & FLAG_COMPRESSED) !== 0;
  } catch {
    return false; // not binary: decodeFrame says why
  }
}

// -- JSON messages -------------------------------------------------------------------------

/**
 * Decode a JSON text message: an object with a non-empty string `type`.
 *
 * @param {string} text
 * @returns {object}
 * @throws {ProtocolError} if the text is not JSON, not an object, or has no string `type`.
 */
export function decodeMessage(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError(`message is not valid JSON: ${error.message}`);
  }
  if (message === null || typeof message !== "object" || Array.isArray(message)) {
    const kind = message === null ? "null" : Array.isArray(message) ? "array" : typeof message;
    throw new ProtocolError(`message must be a JSON object, got ${kind}`);
  }
  if (typeof message.type !== "string" || message.type === "") {
    throw new ProtocolError('message must have a string "type" field');
  }
  return message;
}

// -- reconnect policy ----------------------------------------------------------------------

/**
 * Reconnect delays: exponential backoff with full jitter, reset once a link is stable.
 *
 * Attempt n (counting from 0) waits `random() * min(capMs, baseMs * 2 ** n)` ms, so many
 * clients cut off together do not all come back at the same moment. The attempt counter
 * goes back to 0 when a connection stayed open `stableAfterMs`. Same policy as
 * gr_argos.client.Backoff.
 */
export class Backoff {
  /**
   * @param {{baseMs?: number, capMs?: number, stableAfterMs?: number, random?: () => number}} [options]
   * @throws {RangeError} if a duration is negative, or zero where it must be positive.
   */
  constructor({ baseMs = 500, capMs = 10000, stableAfterMs = 5000, random = Math.random } = {}) {
    if (!(baseMs > 0)) throw new RangeError(`backoff base must be > 0 ms, got ${baseMs}`);
    if (!(capMs >= baseMs)) {
      throw new RangeError(`backoff cap (${capMs} ms) must be >= its base (${baseMs} ms)`);
    }
    if (!(stableAfterMs >= 0)) {
      throw new RangeError(`stableAfterMs must be >= 0 ms, got ${stableAfterMs}`);
    }
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.stableAfterMs = stableAfterMs;
    this.attempt = 0;
    this._random = random;
  }

  /** The largest delay the next attempt can get, in ms. */
  ceilingMs() {
    return Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 1023));
  }

  /** Draw the delay before the next attempt (in ms) and count the attempt. */
  nextDelayMs() {
    const ceilingMs = this.ceilingMs();
    const delayMs = this._random() * ceilingMs;
    if (ceilingMs < this.capMs) this.attempt += 1; // past the cap, 2 ** attempt need not grow
    return delayMs;
  }

  /** Report that a connection closed after `openForMs` ms open. */
  connectionClosed(openForMs) {
    if (openForMs >= this.stableAfterMs) this.attempt = 0;
  }
}

// -- gap detection -------------------------------------------------------------------------

/**
 * Find lost frames from each frame's `missed` field and per-stream sequence numbers.
 *
 * Plain code without sockets, the same rules as gr_argos.client.GapDetector: feed it every
 * hello's session with newSession(), every `view` reply's frame rate divisor with
 * setFpsDivisor() and every decoded frame with observe().
 */
export class GapDetector {
  constructor() {
    this._lastSequence = new Map(); // streamId -> BigInt
    this._fpsDivisors = new Map(); // streamId -> BigInt, for streams with a divisor
    // Per stream, the divisor before a change whose frames may still be queued.
    this._previousDivisors = new Map();
    this._session = null;
    this._sessionChanged = new Set();
  }

  /** The session of the latest hello (null before the first). */
  get session() {
    return this._session;
  }

  /** The sequence (a BigInt) of the latest frame of each stream: where a resume starts. */
  lastSequences() {
    return new Map(this._lastSequence);
  }

  /** Record the session of a hello; a different one means the server restarted. A hello
   * starts a connection at every frame (or at the URL's view, whose reply follows), so the
   * divisors are forgotten. */
  newSession(session) {
    if (this._session !== null && session !== this._session) {
      this._sessionChanged = new Set(this._lastSequence.keys());
    }
    this._session = session;
    this._fpsDivisors.clear();
    this._previousDivisors.clear();
  }

  /**
   * Record a stream's frame rate divisor (a `view` reply's): the client then gets only the
   * frames whose sequence is a multiple of it.
   *
   * Frames the server queued before the change were chosen by the old divisor: until a
   * frame shows it was not (its sequence is no multiple of the old one), a jump counts the
   * fewer of the frames of either rate.
   */
  setFpsDivisor(streamId, fpsDivisor) {
    const divisor = BigInt(Math.max(1, Math.trunc(fpsDivisor)));
    const old = this._fpsDivisors.get(streamId) ?? 1n;
    this._fpsDivisors.set(streamId, divisor);
    if (this._lastSequence.has(streamId) && divisor % old !== 0n) {
      this._previousDivisors.set(streamId, old);
    }
  }

  /**
   * Account for one frame; return the gap before it, or null if there was none.
   *
   * With a previous frame of the same stream, the lost count is the larger of the
   * `missed` field and the sequence jump: the server knows what it dropped for this
   * client, the sequence also covers frames produced while no connection was open. Both
   * count frames of the client's own rate: the sequences between the two frames that are
   * multiples of the divisor. So a divisor changed between two frames (the previous one
   * not a multiple of the new divisor) counts no false gap.
   */
  observe(frame) {
    const { streamId } = frame;
    const sequence = BigInt(frame.sequenceBig ?? frame.sequence);
    const missed = BigInt(frame.missed);
    const previous = this._lastSequence.get(streamId);
    const sessionChanged = this._sessionChanged.delete(streamId);
    this._lastSequence.set(streamId, sequence);
    if (previous === undefined) {
      if (missed === 0n) return null;
      return gap(streamId, missed, sequence - missed - 1n, sequence, GAP_DROPPED_BY_SERVER,
        sessionChanged);
    }
    if (sequence === previous && missed === 0n && !sessionChanged) {
      return null; // the same frame again, cut to a view just chosen (docs/protocol.md)
    }
    if (sequence <= previous) {
      return gap(streamId, 0n, previous, sequence, GAP_STREAM_RESTARTED, sessionChanged);
    }
    let jump = framesBetween(previous, sequence, this._fpsDivisors.get(streamId) ?? 1n);
    const old = this._previousDivisors.get(streamId);
    if (old !== undefined) {
      const oldJump = framesBetween(previous, sequence, old);
      if (oldJump < jump) jump = oldJump;
      if (sequence % old !== 0n) this._previousDivisors.delete(streamId);
    }
    const lost = missed > jump ? missed : jump;
    if (lost === 0n) return null;
    const reason = missed >= jump ? GAP_DROPPED_BY_SERVER : GAP_SEQUENCE_JUMP;
    return gap(streamId, lost, previous, sequence, reason, sessionChanged);
  }
}

/** How many sequences strictly between `previous` and `sequence` (BigInts) are multiples of
 * `divisor`: the frames of that rate that went by. */
function framesBetween(previous, sequence, divisor) {
  return (sequence - 1n) / divisor - previous / divisor;
}

function gap(streamId, lost, fromSequence, toSequence, reason, sessionChanged) {
  return {
    streamId,
    lost: Number(lost),
    fromSequence: Number(fromSequence),
    toSequence: Number(toSequence),
    fromSequenceBig: fromSequence,
    toSequenceBig: toSequence,
    reason,
    sessionChanged,
  };
}

// -- the client ----------------------------------------------------------------------------

const DEFAULT_OPTIONS = {
  backoffBaseMs: 500,
  backoffCapMs: 10000,
  stableAfterMs: 5000,
  heartbeatIntervalMs: 5000,
  heartbeatTimeoutMs: 10000,
  openTimeoutMs: 10000,
  encoding: undefined,
  compress: false,
  stepDb: 0,
  secondTrace: false,
  view: null,
  token: null,
  retryAuthFailure: false,
  resume: true,
  backfillS: 0,
};

/**
 * Receive spectrum frames and messages from a gr-argos server, reconnecting forever.
 *
 * Events (all CustomEvents; the data is in `event.detail`): state, hello, frame, gap,
 * message, status, gps, error, pong, stats, view, warning, authfailed. See docs/js-client.md.
 *
 * A lost or refused connection is retried, but a refused token is final (as in
 * gr_argos.client.ArgosClient): after an `auth_failed` error, or a close with 1008 before
 * `hello`, the client dispatches `authfailed`, sets `authFailed` and ends with a `closed`
 * state whose `error` says why, unless `retryAuthFailure` is set.
 */
export class ArgosClient extends EventTarget {
  /**
   * @param {string} [url] `ws://HOST:PORT/` or `wss://...`; in a page, http(s) and relative
   *   URLs work too, and the default is the page's own server.
   * @param {object} [options] backoffBaseMs, backoffCapMs, stableAfterMs,
   *   heartbeatIntervalMs (0: no pings), heartbeatTimeoutMs (0: no dead-link detection),
   *   openTimeoutMs, WebSocket (constructor), random (for the backoff jitter),
   *   encoding ("float32" | "int16" | "uint8": the frame encoding to ask for; default: each
   *   stream's own), compress (true: ask for deflated payloads), stepDb (with encoding
   *   "uint8": a fixed step of 0.01-20 dB, `step_db` in the URL; 0: automatic) and
   *   secondTrace (true: also the second trace of streams that offer one, `second_trace` in
   *   the URL), all sent in the URL query so that they apply from the first frame (see
   *   setFormat to change them later); view ({streamId, centerFreqHz, spanHz, bins,
   *   fpsDivisor}, every key optional: a range, resolution and frame rate divisor of one
   *   stream, in the URL query too; see setView); token (the server's token,
   *   sent in a first `auth` message on every connection, never in the URL; null: none)
   *   and retryAuthFailure (true: retry after the server refused the token); resume (true,
   *   the default: on a reconnect to the same server, ask for the frames missed meanwhile,
   *   `resume_session` and `resume_from` in the URL; they come marked `frame.replayed`
   *   before the live ones) and backfillS (seconds: on the first connection, ask for the
   *   last seconds the server holds; 0: none).
   * @throws {TypeError} if the URL is not a WebSocket URL or there is no WebSocket, or the
   *   token is not one a server can hold (see setToken).
   * @throws {RangeError} if a duration, the encoding, stepDb or a value of the view is invalid.
   */
  constructor(url, options = {}) {
    super();
    const settings = { ...DEFAULT_OPTIONS };
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined) settings[key] = value;
    }
    for (const key of ["heartbeatIntervalMs", "heartbeatTimeoutMs", "openTimeoutMs"]) {
      if (!(settings[key] >= 0)) throw new RangeError(`${key} must be >= 0 ms, got ${settings[key]}`);
    }
    const { heartbeatIntervalMs: intervalMs, heartbeatTimeoutMs: timeoutMs } = settings;
    if (intervalMs > 0 && timeoutMs > 0 && timeoutMs <= intervalMs) {
      throw new RangeError(`heartbeatTimeoutMs (${timeoutMs}) must be longer than ` +
        `heartbeatIntervalMs (${intervalMs}), or a quiet link is dropped between two pings`);
    }
    this._format = checkFormat(settings);
    this._view = settings.view === null ? null : checkView(settings.view);
    this.url = withView(withFormat(webSocketUrl(url), this._format), this._view);
    const backfillS = Number(settings.backfillS);
    if (!(backfillS >= 0 && backfillS <= 3600)) {
      throw new RangeError(`backfillS must be from 0 to 3600 s, got ${settings.backfillS}`);
    }
    if (backfillS > 0) {
      const parsed = new URL(this.url);
      parsed.searchParams.set("backfill_s", String(backfillS));
      this.url = parsed.href;
    }
    this._resume = Boolean(settings.resume);
    this._WebSocket = settings.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError(
        "no WebSocket implementation: on Node 20 run node with --experimental-websocket " +
        "(Node 22 and later have one built in) or pass { WebSocket } from the ws package");
    }
    this._backoff = new Backoff({
      baseMs: settings.backoffBaseMs,
      capMs: settings.backoffCapMs,
      stableAfterMs: settings.stableAfterMs,
      random: settings.random ?? Math.random,
    });
    this._heartbeatIntervalMs = settings.heartbeatIntervalMs;
    this._heartbeatTimeoutMs = settings.heartbeatTimeoutMs;
    this._openTimeoutMs = settings.openTimeoutMs;
    this.setToken(settings.token);
    this._retryAuthFailure = Boolean(settings.retryAuthFailure);
    this._gaps = new GapDetector();
    this._stats = {
      frames: 0, bytes: 0, lost: 0, gaps: 0, reconnects: 0, malformed: 0, lastRttMs: null,
      messages: 0, failedAttempts: 0, replayed: 0,
    };
    this._state = "closed";
    this._running = false;
    this._everOpened = false;
    this._ws = null;
    this._openedAt = null; // performance.now() when the current connection opened
    this._lastMessageAt = 0;
    this._firstUnansweredPingAt = null;
    this._timers = new Set();
    this._pingTimer = null;
    this._watchdogTimer = null;
    this._retries = 0; // attempts since the last open connection, for state events
    this._pingCount = 0;
    this._pingsInFlight = new Map(); // ping id -> performance.now() when sent
    // Compressed frames decode asynchronously; frames after one wait in this chain, so no
    // frame overtakes an earlier one.
    this._decodeChain = Promise.resolve();
    this._pendingDecodes = 0;
    this._helloOnThisConnection = false;
    this._askedInUrl = { view: this._view, format: this._format }; // of the socket opening
    this._authError = null; // why the server refused this connection's token, if it did
    this.hello = null;
    this.lastError = null;
    /** True once the client stopped because the server refused its token. */
    this.authFailed = false;
  }

  /** "connecting" | "open" | "reconnecting" | "closed" ("closed" until connect()). */
  get state() {
    return this._state;
  }

  /** A copy of the counters since the client was created. */
  get stats() {
    return { ...this._stats };
  }

  /** The frame format this client asks for: a copy of `{encoding, compress, stepDb,
   * secondTrace}`, `encoding` undefined while it asks for nothing (each stream's own). */
  get format() {
    return { ...this._format };
  }

  /**
   * Ask for another frame format: a `set_encoding` message on an open connection (the
   * server's `encoding` message confirms it; one still opening gets it when it opens), and the
   * URL query of every later connection, so that a reconnect starts with it.
   *
   * @param {{encoding: string, compress?: boolean, stepDb?: number, secondTrace?: boolean}} format
   *   as the options of the same names.
   * @throws {RangeError} for what the constructor refuses in those options, or no encoding.
   */
  setFormat(format) {
    const checked = checkFormat(format);
    if (checked.encoding === undefined) {
      throw new RangeError(`setFormat needs an encoding: one of ${ENCODINGS.join(", ")}`);
    }
    this._format = checked;
    this.url = withFormat(this.url, checked);
    if (this._openSocketOrNull() !== null) this.send(this._formatMessage());
  }

  _formatMessage() {
    const format = this._format;
    return {
      type: "set_encoding", encoding: format.encoding, compress: format.compress,
      step_db: format.stepDb, second_trace: format.secondTrace,
    };
  }

  /** The view this client asks for (a copy), or null while it asks for none. */
  get view() {
    return this._view === null ? null : { ...this._view };
  }

  /**
   * Ask for a view of a stream: a `set_view` message on an open connection, and the URL
   * query of every later connection, so that a reconnect starts with it (a connection still
   * opening gets the message when it opens). The server answers
   * with a `view` event: the view it sends (snapped to its lattice), or an `error`.
   *
   * @param {number | undefined} streamId the stream (an id from hello); undefined: the first.
   * @param {{centerFreqHz?: number, spanHz?: number, bins?: number, fpsDivisor?: number}}
   *   [view] every key optional: absent, the stream's own (its band, its bins, every frame).
   * @throws {RangeError} for a value the server would refuse, naming it.
   */
  setView(streamId, view = {}) {
    const checked = checkView({ ...view, streamId });
    this._view = checked;
    this.url = withView(this.url, checked);
    if (this._openSocketOrNull() !== null) this.send(this._viewMessage());
  }

  _viewMessage() {
    const message = { type: "set_view" };
    for (const [key, wireKey] of Object.entries(VIEW_KEYS)) {
      if (this._view[key] !== undefined) message[wireKey] = this._view[key];
    }
    return message;
  }

  /**
   * Ask for the radio's control lease (`"acquire"`), give it back (`"release"`) or, as an
   * admin, take it from another client (`"take"`): docs/control.md. Every client gets a
   * `control` event when it changes hands; a refusal is an `error` event with code
   * `control_refused`.
   *
   * @param {"acquire" | "release" | "take"} action
   * @param {string} [name] what the other clients see for the holder.
   * @throws {Error} if no connection is open.
   */
  control(action, name) {
    this.send(name ? { type: "control", action, name } : { type: "control", action });
  }

  /**
   * Change the radio's settings by their names (`{center_freq: 433.92e6, lna_gain: 16}`),
   * as the holder of the control lease. Every client gets a `tuned` event with what was
   * applied; a refusal is an `error` event with code `tune_refused`, saying why.
   *
   * @param {Record<string, number | boolean>} changes
   * @throws {Error} if no connection is open.
   */
  tune(changes) {
    this.send({ type: "tune", ...changes });
  }

  /**
   * Start (`"start"`) or stop (`"stop"`) the server's recordings, or only one of them
   * (`kind`: `"spectrum"` or `"iq"`), as an operator or admin (docs/recording.md). Every
   * client gets a `recording` event with the new state; a refusal is an `error` event with
   * code `record_refused`, saying why.
   *
   * @param {"start" | "stop"} action
   * @param {"spectrum" | "iq"} [kind] every recording the server has when omitted.
   * @throws {Error} if no connection is open.
   */
  record(action, kind) {
    this.send(kind ? { type: "record", action, kind } : { type: "record", action });
  }

  /**
   * Control an argos-replay server's replay, shared by all its clients: `"play"`,
   * `"pause"`, `"state"`, `"seek"` (`{offset_s}` after the recording's start, or
   * `{time_ns}`) or `"speed"` (`{speed}`). Answered by a `replay` event with the state, or
   * an `error` event with code `bad_message` (an `unknown_type` from a live server).
   *
   * @param {"play" | "pause" | "seek" | "speed" | "state"} action
   * @param {{offset_s?: number, time_ns?: number, speed?: number}} [fields]
   * @throws {Error} if no connection is open.
   */
  replay(action, fields) {
    this.send({ type: "replay", action, ...(fields || {}) });
  }

  /**
   * Present another token on the open connection (an operator's or an admin's) to raise
   * its role: answered by a `control` event whose `you` says the new role, or an `error`
   * event with code `auth_failed` (the connection keeps its rights).
   *
   * @param {string} token
   * @throws {TypeError} for a token the server would refuse; {Error} if no connection.
   */
  authenticate(token) {
    checkToken(token);
    this.send({ type: "auth", token });
  }

  /**
   * Ask for the recent detection events the server kept (docs/protocol.md, `detections`):
   * it answers with a "detections" event whose `events` are oldest first.
   *
   * @param {{limit?: number, sinceNs?: number | bigint, stream?: number}} [query]
   *   limit: the newest N (1 to the server's `kept`, 256); sinceNs: only events decided
   *   after this time (their `time_ns`; a BigInt is sent exactly); stream: one stream's.
   * @throws {RangeError} for a value the server would refuse; {Error} if not connected.
   */
  requestDetections({ limit, sinceNs, stream } = {}) {
    let text = '{"type":"detections"';
    if (limit !== undefined) {
      if (!Number.isInteger(limit) || limit < 1) {
        throw new RangeError(`limit must be a whole number of 1 or more, got ${limit}`);
      }
      text += `,"limit":${limit}`;
    }
    if (sinceNs !== undefined) {
      const ns = typeof sinceNs === "bigint" ? sinceNs
        : Number.isInteger(sinceNs) ? BigInt(sinceNs) : -1n;
      if (ns < 0n) {
        throw new RangeError(`sinceNs must be a whole number of ns (0 or more), got ${sinceNs}`);
      }
      text += `,"since_ns":${ns}`; // digits, exact: JSON.stringify cannot write a BigInt
    }
    if (stream !== undefined) {
      if (!Number.isInteger(stream) || stream < 0 || stream > 0xffff) {
        throw new RangeError(`stream must be a stream id from hello (0-65535), got ${stream}`);
      }
      text += `,"stream":${stream}`;
    }
    this.send(`${text}}`);
  }

  /**
   * Set the token sent in the first `auth` message of every later connection, or forget it
   * (null). An open connection is not affected; after the server refused a token, set the
   * right one and call connect() again.
   *
   * @param {string | null | undefined} token
   * @throws {TypeError} if the token is empty, longer than 4096 characters, starts or ends
   *   with whitespace, or holds a control character (the message never contains it).
   */
  setToken(token) {
    if (token !== null && token !== undefined) checkToken(token);
    this._token = token ?? null;
  }

  /** Start connecting (and reconnecting forever, until close()). Does nothing if running. */
  connect() {
    if (this._running) return;
    this._running = true;
    this.authFailed = false;
    this._everOpened = false; // a fresh start: its first connection is not a reconnect
    this._retries = 0;
    this._setState("connecting", {});
    this._openSocket();
  }

  /** Stop: close the connection with code 1000 and reconnect no more. */
  close() {
    if (!this._running) return;
    this._running = false;
    this._clearTimers();
    this._abandonSocket(1000, "client closed");
    this._connectionLost("closed by the client", this._openedAt !== null);
    this._setState("closed", {});
  }

  /**
   * Send one JSON message to the server, e.g. `send({type: "stats"})`.
   *
   * @throws {Error} if no connection is open.
   */
  send(message) {
    const ws = this._openSocketOrNull();
    if (ws === null) throw new Error(`not connected to ${this.url} (state ${this._state})`);
    ws.send(typeof message === "string" ? message : JSON.stringify(message));
  }

  _openSocketOrNull() {
    const ws = this._ws;
    return this._state === "open" && ws !== null && ws.readyState === WS_OPEN ? ws : null;
  }

  // -- connection life cycle -------------------------------------------------------------

  _openSocket() {
    let ws;
    this._askedInUrl = { view: this._view, format: this._format };
    try {
      ws = new this._WebSocket(this._connectUrl());
      ws.binaryType = "arraybuffer";
    } catch (error) {
      this._connectionLost(`cannot connect to ${this.url}: ${error.message ?? error}`, false);
      return;
    }
    this._ws = ws;
    const openTimer = this._openTimeoutMs > 0 ? this._later(this._openTimeoutMs, () => {
      this._abandonSocket(4000, "open timeout");
      this._connectionLost(`timed out opening the connection after ${this._openTimeoutMs} ms`,
        false);
    }) : null;
    ws.onopen = () => {
      this._cancel(openTimer);
      this._onOpen();
    };
    ws.onmessage = (event) => this._onMessage(event.data);
    // An error event means the connection failed. Browsers follow it with a close event;
    // Node 20's built-in WebSocket (undici) sends none when it cannot connect and stays
    // CONNECTING, so the socket is given up at the error, whichever comes.
    ws.onerror = (event) => {
      const detail = event?.message || event?.error?.message;
      this._lostSocket(openTimer, { code: 1006, reason: "" }, detail);
    };
    ws.onclose = (event) => this._lostSocket(openTimer, event, null);
  }

  /** The URL of the next attempt: `url`, asking to resume after the frames received so far
   * when there are some (and resume is on). */
  _connectUrl() {
    const after = this._gaps.lastSequences();
    const session = this._gaps.session;
    if (!this._resume || session === null || after.size === 0) return this.url;
    const parsed = new URL(this.url);
    parsed.searchParams.delete("backfill_s");
    parsed.searchParams.set("resume_session", session);
    parsed.searchParams.set("resume_from", [...after].sort((a, b) => a[0] - b[0])
      .map(([streamId, sequence]) => `${streamId}:${sequence}`).join(","));
    return parsed.href;
  }

  _lostSocket(openTimer, closeEvent, errorText) {
    this._cancel(openTimer);
    const wasOpen = this._openedAt !== null;
    this._abandonSocket(1000, "");
    const reason = closeReason(this.url, closeEvent, wasOpen, errorText);
    // The server refuses a token with an auth_failed error and then 1008; should the error
    // not arrive, nothing but authentication closes a connection with 1008 before hello.
    if (wasOpen && !this._helloOnThisConnection && closeEvent?.code === CLOSE_POLICY_VIOLATION) {
      this._authError ??= reason;
    }
    this._connectionLost(reason, wasOpen);
  }

  _onOpen() {
    if (this._everOpened) this._stats.reconnects += 1;
    this._everOpened = true;
    this._retries = 0;
    this._openedAt = performance.now();
    this._lastMessageAt = this._openedAt;
    this._firstUnansweredPingAt = null;
    this._pingsInFlight.clear();
    this._helloOnThisConnection = false;
    this._authError = null;
    this.lastError = null;
    if (this._token !== null) this._ws.send(JSON.stringify({ type: "auth", token: this._token }));
    // A format or view set while this socket was opening is not in the URL it opened with.
    if (this._format !== this._askedInUrl.format && this._format.encoding !== undefined) {
      this._ws.send(JSON.stringify(this._formatMessage()));
    }
    if (this._view !== this._askedInUrl.view && this._view !== null) {
      this._ws.send(JSON.stringify(this._viewMessage()));
    }
    this._startHeartbeat();
    this._setState("open", {});
  }

  /** The open socket is gone (closed, failed or abandoned): schedule the next attempt, or
   * stop for good when the server refused the token. */
  _connectionLost(reason, wasOpen) {
    this._stopHeartbeat();
    this._ws = null;
    if (wasOpen) this._backoff.connectionClosed(performance.now() - this._openedAt);
    this._openedAt = null;
    if (!this._running) return;
    if (this._authError !== null) {
      reason = this._authFailure(this._authError);
      this._authError = null;
      if (!this._retryAuthFailure) {
        this._giveUp(reason);
        return;
      }
      this._emit("authfailed", { error: reason, willRetry: true });
      if (!this._running) return; // a listener closed the client
    }
    this.lastError = reason;
    if (!wasOpen) this._stats.failedAttempts += 1;
    if (wasOpen) console.warn(`gr-argos: connection to ${this.url} lost: ${reason}`);
    this._retries += 1;
    const delayMs = this._backoff.nextDelayMs();
    this._later(delayMs, () => this._openSocket());
    this._setState(this._everOpened ? "reconnecting" : "connecting",
      { attempt: this._retries, delayMs, error: reason });
  }

  /** The error text of a refused token: what the server said and what to do. */
  _authFailure(problem) {
    const what = this._token === null ? "the server needs a token" : "the server refused the token";
    return `authentication failed: ${what} (${problem}); give this client the server's token`;
  }

  /** Stop for good after a failed authentication: no more attempts, an authfailed event
   * and a final closed state. */
  _giveUp(reason) {
    this._running = false;
    this._clearTimers();
    this.authFailed = true;
    this.lastError = reason;
    console.error(`gr-argos: ${this.url}: ${reason}; not retrying`);
    this.dispatchEvent(new CustomEvent("authfailed", { detail: { error: reason, willRetry: false } }));
    if (this._running) return; // a listener started over (setToken() and connect())
    this._setState("closed", { error: reason, authFailed: true });
  }

  /** Drop the current socket without waiting for its close handshake (a dead link never
   * completes one; browsers can take minutes to report it). */
  _abandonSocket(code, reason) {
    const ws = this._ws;
    if (ws === null) return;
    this._ws = null;
    this._detach(ws);
    try {
      ws.close(code, reason);
    } catch {
      // closing a socket that never opened may throw in some implementations; it is gone
    }
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  }

  // -- heartbeat -------------------------------------------------------------------------

  _startHeartbeat() {
    if (this._heartbeatIntervalMs > 0) {
      // The first ping goes at once: the round trip is known from the start, and a server
      // that needs a token this client lacks refuses at once (the first message was not an
      // auth) instead of after its handshake timeout.
      this._sendPing();
      this._pingTimer = this._every(this._heartbeatIntervalMs, () => this._sendPing());
    }
    if (this._heartbeatTimeoutMs > 0) {
      const checkMs = Math.max(10, Math.min(this._heartbeatTimeoutMs / 4, 1000));
      this._watchdogTimer = this._every(checkMs, () => this._checkAlive());
    }
  }

  _stopHeartbeat() {
    this._cancel(this._pingTimer);
    this._cancel(this._watchdogTimer);
    this._pingTimer = this._watchdogTimer = null;
  }

  _sendPing() {
    const ws = this._ws;
    if (ws === null || ws.readyState !== WS_OPEN) return;
    const id = ++this._pingCount;
    if (this._pingsInFlight.size >= MAX_PINGS_IN_FLIGHT) {
      // A server that never answers must not make this grow.
      this._pingsInFlight.delete(this._pingsInFlight.keys().next().value);
    }
    const now = performance.now();
    this._pingsInFlight.set(id, now);
    this._firstUnansweredPingAt ??= now;
    try {
      ws.send(JSON.stringify({ type: "ping", id }));
    } catch {
      // the socket is closing; its close event follows
    }
  }

  /**
   * Declare the link dead after heartbeatTimeoutMs without any message. With pings on, a
   * ping must also have gone unanswered that long (less one interval): a background tab
   * whose timers the browser slowed down then sent no ping, and has no reason to expect
   * an answer.
   */
  _checkAlive() {
    const now = performance.now();
    const silentMs = now - this._lastMessageAt;
    if (silentMs < this._heartbeatTimeoutMs) return;
    if (this._heartbeatIntervalMs > 0) {
      const waitedMs = this._firstUnansweredPingAt === null ? 0 : now - this._firstUnansweredPingAt;
      if (waitedMs < this._heartbeatTimeoutMs - this._heartbeatIntervalMs) return;
    }
    this._abandonSocket(4000, "heartbeat timeout");
    this._connectionLost(
      `no message for ${Math.round(silentMs)} ms (heartbeat timeout ${this._heartbeatTimeoutMs} ms)`,
      true);
  }

  // -- incoming messages -----------------------------------------------------------------

  _onMessage(data) {
    const receivedMs = Date.now();
    this._lastMessageAt = performance.now();
    this._firstUnansweredPingAt = null;
    if (typeof data === "string") {
      this._stats.bytes += utf8Length(data);
      this._onText(data);
    } else {
      this._stats.bytes += data?.byteLength ?? data?.size ?? 0;
      this._onBinary(data, receivedMs);
    }
  }

  _onBinary(data, receivedMs) {
    if (this._pendingDecodes === 0 && !isCompressedFrame(data)) {
      let frame;
      try {
        frame = decodeFrame(data);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        this._skip("frame", error);
        return;
      }
      this._onFrame(frame, data.byteLength, receivedMs);
      return;
    }
    this._pendingDecodes += 1;
    const decoding = decodeFrameAsync(data); // copies what it needs before returning
    this._decodeChain = this._decodeChain.then(async () => {
      try {
        this._onFrame(await decoding, data.byteLength, receivedMs);
      } catch (error) {
        this._skip("frame", error);
      } finally {
        this._pendingDecodes -= 1;
      }
    });
  }

  _onFrame(frame, sizeBytes, receivedMs) {
    this._stats.frames += 1;
    if (frame.replayed) this._stats.replayed += 1;
    const found = this._gaps.observe(frame);
    if (found !== null) {
      this._stats.gaps += 1;
      this._stats.lost += found.lost;
      this._emit("gap", found);
    }
    this._emit("frame", {
      frame,
      gap: found === null ? 0 : found.lost,
      ageMs: receivedMs - frame.timestampMs,
      receivedMs,
      sizeBytes,
    });
  }

  _onText(text) {
    let message;
    try {
      message = decodeMessage(text);
    } catch (error) {
      this._skip("message", error);
      return;
    }
    this._stats.messages += 1;
    const type = message.type;
    if (type === "hello") {
      this._onHello(message);
    } else if (type === "view") {
      if (Number.isInteger(message.stream_id) && Number.isInteger(message.fps_divisor)) {
        this._gaps.setFpsDivisor(message.stream_id, message.fps_divisor);
      }
    } else if (type === "error" && message.code === "auth_failed") {
      // The server closes the connection next; then the client gives up.
      this._authError = `auth_failed: ${message.message ?? ""}`;
    } else if (type === "pong") {
      const sentAt = this._pingsInFlight.get(message.id);
      if (sentAt !== undefined) {
        this._pingsInFlight.delete(message.id);
        this._stats.lastRttMs = performance.now() - sentAt;
      }
    }
    this._emit("message", message);
    if (TYPED_EVENTS.has(type)) this._emit(type, message);
  }

  _onHello(hello) {
    this.hello = hello;
    this._helloOnThisConnection = true;
    if (hello.protocol !== PROTOCOL_VERSION) {
      console.warn(`gr-argos: ${this.url} speaks protocol ${JSON.stringify(hello.protocol)}; ` +
        `this client speaks ${PROTOCOL_VERSION}`);
    }
    this._gaps.newSession(hello.session === undefined || hello.session === null
      ? null : String(hello.session));
  }

  /** Count and report a message that did not decode; the client carries on. */
  _skip(what, error) {
    this._stats.malformed += 1;
    const message = `skipped a malformed ${what} from ${this.url}: ${error.message}`;
    console.warn(`gr-argos: ${message}`);
    this._emit("warning", { message, error });
  }

  // -- helpers ---------------------------------------------------------------------------

  _setState(state, extra) {
    this._state = state;
    this._emit("state", { state, ...extra });
  }

  _emit(type, detail) {
    // After close() (perhaps called by a listener) only the "closed" state is reported.
    if (!this._running && type !== "state") return;
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _later(ms, callback) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      callback();
    }, ms);
    this._timers.add(timer);
    return timer;
  }

  _every(ms, callback) {
    const timer = setInterval(callback, ms);
    this._timers.add(timer);
    return timer;
  }

  _cancel(timer) {
    if (timer === null || timer === undefined) return;
    clearTimeout(timer); // clears intervals too
    this._timers.delete(timer);
  }

  _clearTimers() {
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
    this._pingTimer = this._watchdogTimer = null;
  }
}

// JSON types that also get an event of their own name (all of them get "message").
const TYPED_EVENTS = new Set(["hello", "status", "gps", "detection", "detections", "control",
  "tuned", "error", "pong", "stats", "view", "resume", "caught_up", "recording", "replay"]);

/** The ws:// or wss:// URL to connect to; http(s) and relative URLs resolve against the
 * page, and no URL at all means the page's own server. */
function webSocketUrl(url) {
  const base = globalThis.location?.href;
  if (url === undefined && base === undefined) {
    throw new TypeError("no URL given and no page to take the server from: " +
      "pass ws://HOST:PORT/ or wss://HOST:PORT/");
  }
  let parsed;
  try {
    parsed = new URL(url ?? "/", base);
  } catch {
    throw new TypeError(`bad URL ${JSON.stringify(url)}: expected ws://HOST:PORT/ or wss://HOST:PORT/`);
  }
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(
      `bad URL ${JSON.stringify(url)}: scheme ${parsed.protocol} is not ws: or wss:; ` +
      "expected ws://HOST:PORT/ or wss://HOST:PORT/");
  }
  return parsed.href;
}

/** Throw a TypeError (never showing the token) if no server could hold `token`; the rules
 * of check_token in gr_argos/client/options.py. */
function checkToken(token) {
  if (typeof token !== "string" || token === "") {
    throw new TypeError("the token must be a non-empty string: give the server's token");
  }
  const chars = [...token].length; // code points, as the server counts them
  if (chars > MAX_TOKEN_CHARS) {
    throw new TypeError(`the token is ${chars} characters long; a server's token has ` +
      `at most ${MAX_TOKEN_CHARS}`);
  }
  if (token !== token.trim()) {
    throw new TypeError("the token starts or ends with whitespace, which a server never " +
      "matches: remove it");
  }
  if (/[\x00-\x1f\x7f]/.test(token)) {
    throw new TypeError("the token holds a control character (a line break?): give the " +
      "token alone, on one line");
  }
}

/**
 * The frame format to ask for, checked: `{encoding, compress, stepDb, secondTrace}`. An
 * encoding of undefined asks for nothing (each stream's own format); compress or
 * secondTrace without an encoding ask for float32, as the server reads such a URL.
 */
function checkFormat({ encoding, compress = false, stepDb = 0, secondTrace = false }) {
  if (typeof stepDb !== "number" ||
      !(stepDb === 0 || (stepDb >= STEP_DB_MIN && stepDb <= STEP_DB_MAX))) {
    throw new RangeError(`stepDb must be 0 (automatic) or a number of dB from ${STEP_DB_MIN} ` +
      `to ${STEP_DB_MAX}, got ${JSON.stringify(stepDb)}`);
  }
  if (stepDb !== 0 && encoding !== "uint8") {
    throw new RangeError(`stepDb applies to the uint8 encoding only: ask for encoding ` +
      `"uint8" too (got ${JSON.stringify(encoding)})`);
  }
  if (encoding !== undefined && !ENCODINGS.includes(encoding)) {
    throw new RangeError(`unknown encoding ${JSON.stringify(encoding)}: use one of ` +
      ENCODINGS.map((name) => JSON.stringify(name)).join(", "));
  }
  compress = Boolean(compress);
  secondTrace = Boolean(secondTrace);
  if (encoding === undefined && (compress || secondTrace)) encoding = "float32";
  return { encoding, compress, stepDb, secondTrace };
}

/** The URL with a checked frame format in its query (see docs/protocol.md); a format that
 * asks for nothing leaves the URL as it is. */
function withFormat(url, { encoding, compress, stepDb, secondTrace }) {
  if (encoding === undefined) return url;
  const parsed = new URL(url);
  for (const key of ["encoding", "compress", "step_db", "second_trace"]) {
    parsed.searchParams.delete(key);
  }
  parsed.searchParams.set("encoding", encoding);
  if (compress) parsed.searchParams.set("compress", "1");
  if (stepDb !== 0) parsed.searchParams.set("step_db", String(stepDb));
  if (secondTrace) parsed.searchParams.set("second_trace", "1");
  return parsed.href;
}

/**
 * A view to ask for, checked as the server checks `set_view` (docs/protocol.md): only the
 * keys given, every one optional.
 */
function checkView(view) {
  if (view === null || typeof view !== "object") {
    throw new RangeError(`a view is an object {streamId, centerFreqHz, spanHz, bins, ` +
      `fpsDivisor}, got ${JSON.stringify(view)}`);
  }
  const checked = {};
  const whole = { streamId: [0, 65535], bins: [1, MAX_VIEW_BINS], fpsDivisor: [1, MAX_FPS_DIVISOR] };
  for (const key of Object.keys(VIEW_KEYS)) {
    const value = view[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== "number" || !Number.isFinite(value)) {
      throw new RangeError(`${key} must be a finite number, got ${JSON.stringify(value)}`);
    }
    const range = whole[key];
    if (range && !(Number.isInteger(value) && value >= range[0] && value <= range[1])) {
      throw new RangeError(`${key} must be a whole number from ${range[0]} to ${range[1]}, ` +
        `got ${value}`);
    }
    if (key === "spanHz" && !(value > 0)) {
      throw new RangeError(`spanHz must be more than 0 Hz, got ${value}`);
    }
    checked[key] = value;
  }
  return checked;
}

/** The URL with a checked view in its query, replacing any there; null leaves it as it is.
 * A divisor of 1 (every frame, the default) is left out, as the Python client does. */
function withView(url, view) {
  if (view === null) return url;
  const parsed = new URL(url);
  for (const [key, wireKey] of Object.entries(VIEW_KEYS)) {
    parsed.searchParams.delete(wireKey);
    const value = view[key];
    if (value !== undefined && !(key === "fpsDivisor" && value === 1)) {
      parsed.searchParams.set(wireKey, String(value));
    }
  }
  return parsed.href;
}

/** Why a connection ended, e.g. "closed by server: 1001 server shutting down". */
function closeReason(url, event, wasOpen, errorText) {
  if (!wasOpen) {
    return `cannot connect to ${url}` + (errorText ? `: ${errorText}` : "") +
      (event?.code && event.code !== 1006 ? ` (close code ${event.code})` : "");
  }
  const code = event?.code;
  if (code === undefined || code === 1006) {
    return "connection lost " + (errorText ? `(${errorText})` : "without a close frame from the server");
  }
  if (code === 1005) return "closed by server without a close code";
  return `closed by server: ${code}` + (event.reason ? ` ${event.reason}` : "");
}

function utf8Length(text) {
  let length = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) length += 1;
    else if (code < 0x800) length += 2;
    else if (code >= 0xd800 && code <= 0xdbff) { length += 4; i++; } // a surrogate pair
    else length += 3;
  }
  return length;
}
