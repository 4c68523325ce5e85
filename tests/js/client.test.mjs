// SPDX-License-Identifier: GPL-3.0-or-later
// ArgosClient in Node against a real gr-argos server, started by tests/test_js_client.py.
//
// The Python test runs a gr_argos.server.SpectrumServer publishing 16-bin frames (peak of
// -20 dB at bin sequence % 16, -100 dB elsewhere, 100 MHz centre, 8 MHz span; detector
// "peak", and a second trace, "average", for clients that ask: -50 dB at bin
// (sequence + 8) % 16, -110 dB elsewhere) and a
// scripted server that misbehaves, and passes their URLs in ARGOS_TEST_URL and
// ARGOS_TEST_SCRIPTED_URL. This file asks it to restart the real server by printing the
// line "ARGOS-CONTROL restart-server"; the Python side restarts it on the same port, with
// a pause during which frames are produced but not sent to anyone. A second real server,
// with the token ARGOS_TEST_TOKEN, serves the same frames at ARGOS_TEST_TOKEN_URL.
//
// Run: python -m pytest tests/test_js_client.py (node needs --experimental-websocket on 20)

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ArgosClient, GAP_SEQUENCE_JUMP, PROTOCOL_VERSION } from "../../gr_argos/web/argos-client.js";

const SERVER_URL = process.env.ARGOS_TEST_URL;
const SCRIPTED_URL = process.env.ARGOS_TEST_SCRIPTED_URL;
const TOKEN_URL = process.env.ARGOS_TEST_TOKEN_URL;
const TOKEN = process.env.ARGOS_TEST_TOKEN;
const WAIT_MS = 30000; // a hang guard, not a speed requirement
const BINS = 16;

/** Assert that `trace` (dB) is `peakDb` at bin `peakBin` and `floorDb` elsewhere, give or take. */
function assertTrace(trace, peakBin, peakDb, floorDb, toleranceDb, what) {
  for (let i = 0; i < BINS; i++) {
    const expected = i === peakBin ? peakDb : floorDb;
    assert.ok(Math.abs(trace[i] - expected) <= toleranceDb,
      `bin ${i} of ${what}: ${trace[i]} dB, expected ${expected}`);
  }
}

if ((SERVER_URL || SCRIPTED_URL) && typeof globalThis.WebSocket !== "function") {
  throw new Error("this Node has no global WebSocket: run node with --experimental-websocket " +
    "(Node 20) or use Node 22 or later");
}

function control(command) {
  process.stdout.write(`ARGOS-CONTROL ${command}\n`);
}

/** Resolve with the detail of the next `type` event whose detail satisfies `accept`. */
function nextEvent(client, type, accept = () => true, what = type) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.removeEventListener(type, listener);
      reject(new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`));
    }, WAIT_MS);
    function listener(event) {
      if (!accept(event.detail)) return;
      clearTimeout(timer);
      client.removeEventListener(type, listener);
      resolve(event.detail);
    }
    client.addEventListener(type, listener);
  });
}

function record(client, ...types) {
  const seen = [];
  for (const type of types) client.addEventListener(type, (e) => seen.push({ type, detail: e.detail }));
  return seen;
}

/** Connect a client with `options` to the real server; its URL, the server's `encoding`
 * reply and the first frame. */
async function replyAndFirstFrame(options) {
  const client = new ArgosClient(SERVER_URL, options);
  const reply = nextEvent(client, "message", (m) => m.type === "encoding", "the encoding reply");
  const frame = nextEvent(client, "frame", () => true, "a frame");
  client.connect();
  try {
    return { url: client.url, reply: await reply, frame: (await frame).frame };
  } finally {
    client.close();
  }
}

const skip = SERVER_URL ? false : "ARGOS_TEST_URL is not set: run through tests/test_js_client.py";

describe("ArgosClient against a real gr-argos server", { skip }, () => {
  test("hello, frames with the published metadata, a heartbeat RTT and answered requests", async () => {
    const client = new ArgosClient(SERVER_URL, { heartbeatIntervalMs: 100 });
    const seen = record(client, "state", "warning");
    const hello = nextEvent(client, "hello");
    const frames = [];
    const threeFrames = new Promise((resolve) => {
      client.addEventListener("frame", (e) => {
        frames.push(e.detail);
        if (frames.length === 3) resolve();
      });
    });
    const pong = nextEvent(client, "pong", (m) => typeof m.id === "number", "a heartbeat pong");
    client.connect();
    try {
      const greeting = await hello;
      assert.equal(greeting.server, "gr-argos");
      assert.equal(greeting.protocol, PROTOCOL_VERSION);
      assert.equal(typeof greeting.session, "string");
      assert.deepEqual(greeting.streams.map((s) => [s.id, s.bins, s.center_freq_hz, s.span_hz,
        s.detector, s.second_detector]), [[0, BINS, 100e6, 8e6, "peak", "average"]]);
      assert.equal(client.hello, greeting);

      await threeFrames;
      for (const { frame, gap, ageMs, sizeBytes } of frames) {
        assert.deepEqual([frame.streamId, frame.binCount, frame.centerFreqHz, frame.spanHz],
          [0, BINS, 100e6, 8e6]);
        assertTrace(frame.power, frame.sequence % BINS, -20, -100, 0, `frame ${frame.sequence}`);
        assert.equal(frame.detector, "peak");
        assert.equal(typeof frame.timestampNs, "bigint");
        assert.ok(Number.isFinite(ageMs));
        // A client that did not ask for the second trace gets the frames of old.
        assert.equal(sizeBytes, 64 + 4 * BINS);
        assert.deepEqual([frame.flags, frame.secondPowerDb, frame.secondDetector], [0, null, ""]);
        assert.equal(typeof gap, "number");
      }
      const sequences = frames.map((f) => f.frame.sequence);
      assert.ok(sequences[1] > sequences[0] && sequences[2] > sequences[1], `${sequences}`);

      const heartbeat = await pong;
      assert.equal(typeof heartbeat.server_time_ns, "number");
      assert.ok(client.stats.lastRttMs >= 0, `lastRttMs ${client.stats.lastRttMs}`);

      const manual = nextEvent(client, "pong", (m) => m.id === "manual", "the pong to send()");
      client.send({ type: "ping", id: "manual" });
      await manual;
      const stats = nextEvent(client, "stats");
      client.send({ type: "stats" });
      assert.equal(typeof (await stats).total, "object");
      const refused = nextEvent(client, "error");
      client.send({ type: "subscribe" });
      assert.equal((await refused).code, "unknown_type");

      // The server was given three detection events before this client came (ids 1-3).
      const recent = nextEvent(client, "detections");
      client.requestDetections({ limit: 2 });
      const kept = await recent;
      assert.deepEqual([kept.events.map((e) => e.id), kept.truncated, kept.kept],
        [[2, 3], true, 256]);
      const since = nextEvent(client, "detections");
      client.requestDetections({ sinceNs: 1_700_000_000_002_000_000n, stream: 0 });
      assert.deepEqual((await since).events.map((e) => [e.id, e.event, e.watched]),
        [[3, "end", true]]);
      assert.throws(() => client.requestDetections({ limit: 0 }), RangeError);
      assert.throws(() => client.requestDetections({ sinceNs: 1.5 }), RangeError);

      assert.deepEqual(seen.filter((e) => e.type === "state").map((e) => e.detail.state),
        ["connecting", "open"]);
      assert.equal(seen.filter((e) => e.type === "warning").length, 0);
      assert.ok(client.stats.frames >= 3 && client.stats.bytes > 0);
    } finally {
      client.close();
    }
    assert.equal(client.state, "closed");
  });

  test("record() and replay() reach the server, which answers them as errors here", async () => {
    // This server records nothing and replays nothing: each message comes back as an error
    // event of its own code, and the connection goes on.
    const client = new ArgosClient(SERVER_URL);
    const hello = nextEvent(client, "hello");
    client.connect();
    try {
      assert.deepEqual((await hello).recording, {});
      const refused = nextEvent(client, "error", (e) => e.code === "record_refused");
      client.record("start", "iq");
      assert.match((await refused).message, /record_iq_dir/);
      const unknown = nextEvent(client, "error", (e) => e.code === "unknown_type");
      client.replay("seek", { offset_s: 1 });
      assert.match((await unknown).message, /'replay'/);
      assert.equal(client.state, "open");
    } finally {
      client.close();
    }
  });

  test("uint8 deflated frames, asked for in the URL, decode in order within step/2", async () => {
    const client = new ArgosClient(SERVER_URL, { encoding: "uint8", compress: true });
    assert.match(client.url, /encoding=uint8&compress=1/);
    const reply = nextEvent(client, "message", (m) => m.type === "encoding", "the encoding reply");
    const frames = [];
    const fiveFrames = new Promise((resolve) => {
      client.addEventListener("frame", (e) => {
        frames.push(e.detail.frame);
        if (frames.length === 5) resolve();
      });
    });
    client.connect();
    try {
      assert.deepEqual(await reply,
        { type: "encoding", encoding: "uint8", compress: true, step_db: 0, second_trace: false });
      await fiveFrames;
      for (const [index, frame] of frames.entries()) {
        assert.equal(frame.encoding, 2);
        assert.equal(frame.flags, 1);
        if (index > 0) assert.ok(frame.sequence > frames[index - 1].sequence, "out of order");
        assertTrace(frame.power, frame.sequence % BINS, -20, -100, frame.scaleStepDb / 2 + 1e-4,
          `frame ${frame.sequence}`);
      }
      assert.equal(client.stats.malformed, 0);
    } finally {
      client.close();
    }
  });

  test("stepDb asks for a fixed uint8 step in the URL; frames use it, on aligned levels", async () => {
    const { url, reply, frame } = await replyAndFirstFrame(
      { encoding: "uint8", compress: true, stepDb: 1 });
    assert.match(url, /encoding=uint8&compress=1&step_db=1(&|$)/);
    assert.deepEqual(reply,
      { type: "encoding", encoding: "uint8", compress: true, step_db: 1, second_trace: false });
    assert.equal(frame.encoding, 2);
    assert.equal(frame.scaleStepDb, 1);
    assert.equal(frame.scaleOffsetDb, -100); // floor(-100 / 1) * 1
    assertTrace(frame.power, frame.sequence % BINS, -20, -100, 0, "the frame");
  });

  test("secondTrace in the URL brings both traces, uint8 deflated on one scale", async () => {
    const { reply, frame } = await replyAndFirstFrame(
      { encoding: "uint8", compress: true, stepDb: 1, secondTrace: true });
    assert.deepEqual(reply,
      { type: "encoding", encoding: "uint8", compress: true, step_db: 1, second_trace: true });
    assert.deepEqual([frame.flags, frame.encoding, frame.scaleStepDb, frame.scaleOffsetDb],
      [3, 2, 1, -110]); // -110 dB, the floor of the second trace, is level 0 of both
    assert.deepEqual([frame.detector, frame.secondDetector], ["peak", "average"]);
    assertTrace(frame.power, frame.sequence % BINS, -20, -100, 0, "the first trace");
    assertTrace(frame.secondPowerDb, (frame.sequence + 8) % BINS, -50, -110, 0,
      "the second trace");
  });

  test("setFormat() on an open connection switches to frames with the second trace", async () => {
    const client = new ArgosClient(SERVER_URL);
    const before = nextEvent(client, "frame", () => true, "a first frame");
    client.connect();
    try {
      assert.equal((await before).frame.secondPowerDb, null);
      const reply = nextEvent(client, "message", (m) => m.type === "encoding", "the encoding reply");
      const after = reply.then(() => nextEvent(client, "frame", () => true, "a frame after the reply"));
      client.setFormat({ encoding: "float32", secondTrace: true });
      assert.equal((await reply).second_trace, true);
      const { frame, sizeBytes } = await after;
      assert.equal(sizeBytes, 64 + 2 * 4 * BINS);
      assertTrace(frame.secondPowerDb, (frame.sequence + 8) % BINS, -50, -110, 0, "the second trace");
      assert.match(client.url, /\?encoding=float32&second_trace=1$/);
    } finally {
      client.close();
    }
  });

  test("a server restart reads reconnecting then open, with a new session and a gap", async () => {
    const client = new ArgosClient(SERVER_URL, { backoffBaseMs: 200, backoffCapMs: 1000 });
    const seen = record(client, "state", "hello", "gap");
    const firstFrame = nextEvent(client, "frame");
    client.connect();
    try {
      const before = (await firstFrame).frame.sequence;
      const sessionBefore = client.hello.session;
      const reconnecting = nextEvent(client, "state", (s) => s.state === "reconnecting");
      const reopened = reconnecting.then(() => nextEvent(client, "state", (s) => s.state === "open"));
      const gap = nextEvent(client, "gap", (g) => g.sessionChanged, "a gap across the restart");
      const frameAfter = gap.then(() => nextEvent(client, "frame"));
      control("restart-server");

      const lost = await reconnecting;
      assert.ok(lost.attempt === 1 && lost.delayMs >= 0 && lost.delayMs <= 200, JSON.stringify(lost));
      assert.match(lost.error, /closed by server: 1001|connection lost/);
      await reopened;
      const found = await gap;
      assert.notEqual(client.hello.session, sessionBefore);
      assert.equal(found.reason, GAP_SEQUENCE_JUMP);
      assert.ok(found.lost >= 1 && found.fromSequence >= before, `${found.lost} lost after ${found.fromSequence}`);
      assert.equal(found.toSequence - found.fromSequence - 1, found.lost);
      assert.ok((await frameAfter).frame.sequence > found.toSequence, "frames flow on after the gap");

      const states = seen.filter((e) => e.type === "state").map((e) => e.detail.state);
      assert.deepEqual(states.slice(0, 3), ["connecting", "open", "reconnecting"]);
      assert.equal(states.at(-1), "open");
      assert.equal(seen.filter((e) => e.type === "hello").length, 2);
      assert.equal(client.stats.reconnects, 1);
      assert.ok(client.stats.lost >= found.lost);
    } finally {
      client.close();
    }
  });
});

describe("ArgosClient against a misbehaving server", {
  skip: SCRIPTED_URL ? false : "ARGOS_TEST_SCRIPTED_URL is not set: run through tests/test_js_client.py",
}, () => {
  test("malformed messages are skipped, unknown types delivered, a silent link dropped", async (t) => {
    t.mock.method(console, "warn", () => {});
    const client = new ArgosClient(SCRIPTED_URL, { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 500 });
    const seen = record(client, "warning", "message", "frame");
    const frame = nextEvent(client, "frame");
    const dead = nextEvent(client, "state", (s) => s.state === "reconnecting", "the heartbeat timeout");
    client.connect();
    try {
      assert.equal((await frame).frame.sequence, 1);
      const lost = await dead;
      assert.match(lost.error, /heartbeat timeout 500 ms/);
      const warnings = seen.filter((e) => e.type === "warning").map((e) => e.detail.message);
      assert.equal(warnings.length, 2, warnings.join("\n"));
      assert.match(warnings[0], /malformed frame .*not a gr-argos frame/);
      assert.match(warnings[1], /malformed message .*not valid JSON/);
      assert.deepEqual(seen.filter((e) => e.type === "message").map((e) => e.detail.type),
        ["hello", "future_thing"]);
      assert.equal(client.stats.malformed, 2);
    } finally {
      client.close();
    }
  });
});

describe("ArgosClient against a real server with a token", {
  skip: TOKEN_URL ? false : "ARGOS_TEST_TOKEN_URL is not set: run through tests/test_js_client.py",
}, () => {
  // Short backoff: a client that wrongly retried would make many attempts within QUIET_MS.
  const FAST_RETRY = { backoffBaseMs: 20, backoffCapMs: 50 };
  const QUIET_MS = 1000;

  test("the right token gets hello and frames", async () => {
    const client = new ArgosClient(TOKEN_URL, { token: TOKEN, ...FAST_RETRY });
    const seen = record(client, "state", "authfailed");
    const hello = nextEvent(client, "hello");
    const frame = nextEvent(client, "frame");
    client.connect();
    try {
      assert.deepEqual((await hello).streams.map((s) => s.bins), [BINS]);
      const { frame: first } = await frame;
      assert.equal(first.power[first.sequence % BINS], -20);
      assert.ok(!client.url.includes(TOKEN));
      assert.deepEqual(seen.map((e) => e.detail.state), ["connecting", "open"]);
    } finally {
      client.close();
    }
  });

  for (const [name, token, expected] of [
    ["a wrong token", "not-the-token", /the server refused the token \(auth_failed: /],
    ["no token", undefined, /the server needs a token \(auth_failed: /],
  ]) {
    test(`${name} ends the client with authfailed and a final closed state, and no retry`, async (t) => {
      const errors = t.mock.method(console, "error", () => {});
      const client = new ArgosClient(TOKEN_URL, { token, ...FAST_RETRY });
      const seen = record(client, "state", "hello", "frame", "error");
      const refused = nextEvent(client, "authfailed");
      client.connect();
      try {
        // The server's handshake timeout is long: only the message the client sends first
        // (the auth, or without a token the first ping) can bring the refusal this soon.
        const { error, willRetry } = await refused;
        assert.match(error, expected);
        assert.equal(willRetry, false);
        await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
        assert.deepEqual(seen.filter((e) => e.type === "state").map((e) => e.detail),
          [{ state: "connecting" }, { state: "open" }, { state: "closed", error, authFailed: true }]);
        assert.deepEqual(seen.filter((e) => e.type === "error").map((e) => e.detail.code), ["auth_failed"]);
        assert.equal(seen.filter((e) => e.type === "hello" || e.type === "frame").length, 0);
        assert.deepEqual([client.state, client.authFailed, client.stats.failedAttempts],
          ["closed", true, 0]);
        assert.equal(errors.mock.callCount(), 1);
      } finally {
        client.close();
      }
    });
  }
});
