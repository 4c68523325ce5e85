// SPDX-License-Identifier: GPL-3.0-or-later
// Colour maps for the waterfall: 256-entry lookup tables computed here, nothing downloaded.
//
// A table is a Uint32Array whose entries are RGBA pixels in the byte order of the machine, so
// the waterfall writes one 32-bit word per pixel into a Uint32Array view of an ImageData.

export const LUT_SIZE = 256;

// Stops sampled from matplotlib's perceptually uniform maps at 0, 0.1, ... 1.0. Both rise
// monotonically in brightness, so "brighter" always means "stronger".
const STOPS = {
  inferno: [
    [0, 0, 4], [22, 11, 57], [66, 10, 104], [106, 23, 110], [147, 38, 103], [188, 55, 84],
    [221, 81, 58], [243, 120, 25], [252, 165, 10], [246, 215, 70], [252, 255, 164],
  ],
  viridis: [
    [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [216, 226, 25],
    [253, 231, 37],
  ],
  gray: [[0, 0, 0], [255, 255, 255]],
};

/** Names of the colour maps, the default first. */
export const COLORMAP_NAMES = ["inferno", "turbo", "viridis", "gray"];

/** Colour of a waterfall row that marks frames lost on the way (a gap event). */
export const GAP_RGB = [255, 0, 255];
/** Colour of a row that marks rows the browser skipped because it could not draw them. */
export const SKIP_RGB = [90, 90, 90];
/** Colour of a row that marks a retune (the centre frequency or span changed). */
export const RETUNE_RGB = [0, 220, 255];
/** Colour of a row that starts a new zoom or pan window (the rows after it show that one). */
export const VIEW_RGB = [255, 255, 255];

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** One RGBA pixel (alpha 255) as a 32-bit word for a Uint32Array view of ImageData. */
export function packRgb([r, g, b]) {
  return littleEndian
    ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0
    : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
}

// Google's polynomial fit of Turbo (Anton Mikhailov, 2019): brighter in the middle than at
// the top, so it is offered but not the default.
function turbo(x) {
  const r = 0.13572138 + x * (4.6153926 + x * (-42.66032258 + x * (132.13108234
    + x * (-152.94239396 + x * 59.28637943))));
  const g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333
    + x * (4.27729857 + x * 2.82956604))));
  const b = 0.1066733 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771
    + x * (-89.90310912 + x * 27.34824973))));
  return [r, g, b].map((v) => Math.round(255 * Math.min(1, Math.max(0, v))));
}

function interpolate(stops, x) {
  const position = x * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(position));
  const t = position - i;
  return stops[i].map((v, channel) => Math.round(v + (stops[i + 1][channel] - v) * t));
}

/** The colour [r, g, b] (0-255) of map `name` at x in [0, 1]. */
export function colorAt(name, x) {
  if (name === "turbo") return turbo(x);
  return interpolate(STOPS[name] ?? STOPS.inferno, x);
}

/** A LUT_SIZE-entry Uint32Array of packed pixels for map `name` (unknown names: inferno). */
export function makeLut(name) {
  const lut = new Uint32Array(LUT_SIZE);
  for (let i = 0; i < LUT_SIZE; i++) lut[i] = packRgb(colorAt(name, i / (LUT_SIZE - 1)));
  return lut;
}
