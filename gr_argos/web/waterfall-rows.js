// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the waterfall's rows as pixels, and its speed.
//
// - The kinds of row (data, or a marker row: frames lost, a retune, a new window, rows
//   skipped), and paintRow, which colours one row: a data row through the colour map, a
//   marker row in its colour, frames lost and rows skipped in a dashed pattern as well, so
//   they are told apart without telling colours apart.
// - repaint: every row kept (the RowHistory of readout.js) painted again, after the colour
//   map or the dB range changed, so old rows match the colour scale beside them.
// - RowCombiner: the waterfall's speed, one row per N frames, each row the power average or
//   the peak of its frames.

import { GAP_RGB, LUT_SIZE, RETUNE_RGB, SKIP_RGB, VIEW_RGB, packRgb } from "./colormap.js";

export const ROW_DATA = 0;
export const ROW_GAP = 1;
export const ROW_RETUNE = 2;
export const ROW_VIEW = 3; // the window changed: the rows above it are drawn into the new one
export const ROW_SKIPPED = 4; // rows not drawn (a busy tab, a pause)

export const BACKGROUND_PIXEL = packRgb([7, 9, 13]); // no data there
const MARKER_PIXELS = {
  [ROW_GAP]: packRgb(GAP_RGB), [ROW_RETUNE]: packRgb(RETUNE_RGB), [ROW_VIEW]: packRgb(VIEW_RGB),
  [ROW_SKIPPED]: packRgb(SKIP_RGB),
};
// Dash length in columns of the marker rows that are a pattern (0: a solid row): frames
// lost in long dashes, rows skipped in short ones.
const MARKER_DASH = { [ROW_GAP]: 8, [ROW_SKIPPED]: 2 };

/** The rows per frame offered for the waterfall's speed (one row per N frames). */
export const ROW_EVERY_CHOICES = [1, 2, 3, 5, 10];
/** How the frames of one row are combined: the mean power, or the largest. */
export const ROW_COMBINE_CHOICES = ["average", "peak"];

/**
 * Paint one row at `offset` of `pixels` (a Uint32Array of packed RGBA): a data row's
 * `values` (dB, a column each, NaN for none) through `lut` over dbMin .. dbMax, a marker
 * row in its colour and pattern.
 */
export function paintRow(pixels, offset, columns, kind, values, lut, dbMin, dbMax) {
  if (kind !== ROW_DATA) {
    const on = MARKER_PIXELS[kind];
    const dash = MARKER_DASH[kind] ?? 0;
    if (!dash) {
      pixels.fill(on, offset, offset + columns);
      return;
    }
    for (let c = 0; c < columns; c++) {
      pixels[offset + c] = ((c / dash) | 0) % 2 ? BACKGROUND_PIXEL : on;
    }
    return;
  }
  const scale = (LUT_SIZE - 1) / Math.max(1e-6, dbMax - dbMin);
  for (let c = 0; c < columns; c++) {
    const x = (values[c] - dbMin) * scale;
    pixels[offset + c] = values[c] !== values[c] ? BACKGROUND_PIXEL // no data there
      : lut[x < 0 ? 0 : x > LUT_SIZE - 1 ? LUT_SIZE - 1 : x | 0];
  }
}

/**
 * Paint again every row `history` keeps (canvas row y is the row of age y) into `image`
 * (an ImageData as wide as the history's columns and at least as tall as its rows) and put
 * it on `ctx`; rows it does not hold yet are left as they are.
 */
export function repaint(ctx, image, history, lut, dbMin, dbMax) {
  const pixels = new Uint32Array(image.data.buffer);
  const { columns } = history;
  for (let age = 0; age < history.count; age++) {
    const row = history.at(age);
    paintRow(pixels, age * columns, columns, row.kindIndex, row.values, lut, dbMin, dbMax);
  }
  if (history.count > 0) ctx.putImageData(image, 0, 0, 0, 0, columns, history.count);
}

/**
 * One waterfall row out of `every` frames: the frames' values (dB, a column each) combined
 * as the mean of their powers ("average") or the largest ("peak"). Allocated when the column
 * count changes, never per frame.
 */
export class RowCombiner {
  constructor() {
    this.every = 1;
    this.combine = ROW_COMBINE_CHOICES[0];
    this.frames = 0; // frames in the row being built
    this.window = null; // the window its frames were drawn into
    this.timeMs = NaN; // its first frame's time
    this.configure(0);
  }

  configure(columns) {
    this.scratch = new Float32Array(columns); // the next frame's values
    this.sum = new Float64Array(columns); // power sum or peak, per column
    this.counts = new Uint16Array(columns);
    this.frames = 0;
  }

  /** Whether a frame drawn into `window` may go into the row being built. */
  fits(window) {
    return this.frames === 0 ||
      (window.startHz === this.window.startHz && window.stopHz === this.window.stopHz);
  }

  /** Add the values in `scratch` (a frame drawn into `window` at `timeMs`); true when the
   * row is complete (then finish() it). */
  add(window, timeMs) {
    const { scratch, sum, counts } = this;
    const peak = this.combine === "peak";
    if (this.frames === 0) {
      this.window = { startHz: window.startHz, stopHz: window.stopHz };
      this.timeMs = timeMs;
      sum.fill(peak ? -Infinity : 0);
      counts.fill(0);
    }
    for (let c = 0; c < scratch.length; c++) {
      const v = scratch[c];
      if (v !== v) continue; // no data in this column
      counts[c] += 1;
      if (peak) {
        if (v > sum[c]) sum[c] = v;
      } else {
        sum[c] += 10 ** (v / 10);
      }
    }
    this.frames += 1;
    return this.frames >= this.every;
  }

  /** Write the row (the frames so far, possibly fewer than `every`) into `out`, start over. */
  finish(out) {
    const { sum, counts } = this;
    const peak = this.combine === "peak";
    for (let c = 0; c < out.length; c++) {
      out[c] = counts[c] === 0 ? NaN : peak ? sum[c] : 10 * Math.log10(sum[c] / counts[c]);
    }
    this.frames = 0;
  }
}
