// SPDX-License-Identifier: GPL-3.0-or-later
// ArgosClient driven through a scripted stand-in for WebSocket (passed as the WebSocket
// option): state changes, events, malformed input, reconnect with backoff, heartbeat
// timeout, close(), the auth message and refused tokens, without a network. The real
// server is in client.test.mjs.
//
// Run: node --test tests/js/client-fake-socket.test.mjs

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { ArgosClient, GAP_DROPPED_BY_SERVER, GAP_SEQUENCE_JUMP } from "../../gr_argos/web/argos-client.js";

const WAIT_MS = 10000; // a hang guard, not a speed requirement
const BASIC = readFileSync(new URL("../vectors/basic.bin", import.meta.url));
const SECOND_TRACE = readFileSync(new URL("../vectors/second_trace.bin", import.meta.url));

/** The basic.bin test vector (4 bins) with another sequence, missed and stream id. */
function frameBytes(sequence, { missed = 0, streamId = 0 } = {}) {
  const data = new Uint8Array(BASIC).buffer;
  const view = new DataView(data);
  view.setBigUint64(16, BigInt(sequence), true);
  view.setUint32(24, missed, true);
  view.setUint16(12, streamId, true);
  return data;
}

function hello(session = "s1") {
  return JSON.stringify({ type: "hello", server: "test", protocol: 1, session, streams: [] });
}

/** A WebSocket stand-in whose every socket the test opens, feeds and closes by hand. */
function fakeWebSocketClass() {
  class FakeWebSocket {
    static sockets = [];

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.binaryType = "blob";
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      FakeWebSocket.sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
      this.sent.push(JSON.parse(data));
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }

    // What the "server" does:
    open() {
      this.readyState = 1;
      this.onopen?.({ type: "open" });
    }

    receive(data) {
      this.onmessage?.({ type: "message", data });
    }

    serverClose(code = 1001, reason = "server shutting down") {
      this.readyState = 3;
      this.onclose?.({ type: "close", code, reason, wasClean: true });
    }

    /** What Node 20's built-in WebSocket does when it cannot connect: an error event and
     * no close event, staying CONNECTING. */
    errorOnly(message = "Received network error or non-101 status code.") {
      this.onerror?.({ type: "error", message });
    }

    refuse() {
      this.readyState = 3;
      this.onerror?.({ type: "error" });
      this.onclose?.({ type: "close", code: 1006, reason: "", wasClean: false });
    }

    static get last() {
      return FakeWebSocket.sockets.at(-1);
    }
  }
  return FakeWebSocket;
}

/** A client on a fake socket class that records every event it dispatches. */
function fakeClient(options = {}) {
  const FakeWebSocket = fakeWebSocketClass();
  const client = new ArgosClient("ws://argos.test:8765/", {
    WebSocket: FakeWebSocket, backoffBaseMs: 20, backoffCapMs: 80, heartbeatIntervalMs: 0,
    heartbeatTimeoutMs: 0, random: () => 0.5, ...options,
  });
  const events = [];
  for (const type of ["state", "hello", "frame", "gap", "message", "status", "gps", "error",
    "pong", "stats", "view", "warning", "authfailed"]) {
    client.addEventListener(type, (event) => events.push({ type, detail: event.detail }));
  }
  return { client, FakeWebSocket, events };
}

function ofType(events, type) {
  return events.filter((e) => e.type === type).map((e) => e.detail);
}

/** Resolve once `condition()` is true (polled), else fail after WAIT_MS saying `what`. */
async function until(condition, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function silenceWarnings(t) {
  return t.mock.method(console, "warn", () => {});
}

describe("ArgosClient with a fake WebSocket", () => {
  test("it stays closed until connect(), then reports connecting, open, hello and frames", () => {
    const { client, FakeWebSocket, events } = fakeClient();
    assert.equal(client.state, "closed");
    assert.equal(FakeWebSocket.sockets.length, 0);
    client.connect();
    const ws = FakeWebSocket.last;
    assert.equal(ws.url, "ws://argos.test:8765/");
    assert.equal(ws.binaryType, "arraybuffer");
    assert.equal(client.state, "connecting");
    ws.open();
    ws.receive(hello());
    ws.receive(frameBytes(1));
    ws.receive(frameBytes(2));
    assert.deepEqual(ofType(events, "state").map((s) => s.state), ["connecting", "open"]);
    assert.equal(ofType(events, "hello")[0].session, "s1");
    assert.equal(client.hello.session, "s1");
    assert.deepEqual(ofType(events, "message").map((m) => m.type), ["hello"]);
    const frames = ofType(events, "frame");
    assert.deepEqual(frames.map((f) => [f.frame.sequence, f.gap]), [[1, 0], [2, 0]]);
    assert.deepEqual(Array.from(frames[0].frame.power), [-100, -50.5, -3.25, 0]);
    assert.equal(frames[0].sizeBytes, 80);
    assert.ok(Number.isFinite(frames[0].ageMs) && Number.isFinite(frames[0].receivedMs));
    const stats = client.stats;
    assert.deepEqual([stats.frames, stats.bytes, stats.gaps, stats.lost, stats.malformed],
      [2, 160 + hello().length, 0, 0, 0]);
    client.close();
  });

  test("JSON types get their own event after the message event; unknown types only message", () => {
    const { client, FakeWebSocket, events } = fakeClient();
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    for (const type of ["status", "gps", "error", "pong", "stats", "future_type"]) {
      ws.receive(JSON.stringify({ type, stream: 0 }));
    }
    assert.deepEqual(events.filter((e) => e.type !== "state").map((e) => e.type),
      ["message", "status", "message", "gps", "message", "error", "message", "pong",
        "message", "stats", "message"]);
    assert.equal(ofType(events, "message").at(-1).type, "future_type");
    assert.equal(ofType(events, "warning").length, 0);
    client.close();
  });

  test("a malformed frame or JSON message is skipped with a warning and the client carries on", (t) => {
    const warn = silenceWarnings(t);
    const { client, FakeWebSocket, events } = fakeClient();
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.receive(new Uint8Array([1, 2, 3]).buffer);
    ws.receive("{not json");
    ws.receive('{"no": "type"}');
    ws.receive("[1, 2]");
    ws.receive(frameBytes(5));
    const warnings = ofType(events, "warning");
    assert.equal(warnings.length, 4);
    assert.match(warnings[0].message, /malformed frame.*frame truncated/);
    assert.equal(warnings[0].error.name, "ProtocolError");
    assert.match(warnings[1].message, /not valid JSON/);
    assert.match(warnings[2].message, /string "type"/);
    assert.match(warnings[3].message, /JSON object, got array/);
    assert.equal(warn.mock.callCount(), 4);
    assert.equal(client.stats.malformed, 4);
    assert.deepEqual(ofType(events, "frame").map((f) => f.frame.sequence), [5]);
    assert.equal(client.state, "open");
    client.close();
  });

  test("lost frames give a gap event before the frame, and count in stats", () => {
    const { client, FakeWebSocket, events } = fakeClient();
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.receive(frameBytes(10));
    ws.receive(frameBytes(14, { missed: 3 }));
    const order = events.filter((e) => e.type === "gap" || e.type === "frame").map((e) => e.type);
    assert.deepEqual(order, ["frame", "gap", "frame"]);
    const [found] = ofType(events, "gap");
    assert.deepEqual([found.lost, found.fromSequence, found.toSequence, found.reason],
      [3, 10, 14, GAP_DROPPED_BY_SERVER]);
    assert.equal(ofType(events, "frame")[1].gap, 3);
    assert.deepEqual([client.stats.gaps, client.stats.lost], [1, 3]);
    client.close();
  });

  test("a lost connection is retried after a full-jitter delay: reconnecting, then open", async (t) => {
    silenceWarnings(t);
    const { client, FakeWebSocket, events } = fakeClient({ backoffBaseMs: 40 });
    client.connect();
    const first = FakeWebSocket.last;
    first.open();
    first.receive(hello("s1"));
    first.receive(frameBytes(2));
    first.serverClose(1001, "server shutting down");
    const reconnecting = ofType(events, "state").at(-1);
    assert.deepEqual(reconnecting, { state: "reconnecting", attempt: 1, delayMs: 20,
      error: "closed by server: 1001 server shutting down" });
    assert.equal(client.state, "reconnecting");
    assert.throws(() => client.send({ type: "stats" }), /not connected .*reconnecting/);
    await until(() => FakeWebSocket.sockets.length === 2, "a second connection attempt");
    const second = FakeWebSocket.last;
    second.open();
    second.receive(hello("s2"));
    second.receive(frameBytes(9));
    assert.deepEqual(ofType(events, "state").map((s) => s.state),
      ["connecting", "open", "reconnecting", "open"]);
    const [found] = ofType(events, "gap");
    assert.deepEqual([found.lost, found.reason, found.sessionChanged], [6, GAP_SEQUENCE_JUMP, true]);
    assert.equal(client.stats.reconnects, 1);
    client.close();
  });

  test("failed attempts before the first open keep state connecting, with growing delays", async () => {
    const { client, FakeWebSocket, events } = fakeClient({ backoffBaseMs: 10, backoffCapMs: 25 });
    client.connect();
    for (let n = 1; n <= 3; n++) {
      await until(() => FakeWebSocket.sockets.length === n, `connection attempt ${n}`);
      FakeWebSocket.last.refuse();
    }
    const retries = ofType(events, "state").slice(1);
    assert.deepEqual(retries.map((s) => [s.state, s.attempt, s.delayMs]),
      [["connecting", 1, 5], ["connecting", 2, 10], ["connecting", 3, 12.5]]);
    assert.match(retries[0].error, /cannot connect to ws:\/\/argos\.test:8765\//);
    assert.equal(client.stats.failedAttempts, 3);
    await until(() => FakeWebSocket.sockets.length === 4, "connection attempt 4");
    FakeWebSocket.last.open();
    assert.equal(client.state, "open");
    assert.equal(client.stats.reconnects, 0, "a first open is not a reconnect");
    client.close();
  });

  test("an error event without a close event still ends the attempt and the connection", async (t) => {
    silenceWarnings(t);
    const { client, FakeWebSocket, events } = fakeClient();
    client.connect();
    const refused = FakeWebSocket.last;
    refused.errorOnly();
    assert.match(ofType(events, "state").at(-1).error, /cannot connect .*: Received network error/);
    assert.equal(refused.closedWith.code, 1000, "the stuck socket is closed, freeing it");
    await until(() => FakeWebSocket.sockets.length === 2, "a second attempt");
    FakeWebSocket.last.open();
    FakeWebSocket.last.errorOnly("read ECONNRESET");
    assert.deepEqual(ofType(events, "state").map((s) => s.state),
      ["connecting", "connecting", "open", "reconnecting"]);
    assert.equal(ofType(events, "state").at(-1).error, "connection lost (read ECONNRESET)");
    await until(() => FakeWebSocket.sockets.length === 3, "a reconnect");
    client.close();
  });

  test("a connection that stayed open stableAfterMs resets the backoff", async (t) => {
    silenceWarnings(t);
    const { client, FakeWebSocket, events } = fakeClient(
      { backoffBaseMs: 10, backoffCapMs: 1000, stableAfterMs: 50 });
    client.connect();
    FakeWebSocket.last.refuse();
    await until(() => FakeWebSocket.sockets.length === 2, "a retry");
    FakeWebSocket.last.refuse(); // ceiling now 40 ms
    await until(() => FakeWebSocket.sockets.length === 3, "another retry");
    FakeWebSocket.last.open();
    await new Promise((resolve) => setTimeout(resolve, 80));
    FakeWebSocket.last.serverClose();
    const delays = ofType(events, "state").filter((s) => s.delayMs !== undefined).map((s) => s.delayMs);
    assert.deepEqual(delays, [5, 10, 5]);
    client.close();
  });

  test("the heartbeat pings with numeric ids and the pong gives the round-trip time", async () => {
    const { client, FakeWebSocket, events } = fakeClient({ heartbeatIntervalMs: 20 });
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    assert.equal(client.stats.lastRttMs, null);
    await until(() => ws.sent.length >= 2, "two pings");
    assert.deepEqual(ws.sent.slice(0, 2), [{ type: "ping", id: 1 }, { type: "ping", id: 2 }]);
    ws.receive(JSON.stringify({ type: "pong", id: 2, server_time_ns: 1 }));
    assert.ok(client.stats.lastRttMs >= 0);
    assert.equal(ofType(events, "pong")[0].id, 2);
    client.close();
  });

  test("a connection silent for heartbeatTimeoutMs is dropped at once and reconnected", async (t) => {
    silenceWarnings(t);
    const { client, FakeWebSocket, events } = fakeClient(
      { heartbeatIntervalMs: 20, heartbeatTimeoutMs: 100 });
    client.connect();
    const silent = FakeWebSocket.last;
    silent.open(); // and never answers
    await until(() => client.state === "reconnecting", "the heartbeat timeout");
    assert.deepEqual(silent.closedWith, { code: 4000, reason: "heartbeat timeout" });
    assert.equal(silent.onclose, null, "the dead socket's late close event is not awaited");
    assert.match(ofType(events, "state").at(-1).error, /no message for \d+ ms \(heartbeat timeout 100 ms\)/);
    await until(() => FakeWebSocket.sockets.length === 2, "a new connection");
    client.close();
  });

  test("a connection that answers its pings is kept open past the heartbeat timeout", async () => {
    const { client, FakeWebSocket } = fakeClient({ heartbeatIntervalMs: 20, heartbeatTimeoutMs: 60 });
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    const answered = new Set();
    const deadline = Date.now() + 300;
    while (Date.now() < deadline) {
      for (const ping of ws.sent) {
        if (!answered.has(ping.id)) {
          answered.add(ping.id);
          ws.receive(JSON.stringify({ type: "pong", id: ping.id, server_time_ns: 0 }));
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.ok(answered.size >= 3);
    assert.equal(client.state, "open");
    assert.equal(FakeWebSocket.sockets.length, 1);
    client.close();
  });

  test("an attempt that does not open within openTimeoutMs is abandoned and retried", async () => {
    const { client, FakeWebSocket, events } = fakeClient({ openTimeoutMs: 30 });
    client.connect();
    const hanging = FakeWebSocket.last;
    await until(() => FakeWebSocket.sockets.length === 2, "a second attempt");
    assert.equal(hanging.closedWith.code, 4000);
    assert.match(ofType(events, "state")[1].error, /timed out opening the connection after 30 ms/);
    client.close();
  });

  test("close() closes with 1000, reports closed, and nothing happens afterwards", async (t) => {
    silenceWarnings(t);
    const { client, FakeWebSocket, events } = fakeClient();
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.serverClose(); // a retry is now scheduled ...
    client.close(); // ... and cancelled
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(FakeWebSocket.sockets.length, 1);
    assert.equal(client.state, "closed");
    assert.equal(ofType(events, "state").at(-1).state, "closed");
    client.connect();
    const again = FakeWebSocket.last;
    again.open();
    client.close();
    assert.deepEqual(again.closedWith, { code: 1000, reason: "client closed" });
    assert.equal(again.onmessage, null);
    assert.throws(() => client.send({ type: "ping" }), /not connected .*closed/);
    client.connect(); // a fresh start: a failure is a failed attempt, not a lost connection
    FakeWebSocket.last.refuse();
    assert.deepEqual(ofType(events, "state").slice(-2).map((s) => s.state), ["connecting", "connecting"]);
    assert.deepEqual([client.stats.failedAttempts, client.stats.reconnects], [1, 0]);
    client.close();
  });

  test("a listener may close the client: no further events are dispatched", () => {
    const { client, FakeWebSocket, events } = fakeClient();
    client.addEventListener("gap", () => client.close());
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.receive(frameBytes(1));
    ws.receive(frameBytes(5));
    assert.deepEqual(events.filter((e) => e.type !== "state").map((e) => e.type), ["frame", "gap"]);
    assert.equal(ofType(events, "state").at(-1).state, "closed");
  });

  test("send() writes JSON on an open connection", () => {
    const { client, FakeWebSocket } = fakeClient();
    client.connect();
    FakeWebSocket.last.open();
    client.send({ type: "stats" });
    assert.deepEqual(FakeWebSocket.last.sent, [{ type: "stats" }]);
    client.close();
  });

  test("setFormat() sends set_encoding when open and puts the format in later URLs", async () => {
    const { client, FakeWebSocket } = fakeClient();
    assert.deepEqual(client.format,
      { encoding: undefined, compress: false, stepDb: 0, secondTrace: false });
    client.setFormat({ encoding: "uint8", stepDb: 1 }); // not connected: the URL only
    assert.equal(client.url, "ws://argos.test:8765/?encoding=uint8&step_db=1");
    client.connect();
    const first = FakeWebSocket.last;
    assert.equal(first.url, client.url);
    first.open();
    client.setFormat({ encoding: "float32", secondTrace: true });
    assert.deepEqual(first.sent, [
      { type: "set_encoding", encoding: "float32", compress: false, step_db: 0, second_trace: true }]);
    assert.deepEqual(client.format,
      { encoding: "float32", compress: false, stepDb: 0, secondTrace: true });
    first.serverClose();
    await until(() => FakeWebSocket.sockets.length === 2, "the reconnect");
    assert.equal(FakeWebSocket.last.url, "ws://argos.test:8765/?encoding=float32&second_trace=1");
    assert.throws(() => client.setFormat({ compress: false }), /setFormat needs an encoding/);
    assert.throws(() => client.setFormat({ encoding: "int8" }), /unknown encoding "int8"/);
    assert.equal(client.format.secondTrace, true, "a refused format changes nothing");
    client.close();
  });

  test("the view option and setView() go in the URL; setView() sends set_view when open", async () => {
    const { client, FakeWebSocket } = fakeClient({ view: { centerFreqHz: 101.6e6, spanHz: 200e3 } });
    assert.equal(client.url, "ws://argos.test:8765/?center_freq_hz=101600000&span_hz=200000");
    client.connect();
    const first = FakeWebSocket.last;
    assert.equal(first.url, client.url);
    first.open();
    client.setView(1, { centerFreqHz: 100e6, spanHz: 1e6, bins: 1024, fpsDivisor: 2 });
    assert.deepEqual(first.sent, [{ type: "set_view", stream_id: 1, center_freq_hz: 100e6,
      span_hz: 1e6, bins: 1024, fps_divisor: 2 }]);
    assert.deepEqual(client.view,
      { streamId: 1, centerFreqHz: 100e6, spanHz: 1e6, bins: 1024, fpsDivisor: 2 });
    client.setView(undefined, {}); // the whole first stream, every frame
    assert.deepEqual(first.sent.at(-1), { type: "set_view" });
    client.setView(0, { fpsDivisor: 3 });
    first.serverClose();
    await until(() => FakeWebSocket.sockets.length === 2, "the reconnect");
    assert.equal(FakeWebSocket.last.url, "ws://argos.test:8765/?stream_id=0&fps_divisor=3");
    client.close();
  });

  test("a view the server would refuse is refused at once, naming the value", () => {
    const { client } = fakeClient();
    for (const [view, pattern] of [
      [{ spanHz: 0 }, /spanHz must be more than 0/], [{ bins: 0 }, /bins must be a whole number/],
      [{ bins: 1.5 }, /bins must be a whole number/], [{ fpsDivisor: 101 }, /fpsDivisor/],
      [{ centerFreqHz: "100e6" }, /centerFreqHz must be a finite number/],
      [{ centerFreqHz: Infinity }, /centerFreqHz must be a finite number/],
    ]) {
      assert.throws(() => client.setView(0, view), pattern, JSON.stringify(view));
    }
    assert.throws(() => client.setView(-1), /streamId/);
    assert.throws(() => fakeClient({ view: { bins: 2 ** 21 } }), RangeError);
    assert.equal(client.view, null, "a refused view changes nothing");
  });

  test("the view reply is a view event and sets the rate gaps are counted at", () => {
    const { client, FakeWebSocket, events } = fakeClient({ view: { fpsDivisor: 2 } });
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.receive(hello("s1"));
    const reply = { type: "view", stream_id: 0, center_freq_hz: 100e6, span_hz: 1e6, bins: 4,
      fps_divisor: 2, level: 0 };
    ws.receive(JSON.stringify(reply));
    assert.deepEqual(ofType(events, "view"), [reply]);
    ws.receive(frameBytes(10));
    ws.receive(frameBytes(12));
    ws.receive(frameBytes(14));
    assert.deepEqual(ofType(events, "gap"), [], "every frame of the client's rate arrived");
    ws.receive(JSON.stringify({ ...reply, fps_divisor: 3 })); // changed mid-stream
    ws.receive(frameBytes(15));
    ws.receive(frameBytes(21));
    const [found] = ofType(events, "gap");
    assert.deepEqual([found.lost, found.fromSequence, found.toSequence], [1, 15, 21]);
    client.close();
  });

  test("a frame with a second trace gives both traces and their detectors in the frame event", () => {
    const { client, FakeWebSocket, events } = fakeClient({ secondTrace: true });
    client.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive(new Uint8Array(SECOND_TRACE).buffer);
    const [{ frame }] = ofType(events, "frame");
    assert.deepEqual([frame.detector, frame.secondDetector], ["peak", "average"]);
    assert.deepEqual(Array.from(frame.power), [-90, -40.5, -12.25, -60]);
    assert.deepEqual(Array.from(frame.secondPowerDb), [-101, -97.5, -30.75, -99.125]);
    client.close();
  });
});

describe("ArgosClient with a token", () => {
  const TOKEN = "s3cret-token-7f2a";
  const AUTH_FAILED = JSON.stringify({ type: "error", code: "auth_failed",
    message: 'authentication failed: send {"type": "auth", "token": ...} first' });

  /** Let any retry the client might (wrongly) have scheduled come due: the backoff of
   * fakeClient is at most 80 ms. */
  const pastAnyRetry = () => new Promise((resolve) => setTimeout(resolve, 200));

  test("the token goes in a first auth message on every connection, never in the URL", async (t) => {
    silenceWarnings(t);
    const { client, FakeWebSocket } = fakeClient({ token: TOKEN, heartbeatIntervalMs: 1000 });
    client.connect();
    FakeWebSocket.last.open();
    assert.deepEqual(FakeWebSocket.last.sent,
      [{ type: "auth", token: TOKEN }, { type: "ping", id: 1 }]);
    FakeWebSocket.last.serverClose(); // a restart: the next connection authenticates again
    await until(() => FakeWebSocket.sockets.length === 2, "a reconnect");
    FakeWebSocket.last.open();
    assert.deepEqual(FakeWebSocket.last.sent[0], { type: "auth", token: TOKEN });
    for (const ws of FakeWebSocket.sockets) assert.ok(!ws.url.includes(TOKEN), ws.url);
    assert.ok(!client.url.includes(TOKEN));
    client.close();
  });

  test("an auth_failed error and a 1008 close end the client: authfailed, then closed", async (t) => {
    const errors = t.mock.method(console, "error", () => {});
    const { client, FakeWebSocket, events } = fakeClient({ token: TOKEN });
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    ws.receive(AUTH_FAILED);
    ws.serverClose(1008, "authentication failed");
    await pastAnyRetry();
    assert.equal(FakeWebSocket.sockets.length, 1, "no second attempt");
    const [refused] = ofType(events, "authfailed");
    assert.match(refused.error, /^authentication failed: the server refused the token \(auth_failed: .*\); give this client the server's token$/);
    assert.equal(refused.willRetry, false);
    assert.deepEqual(ofType(events, "state").map((s) => s.state), ["connecting", "open", "closed"]);
    assert.deepEqual(ofType(events, "state").at(-1), { state: "closed", error: refused.error, authFailed: true });
    assert.equal(ofType(events, "error")[0].code, "auth_failed");
    assert.deepEqual([client.state, client.authFailed, client.lastError], ["closed", true, refused.error]);
    assert.equal(errors.mock.callCount(), 1);
    assert.match(errors.mock.calls[0].arguments[0], /not retrying/);
    for (const text of [refused.error, errors.mock.calls[0].arguments[0]]) {
      assert.ok(!text.includes(TOKEN), "the token is never shown");
    }
  });

  test("without a token the refusal says the server needs one", (t) => {
    t.mock.method(console, "error", () => {});
    const { client, FakeWebSocket, events } = fakeClient({ heartbeatIntervalMs: 1000 });
    client.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    assert.deepEqual(ws.sent, [{ type: "ping", id: 1 }], "a ping at once makes the server decide");
    ws.receive(AUTH_FAILED);
    ws.serverClose(1008, "authentication failed");
    assert.match(ofType(events, "authfailed")[0].error, /the server needs a token/);
    assert.equal(client.state, "closed");
  });

  test("a 1008 close before hello is a refusal even without the auth_failed error", async (t) => {
    t.mock.method(console, "error", () => {});
    const { client, FakeWebSocket, events } = fakeClient({ token: TOKEN });
    client.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.serverClose(1008, "no auth message within 10 s");
    await pastAnyRetry();
    assert.equal(FakeWebSocket.sockets.length, 1);
    assert.match(ofType(events, "authfailed")[0].error,
      /the server refused the token \(closed by server: 1008 no auth message within 10 s\)/);
    assert.equal(client.authFailed, true);
  });

  test("a 1008 close after hello (a slow client, a rate limit) is retried as usual", async (t) => {
    silenceWarnings(t);
    const { client, FakeWebSocket, events } = fakeClient({ token: TOKEN });
    client.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive(hello());
    FakeWebSocket.last.serverClose(1008, "more than 10 messages/s (burst 20)");
    await until(() => FakeWebSocket.sockets.length === 2, "a reconnect");
    assert.equal(ofType(events, "authfailed").length, 0);
    assert.equal(ofType(events, "state").at(-1).state, "reconnecting");
    assert.equal(client.authFailed, false);
    client.close();
  });

  test("retryAuthFailure keeps trying with the backoff, reporting each refusal", async (t) => {
    silenceWarnings(t);
    const { client, FakeWebSocket, events } = fakeClient({ token: TOKEN, retryAuthFailure: true });
    client.connect();
    for (let attempt = 1; attempt <= 2; attempt++) {
      await until(() => FakeWebSocket.sockets.length === attempt, `attempt ${attempt}`);
      FakeWebSocket.last.open();
      FakeWebSocket.last.receive(AUTH_FAILED);
      FakeWebSocket.last.serverClose(1008, "authentication failed");
    }
    await until(() => FakeWebSocket.sockets.length === 3, "a third attempt");
    const refusals = ofType(events, "authfailed");
    assert.equal(refusals.length, 2);
    assert.ok(refusals.every((r) => r.willRetry));
    const retries = ofType(events, "state").filter((s) => s.state === "reconnecting");
    assert.deepEqual(retries.map((s) => s.delayMs), [10, 20], "the usual backoff");
    assert.match(retries[0].error, /the server refused the token/);
    assert.equal(client.authFailed, false);
    client.close();
  });

  test("setToken() and connect() after a refusal start over with the new token", async (t) => {
    t.mock.method(console, "error", () => {});
    const { client, FakeWebSocket, events } = fakeClient({ token: "wrong-token" });
    client.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive(AUTH_FAILED);
    FakeWebSocket.last.serverClose(1008, "authentication failed");
    client.setToken(TOKEN);
    client.connect();
    assert.equal(client.authFailed, false);
    const ws = FakeWebSocket.last;
    ws.open();
    assert.deepEqual(ws.sent[0], { type: "auth", token: TOKEN });
    ws.receive(hello());
    ws.receive(frameBytes(1));
    assert.equal(ofType(events, "frame").length, 1);
    assert.equal(client.state, "open");
    client.setToken(null); // forgotten: the next connection sends no auth message
    ws.serverClose();
    await until(() => FakeWebSocket.sockets.length === 3, "a reconnect");
    FakeWebSocket.last.open();
    assert.deepEqual(FakeWebSocket.last.sent, []);
    client.close();
  });

  test("a listener may set the right token and connect again from authfailed", (t) => {
    t.mock.method(console, "error", () => {});
    const { client, FakeWebSocket, events } = fakeClient({ token: "wrong-token" });
    client.addEventListener("authfailed", () => {
      client.setToken(TOKEN);
      client.connect();
    }, { once: true });
    client.connect();
    FakeWebSocket.last.open();
    FakeWebSocket.last.receive(AUTH_FAILED);
    FakeWebSocket.last.serverClose(1008, "authentication failed");
    assert.deepEqual(ofType(events, "state").map((s) => s.state), ["connecting", "open", "connecting"]);
    assert.equal(client.state, "connecting");
    FakeWebSocket.last.open();
    assert.deepEqual(FakeWebSocket.last.sent[0], { type: "auth", token: TOKEN });
    client.close();
  });

  test("a token no server could hold is refused at once, without showing it", () => {
    const WebSocket = fakeWebSocketClass();
    const client = new ArgosClient("ws://pi/", { WebSocket });
    for (const token of ["", " padded", "padded\n", "two\nlines", "x".repeat(4097), 42]) {
      for (const set of [() => client.setToken(token),
        () => new ArgosClient("ws://pi/", { WebSocket, token })]) {
        assert.throws(set, (error) => {
          assert.ok(error instanceof TypeError);
          assert.ok(token === "" || !error.message.includes(String(token)), error.message);
          return true;
        }, JSON.stringify(token));
      }
    }
    client.setToken("\u{1F4E1}".repeat(4096)); // 4096 characters (8192 UTF-16 units) fit
  });
});

describe("ArgosClient construction", () => {
  test("a URL that is not a WebSocket URL is refused at once, saying what is expected", () => {
    const WebSocket = fakeWebSocketClass();
    for (const url of ["ftp://host/", "not a url", "127.0.0.1:8765"]) {
      assert.throws(() => new ArgosClient(url, { WebSocket }), (error) => {
        assert.ok(error instanceof TypeError);
        assert.match(error.message, /expected ws:\/\/HOST:PORT\/ or wss:\/\/HOST:PORT\//);
        return true;
      }, url);
    }
  });

  test("http and https URLs name the same server's WebSocket", () => {
    const WebSocket = fakeWebSocketClass();
    assert.equal(new ArgosClient("http://pi:8765/", { WebSocket }).url, "ws://pi:8765/");
    assert.equal(new ArgosClient("https://pi/argos", { WebSocket }).url, "wss://pi/argos");
  });

  test("in a page the default URL is the page's own server; outside one a URL is required", () => {
    const WebSocket = fakeWebSocketClass();
    assert.throws(() => new ArgosClient(undefined, { WebSocket }), /no URL given/);
    globalThis.location = { href: "https://pi.example:8765/index.html" };
    try {
      assert.equal(new ArgosClient(undefined, { WebSocket }).url, "wss://pi.example:8765/");
      assert.equal(new ArgosClient("/ws", { WebSocket }).url, "wss://pi.example:8765/ws");
    } finally {
      delete globalThis.location;
    }
  });

  test("without a WebSocket implementation the error says how to get one", () => {
    const saved = globalThis.WebSocket;
    globalThis.WebSocket = undefined;
    try {
      assert.throws(() => new ArgosClient("ws://pi:8765/"), /--experimental-websocket.*ws package/);
    } finally {
      globalThis.WebSocket = saved;
    }
  });

  test("a negative duration, or a heartbeat timeout not longer than the interval, is refused", () => {
    const WebSocket = fakeWebSocketClass();
    assert.throws(() => new ArgosClient("ws://pi/", { WebSocket, heartbeatIntervalMs: 5000,
      heartbeatTimeoutMs: 5000 }), /heartbeatTimeoutMs \(5000\) must be longer/);
    assert.throws(() => new ArgosClient("ws://pi/", { WebSocket, heartbeatTimeoutMs: -1 }), RangeError);
    assert.throws(() => new ArgosClient("ws://pi/", { WebSocket, backoffBaseMs: 0 }), RangeError);
  });

  test("stepDb goes in the URL as step_db, with encoding uint8 only and in 0.01-20 dB", () => {
    const WebSocket = fakeWebSocketClass();
    const url = (options) => new ArgosClient("ws://pi:8765/", { WebSocket, ...options }).url;
    assert.equal(url({ encoding: "uint8", stepDb: 1 }), "ws://pi:8765/?encoding=uint8&step_db=1");
    assert.equal(url({ encoding: "uint8", compress: true, stepDb: 0.5 }),
      "ws://pi:8765/?encoding=uint8&compress=1&step_db=0.5");
    assert.equal(url({ encoding: "uint8", stepDb: 0 }), "ws://pi:8765/?encoding=uint8");
    for (const stepDb of [0.001, 25, -1, NaN, Infinity, "1"]) {
      assert.throws(() => url({ encoding: "uint8", stepDb }), /stepDb must be 0 \(automatic\) or a number of dB from 0.01 to 20/, String(stepDb));
    }
    assert.throws(() => url({ stepDb: 1 }), /uint8 encoding only/);
    assert.throws(() => url({ encoding: "int16", stepDb: 1 }), RangeError);
  });

  test("secondTrace goes in the URL as second_trace=1, with encoding float32 unless one is given", () => {
    const WebSocket = fakeWebSocketClass();
    const url = (base, options) => new ArgosClient(base, { WebSocket, ...options }).url;
    assert.equal(url("ws://pi:8765/", { secondTrace: true }),
      "ws://pi:8765/?encoding=float32&second_trace=1");
    assert.equal(url("ws://pi:8765/", { encoding: "uint8", compress: true, stepDb: 1, secondTrace: true }),
      "ws://pi:8765/?encoding=uint8&compress=1&step_db=1&second_trace=1");
    assert.equal(url("ws://pi:8765/", { secondTrace: false }), "ws://pi:8765/");
    // A format asked for in the options replaces the one in the URL, as in the Python client.
    assert.equal(url("ws://pi:8765/x?second_trace=1&compress=1&a=b", { encoding: "int16" }),
      "ws://pi:8765/x?a=b&encoding=int16");
  });
});
