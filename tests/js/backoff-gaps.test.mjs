// SPDX-License-Identifier: GPL-3.0-or-later
// The reconnect policy (Backoff) and gap detection (GapDetector) of argos-client.js as
// plain code: no sockets, no timers, the random source injected. The same cases as
// TestBackoff and TestGapDetector in tests/test_client.py, so both clients agree.
//
// Run: node --test tests/js/backoff-gaps.test.mjs

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  Backoff, GAP_DROPPED_BY_SERVER, GAP_SEQUENCE_JUMP, GAP_STREAM_RESTARTED, GapDetector,
} from "../../gr_argos/web/argos-client.js";

/** A repeatable random source in [0, 1) (mulberry32). */
function seeded(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("Backoff", () => {
  test("the ceiling doubles from the base up to the cap", () => {
    const backoff = new Backoff({ baseMs: 500, capMs: 10000, random: seeded(1) });
    const ceilings = [];
    for (let i = 0; i < 8; i++) {
      ceilings.push(backoff.ceilingMs());
      backoff.nextDelayMs();
    }
    assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
  });

  test("the delay is random() times the ceiling: full jitter, from 0 to the ceiling", () => {
    const draws = [0, 0.25, 0.999999];
    const backoff = new Backoff({ baseMs: 1000, capMs: 100000, random: () => draws.shift() });
    backoff.attempt = 3;
    assert.deepEqual([backoff.nextDelayMs(), backoff.nextDelayMs(), backoff.nextDelayMs()],
      [0, 0.25 * 16000, 0.999999 * 32000]);
  });

  test("every delay lies between zero and its ceiling, however many attempts", () => {
    const backoff = new Backoff({ baseMs: 250, capMs: 3000, random: seeded(2) });
    for (let i = 0; i < 5000; i++) {
      const ceiling = backoff.ceilingMs();
      const delay = backoff.nextDelayMs();
      assert.ok(delay >= 0 && delay <= ceiling && ceiling <= 3000, `${delay} of ${ceiling}`);
    }
  });

  test("clients cut off together spread their first retries over the whole range", () => {
    const random = seeded(3);
    const draws = [];
    for (let i = 0; i < 2000; i++) {
      const backoff = new Backoff({ baseMs: 1000, capMs: 100000, random });
      backoff.attempt = 3;
      draws.push(backoff.nextDelayMs());
    }
    assert.ok(Math.min(...draws) < 0.05 * 8000);
    assert.ok(Math.max(...draws) > 0.95 * 8000);
    const mean = draws.reduce((a, b) => a + b) / draws.length;
    assert.ok(mean > 3500 && mean < 4500, `mean ${mean}`); // uniform on [0, 8000]
  });

  test("the counter resets only after a connection stayed open stableAfterMs", () => {
    const backoff = new Backoff({ baseMs: 500, capMs: 10000, stableAfterMs: 5000,
      random: seeded(4) });
    for (let i = 0; i < 4; i++) backoff.nextDelayMs();
    backoff.connectionClosed(4900);
    assert.equal(backoff.ceilingMs(), 8000);
    backoff.connectionClosed(5000);
    assert.equal(backoff.attempt, 0);
    assert.equal(backoff.ceilingMs(), 500);
  });

  test("settings that make no sense are refused", () => {
    for (const options of [{ baseMs: 0 }, { baseMs: 2000, capMs: 1000 },
      { stableAfterMs: -1 }, { baseMs: NaN }]) {
      assert.throws(() => new Backoff(options), RangeError, JSON.stringify(options));
    }
  });
});

function frame(sequence, { streamId = 0, missed = 0 } = {}) {
  return { streamId, sequence, sequenceBig: BigInt(sequence), missed };
}

function gap(streamId, lost, fromSequence, toSequence, reason, sessionChanged = false) {
  return {
    streamId, lost, fromSequence, toSequence, reason, sessionChanged,
    fromSequenceBig: BigInt(fromSequence), toSequenceBig: BigInt(toSequence),
  };
}

describe("GapDetector", () => {
  test("consecutive frames have no gap", () => {
    const detector = new GapDetector();
    assert.deepEqual([0, 1, 2].map((n) => detector.observe(frame(n))), [null, null, null]);
  });

  test("a missed field matching the sequence jump is a drop by the server", () => {
    const detector = new GapDetector();
    detector.observe(frame(10));
    assert.deepEqual(detector.observe(frame(14, { missed: 3 })),
      gap(0, 3, 10, 14, GAP_DROPPED_BY_SERVER));
  });

  test("a jump larger than missed is a sequence jump (frames never queued for this client)", () => {
    const detector = new GapDetector();
    detector.observe(frame(10));
    assert.deepEqual(detector.observe(frame(20, { missed: 2 })),
      gap(0, 9, 10, 20, GAP_SEQUENCE_JUMP));
  });

  test("missed larger than the jump counts the missed frames", () => {
    const detector = new GapDetector();
    detector.observe(frame(10));
    assert.deepEqual(detector.observe(frame(12, { missed: 5 })),
      gap(0, 5, 10, 12, GAP_DROPPED_BY_SERVER));
  });

  test("missed on a first frame is reported from the missed field alone", () => {
    const detector = new GapDetector();
    assert.deepEqual(detector.observe(frame(7, { missed: 2 })),
      gap(0, 2, 4, 7, GAP_DROPPED_BY_SERVER));
  });

  test("a sequence that goes back is a stream restart with an unknown loss", () => {
    const detector = new GapDetector();
    detector.observe(frame(50));
    assert.deepEqual(detector.observe(frame(0)), gap(0, 0, 50, 0, GAP_STREAM_RESTARTED));
    assert.equal(detector.observe(frame(0)), null); // the same frame again
  });

  test("the same sequence again is the frame resent in a new view, unless a restart", () => {
    const detector = new GapDetector();
    detector.newSession("a");
    detector.observe(frame(9));
    assert.equal(detector.observe(frame(9)), null); // sent again after a view reply
    assert.equal(detector.observe(frame(10)), null);
    assert.equal(detector.observe(frame(10)), null);
    assert.deepEqual(detector.observe(frame(12, { missed: 1 })),
      gap(0, 1, 10, 12, GAP_DROPPED_BY_SERVER));
    detector.newSession("b");
    const found = detector.observe(frame(12));
    assert.deepEqual([found.reason, found.sessionChanged], [GAP_STREAM_RESTARTED, true]);
  });

  test("streams are tracked separately", () => {
    const detector = new GapDetector();
    const results = [];
    for (let n = 0; n < 3; n++) {
      for (const streamId of [0, 1]) results.push(detector.observe(frame(n, { streamId })));
    }
    assert.deepEqual(results, Array(6).fill(null));
    const found = detector.observe(frame(5, { streamId: 1 }));
    assert.deepEqual([found.streamId, found.lost], [1, 2]);
  });

  test("a new session is flagged on the next gap of each stream, once", () => {
    const detector = new GapDetector();
    detector.newSession("a");
    detector.observe(frame(3));
    detector.newSession("a"); // a reconnect to the same server
    assert.equal(detector.observe(frame(6)).sessionChanged, false);
    detector.newSession("b");
    const found = detector.observe(frame(1));
    assert.deepEqual([found.reason, found.sessionChanged], [GAP_STREAM_RESTARTED, true]);
    assert.deepEqual(detector.observe(frame(3)), gap(0, 1, 1, 3, GAP_SEQUENCE_JUMP, false));
  });

  test("with a frame rate divisor, gaps count frames of the client's own rate", () => {
    const detector = new GapDetector();
    detector.setFpsDivisor(0, 3);
    assert.deepEqual([30, 33, 36].map((n) => detector.observe(frame(n))), [null, null, null]);
    assert.deepEqual(detector.observe(frame(45, { missed: 2 })),
      gap(0, 2, 36, 45, GAP_DROPPED_BY_SERVER));
  });

  test("a divisor changed mid-stream counts no false gap, then counts at the new rate", () => {
    const detector = new GapDetector();
    detector.observe(frame(101)); // every frame
    detector.setFpsDivisor(0, 2); // a view reply: only the even sequences from now on
    assert.equal(detector.observe(frame(102)), null);
    assert.equal(detector.observe(frame(104)), null);
    detector.setFpsDivisor(0, 6);
    assert.equal(detector.observe(frame(108)), null);
    assert.deepEqual(detector.observe(frame(120)), gap(0, 1, 108, 120, GAP_SEQUENCE_JUMP));
    detector.setFpsDivisor(0, 1);
    assert.equal(detector.observe(frame(121)), null);
  });

  test("frames queued at the old rate after a lower divisor count no false gap", () => {
    const detector = new GapDetector();
    detector.setFpsDivisor(0, 2);
    detector.observe(frame(100));
    detector.setFpsDivisor(0, 1); // 102 and 104 were queued before the change
    assert.deepEqual([102, 104, 105, 106].map((n) => detector.observe(frame(n))),
      [null, null, null, null]);
    assert.deepEqual(detector.observe(frame(108)), gap(0, 1, 106, 108, GAP_SEQUENCE_JUMP));
  });

  test("a hello forgets the divisors; a reconnect jump counts at the rate of the URL's view", () => {
    const detector = new GapDetector();
    detector.newSession("a");
    detector.setFpsDivisor(0, 2);
    detector.observe(frame(10));
    detector.newSession("a"); // a reconnect whose URL asks for no view
    assert.deepEqual(detector.observe(frame(13)), gap(0, 2, 10, 13, GAP_SEQUENCE_JUMP));
    detector.newSession("a");
    detector.setFpsDivisor(0, 2); // the view reply that follows hello
    assert.deepEqual(detector.observe(frame(36)), gap(0, 11, 13, 36, GAP_SEQUENCE_JUMP));
  });

  test("sequences beyond 2**53 are compared exactly", () => {
    const detector = new GapDetector();
    const last = 2n ** 64n - 1n;
    detector.observe({ streamId: 0, sequence: Number(last - 2n), sequenceBig: last - 2n, missed: 0 });
    const found = detector.observe({ streamId: 0, sequence: Number(last), sequenceBig: last, missed: 0 });
    assert.equal(found.lost, 1);
    assert.equal(found.reason, GAP_SEQUENCE_JUMP);
    assert.equal(found.toSequenceBig, last);
  });
});
