// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: a frame's bins reduced to the plot's columns once. The waterfall row of a
// frame, the spectrum's filled area and its line all need the same columns (one per device
// pixel, each the strongest of the bins it covers: zoom.js sampleInto); with 65,536 bins
// each reduction is a pass over every bin, so the first one is kept for the others.

import { sampleInto } from "./zoom.js";

const REMEMBERED = 4; // reductions kept: the traces of the latest frame and of the one before

/** Whether two source lists ({values, grid}, as sampleInto takes them) are the same bins. */
function sameSources(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i].values !== b[i].values || a[i].grid.startHz !== b[i].grid.startHz ||
        a[i].grid.binHz !== b[i].grid.binHz) return false;
  }
  return true;
}

/**
 * sampleInto, remembering its latest answers. Only for values that never change once made
 * (a decoded frame's traces), since the arrays themselves identify them: not the peak hold,
 * which changes in place.
 */
export class ColumnCache {
  constructor() {
    this.entries = []; // {sources, startHz, cellHz, columns}, newest last
    this.hits = 0;
    this.misses = 0;
  }

  /** Fill `out` as sampleInto(out, startHz, cellHz, sources) would, and return it. */
  sample(out, startHz, cellHz, sources) {
    for (const entry of this.entries) {
      if (entry.startHz === startHz && entry.cellHz === cellHz &&
          entry.columns.length === out.length && sameSources(entry.sources, sources)) {
        this.hits += 1;
        out.set(entry.columns);
        return out;
      }
    }
    this.misses += 1;
    sampleInto(out, startHz, cellHz, sources);
    const reused = this.entries.length >= REMEMBERED ? this.entries.shift() : null;
    const columns = reused?.columns.length === out.length ? reused.columns
      : new Float32Array(out.length);
    columns.set(out);
    this.entries.push({ sources: sources.map(({ values, grid }) => ({ values, grid })),
      startHz, cellHz, columns });
    return out;
  }
}
