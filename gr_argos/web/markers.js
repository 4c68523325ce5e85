// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: markers, as on a spectrum analyzer. Up to four, each at a frequency (not
// a pixel: they stay on their signal through a zoom, a pan or a resize) with its level in
// the frame drawn, worked out again on every frame; a delta readout from the first marker;
// peak search (the strongest signal in view, the next peak left or right); placed by a
// click or a tap on the spectrum, by keys, or by the buttons of the marker bar.
//
// A marker is drawn as its number in a box over a triangle pointing at the trace: told apart
// by number and shape, not by colour. The active marker (the one the keys and buttons move)
// is drawn filled.

import { binAt, binCenterHz, binsIn, nextPeak, strongestBin } from "./peaks.js";

export const MAX_MARKERS = 4;
const CLICK_PX = { mouse: 4, touch: 12 }; // a click snaps to the strongest bin this near
const SELECT_PX = 10; // a click this near a marker makes it the active one
const TAP_PX = 8; // a pointer that moved further is a drag (a pan), not a click
// A second click this soon and near makes a double click or tap (zoom.js: the whole band),
// which places no marker.
const DOUBLE_CLICK_MS = 400;
const DOUBLE_CLICK_PX = 30;

/** The keys of the markers, as the help lists them: [keys, what they do]. */
export const MARKER_KEYS = [
  ["m", "a new marker at the pointer (or the keyboard cursor); without one, on the strongest signal in view"],
  ["p", "the active marker to the strongest signal in view (peak search)"],
  ["[  ]", "the active marker to the next peak left / right"],
  ["1  2  3  4", "make marker 1, 2, 3 or 4 the active one"],
  ["d", "delta: each marker's frequency and level from marker 1"],
  ["Delete", "remove the active marker"],
  ["c", "remove all markers"],
];

function mhz(hz) {
  return `${(hz / 1e6).toFixed(4)} MHz`;
}

/** "+585.94 kHz", "-1.2000 MHz": a signed frequency difference. */
export function formatDeltaHz(hz) {
  const sign = hz < 0 ? "-" : "+";
  const abs = Math.abs(hz);
  if (abs >= 1e6) return `${sign}${(abs / 1e6).toFixed(4)} MHz`;
  if (abs >= 1e3) return `${sign}${(abs / 1e3).toFixed(2)} kHz`;
  return `${sign}${abs.toFixed(1)} Hz`;
}

function dbText(db) {
  return Number.isFinite(db) ? `${db.toFixed(1)} dB` : "no level";
}

/** Whether a key press is for a form field or comes while a dialog is open. */
function notForMarkers(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return true;
  if (event.target?.closest?.("input, select, textarea, [contenteditable]")) return true;
  return document.querySelector("dialog[open]") !== null;
}

export class Markers {
  /**
   * @param {{spectrum: HTMLCanvasElement, list: HTMLElement, peak: HTMLButtonElement,
   *   left: HTMLButtonElement, right: HTMLButtonElement, delta: HTMLButtonElement,
   *   clear: HTMLButtonElement}} el the spectrum (clicks place markers), the list of markers
   *   and the marker bar's buttons.
   * @param {{trace: () => ({values: Float32Array, grid: object} | null),
   *   window: () => ({startHz: number, stopHz: number} | null), plotBox: () => DOMRect,
   *   pointer: () => ({x: number, y: number} | null), placeOnClick: () => boolean,
   *   changed: () => void}} source the trace markers read (the latest frame's, with its
   *   bins), the window shown, the plot area's box, the pointer (client coordinates), whether
   *   a click may place a marker now (not while it tunes the radio), and what to call after
   *   a change.
   */
  constructor(el, source) {
    this.el = el;
    this.source = source;
    this.markers = []; // {number, hz}, by number
    this.active = null; // the number of the active marker
    this.delta = false;
    this._shape = ""; // what the list was built for
    this.drawn = 0; // markers in the window in the latest drawing
    this._down = null;
    this._lastClick = null; // {x, y, at, placed: the number of the marker it added, or null}
    el.spectrum.addEventListener("pointerdown", (event) => {
      this._down = { x: event.clientX, y: event.clientY };
    });
    el.spectrum.addEventListener("click", (event) => this._click(event));
    el.peak.addEventListener("click", () => this.peak());
    el.left.addEventListener("click", () => this.next(-1));
    el.right.addEventListener("click", () => this.next(1));
    el.delta.addEventListener("click", () => this.toggleDelta());
    el.clear.addEventListener("click", () => this.clear());
    el.list.addEventListener("click", (event) => {
      const button = event.target.closest?.("button");
      const number = Number(button?.closest("li")?.dataset.marker);
      if (!button || !number) return;
      if (button.dataset.action === "remove") this.remove(number);
      else this.select(number);
    });
    document.addEventListener("keydown", (event) => this._key(event));
  }

  // -- what the markers read ---------------------------------------------------------------

  /** The level (dB) of the frame drawn at `hz`, NaN where it has none. */
  levelAt(hz) {
    const trace = this.source.trace();
    const bin = trace ? binAt(trace.grid, hz) : -1;
    return bin >= 0 && Number.isFinite(trace.values[bin]) ? trace.values[bin] : NaN;
  }

  /** The markers with their levels now: [{number, hz, levelDb, active}]. */
  entries() {
    return this.markers.map(({ number, hz }) => ({
      number, hz, levelDb: this.levelAt(hz), active: number === this.active,
    }));
  }

  /** Each marker's difference from the reference (the first marker), with delta on:
   * [{number, dfHz, dDb}]; empty with delta off or fewer than two markers. */
  deltas() {
    if (!this.delta || this.markers.length < 2) return [];
    const [reference, ...others] = this.entries();
    return others.map(({ number, hz, levelDb }) => ({
      number, reference: reference.number, dfHz: hz - reference.hz, dDb: levelDb - reference.levelDb,
    }));
  }

  // -- changes -----------------------------------------------------------------------------

  /** A new marker at `hz`, made active, and its number; with all four placed, the active
   * one moves there (and null). */
  add(hz) {
    if (this.markers.length >= MAX_MARKERS) {
      this.moveActive(hz);
      return null;
    }
    let number = 1;
    while (this.markers.some((m) => m.number === number)) number++;
    this.markers.push({ number, hz });
    this.markers.sort((a, b) => a.number - b.number);
    this.active = number;
    this._changed();
    return number;
  }

  /** The active marker to `hz` (a new one if there is none). */
  moveActive(hz) {
    const marker = this.markers.find((m) => m.number === this.active);
    if (!marker) {
      this.add(hz);
      return;
    }
    marker.hz = hz;
    this._changed();
  }

  select(number) {
    if (!this.markers.some((m) => m.number === number)) return;
    this.active = number;
    this._changed();
  }

  remove(number = this.active) {
    this.markers = this.markers.filter((m) => m.number !== number);
    if (this.active === number) this.active = this.markers.at(-1)?.number ?? null;
    this._changed();
  }

  clear() {
    this.markers = [];
    this.active = null;
    this._changed();
  }

  toggleDelta() {
    this.delta = !this.delta;
    this._changed();
  }

  /** The bins of the trace in the window shown: [trace, lo, hi] or null. */
  _inView() {
    const trace = this.source.trace();
    const window = this.source.window();
    const range = trace && window ? binsIn(trace.grid, window) : null;
    return range ? [trace, ...range] : null;
  }

  /** The active marker (a new one if there is none) to the strongest bin in view. */
  peak() {
    const view = this._inView();
    if (!view) return;
    const [trace, lo, hi] = view;
    const bin = strongestBin(trace.values, lo, hi);
    if (bin >= 0) this.moveActive(binCenterHz(trace.grid, bin));
  }

  /** The active marker to the next peak left (-1) or right (+1) in view; with no marker, a
   * peak search. */
  next(direction) {
    const marker = this.markers.find((m) => m.number === this.active);
    const view = this._inView();
    if (!marker || !view) {
      this.peak();
      return;
    }
    const [trace, lo, hi] = view;
    const from = Math.floor((marker.hz - trace.grid.startHz) / trace.grid.binHz);
    const bin = nextPeak(trace.values, Math.min(hi + 1, Math.max(lo - 1, from)), direction, lo, hi);
    if (bin >= 0) this.moveActive(binCenterHz(trace.grid, bin));
  }

  /** The frequency at client x `x`, snapped to the strongest bin within `radiusPx`. */
  hzAtClientX(x, radiusPx) {
    const window = this.source.window();
    const box = this.source.plotBox();
    if (!window || box.width <= 0) return null;
    const fraction = (x - box.left) / box.width;
    if (fraction < 0 || fraction >= 1) return null;
    const perPx = (window.stopHz - window.startHz) / box.width;
    const hz = window.startHz + fraction * (window.stopHz - window.startHz);
    const trace = this.source.trace();
    if (!trace) return hz;
    const range = binsIn(trace.grid, { startHz: hz - radiusPx * perPx, stopHz: hz + radiusPx * perPx });
    const exact = binAt(trace.grid, hz);
    const bin = range ? strongestBin(trace.values, ...range) : exact;
    return bin >= 0 ? binCenterHz(trace.grid, bin) : hz;
  }

  /** `m`: a new marker at the pointer over the plots, else at the strongest signal. */
  markAtPointer() {
    const pointer = this.source.pointer();
    const hz = pointer ? this.hzAtClientX(pointer.x, 0) : null;
    if (hz === null) {
      const view = this._inView();
      if (!view) return;
      const [trace, lo, hi] = view;
      const bin = strongestBin(trace.values, lo, hi);
      if (bin >= 0) this.add(binCenterHz(trace.grid, bin));
      return;
    }
    this.add(hz);
  }

  _click(event) {
    const down = this._down;
    if (down && Math.hypot(event.clientX - down.x, event.clientY - down.y) > TAP_PX) return;
    if (!this.source.placeOnClick()) return;
    const last = this._lastClick;
    const click = { x: event.clientX, y: event.clientY, at: event.timeStamp, placed: null };
    this._lastClick = click;
    if (last && click.at - last.at < DOUBLE_CLICK_MS &&
        Math.hypot(click.x - last.x, click.y - last.y) < DOUBLE_CLICK_PX) {
      // The second of a double click or tap: the first one's marker goes too.
      if (last.placed !== null) this.remove(last.placed);
      this._lastClick = null;
      return;
    }
    const window = this.source.window();
    const box = this.source.plotBox();
    if (!window) return;
    const near = this.markers.find((m) =>
      Math.abs(box.left + ((m.hz - window.startHz) / (window.stopHz - window.startHz)) * box.width -
        event.clientX) <= SELECT_PX);
    if (near) {
      this.select(near.number);
      return;
    }
    const hz = this.hzAtClientX(event.clientX, CLICK_PX[event.pointerType] ?? CLICK_PX.touch);
    if (hz !== null) click.placed = this.add(hz);
  }

  _key(event) {
    if (notForMarkers(event)) return;
    const actions = {
      m: () => this.markAtPointer(),
      p: () => this.peak(),
      "[": () => this.next(-1),
      "]": () => this.next(1),
      d: () => this.toggleDelta(),
      c: () => this.clear(),
      Delete: () => this.remove(),
      Backspace: () => this.remove(),
    };
    const number = Number(event.key);
    const action = actions[event.key] ??
      (Number.isInteger(number) && number >= 1 && number <= MAX_MARKERS
        ? () => this.select(number) : null);
    if (!action) return;
    event.preventDefault();
    action();
  }

  _changed() {
    this.el.delta.setAttribute("aria-pressed", String(this.delta));
    this.render();
    this.source.changed();
  }

  // -- showing them ------------------------------------------------------------------------

  /** The list of markers over the spectrum: built when the markers change, its values
   * written again on every frame (only where they changed). */
  render() {
    const { list } = this.el;
    const shape = JSON.stringify([this.markers.map((m) => m.number), this.active, this.delta]);
    if (shape !== this._shape) {
      this._shape = shape;
      list.replaceChildren(...this.markers.map(({ number }) => {
        const item = document.createElement("li");
        item.dataset.marker = String(number);
        item.dataset.active = String(number === this.active);
        const id = document.createElement("button");
        id.type = "button";
        id.className = "marker-id";
        id.textContent = String(number);
        id.setAttribute("aria-pressed", String(number === this.active));
        id.setAttribute("aria-label", `marker ${number}: make it the active one`);
        const value = document.createElement("span");
        value.className = "marker-value";
        const delta = document.createElement("span");
        delta.className = "marker-delta";
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "marker-remove";
        remove.dataset.action = "remove";
        remove.textContent = "×";
        remove.setAttribute("aria-label", `remove marker ${number}`);
        item.append(id, value, delta, remove);
        return item;
      }));
      list.hidden = this.markers.length === 0;
    }
    const deltas = new Map(this.deltas().map((d) => [d.number, d]));
    const items = list.children;
    this.entries().forEach(({ hz, levelDb }, i) => {
      const item = items[i];
      const value = `${mhz(hz)}  ${dbText(levelDb)}`;
      const d = deltas.get(this.markers[i].number);
      const delta = d ? `Δ${d.reference} ${formatDeltaHz(d.dfHz)}  ${Number.isFinite(d.dDb)
        ? `${d.dDb >= 0 ? "+" : ""}${d.dDb.toFixed(1)} dB` : "no level"}` : "";
      if (item.children[1].textContent !== value) item.children[1].textContent = value;
      if (item.children[2].textContent !== delta) item.children[2].textContent = delta;
    });
  }

  /**
   * Draw the markers in `window` on the spectrum (`ctx`, its plot area `plot` in device
   * pixels, dbMin .. dbMax its range): a dashed line, a triangle pointing at the trace and
   * the number above it; the active one filled.
   */
  draw(ctx, plot, window, dbMin, dbMax, dpr) {
    this.drawn = 0;
    if (!this.markers.length || !window) return;
    const span = window.stopHz - window.startHz;
    ctx.save();
    ctx.font = `bold ${Math.round(11 * dpr)}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    const size = 7 * dpr;
    const box = 15 * dpr;
    for (const { number, hz, levelDb, active } of this.entries()) {
      if (hz < window.startHz || hz > window.stopHz) continue;
      this.drawn += 1;
      const x = plot.left + ((hz - window.startHz) / span) * plot.width;
      const t = Number.isFinite(levelDb) ? (levelDb - dbMin) / (dbMax - dbMin) : 0;
      const y = plot.top + plot.height * (1 - Math.min(1, Math.max(0, t)));
      ctx.setLineDash([3 * dpr, 3 * dpr]);
      ctx.lineWidth = dpr;
      ctx.strokeStyle = "rgba(255, 255, 255, 0.45)";
      ctx.beginPath();
      ctx.moveTo(x, plot.top);
      ctx.lineTo(x, plot.top + plot.height);
      ctx.stroke();
      ctx.setLineDash([]);
      // The triangle's tip on the trace, the number's box above it (below, near the top).
      const up = y - size - box - 3 * dpr < plot.top;
      const tipY = up ? y + dpr : y - dpr;
      const baseY = up ? tipY + size : tipY - size;
      ctx.beginPath();
      ctx.moveTo(x, tipY);
      ctx.lineTo(x - size * 0.7, baseY);
      ctx.lineTo(x + size * 0.7, baseY);
      ctx.closePath();
      ctx.fillStyle = active ? "#ffffff" : "#000000";
      ctx.strokeStyle = active ? "#000000" : "#ffffff";
      ctx.lineWidth = 1.5 * dpr;
      ctx.fill();
      ctx.stroke();
      const boxY = up ? baseY + dpr : baseY - box - dpr;
      ctx.fillRect(x - box / 2, boxY, box, box);
      ctx.strokeRect(x - box / 2, boxY, box, box);
      ctx.fillStyle = active ? "#000000" : "#ffffff";
      ctx.fillText(String(number), x, boxY + box / 2 + 0.5);
    }
    ctx.restore();
  }

  /** For tests and the console. */
  state() {
    return { markers: this.entries(), active: this.active, delta: this.delta,
             deltas: this.deltas(), drawn: this.drawn };
  }
}
