// SPDX-License-Identifier: GPL-3.0-or-later
// The viewer's remembered reductions (gr_argos/web/draw.js): the same answers as sampleInto,
// computed once per frame's bins and window.
//
// Run: node --test tests/js/draw.test.mjs

import assert from "node:assert/strict";
import { test } from "node:test";

import { ColumnCache } from "../../gr_argos/web/draw.js";
import { binGrid, sampleInto } from "../../gr_argos/web/zoom.js";

test("a frame's columns are reduced once and given again as sampleInto gives them", () => {
  const grid = binGrid(100e6, 2e6, 65536);
  const values = Float32Array.from({ length: 65536 }, (_, i) => (i === 40000 ? -30 : -90 - (i % 7)));
  const sources = [{ values, grid }];
  const cache = new ColumnCache();
  const cellHz = 2e6 / 1000;
  const first = cache.sample(new Float32Array(1000), grid.startHz, cellHz, sources);
  const again = cache.sample(new Float32Array(1000), grid.startHz, cellHz, [{ values, grid }]);
  assert.deepEqual(again, sampleInto(new Float32Array(1000), grid.startHz, cellHz, sources));
  assert.deepEqual(first, again);
  assert.equal(Math.max(...again), -30); // the one-bin carrier kept
  assert.deepEqual([cache.misses, cache.hits], [1, 1]);
  // Another frame (another array), window or width is reduced anew.
  cache.sample(new Float32Array(1000), grid.startHz, cellHz, [{ values: values.slice(), grid }]);
  cache.sample(new Float32Array(500), grid.startHz, cellHz * 2, sources);
  assert.deepEqual([cache.misses, cache.hits], [3, 1]);
});
