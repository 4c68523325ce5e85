// SPDX-License-Identifier: GPL-3.0-or-later
// The viewer's peak search (gr_argos/web/peaks.js) and the waterfall's combined rows and
// row patterns (gr_argos/web/waterfall-rows.js) as plain code. The markers and the
// waterfall are tested in the browser (tests/test_viewer_markers.py).
//
// Run: node --test tests/js/peaks.test.mjs

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { nextPeak, strongestBin, strongestPeaks } from "../../gr_argos/web/peaks.js";
import {
  BACKGROUND_PIXEL, ROW_GAP, ROW_SKIPPED, RowCombiner, paintRow,
} from "../../gr_argos/web/waterfall-rows.js";

/** A noise floor at -90 dB with a ripple of +-2 dB and carriers {bin: dB}. */
function trace(carriers, bins = 64) {
  const values = new Float32Array(bins);
  for (let i = 0; i < bins; i++) values[i] = -90 + 2 * Math.sin(i * 1.7);
  for (const [bin, db] of Object.entries(carriers)) values[Number(bin)] = db;
  return values;
}

describe("peak search", () => {
  const values = trace({ 10: -50, 40: -30, 41: -45, 55: -70 });

  test("the strongest bin in a range", () => {
    assert.equal(strongestBin(values, 0, 63), 40);
    assert.equal(strongestBin(values, 0, 30), 10);
  });

  test("the next peak left and right skips the noise's ripples and a carrier's shoulder", () => {
    assert.equal(nextPeak(values, 40, -1, 0, 63), 10);
    assert.equal(nextPeak(values, 40, 1, 0, 63), 55);
    assert.equal(nextPeak(values, 55, 1, 0, 63), -1);
    assert.equal(nextPeak(values, 10, -1, 0, 63), -1);
  });

  test("the strongest peaks, strongest first, and the noise floor", () => {
    const { peaks, floor } = strongestPeaks(values, 0, 63, 2);
    assert.deepEqual(peaks, [40, 10]);
    assert.ok(floor > -92 && floor < -88, String(floor));
  });

  test("noise alone has no peak", () => {
    assert.deepEqual(strongestPeaks(trace({}), 0, 63, 3).peaks, []);
  });
});

describe("RowCombiner", () => {
  test("average: the mean power of the frames, not the mean of their dB", () => {
    const combiner = new RowCombiner();
    combiner.configure(2);
    combiner.every = 2;
    const window = { startHz: 0, stopHz: 2 };
    combiner.scratch.set([-10, NaN]);
    assert.equal(combiner.add(window, 1000), false);
    combiner.scratch.set([-20, NaN]);
    assert.equal(combiner.add(window, 1033), true);
    const out = new Float32Array(2);
    combiner.finish(out);
    assert.ok(Math.abs(out[0] - 10 * Math.log10((0.1 + 0.01) / 2)) < 1e-4, String(out[0]));
    assert.ok(Number.isNaN(out[1]));
    assert.equal(combiner.timeMs, 1000); // the row's time is its first frame's
  });

  test("peak: the largest of the frames", () => {
    const combiner = new RowCombiner();
    combiner.configure(1);
    combiner.every = 3;
    combiner.combine = "peak";
    const window = { startHz: 0, stopHz: 1 };
    for (const v of [-50, -20, -40]) {
      combiner.scratch[0] = v;
      combiner.add(window, 0);
    }
    const out = new Float32Array(1);
    combiner.finish(out);
    assert.equal(out[0], -20);
  });

  test("a frame of another window does not fit the row being built", () => {
    const combiner = new RowCombiner();
    combiner.configure(1);
    combiner.every = 3;
    combiner.add({ startHz: 0, stopHz: 1 }, 0);
    assert.equal(combiner.fits({ startHz: 0, stopHz: 1 }), true);
    assert.equal(combiner.fits({ startHz: 0, stopHz: 2 }), false);
  });
});

describe("paintRow", () => {
  test("frames lost and rows skipped are dashed rows (a pattern, not only a colour)", () => {
    for (const kind of [ROW_GAP, ROW_SKIPPED]) {
      const pixels = new Uint32Array(32);
      paintRow(pixels, 0, 32, kind, null, null, 0, 1);
      const background = [...pixels].filter((p) => p === BACKGROUND_PIXEL).length;
      assert.ok(background >= 8 && background <= 24, `${kind}: ${background}`);
    }
  });
});
