// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer for those who do not see the plots, or do not use a mouse.
//
// - Announcer: the page's one live region for its state. It speaks when the connection
//   changes (connected, lost, closed, token needed), on server errors, a stream that is not
//   there, pause and live: never per frame (the status bar's rate, missed and age change
//   twice a second and are not a live region).
// - PlotSummary: a text summary of the spectrum (the window, the strongest signals with
//   their frequency and level, the noise floor) in a visually hidden element the plots are
//   described by, written at most every SUMMARY_INTERVAL_MS.
// - KeyboardCursor: the plots take the focus (Tab); on a plot focused from the keyboard the
//   arrow keys move a cursor bin by bin (and row by row on the waterfall), the readout
//   follows it, and what it reads is said once the keys rest.

import { binAt, binCenterHz, binsIn, strongestPeaks } from "./peaks.js";

export const SUMMARY_INTERVAL_MS = 3000;
const SUMMARY_PEAKS = 3;
const CURSOR_SAY_DELAY_MS = 400; // what the cursor reads is said once the keys rest this long
const SAME_ERROR_QUIET_MS = 10_000; // the same error is not said again within this

const STATE_WORDS = {
  open: "Connected to the server",
  reconnecting: "Connection lost: reconnecting",
  closed: "Disconnected from the server",
  unauthorized: "Token needed",
  unreachable: "No connection to the server", // a page that never connected: an attempt failed
};

function mhz(hz) {
  return `${(hz / 1e6).toFixed(4)} MHz`;
}

/** Says changes of the page's state in `region` (a visually hidden role=status element). */
export class Announcer {
  constructor(region) {
    this.region = region;
    this.said = []; // what was said, for tests: the latest 20
    this._state = null;
    this._lastError = { text: "", at: -Infinity };
  }

  say(text) {
    // Emptied first, so the same words said again are announced again.
    this.region.textContent = "";
    this.region.textContent = text;
    this.said.push(text);
    if (this.said.length > 20) this.said.shift();
  }

  /** A client "state" event's state (and attempt): said when it is another than the last
   * one said. */
  state(state, attempt = 0) {
    if (state === "connecting" && attempt > 0) state = "unreachable";
    const words = STATE_WORDS[state];
    if (!words || state === this._state) return;
    this._state = state;
    this.say(words);
  }

  error(text) {
    const now = performance.now();
    if (text === this._lastError.text && now - this._lastError.at < SAME_ERROR_QUIET_MS) return;
    this._lastError = { text, at: now };
    this.say(text);
  }
}

/**
 * The summary of the spectrum shown, in `output`, and the plots' accessible names.
 * `source`: trace() ({values, grid} of the frame drawn, or null), window(), range() ([min,
 * max] dB), paused().
 */
export class PlotSummary {
  constructor(output, plots, source) {
    this.output = output;
    this.plots = plots; // {spectrum, waterfall}
    this.source = source;
    this.updates = 0;
    this.update();
    setInterval(() => this.update(), SUMMARY_INTERVAL_MS);
  }

  text() {
    const trace = this.source.trace();
    const window = this.source.window();
    if (!trace || !window) return "Spectrum: no frame yet.";
    const range = binsIn(trace.grid, window);
    const parts = [`Spectrum from ${mhz(window.startHz)} to ${mhz(window.stopHz)}` +
      (this.source.paused() ? ", paused." : ".")];
    if (range) {
      const { peaks, floor } = strongestPeaks(trace.values, ...range, SUMMARY_PEAKS);
      parts.push(peaks.length
        ? `Strongest signals: ${peaks.map((bin) =>
          `${mhz(binCenterHz(trace.grid, bin))} at ${trace.values[bin].toFixed(1)} dB`).join("; ")}.`
        : "No signal stands out of the noise.");
      if (Number.isFinite(floor)) parts.push(`Noise floor about ${floor.toFixed(0)} dB.`);
    }
    return parts.join(" ");
  }

  update() {
    const text = this.text();
    if (this.output.textContent !== text) this.output.textContent = text;
    const [min, max] = this.source.range();
    const window = this.source.window();
    const band = window ? ` from ${mhz(window.startHz)} to ${mhz(window.stopHz)}` : "";
    this.plots.spectrum.setAttribute("aria-label",
      `Spectrum: level in dB over frequency${band}, ${min} to ${max} dB`);
    this.updates += 1;
  }
}

/**
 * The keyboard cursor over the focused plot. `readout` is the Readout (readout.js) it
 * moves; `source`: trace(), window(), plotBox(), spectrumBox(), rows (the waterfall's), and
 * `say(text)` for what it reads.
 */
export class KeyboardCursor {
  constructor({ spectrum, waterfall }, readout, source) {
    this.readout = readout;
    this.source = source;
    this.surfaces = { spectrum, waterfall };
    this.hz = null; // the cursor's frequency
    this.age = 0; // its row on the waterfall
    this.on = null; // "spectrum" | "waterfall" while a plot has the focus
    this._sayTimer = null;
    for (const [name, canvas] of Object.entries(this.surfaces)) {
      canvas.addEventListener("focus", () => {
        // Only a keyboard's focus (Tab): a click or a drag focuses the plot too, and then
        // the pointer reads out and the arrows pan as before.
        if (!canvas.matches(":focus-visible")) return;
        this.on = name;
        const window = this.source.window();
        if (this.hz === null || !window || this.hz < window.startHz || this.hz > window.stopHz) {
          this.hz = this._start();
        }
        this._place();
      });
      canvas.addEventListener("blur", () => {
        if (!this.on) return;
        this.on = null;
        this.readout.pointer = null; // the readout was the cursor's
        this.readout.refresh();
        this.source.changed();
      });
      canvas.addEventListener("keydown", (event) => this._key(event));
    }
  }

  /** Where the cursor starts: on the strongest signal in view, else the middle. */
  _start() {
    const trace = this.source.trace();
    const window = this.source.window();
    if (!window) return null;
    const range = trace ? binsIn(trace.grid, window) : null;
    if (range) {
      const { peaks } = strongestPeaks(trace.values, ...range, 1);
      if (peaks.length) return binCenterHz(trace.grid, peaks[0]);
    }
    return (window.startHz + window.stopHz) / 2;
  }

  _key(event) {
    if (!this.on || event.ctrlKey || event.metaKey || event.altKey) return;
    const trace = this.source.trace();
    const window = this.source.window();
    if (!window || this.hz === null) return;
    const binHz = trace?.grid.binHz ?? (window.stopHz - window.startHz) / 100;
    const step = event.shiftKey ? 10 : 1;
    const moves = {
      ArrowLeft: () => { this.hz -= step * binHz; },
      ArrowRight: () => { this.hz += step * binHz; },
      Home: () => { this.hz = window.startHz; },
      End: () => { this.hz = window.stopHz - binHz / 2; },
      ArrowUp: () => { this.age = Math.max(0, this.age - step); },
      ArrowDown: () => { this.age = Math.min(this.source.rows - 1, this.age + step); },
      Escape: () => this.surfaces[this.on]?.blur(),
    };
    const move = moves[event.key];
    const vertical = event.key === "ArrowUp" || event.key === "ArrowDown";
    if (!move || (vertical && this.on !== "waterfall")) return;
    event.preventDefault();
    event.stopPropagation(); // not the page's pan keys
    move();
    if (event.key === "Escape") return;
    // Kept in the window, on a bin's centre.
    this.hz = Math.min(window.stopHz - 1e-6, Math.max(window.startHz, this.hz));
    const bin = trace ? binAt(trace.grid, this.hz) : -1;
    if (bin >= 0) this.hz = binCenterHz(trace.grid, bin);
    this._place();
  }

  /** Put the readout's pointer on the cursor and say what it reads once the keys rest. */
  _place() {
    const window = this.source.window();
    if (!window || this.hz === null || !this.on) return;
    const box = this.source.plotBox();
    const x = box.left + ((this.hz - window.startHz) / (window.stopHz - window.startHz)) * box.width;
    const spectrum = this.source.spectrumBox();
    const y = this.on === "spectrum" ? spectrum.top + spectrum.height / 2
      : box.top + ((this.age + 0.5) / this.source.rows) * box.height;
    this.readout.pointer = { x, y };
    this.readout.refresh();
    this.source.changed();
    clearTimeout(this._sayTimer);
    this._sayTimer = setTimeout(() => {
      if (this.on) this.source.say(this.readout.output.textContent);
    }, CURSOR_SAY_DELAY_MS);
  }

  /** A dashed line at the cursor on the spectrum while a plot has the focus. */
  draw(ctx, plot, window, dpr) {
    if (!this.on || this.hz === null || !window) return;
    const x = plot.left + ((this.hz - window.startHz) / (window.stopHz - window.startHz)) * plot.width;
    ctx.save();
    ctx.strokeStyle = "#4fc3f7";
    ctx.lineWidth = 2 * dpr;
    ctx.setLineDash([6 * dpr, 4 * dpr]);
    ctx.beginPath();
    ctx.moveTo(x, plot.top);
    ctx.lineTo(x, plot.top + plot.height);
    ctx.stroke();
    ctx.restore();
  }
}
