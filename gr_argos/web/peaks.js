// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: finding signals in a trace, as a spectrum analyzer's peak search does.
// Plain code on arrays (tests/js/peaks.test.mjs), used by the markers and the plots' text
// summary.
//
// A peak is a bin that is a local maximum, stands PEAK_EXCURSION_DB over the lowest bins
// between it and any higher bin on either side (its prominence: the noise's own ripples do
// not count), and is PEAK_THRESHOLD_DB over the noise floor (the median bin of the range
// searched).

export const PEAK_EXCURSION_DB = 6;
export const PEAK_THRESHOLD_DB = 10;

/** The bins lo .. hi (inclusive) of `grid` (a binGrid of zoom.js) inside `window`
 * ({startHz, stopHz}), or null when none is. */
export function binsIn(grid, window) {
  const lo = Math.max(0, Math.floor((window.startHz - grid.startHz) / grid.binHz));
  const hi = Math.min(grid.bins - 1, Math.ceil((window.stopHz - grid.startHz) / grid.binHz) - 1);
  return hi >= lo ? [lo, hi] : null;
}

/** The bin of `grid` that holds `hz`, or -1. */
export function binAt(grid, hz) {
  const bin = Math.floor((hz - grid.startHz) / grid.binHz);
  return bin >= 0 && bin < grid.bins ? bin : -1;
}

/** The centre frequency of bin `bin` of `grid`. */
export function binCenterHz(grid, bin) {
  return grid.startHz + (bin + 0.5) * grid.binHz;
}

/** The bin with the largest finite value in lo .. hi, or -1. */
export function strongestBin(values, lo, hi) {
  let best = -1;
  for (let i = lo; i <= hi; i++) {
    if (values[i] > -Infinity && (best < 0 || values[i] > values[best])) best = i;
  }
  return best;
}

/** The median of the finite values in lo .. hi (the noise floor), NaN if there are none. */
export function noiseFloor(values, lo, hi) {
  const finite = [];
  for (let i = lo; i <= hi; i++) if (Number.isFinite(values[i])) finite.push(values[i]);
  if (!finite.length) return NaN;
  finite.sort((a, b) => a - b);
  return finite[Math.floor(finite.length / 2)];
}

/** How far bin `i` stands over the lowest bins between it and a higher one on each side
 * (within lo .. hi): the smaller of its two drops; a side without a higher bin is searched
 * to its end. */
function prominence(values, i, lo, hi) {
  const v = values[i];
  const lowestTowards = (step) => {
    let lowest = Infinity;
    for (let j = i + step; j >= lo && j <= hi; j += step) {
      if (values[j] > v) break;
      if (values[j] < lowest) lowest = values[j];
    }
    return lowest;
  };
  const left = lowestTowards(-1);
  const right = lowestTowards(1);
  const base = Math.max(left === Infinity ? -Infinity : left, right === Infinity ? -Infinity : right);
  return v - base;
}

/** Whether bin `i` is a peak (see the top of this file) of lo .. hi over `floor`. */
export function isPeak(values, i, lo, hi, floor) {
  const v = values[i];
  if (!(v >= floor + PEAK_THRESHOLD_DB) || !Number.isFinite(v)) return false;
  if (i > lo && values[i - 1] > v) return false;
  if (i < hi && values[i + 1] >= v) return false; // a flat top counts once, at its right end
  return prominence(values, i, lo, hi) >= PEAK_EXCURSION_DB;
}

/** The nearest peak from bin `from` in `direction` (-1 left, +1 right) within lo .. hi, or -1. */
export function nextPeak(values, from, direction, lo, hi) {
  const floor = noiseFloor(values, lo, hi);
  for (let i = from + direction; i >= lo && i <= hi; i += direction) {
    if (isPeak(values, i, lo, hi, floor)) return i;
  }
  return -1;
}

/** The `count` strongest peaks in lo .. hi, strongest first, and the noise floor:
 * {peaks: [bin, ...], floor}. */
export function strongestPeaks(values, lo, hi, count) {
  const floor = noiseFloor(values, lo, hi);
  const peaks = [];
  for (let i = lo; i <= hi; i++) if (isPeak(values, i, lo, hi, floor)) peaks.push(i);
  peaks.sort((a, b) => values[b] - values[a]);
  return { peaks: peaks.slice(0, count), floor };
}
