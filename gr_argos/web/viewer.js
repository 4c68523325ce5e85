// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos browser viewer: live spectrum trace (two of them, e.g. peak over average, when the
// stream offers a second trace), peak hold and a scrolling waterfall, zoomed and panned with
// the gestures of zoom.js.
//
// Frames only update state (the latest frame, the peak hold, one pending waterfall row that
// refers to the frame's bins, reduced to the plot's columns once drawn); all
// drawing happens in one requestAnimationFrame callback, so a slow or hidden tab draws the
// newest spectrum and never works through a backlog. Memory is bounded: the pending rows, the
// ImageData and the scratch arrays are allocated when the bin count or the canvas size
// changes, never per frame.

import { Announcer, KeyboardCursor, PlotSummary } from "./a11y.js";
import { ArgosClient, ENCODINGS } from "./argos-client.js";
import { AutoRange } from "./autorange.js";
import { COLORMAP_NAMES, makeLut } from "./colormap.js";
import { Control } from "./control.js";
import { Detections } from "./detections.js";
import { plain, statusEntries } from "./device.js";
import { ColumnCache } from "./draw.js";
import { composePng, download, exportName, traceCsv } from "./export.js";
import { setUpFullscreen } from "./fullscreen.js";
import { setUpHelp } from "./help.js";
import { TokenStore, setUpLogin } from "./login.js";
import { MARKER_KEYS, Markers } from "./markers.js";
import { Pause } from "./pause.js";
import { Readout, RowHistory } from "./readout.js";
import { RecordButton } from "./recording.js";
import { ReplayBar } from "./replay.js";
import { SharedConnection } from "./shared-connection.js";
import { OutageBanner, gapNotice, rangeProblem, streamProblem } from "./states.js";
import { drawColorbar, drawTimeAxis } from "./waterfall-axis.js";
import {
  ROW_COMBINE_CHOICES, ROW_DATA, ROW_EVERY_CHOICES, ROW_GAP, ROW_RETUNE, ROW_SKIPPED, ROW_VIEW,
  RowCombiner, paintRow, repaint,
} from "./waterfall-rows.js";
import {
  ViewRequester, ZoomControl, binGrid, regrid, sampleInto, setUpRateControl, urlWithView,
  viewFromUrl,
} from "./zoom.js";

const MAX_WATERFALL_COLUMNS = 4096; // the waterfall has a column per device pixel, up to this
const WATERFALL_ROWS = 480; // history kept in the waterfall: 16 s at 30 frames/s
const MAX_PENDING_ROWS = 16; // rows waiting for the next animation frame; older ones are skipped
const AUTO_RANGE_INTERVAL_MS = 400;
const STATUS_INTERVAL_MS = 500;
const DEFAULT_RANGE_DB = [-110, -30];
const RECENT_STATES = 20;
const CLIENT_OPTIONS = [
  "backoffBaseMs", "backoffCapMs", "stableAfterMs", "heartbeatIntervalMs", "heartbeatTimeoutMs",
  "backfillS",
];
// Which traces of a stream with a second trace are shown; the first one is the default
// everywhere else (a stream without one, the waterfall unless only the second is shown).
const TRACE_CHOICES = ["both", "first", "second"];

const COLORS = {
  background: "#07090d",
  grid: "rgba(120, 140, 170, 0.16)",
  gridStrong: "rgba(120, 140, 170, 0.32)",
  label: "#8a94a6",
  // Per trace: the first (e.g. peak) bright blue, the second (e.g. average) green.
  trace: { first: "#7fd7ff", second: "#6ee07a" },
  traceFill: {
    first: ["rgba(79, 195, 247, 0.35)", "rgba(79, 195, 247, 0.02)"],
    second: ["rgba(110, 224, 122, 0.30)", "rgba(110, 224, 122, 0.02)"],
  },
  peak: "rgba(255, 213, 79, 0.85)",
  mark: "rgba(255, 112, 67, 0.22)", // a signal on the air (detections.js)
  markLabel: "#ffab91",
};
// A frame's traces in the plot's columns, reduced once for its waterfall row and its line.
const frameColumns = new ColumnCache();

const params = new URLSearchParams(location.search);

/** The WebSocket URL: ?url= if given, else the server that served this page. */
function serverUrl() {
  const override = params.get("url");
  if (override) return override;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/`;
}

function clientOptions() {
  const options = {};
  for (const name of CLIENT_OPTIONS) {
    const value = Number(params.get(name));
    if (params.has(name) && Number.isFinite(value)) options[name] = value;
  }
  // ?encoding=uint8&compress=1 asks the server for smaller frames (docs/protocol.md), and
  // &step_db=1 for a fixed uint8 step of 1 dB (smaller still); a bad step is ignored.
  if (ENCODINGS.includes(params.get("encoding"))) options.encoding = params.get("encoding");
  options.compress = ["1", "true"].includes(params.get("compress"));
  const stepDb = Number(params.get("step_db"));
  if (options.encoding === "uint8" && stepDb >= 0.01 && stepDb <= 20) options.stepDb = stepDb;
  // ?center_freq_hz=&span_hz=&bins=&fps_divisor= open a view (see zoom.js).
  const view = viewFromUrl(params);
  if (view.spanHz || view.bins || view.fpsDivisor > 1) {
    const stream = params.has("stream") ? Number(params.get("stream")) : NaN;
    options.view = { streamId: Number.isInteger(stream) ? stream : undefined, ...view };
    if (view.spanHz && !view.bins) {
      // Until the page is laid out, the window's width stands for the plot's.
      options.view.bins = Math.round(window.innerWidth * (window.devicePixelRatio || 1));
    }
  }
  return options;
}

function niceStep(range, targetCount) {
  const raw = range / Math.max(1, targetCount);
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function decimalsOf(step) {
  let d = 0;
  while (d < 9 && Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-6) d++;
  return d;
}

function formatHz(hz) {
  const abs = Math.abs(hz);
  if (abs >= 1e9) return `${+(hz / 1e9).toFixed(4)} GHz`;
  if (abs >= 1e6) return `${+(hz / 1e6).toFixed(4)} MHz`;
  if (abs >= 1e3) return `${+(hz / 1e3).toFixed(3)} kHz`;
  return `${+hz.toFixed(1)} Hz`;
}

/**
 * The scrolling waterfall, newest row on top: a column per device pixel of the plot. Each row
 * is drawn from its own frame's frequencies into the window shown when it came, and keeps
 * that mapping: after a zoom or pan (a marker row) new rows show the new window, old rows
 * stay as they were rather than smearing.
 */
class Waterfall {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { alpha: false });
    this.columns = 0;
    this.slots = [];
    this.head = 0;
    this.count = 0;
    this.skippedSinceDraw = 0;
    this.rowsSkipped = 0;
    this.rowsMade = 0; // rows of data made (of one frame, or of several: see setSpeed)
    this.lastKind = null;
    this.history = new RowHistory(WATERFALL_ROWS); // what each row on screen shows
    this.combiner = new RowCombiner(); // the speed: one row per combiner.every frames
  }

  /** Use `columns` columns; the rows drawn so far are stretched to the new width. */
  configure(columns) {
    columns = Math.max(1, Math.min(columns, MAX_WATERFALL_COLUMNS));
    if (columns === this.columns) return;
    let old = null;
    if (this.columns > 0) {
      old = document.createElement("canvas");
      old.width = this.columns;
      old.height = WATERFALL_ROWS;
      old.getContext("2d").drawImage(this.canvas, 0, 0);
    }
    this.columns = columns;
    this.canvas.width = columns;
    this.canvas.height = WATERFALL_ROWS;
    this.ctx.fillStyle = COLORS.background;
    this.ctx.fillRect(0, 0, columns, WATERFALL_ROWS);
    if (old) this.ctx.drawImage(old, 0, 0, columns, WATERFALL_ROWS);
    this.slots = Array.from({ length: MAX_PENDING_ROWS },
      () => ({ kind: ROW_DATA, values: new Float32Array(columns), sources: null, window: null,
        timeMs: NaN }));
    this.history.configure(columns);
    this.combiner.configure(columns);
    this.fullImage = null; // for repaint(), allocated when first needed
    this.head = 0;
    this.count = 0;
    this.skippedSinceDraw = 0;
    // One row more than the pending buffer: the "rows skipped" marker.
    this.image = this.ctx.createImageData(this.columns, MAX_PENDING_ROWS + 1);
    this.pixels = new Uint32Array(this.image.data.buffer);
  }

  get pending() {
    return this.count;
  }

  /** A pending slot for a new row; when the buffer is full the oldest row is skipped. */
  claim() {
    if (this.count === MAX_PENDING_ROWS) {
      this.head = (this.head + 1) % MAX_PENDING_ROWS;
      this.count -= 1;
      this.skippedSinceDraw += 1;
      this.rowsSkipped += 1;
    }
    const slot = this.slots[(this.head + this.count) % MAX_PENDING_ROWS];
    slot.sources = null; // a reused slot must not draw the frame of the row it held
    this.count += 1;
    return slot;
  }

  /** A row of `sources` ({values, grid}, see sampleInto) drawn into `window`, of a frame
   * of time `timeMs` (ms since the epoch). Its columns are worked out when it is drawn, so
   * a row skipped (a tab that cannot draw in time) costs nothing. */
  pushSpectrum(sources, window, timeMs) {
    if (!this.columns) return;
    const cellHz = (window.stopHz - window.startHz) / this.columns;
    const combiner = this.combiner;
    if (combiner.every > 1) {
      // A row of several frames: all of one window (a new window starts a new row).
      if (!combiner.fits(window)) this.flushRow();
      sampleInto(combiner.scratch, window.startHz, cellHz, sources);
      if (combiner.add(window, timeMs)) this.flushRow();
      return;
    }
    const slot = this.claim();
    slot.kind = ROW_DATA;
    slot.sources = sources;
    slot.window = { startHz: window.startHz, stopHz: window.stopHz };
    slot.timeMs = timeMs;
    this.lastKind = ROW_DATA;
    this.rowsMade += 1;
  }

  /** The row being combined, of the frames it has so far, as a pending row. */
  flushRow() {
    const combiner = this.combiner;
    if (!combiner.frames) return;
    const slot = this.claim();
    slot.kind = ROW_DATA;
    slot.window = combiner.window;
    slot.timeMs = combiner.timeMs;
    this.lastKind = ROW_DATA;
    this.rowsMade += 1;
    combiner.finish(slot.values);
  }

  /** One row per `every` frames, combined by `combine` ("average" or "peak"). */
  setSpeed(every, combine) {
    this.flushRow();
    this.combiner.every = every;
    this.combiner.combine = combine;
  }

  /** A marker row (after the row being combined); a view marker only where the previous row
   * is not one already. */
  pushMarker(kind) {
    if (!this.columns || (kind === ROW_VIEW && this.lastKind === ROW_VIEW)) return;
    this.flushRow();
    this.claim().kind = kind;
    this.lastKind = kind;
  }

  /** Paint every row kept again (a new colour map or range). */
  repaint(lut, dbMin, dbMax) {
    if (!this.columns) return;
    this.fullImage ??= this.ctx.createImageData(this.columns, WATERFALL_ROWS);
    repaint(this.ctx, this.fullImage, this.history, lut, dbMin, dbMax);
  }

  /** Mark rows left out on purpose (a pause) with the grey row of skipped rows. */
  markSkipped() {
    if (this.columns) this.skippedSinceDraw += 1;
  }

  /** Draw the pending rows; returns {rows, gapRows} drawn. */
  draw(lut, dbMin, dbMax) {
    const markerRows = this.skippedSinceDraw > 0 ? 1 : 0;
    const batch = this.count + markerRows;
    if (batch === 0) return { rows: 0, gapRows: 0 };
    const { ctx, columns, pixels } = this;
    // Scroll by drawing the canvas onto itself, batch rows lower.
    ctx.drawImage(this.canvas, 0, 0, columns, WATERFALL_ROWS - batch,
      0, batch, columns, WATERFALL_ROWS - batch);
    let gapRows = 0;
    for (let j = 0; j < this.count; j++) {
      const slot = this.slots[(this.head + j) % MAX_PENDING_ROWS];
      const offset = (this.count - 1 - j) * columns; // oldest lowest, newest on top
      if (slot.kind === ROW_DATA && slot.sources) { // a frame's row: its columns now
        const band = slot.window;
        frameColumns.sample(slot.values, band.startHz, (band.stopHz - band.startHz) / columns,
          slot.sources);
        slot.sources = null; // the frame's bins are not needed any more
      }
      paintRow(pixels, offset, columns, slot.kind, slot.values, lut, dbMin, dbMax);
      if (slot.kind === ROW_GAP) gapRows += 1;
    }
    if (markerRows) {
      paintRow(pixels, this.count * columns, columns, ROW_SKIPPED, null, lut, dbMin, dbMax);
      this.history.push(ROW_SKIPPED, null, null, NaN);
    }
    for (let j = 0; j < this.count; j++) {
      const slot = this.slots[(this.head + j) % MAX_PENDING_ROWS];
      const data = slot.kind === ROW_DATA;
      this.history.push(slot.kind, data ? slot.values : null, data ? slot.window : null,
        data ? slot.timeMs : NaN);
    }
    ctx.putImageData(this.image, 0, 0, 0, 0, columns, batch);
    this.head = 0;
    this.count = 0;
    this.skippedSinceDraw = 0;
    return { rows: batch, gapRows };
  }
}

/** The spectrum plot: grid, dB and MHz axes, live trace and peak hold, over a window of
 * frequencies; every trace is drawn from its own frame's frequencies (see zoom.js). */
class SpectrumPlot {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.dpr = 1;
    this.plot = { left: 0, top: 0, width: 1, height: 1 };
    this.columnMax = new Float32Array(1);
  }

  /** Size the canvas to its box; the plot area spans plotLeft .. plotLeft + plotWidth (CSS px). */
  layout(plotLeft, plotWidth) {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
    const height = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
    if (this.canvas.width !== width) this.canvas.width = width;
    if (this.canvas.height !== height) this.canvas.height = height;
    this.dpr = dpr;
    const axisHeight = Math.round(22 * dpr);
    this.plot = {
      left: Math.round(plotLeft * dpr),
      top: Math.round(8 * dpr),
      width: Math.max(1, Math.round(plotWidth * dpr)),
      height: Math.max(1, height - axisHeight - Math.round(8 * dpr)),
    };
    if (this.columnMax.length !== this.plot.width) {
      this.columnMax = new Float32Array(this.plot.width);
    }
    this.fills = {};
    for (const [key, [top, bottom]] of Object.entries(COLORS.traceFill)) {
      const fill = this.ctx.createLinearGradient(0, this.plot.top, 0, this.plot.top + this.plot.height);
      fill.addColorStop(0, top);
      fill.addColorStop(1, bottom);
      this.fills[key] = fill;
    }
  }

  /**
   * Draw the grid for `window` ({startHz, stopHz}), then `traces` ({key: "first" |
   * "second", sources}, bottom first, sources as sampleInto takes them; the last, the one
   * the waterfall shows, filled underneath), the peak hold ({values, grid}) and, given one,
   * a legend ({key, label} per trace, the top one first).
   */
  draw({ traces, peak, dbMin, dbMax, window, legend, marks = [] }) {
    const { ctx, plot, dpr } = this;
    ctx.fillStyle = COLORS.background;
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.drawGrid(dbMin, dbMax, window);
    if (!traces.length || !window) return;
    const y = (db) => {
      const t = (db - dbMin) / (dbMax - dbMin);
      const clamped = t < 0 || !(t === t) ? 0 : t > 1 ? 1 : t; // NaN and -inf go to the floor
      return plot.top + plot.height * (1 - clamped);
    };
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.left, plot.top, plot.width, plot.height);
    ctx.clip();
    const top = traces.at(-1);
    ctx.beginPath();
    const ends = this.tracePath(top.sources, window, y);
    if (ends) {
      ctx.lineTo(ends[1], plot.top + plot.height);
      ctx.lineTo(ends[0], plot.top + plot.height);
      ctx.closePath();
      ctx.fillStyle = this.fills[top.key];
      ctx.fill();
    }
    ctx.lineWidth = Math.max(1, dpr);
    for (const { key, sources } of traces) {
      ctx.beginPath();
      this.tracePath(sources, window, y);
      ctx.strokeStyle = COLORS.trace[key];
      ctx.stroke();
    }
    if (peak) {
      ctx.beginPath();
      this.tracePath([peak], window, y, false);
      ctx.strokeStyle = COLORS.peak;
      ctx.stroke();
    }
    this.marksDrawn = this.drawMarks(marks, window,
                                     legend ? this.legendBox(legend).left : Infinity);
    ctx.restore();
    this.legendDrawn = legend ? this.drawLegend(legend) : null;
  }

  /** A band over the plot for each signal on the air ({startHz, stopHz, label}) in
   * `window`, at least two pixels wide, its frequency above it on the first of two label
   * rows where it overlaps no other label (none where neither has room: the band stays);
   * how many bands were drawn. */
  drawMarks(marks, window, labelsEnd) {
    const { ctx, plot, dpr } = this;
    const span = window.stopHz - window.startHz;
    const xOf = (hz) => plot.left + ((hz - window.startHz) / span) * plot.width;
    let drawn = 0;
    const fontPx = Math.round(10 * dpr);
    ctx.font = `${fontPx}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const rowsEnd = [-Infinity, -Infinity]; // right edge of the last label on each row
    this.markLabels = []; // {left, right, top, bottom, row} of each label drawn, in canvas pixels
    const gap = 4 * dpr;
    const shown = marks.filter(({ startHz, stopHz }) =>
      stopHz >= window.startHz && startHz <= window.stopHz);
    shown.sort((a, b) => a.startHz - b.startHz);
    for (const { startHz, stopHz, label } of shown) {
      const left = xOf(startHz);
      const w = Math.max(2 * dpr, xOf(stopHz) - left);
      ctx.fillStyle = COLORS.mark;
      ctx.fillRect(left, plot.top, w, plot.height);
      const half = ctx.measureText(label).width / 2;
      const x = Math.min(Math.max(left + w / 2, plot.left + half),
                         plot.left + plot.width - half);
      const fits = x + half + gap <= labelsEnd; // not under the legend
      const row = fits ? rowsEnd.findIndex((end) => x - half >= end + gap) : -1;
      if (row >= 0) {
        ctx.fillStyle = COLORS.markLabel;
        const top = plot.top + 2 * dpr + row * (fontPx + 2 * dpr);
        ctx.fillText(label, x, top);
        rowsEnd[row] = x + half;
        this.markLabels.push({ left: x - half, right: x + half, top, bottom: top + fontPx, row });
      }
      drawn += 1;
    }
    return drawn;
  }

  /** Where the legend of `entries` goes (top right): {left, x, width, widths}, with the
   * legend's font set on the context. */
  legendBox(entries) {
    const { ctx, plot, dpr } = this;
    ctx.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
    const line = 14 * dpr;
    const gap = 5 * dpr;
    const pad = 6 * dpr;
    const widths = entries.map(({ label }) => line + gap + ctx.measureText(label).width);
    const width = widths.reduce((sum, w) => sum + w, 0) + 3 * gap * (entries.length - 1);
    const x = plot.left + plot.width - width - 2 * pad;
    return { left: x - pad, x, width, widths };
  }

  /** A line of colour and the detector's name per trace, first to last from the left, in
   * the plot's top right corner on a backdrop that keeps it readable over the traces; its
   * box ({left, right, top, bottom} in canvas pixels). */
  drawLegend(entries) {
    const { ctx, plot, dpr } = this;
    const { left, width, widths } = this.legendBox(entries);
    let x = left + 6 * dpr;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    const line = 14 * dpr;
    const gap = 5 * dpr;
    const pad = 6 * dpr;
    const yy = plot.top + pad + 6 * dpr;
    ctx.fillStyle = "rgba(7, 9, 13, 0.75)";
    const box = { left, right: left + width + 2 * pad, top: plot.top + 2,
      bottom: plot.top + 12 * dpr + 2 * pad };
    ctx.fillRect(box.left, box.top, box.right - box.left, box.bottom - box.top);
    ctx.lineWidth = 2 * dpr;
    entries.forEach(({ key, label }, i) => {
      ctx.strokeStyle = COLORS.trace[key];
      ctx.beginPath();
      ctx.moveTo(x, yy);
      ctx.lineTo(x + line, yy);
      ctx.stroke();
      ctx.fillStyle = COLORS.label;
      ctx.fillText(label, x + line + gap, yy);
      x += widths[i] + 3 * gap;
    });
    return box;
  }

  /**
   * Add the line of `sources` (see sampleInto) across `window` to the path: through the
   * centres of the bins of the first source when the window holds fewer of them than the
   * plot has pixels, else (or with another source to fill in) through each pixel's maximum.
   * Returns the x of its first and last points, or null when nothing lies in the window.
   * `ofFrame`: the sources are a frame's (their columns may be remembered, see draw.js).
   */
  tracePath(sources, window, y, ofFrame = true) {
    const { ctx, plot } = this;
    const span = window.stopHz - window.startHz;
    const { values, grid } = sources[0];
    const first = Math.max(0, Math.floor((window.startHz - grid.startHz) / grid.binHz) - 1);
    const last = Math.min(values.length - 1, Math.ceil((window.stopHz - grid.startHz) / grid.binHz));
    const xOf = (hz) => plot.left + ((hz - window.startHz) / span) * plot.width;
    let ends = null;
    const point = (x, value) => {
      if (ends === null) {
        ctx.moveTo(x, y(value));
        ends = [x, x];
      } else {
        ctx.lineTo(x, y(value));
        ends[1] = x;
      }
    };
    if (sources.length === 1 && last - first + 1 <= plot.width) {
      for (let i = first; i <= last; i++) point(xOf(grid.startHz + (i + 0.5) * grid.binHz), values[i]);
    } else {
      const cellHz = span / plot.width;
      const out = ofFrame ? frameColumns.sample(this.columnMax, window.startHz, cellHz, sources)
        : sampleInto(this.columnMax, window.startHz, cellHz, sources);
      for (let c = 0; c < out.length; c++) if (out[c] === out[c]) point(plot.left + c + 0.5, out[c]);
    }
    return ends;
  }

  /** Grid lines and labels; the frequency axis spans `window` ({startHz, stopHz}). */
  drawGrid(dbMin, dbMax, window) {
    const { ctx, plot, dpr } = this;
    ctx.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
    ctx.lineWidth = 1;
    // dB lines and labels in the left gutter.
    const dbStep = niceStep(dbMax - dbMin, plot.height / (36 * dpr));
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let db = Math.ceil(dbMin / dbStep) * dbStep; db <= dbMax + 1e-9; db += dbStep) {
      const yy = Math.round(plot.top + plot.height * (1 - (db - dbMin) / (dbMax - dbMin))) + 0.5;
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath();
      ctx.moveTo(plot.left, yy);
      ctx.lineTo(plot.left + plot.width, yy);
      ctx.stroke();
      ctx.fillStyle = COLORS.label;
      ctx.fillText(`${+db.toFixed(decimalsOf(dbStep))}`, plot.left - 6 * dpr, yy);
    }
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText("dB", 4 * dpr, plot.top);
    // Frequency lines and MHz labels under the plot.
    if (window && window.stopHz > window.startHz) {
      const spanHz = window.stopHz - window.startHz;
      const centerHz = (window.startHz + window.stopHz) / 2;
      const spanMHz = spanHz / 1e6;
      const startMHz = window.startHz / 1e6;
      const step = niceStep(spanMHz, plot.width / (90 * dpr));
      const decimals = decimalsOf(step);
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      const labelY = plot.top + plot.height + 6 * dpr;
      for (let f = Math.ceil(startMHz / step) * step; f <= startMHz + spanMHz + 1e-9; f += step) {
        const x = Math.round(plot.left + ((f - startMHz) / spanMHz) * plot.width) + 0.5;
        const centre = Math.abs(f * 1e6 - centerHz) < spanHz * 1e-9;
        ctx.strokeStyle = centre ? COLORS.gridStrong : COLORS.grid;
        ctx.beginPath();
        ctx.moveTo(x, plot.top);
        ctx.lineTo(x, plot.top + plot.height + 3 * dpr);
        ctx.stroke();
        const text = f.toFixed(decimals);
        const half = ctx.measureText(text).width / 2;
        if (x - half >= plot.left - 2 * dpr && x + half <= this.canvas.width) {
          ctx.fillStyle = COLORS.label;
          ctx.fillText(text, x, labelY);
        }
      }
      ctx.textAlign = "left";
      ctx.fillStyle = COLORS.label;
      ctx.fillText("MHz", 4 * dpr, labelY);
    }
    ctx.strokeStyle = COLORS.gridStrong;
    ctx.strokeRect(plot.left + 0.5, plot.top + 0.5, plot.width - 1, plot.height - 1);
  }
}

/** Call `fn(arg)` and add the time it took to `counter` ({count, ms, maxMs}). */
function timed(counter, fn, arg) {
  const start = performance.now();
  try {
    fn(arg);
  } finally {
    const ms = performance.now() - start;
    counter.count += 1;
    counter.ms += ms;
    if (ms > counter.maxMs) counter.maxMs = ms;
  }
}

function renderList(dl, entries) {
  const items = [];
  for (const [key, value] of entries) {
    const dt = document.createElement("dt");
    dt.textContent = key;
    const dd = document.createElement("dd");
    dd.textContent = value;
    items.push(dt, dd);
  }
  dl.replaceChildren(...items);
}

function gpsEntries(message) {
  const entries = [];
  if (message.connected === false) entries.push(["gpsd", "not connected"]);
  const coord = (value, positive, negative) =>
    `${Math.abs(value).toFixed(6)}° ${value >= 0 ? positive : negative}`;
  if (typeof message.lat === "number") entries.push(["lat", coord(message.lat, "N", "S")]);
  if (typeof message.lon === "number") entries.push(["lon", coord(message.lon, "E", "W")]);
  const alt = message.alt_m ?? message.alt ?? message.altMSL ?? message.altHAE;
  if (typeof alt === "number") entries.push(["alt", `${alt.toFixed(1)} m`]);
  if (message.mode !== undefined) {
    entries.push(["fix", { 0: "unknown", 1: "no fix", 2: "2D", 3: "3D" }[message.mode]
      ?? plain(message.mode)]);
  } else if (message.fix !== undefined) {
    entries.push(["fix", typeof message.fix === "boolean"
      ? (message.fix ? "yes" : "no") : plain(message.fix)]);
  }
  const time = message.time ?? message.time_utc ?? message.timestamp;
  if (time !== undefined) entries.push(["time", plain(time)]);
  if (typeof message.satellites_used === "number") {
    entries.push(["satellites", `${message.satellites_used}` + (typeof message.satellites_visible
      === "number" ? ` of ${message.satellites_visible}` : "")]);
  }
  return entries;
}

function main() {
  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"), stateText: $("state-text"), fps: $("fps"), missed: $("missed"),
    age: $("age"), notice: $("notice"), streamInfo: $("stream-info"),
    dbMin: $("db-min"), dbMax: $("db-max"), auto: $("auto"), peakHold: $("peak-hold"),
    peakReset: $("peak-reset"), colormap: $("colormap"), readout: $("readout"),
    traces: $("traces"), traceButtons: [...document.querySelectorAll("#traces button")],
    rate: $("rate"), zoomReset: $("zoom-reset"),
    spectrum: $("spectrum"), waterfall: $("waterfall"), colorbar: $("colorbar"),
    side: $("side"), gpsPanel: $("gps-panel"), gps: $("gps"),
    devicePanel: $("device-panel"), device: $("device"),
    plots: $("plots"), outage: $("outage"), streamError: $("stream-error"),
    rangeError: $("range-error"), pause: $("pause"), paused: $("paused"),
    fullscreen: $("fullscreen"), fullscreenExit: $("fullscreen-exit"),
    exportPng: $("export-png"), exportCsv: $("export-csv"),
    waterfallTime: $("waterfall-time"), rowEvery: $("row-every"), rowCombine: $("row-combine"),
    login: {
      panel: $("login"), form: $("login-form"), token: $("login-token"),
      remember: $("login-remember"), help: $("login-help"), error: $("login-error"),
      logout: $("logout"),
    },
  };

  const initialMin = Number(params.get("min"));
  const initialMax = Number(params.get("max"));
  const manualRange = params.has("min") && params.has("max") && initialMin < initialMax;
  const view = {
    state: "connecting",
    states: [],
    notices: [], // the latest notices shown (at most 10), for tests and diagnostics
    streamId: params.has("stream") ? Number(params.get("stream")) : null,
    streamError: null, // the text shown when ?stream= is not one the server has
    streamFps: NaN, // the stream's frame rate (hello)
    lastFrameMs: NaN, // the timestamp of the latest frame received (also while paused)
    pendingGap: null, // a gap event, finished by the frame that comes with it
    streamName: "",
    detector: "", // the stream's, from hello ("" when it does not say)
    secondDetector: "", // "" when the stream offers no second trace
    traces: TRACE_CHOICES.includes(params.get("traces")) ? params.get("traces") : TRACE_CHOICES[0],
    tracesDrawn: [], // keys of the traces in the latest drawing, bottom first
    axis: null, // the latest frame's bins: {centerHz, spanHz, bins, binHz, startHz, stopHz}
    latest: null,
    // The latest frame of the whole stream, drawn where a new window's frames have not come
    // yet (awaitingView: from a zoom or pan until the first frame of its view).
    wide: null,
    awaitingView: false,
    fpsDivisor: viewFromUrl(params).fpsDivisor,
    peakGrid: null, // the bins of the peak hold
    ageMs: NaN,
    traceDirty: true,
    peak: null,
    peakHold: true,
    range: manualRange ? [initialMin, initialMax] : [...DEFAULT_RANGE_DB],
    auto: !manualRange,
    colormap: COLORMAP_NAMES.includes(params.get("colormap"))
      ? params.get("colormap") : COLORMAP_NAMES[0],
    counters: {
      framesReceived: 0, secondFramesReceived: 0, framesDrawn: 0, rowsDrawn: 0, gapEvents: 0,
      gapRowsDrawn: 0, repaints: 0, retunes: 0, warnings: 0, errors: 0, gps: 0, status: 0,
      framesMissed: 0, // the frames the gaps counted, with those estimated across restarts
      framesWhileHidden: 0, // received while the tab was hidden: not drawn, no waterfall row
    },
  };
  // The main thread's time in this page's own frame handling and drawing (benchmarks).
  const work = { frames: { count: 0, ms: 0, maxMs: 0 }, draws: { count: 0, ms: 0, maxMs: 0 } };
  let lut = makeLut(view.colormap);
  const waterfall = new Waterfall(el.waterfall);
  const spectrum = new SpectrumPlot(el.spectrum);
  const autoRange = new AutoRange();
  let colorbarDirty = true;
  let layoutDirty = true;
  let repaintDirty = false; // the waterfall's kept rows are to be painted again
  let timeAxisDirty = true;
  let timeAxis = { labels: [], symbols: [] }; // what the time axis drew last
  let rafPending = false;

  // Tabs of this viewer share one connection where they can (shared-connection.js).
  const shared = new SharedConnection(params);
  const client = new ArgosClient(serverUrl(), { ...clientOptions(), WebSocket: shared.WebSocket });
  client.addEventListener("state", (event) => {
    if (event.detail.state === "closed") shared.leave("its client stopped (a token to enter?)");
  });
  setUpLogin(client, new TokenStore(client.url), el.login);
  const plotBox = () => el.waterfall.getBoundingClientRect();
  const zoom = new ZoomControl({
    surfaces: [el.spectrum, el.waterfall], plotBox, keyTarget: document, onChange: onZoom,
  });
  const opened = viewFromUrl(params);
  // ?bins= without a band: the whole stream at that resolution, not the plot's width.
  const fixedBins = opened.spanHz ? undefined : opened.bins;
  if (opened.spanHz) {
    zoom.setWindow(opened.centerFreqHz - opened.spanHz / 2, opened.centerFreqHz + opened.spanHz / 2,
      false);
  }
  // The view is kept in the page's own URL, so a reload or a shared link opens it.
  const detections = new Detections(client, {
    panel: $("detections-panel"), list: $("detections"), beep: $("beep"),
  }, () => {
    if (el.side.hidden) {
      el.side.hidden = false;
      layoutDirty = true; // the plots just got narrower
    }
    view.traceDirty = true;
    requestDraw();
  });
  const control = new Control(client, {
    panel: $("control-panel"), lease: $("control-lease"), acquire: $("control-acquire"),
    release: $("control-release"), take: $("control-take"), form: $("control-form"),
    settings: $("control-settings"), tap: $("control-tap"), error: $("control-error"),
  }, {
    notice: (text) => showNotice(text),
    name: params.get("name"), // what others see for this page's lease
    shown: () => {
      if (el.side.hidden) {
        el.side.hidden = false;
        layoutDirty = true; // the plots just got narrower
        requestDraw();
      }
    },
    surfaces: [el.spectrum, el.waterfall],
    hzAt: (clientX) => {
      const band = shownBand();
      const box = plotBox();
      const fraction = (clientX - box.left) / box.width;
      return band && fraction >= 0 && fraction < 1
        ? band.startHz + fraction * (band.stopHz - band.startHz) : null;
    },
  });
  const views = new ViewRequester(client, () => {
    const url = new URL(urlWithView(location.href, zoom.zoomWindow, view.fpsDivisor));
    if (fixedBins && !zoom.zoomed) url.searchParams.set("bins", String(fixedBins));
    history.replaceState(history.state, "", url.href);
  });

  const banner = new OutageBanner(el.outage);
  const announcer = new Announcer($("announce"));
  const pause = new Pause(el.pause, el.paused, (paused) => {
    announcer.say(paused ? "Paused" : "Live");
    if (!paused) waterfall.markSkipped(); // the rows not drawn, then the live stream
    view.traceDirty = true;
    requestDraw();
  });
  const readout = new Readout(el.readout, [el.spectrum, el.waterfall], {
    plotBox, spectrumBox: () => el.spectrum.getBoundingClientRect(), shownBand, levels: levelsAt,
    history: waterfall.history,
  });
  setUpFullscreen({ button: el.fullscreen, exit: el.fullscreenExit }, el.plots, () => {
    layoutDirty = true;
    requestDraw();
  });
  const redraw = () => {
    view.traceDirty = true;
    requestDraw();
  };
  const markers = new Markers({
    spectrum: el.spectrum, list: $("marker-list"), peak: $("marker-peak"), left: $("marker-left"),
    right: $("marker-right"), delta: $("marker-delta"), clear: $("marker-clear"),
  }, {
    trace: shownTrace, window: shownBand, plotBox, pointer: () => readout.pointer,
    placeOnClick: () => !($("control-tap").checked && control.holds), // a click tunes then
    changed: redraw,
  });
  setUpHelp($("help"), $("help-button"), MARKER_KEYS);
  const summary = new PlotSummary($("plot-summary"), { spectrum: el.spectrum }, {
    trace: shownTrace, window: shownBand, range: () => view.range, paused: () => pause.paused,
  });
  const cursorSay = $("cursor-say");
  const cursor = new KeyboardCursor({ spectrum: el.spectrum, waterfall: el.waterfall }, readout, {
    trace: shownTrace, window: shownBand, plotBox,
    spectrumBox: () => el.spectrum.getBoundingClientRect(), rows: WATERFALL_ROWS,
    changed: redraw, say: (text) => { cursorSay.textContent = text; },
  });

  /** What each trace is called: its detector, else its place. */
  function traceLabel(key) {
    return key === "first" ? view.detector || "trace 1" : view.secondDetector || "trace 2";
  }

  /** The traces of `frame` to draw ({key, values}, bottom first): the second under the
   * first, or the one chosen. The last is the one the waterfall and the peak hold follow. */
  function tracesOf(frame) {
    if (!frame) return [];
    const first = { key: "first", values: frame.power };
    if (!frame.secondPowerDb || view.traces === "first") return [first];
    const second = { key: "second", values: frame.secondPowerDb };
    return view.traces === "second" ? [second] : [second, first];
  }

  /** The traces of the latest frame with their bins ({key, sources}, as tracesOf), each
   * filled in from the whole-stream frame while a new window's frames are awaited. */
  function traceSources() {
    const wide = view.awaitingView && view.wide !== view.latest ? view.wide : null;
    const wideTraces = tracesOf(wide?.frame);
    return tracesOf(view.latest).map(({ key, values }) => {
      const sources = [{ values, grid: view.axis }];
      const under = wideTraces.find((t) => t.key === key);
      if (under) sources.push({ values: under.values, grid: wide.grid });
      return { key, sources };
    });
  }

  /** The trace the waterfall follows in the frame drawn, with its bins ({values, grid}),
   * or null: what markers and the summary read. */
  function shownTrace() {
    const trace = tracesOf(view.latest).at(-1);
    return trace && view.axis?.bins === trace.values.length
      ? { values: trace.values, grid: view.axis } : null;
  }

  /** The band the plots show: the zoomed window, else the whole stream (or, before its
   * band is known, the latest frame's). */
  function shownBand() {
    return zoom.window ?? view.axis;
  }

  /** The plot's width in device pixels: the resolution to ask the server for. */
  function plotPixels() {
    return spectrum.plot.width;
  }

  /** A zoom or pan: draw what is here into the new window at once, start a new waterfall
   * segment (one per gesture: the rows during it each show the window of their moment),
   * and ask the server for the window at the plot's resolution. */
  function onZoom({ gestureStart }) {
    view.awaitingView = true;
    if (gestureStart) waterfall.pushMarker(ROW_VIEW);
    el.zoomReset.hidden = !zoom.zoomed;
    view.traceDirty = true;
    requestDraw();
    askForView();
  }

  function askForView(options) {
    const bins = zoom.zoomed ? plotPixels() : fixedBins ?? plotPixels();
    views.request(view.streamId, zoom.zoomWindow, bins, view.fpsDivisor, options);
  }

  function requestDraw() {
    if (rafPending) return;
    rafPending = true;
    requestAnimationFrame((now) => timed(work.draws, drawNow, now));
  }

  function drawNow(now) {
    rafPending = false;
    if (layoutDirty) {
      const plotBox = el.waterfall.getBoundingClientRect();
      const spectrumBox = el.spectrum.getBoundingClientRect();
      spectrum.layout(plotBox.left - spectrumBox.left, plotBox.width);
      waterfall.configure(plotPixels());
      layoutDirty = false;
      view.traceDirty = true;
      colorbarDirty = true;
      timeAxisDirty = true;
    }
    if (view.auto && view.latest && now - autoRange.last >= AUTO_RANGE_INTERVAL_MS) {
      // The range fits the frame's bins, also those outside a window that is not the view's.
      autoRange.last = now;
      const [min, max] = autoRange.fit(tracesOf(view.latest).map((t) => t.values), view.range);
      if (min !== view.range[0] || max !== view.range[1]) setRange(min, max, true);
    }
    if (colorbarDirty) {
      drawColorbar(el.colorbar, view.colormap, ...view.range);
      colorbarDirty = false;
    }
    if (waterfall.pending > 0 || waterfall.skippedSinceDraw > 0) {
      const drawn = waterfall.draw(lut, ...view.range);
      if (drawn.rows > 0) {
        detections.markWaterfall(el.waterfall, shownBand(), waterfall.history.pushed);
      }
      view.counters.rowsDrawn += drawn.rows;
      view.counters.gapRowsDrawn += drawn.gapRows;
      timeAxisDirty = true;
    }
    if (repaintDirty) {
      waterfall.repaint(lut, ...view.range);
      detections.redrawWaterfall(el.waterfall, waterfall.history.pushed);
      view.counters.repaints += 1;
      repaintDirty = false;
    }
    if (timeAxisDirty) {
      timeAxis = drawTimeAxis(el.waterfallTime, waterfall.history);
      timeAxisDirty = false;
    }
    if (view.traceDirty) {
      const traces = traceSources();
      spectrum.draw({
        traces,
        peak: view.peakHold && view.peak ? { values: view.peak, grid: view.peakGrid } : null,
        dbMin: view.range[0],
        dbMax: view.range[1],
        window: shownBand(),
        legend: view.secondDetector
          ? traces.map(({ key }) => ({ key, label: traceLabel(key) })).reverse() : null,
        marks: detections.marks(),
      });
      markers.draw(spectrum.ctx, spectrum.plot, shownBand(), ...view.range, spectrum.dpr);
      cursor.draw(spectrum.ctx, spectrum.plot, shownBand(), spectrum.dpr);
      markers.render();
      view.tracesDrawn = traces.map((t) => t.key);
      if (view.latest) view.counters.framesDrawn += 1;
      view.traceDirty = false;
      readout.refresh(); // the pointer may not move: the values under it do
    }
  }

  function setRange(min, max, fromAuto = false) {
    if (min !== view.range[0] || max !== view.range[1]) repaintDirty = true;
    view.range = [min, max];
    if (!fromAuto) setAuto(false);
    for (const [input, value] of [[el.dbMin, min], [el.dbMax, max]]) {
      if (document.activeElement !== input) input.value = String(value);
    }
    colorbarDirty = true;
    view.traceDirty = true;
    requestDraw();
  }

  function setAuto(on) {
    view.auto = on;
    el.auto.setAttribute("aria-pressed", String(on));
    if (on) {
      autoRange.last = -Infinity;
      requestDraw();
    }
  }

  function resetPeak() {
    if (view.peak) view.peak.fill(-Infinity);
    view.traceDirty = true;
    requestDraw();
  }

  /** Show a notice for 6 s; one that comes within 2 s of another is shown beside it (a
   * retune and the frames it dropped, say), the last three at most. */
  function showNotice(text) {
    const now = performance.now();
    const recent = !el.notice.hidden && now - (showNotice.at ?? -Infinity) < 2000;
    showNotice.shown = recent ? [...(showNotice.shown ?? []).slice(-2), text] : [text];
    showNotice.at = now;
    view.notices.push(text);
    if (view.notices.length > 10) view.notices.shift();
    text = showNotice.shown.join("  ·  ");
    el.notice.textContent = text;
    el.notice.title = text;
    el.notice.hidden = false;
    clearTimeout(showNotice.timer);
    showNotice.timer = setTimeout(() => { el.notice.hidden = true; }, 6000);
  }

  function updateStreamInfo() {
    const a = view.axis;
    if (!a) return;
    const name = view.streamName ? `${view.streamName} · ` : "";
    const detectors = view.secondDetector
      ? `${traceLabel("first")} + ${traceLabel("second")} · `
      : view.detector ? `${view.detector} · ` : "";
    el.streamInfo.textContent = `${name}${detectors}${(a.centerHz / 1e6).toFixed(3)} MHz · span ` +
      `${formatHz(a.spanHz)} · ${a.bins} bins · RBW ${formatHz(a.spanHz / a.bins)}`;
  }

  /** Show the trace control (labelled with the detectors) for a stream with a second trace. */
  function updateTraceControl() {
    el.traces.hidden = !view.secondDetector;
    for (const button of el.traceButtons) {
      const { show } = button.dataset;
      button.setAttribute("aria-pressed", String(show === view.traces));
      const name = button.querySelector(".name");
      if (name) name.textContent = traceLabel(show);
      const swatch = button.querySelector(".swatch");
      if (swatch) swatch.style.background = COLORS.trace[show];
    }
  }

  function setTraces(show) {
    view.traces = show;
    updateTraceControl();
    autoRange.last = -Infinity;
    resetPeak(); // the peak hold follows the waterfall's trace, which may have changed
  }

  /** Ask for the second trace in the format this client gets now: the one it asked for,
   * else the stream's own. */
  function askForSecondTrace(stream) {
    const asked = client.format;
    const streamOwn = asked.encoding === undefined;
    const encoding = streamOwn ? stream.encoding : asked.encoding;
    client.setFormat({
      encoding: ENCODINGS.includes(encoding) ? encoding : "float32",
      compress: asked.compress,
      stepDb: !streamOwn ? asked.stepDb : encoding === "uint8" ? stream.step_db ?? 0 : 0,
      secondTrace: true,
    });
  }

  function setAxis(centerHz, spanHz, bins) {
    view.axis = binGrid(centerHz, spanHz, bins);
    updateStreamInfo();
  }

  /** The whole stream's band, from hello or a frame of all of it. */
  function setBand(centerHz, spanHz, bins) {
    const grid = binGrid(centerHz, spanHz, bins);
    const band = zoom.band;
    if (band && band.startHz === grid.startHz && band.stopHz === grid.stopHz) return;
    zoom.setBand(grid.startHz, grid.stopHz, grid.binHz);
    view.traceDirty = true;
  }

  /** Whether a frame of `grid` is all of the stream (the widest frames it sends). */
  function isWholeStream(grid) {
    const band = zoom.band;
    return !band || grid.spanHz >= (band.stopHz - band.startHz) * (1 - 1e-9);
  }


  // -- client events -----------------------------------------------------------------------

  client.addEventListener("state", (event) => {
    const { attempt, delayMs, authFailed } = event.detail;
    const state = authFailed ? "unauthorized" : event.detail.state;
    view.state = state;
    view.states.push(state);
    if (view.states.length > RECENT_STATES) view.states.shift();
    el.status.dataset.state = state;
    let text = authFailed ? "token needed" : state;
    if (state === "reconnecting" && delayMs !== undefined) {
      text = `reconnecting in ${(delayMs / 1000).toFixed(1)} s` +
        (attempt ? ` (attempt ${attempt})` : "");
    }
    el.stateText.textContent = text;
    announcer.state(state, attempt);
    banner.update(state, event.detail);
    if (view.streamError) showStreamError(); // the pill says so while connected
  });

  /** Say on the page that the stream asked for is not there (or clear it). */
  function showStreamError() {
    el.streamError.hidden = !view.streamError;
    el.streamError.textContent = view.streamError ?? "";
    if (view.streamError) announcer.error(view.streamError);
    if (view.streamError && view.state === "open") {
      el.status.dataset.state = "error";
      el.stateText.textContent = "no such stream";
    }
  }

  client.addEventListener("hello", (event) => {
    const streams = event.detail.streams ?? [];
    if (view.streamId === null && streams.length) view.streamId = streams[0].id;
    view.streamError = params.has("stream") ? streamProblem(params.get("stream"), streams) : null;
    showStreamError();
    detections.streamId = view.streamId;
    const stream = streams.find((s) => s.id === view.streamId);
    view.detector = stream?.detector ?? "";
    view.secondDetector = stream?.second_detector ?? "";
    updateTraceControl();
    if (view.secondDetector && !client.format.secondTrace) askForSecondTrace(stream);
    if (stream) {
      view.streamName = stream.name ?? "";
      view.streamFps = Number(stream.fps);
      if (stream.bins > 0 && stream.span_hz > 0) {
        if (!view.axis) setAxis(stream.center_freq_hz, stream.span_hz, stream.bins);
        setBand(stream.center_freq_hz, stream.span_hz, stream.bins);
        requestDraw();
      }
      updateStreamInfo();
    }
  });

  client.addEventListener("view", (event) => {
    const reply = event.detail;
    if (view.streamId !== null && reply.stream_id !== view.streamId) return;
    view.awaitingView = false; // the frames from now on are of the view asked for
    if (reply.snapped) showNotice(`view: ${reply.message ?? "snapped to one in use"}`);
  });

  client.addEventListener("frame", (event) => timed(work.frames, onFrame, event));

  function onFrame(event) {
    const { frame, ageMs } = event.detail;
    if (view.streamId === null) view.streamId = frame.streamId;
    if (frame.streamId !== view.streamId) return;
    noteMissed(frame);
    view.counters.framesReceived += 1;
    view.ageMs = Number.isFinite(ageMs) ? ageMs : Date.now() - frame.timestampMs;
    if (pause.paused) {
      pause.countFrame(); // received and counted, not drawn
      return;
    }
    const { binCount, centerFreqHz, spanHz } = frame;
    const a = view.peak ? view.axis : null;
    if (!a || a.centerHz !== centerFreqHz || a.spanHz !== spanHz || a.bins !== binCount) {
      const reply = views.answer;
      const ofView = reply !== null && reply.center_freq_hz === centerFreqHz &&
        reply.span_hz === spanHz && reply.bins === binCount;
      setAxis(centerFreqHz, spanHz, binCount);
      if (a && !ofView) {
        // The radio was retuned: the view keeps its bins, now at other frequencies.
        view.counters.retunes += 1;
        waterfall.pushMarker(ROW_RETUNE);
        if (a.spanHz === spanHz && a.bins === binCount) {
          zoom.shift(centerFreqHz - a.centerHz);
          if (zoom.zoomed) askForView(); // the same window, for the next connections
        }
        view.peak = null;
      }
      // The peak hold follows a zoom; a retune starts it over.
      view.peak = view.peak ? regrid(view.peak, view.peakGrid, view.axis)
        : new Float32Array(binCount).fill(-Infinity);
      view.peakGrid = view.axis;
    }
    if (isWholeStream(view.axis)) {
      setBand(centerFreqHz, spanHz, binCount);
      view.wide = { frame, grid: view.axis };
    }
    view.latest = frame;
    if (frame.secondPowerDb) view.counters.secondFramesReceived += 1;
    // The peak hold sees every frame, shown or not.
    const shown = tracesOf(frame).at(-1).values;
    const peak = view.peak;
    for (let i = 0; i < binCount; i++) if (shown[i] > peak[i]) peak[i] = shown[i];
    if (document.hidden) {
      // A tab in the background draws nothing (no animation frames come): it keeps only
      // the latest frame, drawn when it is shown again.
      view.counters.framesWhileHidden += 1;
      return;
    }
    waterfall.pushSpectrum(traceSources().at(-1).sources, shownBand(), frame.timestampMs);
    view.traceDirty = true;
    requestDraw();
  }

  // A gap comes just before the frame after it: its notice needs that frame's timestamp.
  client.addEventListener("gap", (event) => {
    const { streamId } = event.detail;
    if (view.streamId !== null && streamId !== view.streamId) return;
    view.counters.gapEvents += 1;
    waterfall.pushMarker(ROW_GAP);
    requestDraw();
    view.pendingGap = event.detail;
  });

  /** Count and tell the frames missed before `frame` (a gap just announced), then keep its
   * time. The time between two frames: the stream's rate at this page's divisor. */
  function noteMissed(frame) {
    if (view.pendingGap) {
      const periodMs = view.streamFps > 0 ? (1000 * view.fpsDivisor) / view.streamFps : NaN;
      const { missed, text } = gapNotice(view.pendingGap, frame.timestampMs, view.lastFrameMs,
        periodMs);
      view.counters.framesMissed += missed;
      view.pendingGap = null;
      showNotice(text);
    }
    view.lastFrameMs = frame.timestampMs;
  }

  // The side panels, hidden until their first message: type -> [panel, list, entries].
  const panels = {
    gps: [el.gpsPanel, el.gps, gpsEntries],
    status: [el.devicePanel, el.device, statusEntries],
  };
  for (const [type, [panel, list, entriesOf]] of Object.entries(panels)) {
    client.addEventListener(type, (event) => {
      view.counters[type] += 1;
      renderList(list, entriesOf(event.detail));
      if (panel.hidden) {
        panel.hidden = false;
        el.side.hidden = false;
        layoutDirty = true; // the plots just got narrower
        requestDraw();
      }
    });
  }

  // Operators and admins start and stop the server's recordings (recording.js).
  new RecordButton($("record"), client, (text) => showNotice(text));

  // argos-replay says so in every status message: the replay bar (replay.js).
  new ReplayBar({
    bar: $("replay-bar"), play: $("replay-play"), position: $("replay-position"),
    time: $("replay-time"), speed: $("replay-speed"), loop: $("replay-loop"),
    name: $("replay-name"), badge: $("replay"), badgeText: $("replay-text"),
  }, client);

  client.addEventListener("warning", (event) => {
    view.counters.warnings += 1;
    showNotice(`skipped: ${event.detail.message}`);
  });

  client.addEventListener("error", (event) => {
    view.counters.errors += 1;
    const { code, message } = event.detail ?? {};
    if (code === "auth_failed") return; // the login form says so
    showNotice(`server: ${message ?? code ?? "error"}`);
    // A resume refused after a server restart is expected there; the gap notice says it.
    if (code !== "resume_refused") announcer.error(`Server error: ${message ?? code ?? "error"}`);
  });

  // -- controls ----------------------------------------------------------------------------

  for (const name of COLORMAP_NAMES) el.colormap.add(new Option(name, name));
  el.colormap.value = view.colormap;
  el.colormap.addEventListener("change", () => {
    view.colormap = el.colormap.value;
    lut = makeLut(view.colormap);
    colorbarDirty = true;
    repaintDirty = true; // the rows kept, in the new colours
    requestDraw();
  });

  // A range that cannot be (min not below max) keeps the one shown and says why.
  const onRangeInput = () => {
    const problem = rangeProblem(el.dbMin.value, el.dbMax.value);
    el.rangeError.hidden = problem === null;
    for (const input of [el.dbMin, el.dbMax]) input.setAttribute("aria-invalid", String(!!problem));
    if (problem) {
      el.rangeError.textContent = `${problem}: still showing ${view.range[0]} to ${view.range[1]} dB`;
      return;
    }
    setRange(Number(el.dbMin.value), Number(el.dbMax.value));
  };
  el.dbMin.addEventListener("change", onRangeInput);
  el.dbMax.addEventListener("change", onRangeInput);
  el.auto.addEventListener("click", () => setAuto(!view.auto));
  el.peakHold.addEventListener("change", () => {
    view.peakHold = el.peakHold.checked;
    resetPeak();
  });
  el.peakReset.addEventListener("click", resetPeak);
  for (const button of el.traceButtons) {
    button.addEventListener("click", () => setTraces(button.dataset.show));
  }
  setUpRateControl(el.rate, view.fpsDivisor, (divisor) => {
    view.fpsDivisor = divisor;
    askForView({ now: true });
  });
  el.zoomReset.hidden = !zoom.zoomed;
  el.zoomReset.addEventListener("click", () => zoom.reset());

  // The waterfall's speed: one row per N frames, combined by power average or peak.
  for (const every of ROW_EVERY_CHOICES) {
    el.rowEvery.add(new Option(every === 1 ? "every frame" : `1 per ${every}`, String(every)));
  }
  for (const combine of ROW_COMBINE_CHOICES) {
    el.rowCombine.add(new Option(combine === "peak" ? "peak hold" : "power average", combine));
  }
  const onSpeed = () => {
    waterfall.setSpeed(Number(el.rowEvery.value), el.rowCombine.value);
    el.rowCombine.hidden = el.rowEvery.value === "1"; // nothing to combine
  };
  el.rowEvery.value = ROW_EVERY_CHOICES.map(String).includes(params.get("rows_every"))
    ? params.get("rows_every") : "1";
  el.rowCombine.value = ROW_COMBINE_CHOICES.includes(params.get("row_combine"))
    ? params.get("row_combine") : ROW_COMBINE_CHOICES[0];
  el.rowEvery.addEventListener("change", onSpeed);
  el.rowCombine.addEventListener("change", onSpeed);
  onSpeed();

  /** The levels of the traces drawn at `hz` in the frame drawn, top trace first. */
  function levelsAt(hz) {
    const a = view.axis;
    if (!a) return "";
    const bin = Math.floor((hz - a.startHz) / a.binHz);
    const inFrame = view.latest?.binCount === a.bins && bin >= 0 && bin < a.bins;
    const traces = inFrame ? tracesOf(view.latest).reverse() : [];
    return traces.filter(({ values }) => Number.isFinite(values[bin]))
      .map(({ key, values }) => (traces.length > 1 ? `${traceLabel(key)} ` : "") +
        `${values[bin].toFixed(1)} dB`).join(" · ");
  }

  el.exportPng.addEventListener("click", async () => {
    const blob = await composePng(
      [el.spectrum, el.colorbar, el.waterfall, el.waterfallTime], COLORS.background);
    download(blob, exportName(shownBand() && (shownBand().startHz + shownBand().stopHz) / 2, "png"));
  });
  el.exportCsv.addEventListener("click", () => {
    if (!view.latest || !view.axis) {
      showNotice("no trace to export yet");
      return;
    }
    const traces = tracesOf(view.latest).reverse()
      .map(({ key, values }) => ({ label: traceLabel(key), values }));
    download(new Blob([traceCsv(view.axis, traces)], { type: "text/csv" }),
      exportName(view.axis.centerHz, "csv"));
  });

  let laidOutPixels = 0;
  new ResizeObserver(() => {
    layoutDirty = true;
    requestDraw();
    // Once the plot has a width (or a new one), ask for the window (zoomed or not) at it.
    requestAnimationFrame(() => {
      if (plotPixels() === laidOutPixels || plotPixels() === 0) return;
      laidOutPixels = plotPixels();
      askForView();
    });
  }).observe(el.spectrum);

  // -- status bar --------------------------------------------------------------------------

  let lastTick = performance.now();
  let lastFrames = 0;
  setInterval(() => {
    const now = performance.now();
    const fps = ((view.counters.framesReceived - lastFrames) * 1000) / (now - lastTick);
    lastTick = now;
    lastFrames = view.counters.framesReceived;
    el.fps.textContent = view.state === "open" ? `${fps.toFixed(1)} fps` : "–";
    el.missed.textContent = String(view.counters.framesMissed);
    banner.tick();
    pause.render();
    el.age.textContent = view.state === "open" && Number.isFinite(view.ageMs)
      ? `${Math.round(view.ageMs)} ms` : "–";
  }, STATUS_INTERVAL_MS);

  // -- test and console hook ---------------------------------------------------------------

  window.argosViewer = {
    client,
    spectrumCanvas: el.spectrum,
    waterfallCanvas: el.waterfall,
    /** A snapshot of what the viewer shows and has done. */
    stats() {
      return {
        state: view.state,
        states: [...view.states],
        ...view.counters,
        rowsSkipped: waterfall.rowsSkipped,
        pendingRows: waterfall.pending,
        waterfallColumns: waterfall.columns,
        waterfallRows: WATERFALL_ROWS,
        dbMin: view.range[0],
        dbMax: view.range[1],
        auto: view.auto,
        peakHold: view.peakHold,
        colormap: view.colormap,
        detector: view.detector,
        secondDetector: view.secondDetector,
        traces: view.traces,
        tracesDrawn: [...view.tracesDrawn],
        axis: view.axis ? { ...view.axis } : null,
        window: shownBand() ? { startHz: shownBand().startHz, stopHz: shownBand().stopHz } : null,
        zoomed: zoom.zoomed,
        fpsDivisor: view.fpsDivisor,
        lastView: views.answer ? { ...views.answer } : null,
        viewAsked: views.asked ? { ...views.asked } : null,
        viewPending: views.pending,
        viewsAsked: views.sent,
        viewReplies: views.answers,
        plotPixels: plotPixels(),
        plot: { ...spectrum.plot }, // the plot area on the spectrum canvas, device pixels
        streamId: view.streamId,
        lastSequence: view.latest ? Number(view.latest.sequence) : null,
        detections: detections.events,
        detectionsListed: detections.recent.length,
        detectionsOnAir: detections.active.size,
        notices: [...view.notices],
        control: { shown: !el.side.hidden && !$("control-panel").hidden, holds: control.holds,
                   tunes: control.tunes, tuned: control.tuned,
                   holder: control.state?.holder ?? null },
        marksDrawn: spectrum.marksDrawn ?? 0,
        markLabels: spectrum.markLabels ?? [],
        legendBox: spectrum.legendDrawn ?? null,
        waterfallMarks: detections.waterfallMarks,
        beeps: detections.beeps,
        ageMs: view.ageMs,
        paused: pause.paused,
        framesWhilePaused: pause.framesWhilePaused,
        streamError: view.streamError,
        outage: banner.down ? { sinceMs: banner.downSinceMs, nextAttemptMs: banner.nextAttemptMs }
          : null,
        readout: { text: el.readout.textContent, surface: readout.surface, rowAge: readout.rowAge,
                   refreshes: readout.refreshes },
        historyRows: waterfall.history.count,
        rowsEvery: waterfall.combiner.every,
        rowsMade: waterfall.rowsMade,
        rowCombine: waterfall.combiner.combine,
        timeLabels: [...timeAxis.labels],
        timeSymbols: [...timeAxis.symbols],
        markers: markers.state(),
        said: [...announcer.said],
        summary: { text: $("plot-summary").textContent, updates: summary.updates },
        cursor: { on: cursor.on, hz: cursor.hz, age: cursor.age },
        client: { ...client.stats },
        shared: shared.stats(),
        work: { frames: { ...work.frames }, draws: { ...work.draws },
                columnsRemembered: frameColumns.hits, columnsReduced: frameColumns.misses },
      };
    },
    setRange: (min, max) => setRange(min, max),
    zoom,
    setAuto,
    resetPeak,
  };

  // Back in the foreground: a grey row for the rows not drawn, then the latest frame.
  let hiddenFramesSeen = 0;
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    if (view.counters.framesWhileHidden > hiddenFramesSeen) waterfall.markSkipped();
    hiddenFramesSeen = view.counters.framesWhileHidden;
    view.traceDirty = true;
    requestDraw();
  });

  setRange(...view.range, true);
  setAuto(view.auto);
  requestDraw();
  const stream = params.get("stream") ?? "";
  shared.start(`${client.url} stream=${stream}`).then(() => client.connect());
}

main();
