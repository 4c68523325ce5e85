// SPDX-License-Identifier: GPL-3.0-or-later
// The viewer's auto range (gr_argos/web/autorange.js): the histogram's floor and top against
// a sort of the same values.
//
// Run: node --test tests/js/autorange.test.mjs

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { AutoRange, floorAndTop } from "../../gr_argos/web/autorange.js";

/** Noise around `floorDb` (a fixed pseudo-random walk, no Math.random) with one carrier. */
function spectrum(bins, floorDb, carrierBin, carrierDb) {
  const power = new Float32Array(bins);
  let x = 12345;
  for (let i = 0; i < bins; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    power[i] = floorDb + ((x / 2147483648) - 0.5) * 6;
  }
  power[carrierBin] = carrierDb;
  return power;
}

function sortedMedian(power) {
  const finite = [...power].filter(Number.isFinite).sort((a, b) => a - b);
  return finite[Math.floor(finite.length / 2)];
}

describe("the auto range's floor and top", () => {
  test("the floor is the median to a quarter of a dB, the top the highest bin", () => {
    const power = spectrum(65536, -90, 40960, -30);
    const [floor, top] = floorAndTop(power);
    assert.ok(Math.abs(floor - sortedMedian(power)) <= 0.125, `${floor} vs ${sortedMedian(power)}`);
    assert.equal(top, Math.fround(-30));
  });

  test("NaN and infinite bins have no level; none at all gives NaN", () => {
    const power = spectrum(1001, -70, 3, -20);
    power.fill(-Infinity, 0, 300);
    power[500] = NaN;
    const [floor, top] = floorAndTop(power);
    assert.ok(Math.abs(floor - sortedMedian(power)) <= 0.125);
    assert.equal(top, Math.max(...[...power].filter(Number.isFinite)));
    assert.deepEqual(floorAndTop(new Float32Array([NaN, -Infinity])), [NaN, NaN]);
  });

  test("the range covers the noise floor and the carrier, in 5 dB steps", () => {
    const [min, max] = new AutoRange().fit([spectrum(65536, -90, 100, -30)], [-110, -30]);
    assert.ok(min <= -90 - 8 && min > -90 - 8 - 5, `min ${min}`);
    assert.ok(max >= -30 + 6 && max < -30 + 6 + 5, `max ${max}`);
    assert.ok(Number.isInteger(min / 5) && Number.isInteger(max / 5), `${min}, ${max}`);
  });
});
