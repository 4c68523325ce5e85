// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the readout of the frequency and level under the pointer, kept live.
//
// The readout is worked out again on every frame drawn, not only when the pointer moves, so
// a pointer held still over a carrier shows its level now. Over the waterfall it reads the
// row under the pointer: each row's values at plot resolution, its window and its wall-clock
// time are kept in a RowHistory (as many rows as the waterfall shows, allocated when the
// column count changes, never per frame). On a touch screen a tap or a drag on a plot
// (which zoom.js captures, so the page does not scroll) puts the readout there and it stays
// after the finger lifts; a mouse leaving the plots clears it.

export const ROW_NAMES = ["data", "gap", "retune", "view", "skipped"];

/** The waterfall's rows as drawn, newest first: kind, window, time and values per row. */
export class RowHistory {
  constructor(rows) {
    this.rows = rows;
    this.columns = 0;
    this.count = 0;
    this.pushed = 0; // rows pushed so far: a row's serial number
    this.newest = -1;
    this.kinds = new Uint8Array(rows);
    this.times = new Float64Array(rows);
    this.starts = new Float64Array(rows);
    this.stops = new Float64Array(rows);
    this.values = new Float32Array(0);
  }

  /** Use `columns` columns; the rows kept are resampled to them (as the canvas stretches). */
  configure(columns) {
    if (columns === this.columns) return;
    const old = this.values;
    const oldColumns = this.columns;
    this.values = new Float32Array(this.rows * columns).fill(NaN);
    if (oldColumns > 0) {
      for (let r = 0; r < this.rows; r++) {
        for (let c = 0; c < columns; c++) {
          this.values[r * columns + c] = old[r * oldColumns + Math.floor((c * oldColumns) / columns)];
        }
      }
    }
    this.columns = columns;
  }

  /** Add a row (the newest): its kind (an index of ROW_NAMES), the values of a data row
   * (a column each), the window it was drawn in and its frame's time (ms since the epoch). */
  push(kind, values, window, timeMs) {
    if (!this.columns) return;
    this.newest = (this.newest + 1) % this.rows;
    this.count = Math.min(this.rows, this.count + 1);
    this.pushed += 1;
    this.kinds[this.newest] = kind;
    this.times[this.newest] = timeMs;
    this.starts[this.newest] = window ? window.startHz : NaN;
    this.stops[this.newest] = window ? window.stopHz : NaN;
    const offset = this.newest * this.columns;
    if (values) this.values.set(values.subarray(0, this.columns), offset);
    else this.values.fill(NaN, offset, offset + this.columns);
  }

  /** The kind (an index of ROW_NAMES) of row `age` (0 the newest), without its values. */
  kindAt(age) {
    return this.kinds[(this.newest - age + this.rows) % this.rows];
  }

  /** The time (ms since the epoch) of row `age`'s frame, NaN for a marker row. */
  timeAt(age) {
    return this.times[(this.newest - age + this.rows) % this.rows];
  }

  /** Row `age` (0 the newest, at the top) or null: {kind, kindIndex, timeMs, startHz,
   * stopHz, values} (kind is its name in ROW_NAMES). */
  at(age) {
    if (age < 0 || age >= this.count) return null;
    const slot = (this.newest - age + this.rows) % this.rows;
    const offset = slot * this.columns;
    return {
      kind: ROW_NAMES[this.kinds[slot]],
      kindIndex: this.kinds[slot],
      timeMs: this.times[slot],
      startHz: this.starts[slot],
      stopHz: this.stops[slot],
      values: this.values.subarray(offset, offset + this.columns),
    };
  }
}

/** "07:41:09.125", local time. */
function rowTime(ms) {
  const date = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.` +
    String(date.getMilliseconds()).padStart(3, "0");
}

const ROW_TEXT = {
  gap: "frames missed here",
  retune: "the radio was retuned here",
  view: "the window changed here",
  skipped: "rows not drawn here (the tab was busy or paused)",
};

/**
 * The readout element and the pointer it follows. `source` gives what it reads:
 * `plotBox()` (the plot area's client rectangle, the waterfall's), `spectrumBox()`,
 * `shownBand()` ({startHz, stopHz} or null), `levels(hz)` (the level text of the traces
 * drawn at `hz`, "" for none) and `history` (the RowHistory).
 */
export class Readout {
  constructor(output, surfaces, source) {
    this.output = output;
    this.source = source;
    this.pointer = null; // {x, y} in client coordinates, or null
    this.refreshes = 0;
    this.surface = null; // "spectrum" | "waterfall" | null, where the readout reads
    this.rowAge = null;
    for (const surface of surfaces) {
      const follow = (event) => {
        this.pointer = { x: event.clientX, y: event.clientY };
        this.refresh();
      };
      surface.addEventListener("pointerdown", follow);
      surface.addEventListener("pointermove", follow);
      // A finger lifting (pointerleave after pointerup) or a cancelled touch keeps the
      // readout where it was; a mouse that leaves the plots clears it.
      surface.addEventListener("pointerleave", (event) => {
        if (event.pointerType !== "mouse" || event.buttons) return;
        this.pointer = null;
        this.refresh();
      });
    }
  }

  /** Work the text out again for the pointer where it is (each frame drawn calls this). */
  refresh() {
    const text = this.pointer ? this.read(this.pointer) : "";
    if (this.output.textContent !== text) this.output.textContent = text;
    this.refreshes += 1;
  }

  read({ x, y }) {
    const box = this.source.plotBox();
    const fraction = (x - box.left) / box.width;
    this.surface = null;
    this.rowAge = null;
    if (fraction < 0 || fraction >= 1) return "";
    if (y >= box.top && y < box.bottom) return this.readRow(fraction, (y - box.top) / box.height);
    const spectrum = this.source.spectrumBox();
    if (y < spectrum.top || y >= spectrum.bottom) return "";
    const band = this.source.shownBand();
    if (!band) return "";
    this.surface = "spectrum";
    const hz = band.startHz + fraction * (band.stopHz - band.startHz);
    return `${(hz / 1e6).toFixed(4)} MHz  ${this.source.levels(hz)}`.trimEnd();
  }

  /** The waterfall row at `yFraction` of its height, at `fraction` of its width. */
  readRow(fraction, yFraction) {
    const history = this.source.history;
    const age = Math.floor(yFraction * history.rows);
    const row = history.at(age);
    this.surface = "waterfall";
    this.rowAge = age;
    // A row of data is read in the window it was drawn in; others in the one shown now.
    const band = row?.kind === "data" ? row : this.source.shownBand();
    if (!band) return "";
    const hz = band.startHz + fraction * (band.stopHz - band.startHz);
    const mhz = `${(hz / 1e6).toFixed(4)} MHz`;
    if (!row) return `${mhz}  no data yet at this row`;
    if (row.kind !== "data") return `${mhz}  ${ROW_TEXT[row.kind]}`;
    const value = row.values[Math.floor(fraction * history.columns)];
    const level = Number.isFinite(value) ? `${value.toFixed(1)} dB` : "no data";
    const ago = Math.max(0, (Date.now() - row.timeMs) / 1000);
    return `${mhz}  ${level} at ${rowTime(row.timeMs)} (${ago.toFixed(1)} s ago)`;
  }
}
