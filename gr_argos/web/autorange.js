// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the automatic dB range. A floor a little under the noise (the median of a
// trace's bins) and a ceiling over the highest peak, found in one pass over the bins with a
// histogram: no sort, so a 65,536-bin frame costs about as much as drawing it once.

export const RANGE_SNAP_DB = 5; // the auto range moves in steps of this size, with hysteresis
const FLOOR_MARGIN_DB = 8; // the range starts this far under the noise floor
const TOP_MARGIN_DB = 6; // and ends this far over the highest peak
const MIN_SPAN_DB = 20; // the floor and the top are at least this far apart

// The histogram: HISTOGRAM_STEP_DB wide cells from HISTOGRAM_LOW_DB; lower and higher
// values count in the first and last cell (a median out there is off the scale anyway).
const HISTOGRAM_LOW_DB = -300;
const HISTOGRAM_HIGH_DB = 100;
const HISTOGRAM_STEP_DB = 0.25;
const HISTOGRAM_CELLS = Math.round((HISTOGRAM_HIGH_DB - HISTOGRAM_LOW_DB) / HISTOGRAM_STEP_DB);

/**
 * The noise floor (median of the finite values, to HISTOGRAM_STEP_DB: the middle of the
 * histogram cell it falls in) and the maximum of `power`; [NaN, NaN] without finite values.
 *
 * @param {Float32Array} power dB per bin
 * @param {Uint32Array} counts HISTOGRAM_CELLS cells, overwritten
 * @returns {[number, number]}
 */
export function floorAndTop(power, counts = new Uint32Array(HISTOGRAM_CELLS)) {
  counts.fill(0);
  const scale = 1 / HISTOGRAM_STEP_DB;
  const last = HISTOGRAM_CELLS - 1;
  let top = -Infinity;
  let finite = 0;
  for (let i = 0; i < power.length; i++) {
    const value = power[i];
    if (!(value > -Infinity && value < Infinity)) continue; // NaN and +-inf: no level
    finite += 1;
    if (value > top) top = value;
    const cell = (value - HISTOGRAM_LOW_DB) * scale;
    counts[cell < 0 ? 0 : cell > last ? last : cell | 0] += 1;
  }
  if (finite === 0) return [NaN, NaN];
  const middle = Math.floor(finite / 2); // the index the sorted values' median has
  let seen = 0;
  let cell = 0;
  while (seen + counts[cell] <= middle) seen += counts[cell++];
  return [HISTOGRAM_LOW_DB + (cell + 0.5) * HISTOGRAM_STEP_DB, top];
}

/** The auto range: fitted to the traces shown, moved only when it no longer fits well. */
export class AutoRange {
  constructor() {
    this.counts = new Uint32Array(HISTOGRAM_CELLS);
    this.last = 0; // when the range was last fitted (performance.now(), for the caller)
  }

  /** [min, max] fitted to `traces` (Float32Arrays of dB: the lowest noise floor, the
   * highest peak), moving `current` only when it no longer fits well. */
  fit(traces, [currentMin, currentMax]) {
    let floor = Infinity;
    let top = -Infinity;
    for (const power of traces) {
      const [traceFloor, traceTop] = floorAndTop(power, this.counts);
      if (traceFloor < floor) floor = traceFloor;
      if (traceTop > top) top = traceTop;
    }
    if (!Number.isFinite(floor) || !Number.isFinite(top)) return [currentMin, currentMax];
    top = Math.max(top, floor + MIN_SPAN_DB);
    const wantMin = floor - FLOOR_MARGIN_DB;
    const wantMax = top + TOP_MARGIN_DB;
    let min = currentMin;
    let max = currentMax;
    if (wantMin < min || wantMin > min + RANGE_SNAP_DB) {
      min = Math.floor(wantMin / RANGE_SNAP_DB) * RANGE_SNAP_DB;
    }
    if (wantMax > max || wantMax < max - 2 * RANGE_SNAP_DB) {
      max = Math.ceil(wantMax / RANGE_SNAP_DB) * RANGE_SNAP_DB;
    }
    return [min, max];
  }
}
