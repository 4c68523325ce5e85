// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the scales beside the waterfall. On its left the colour scale, labelled
// with the dB range; on its right the time axis: wall-clock labels (local time, from
// the frames' own timestamps, so they say when a row was measured, not when it was drawn) at
// round seconds or minutes, and a symbol beside each marker row: a cross where frames were
// lost, three dots where rows were skipped, a diamond at a retune and a bracket at a new
// window. The symbols are shapes, so the rows are told apart without their colours.

import { GAP_RGB, RETUNE_RGB, VIEW_RGB, colorAt } from "./colormap.js";
import { ROW_NAMES } from "./readout.js";

const STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
const LABEL_SPACING_PX = 40; // CSS pixels between two labels at least
const SYMBOL_SPACING_PX = 9; // a symbol this near the previous one is left out
const LABEL_COLOR = "#8a94a6"; // as the spectrum's labels
const DATA = ROW_NAMES.indexOf("data");
const rgb = ([r, g, b]) => `rgb(${r},${g},${b})`;

/** "07:41:10" (local time). */
function clock(ms) {
  const date = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

function symbol(ctx, kind, x, y, r) {
  ctx.beginPath();
  if (kind === "gap") { // a cross
    ctx.strokeStyle = rgb(GAP_RGB);
    ctx.moveTo(x - r, y - r);
    ctx.lineTo(x + r, y + r);
    ctx.moveTo(x + r, y - r);
    ctx.lineTo(x - r, y + r);
    ctx.stroke();
  } else if (kind === "skipped") { // three dots
    ctx.fillStyle = "#aaaaaa"; // lighter than the rows' grey: it is on a dark ground
    for (const dx of [-r, 0, r]) ctx.fillRect(x + dx - r / 4, y - r / 4, r / 2, r / 2);
  } else if (kind === "retune") { // a diamond
    ctx.fillStyle = rgb(RETUNE_RGB);
    ctx.moveTo(x, y - r);
    ctx.lineTo(x + r, y);
    ctx.lineTo(x, y + r);
    ctx.lineTo(x - r, y);
    ctx.closePath();
    ctx.fill();
  } else if (kind === "view") { // a bracket
    ctx.strokeStyle = rgb(VIEW_RGB);
    ctx.moveTo(x + r / 2, y - r);
    ctx.lineTo(x - r / 2, y - r);
    ctx.lineTo(x - r / 2, y + r);
    ctx.lineTo(x + r / 2, y + r);
    ctx.stroke();
  }
}

/** `canvas` sized to its box in device pixels, cleared: {ctx, width, height, dpr}. */
function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const height = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height, dpr };
}

/** The colour scale left of the waterfall, labelled with the dB range. */
export function drawColorbar(canvas, colormap, dbMin, dbMax) {
  const { ctx, width, height, dpr } = fitCanvas(canvas);
  const barWidth = Math.round(8 * dpr);
  const barLeft = width - barWidth - Math.round(6 * dpr);
  for (let y = 0; y < height; y++) {
    const [r, g, b] = colorAt(colormap, 1 - y / Math.max(1, height - 1));
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(barLeft, y, barWidth, 1);
  }
  ctx.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
  ctx.fillStyle = LABEL_COLOR;
  ctx.textAlign = "right";
  ctx.textBaseline = "top";
  ctx.fillText(`${Math.round(dbMax)}`, barLeft - 4 * dpr, 0);
  ctx.textBaseline = "bottom";
  ctx.fillText(`${Math.round(dbMin)}`, barLeft - 4 * dpr, height);
}

/**
 * Draw the time axis for `history` (the RowHistory of readout.js: row `age` is the waterfall's
 * canvas row `age` of `history.rows`, stretched to the canvas's height) on `canvas`.
 * Returns what it drew, for tests: {labels: [{y, text}], symbols: [{y, kind}]}, y in CSS
 * pixels from the top.
 */
export function drawTimeAxis(canvas, history) {
  const { ctx, width, height, dpr } = fitCanvas(canvas);
  const rowPx = height / history.rows;
  // The time a CSS pixel covers, from the oldest and newest data rows.
  let newest = null;
  let oldest = null;
  for (let age = 0; age < history.count; age++) {
    if (history.kindAt(age) !== DATA) continue;
    newest ??= { age, timeMs: history.timeAt(age) };
    oldest = { age, timeMs: history.timeAt(age) };
  }
  const labels = [];
  // 10 px labels, smaller where the axis is too narrow for them (a phone).
  ctx.font = `${10 * dpr}px system-ui, sans-serif`;
  const labelWidth = ctx.measureText("00:00:00").width;
  if (labelWidth + 8 * dpr > width) {
    ctx.font = `${(10 * dpr * (width - 8 * dpr)) / labelWidth}px system-ui, sans-serif`;
  }
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  ctx.lineWidth = Math.max(1, dpr);
  if (newest && oldest && oldest.age > newest.age && newest.timeMs > oldest.timeMs) {
    const msPerCssPx = (newest.timeMs - oldest.timeMs) /
      (((oldest.age - newest.age) * rowPx) / dpr);
    const stepS = STEPS_S.find((s) => (s * 1000) / msPerCssPx >= LABEL_SPACING_PX) ?? STEPS_S.at(-1);
    const stepMs = stepS * 1000;
    let previous = null; // the newer data row's time step
    let lastY = -Infinity;
    for (let age = 0; age < history.count; age++) {
      if (history.kindAt(age) !== DATA) continue;
      const bucket = Math.floor(history.timeAt(age) / stepMs);
      if (previous !== null && bucket < previous) {
        // The round time previous * step lies between this row and the newer one.
        const y = age * rowPx;
        const text = clock(previous * stepMs);
        ctx.strokeStyle = LABEL_COLOR;
        ctx.beginPath();
        ctx.moveTo(0, y);
        ctx.lineTo(4 * dpr, y);
        ctx.stroke();
        const textY = Math.min(height - 6 * dpr, Math.max(6 * dpr, y));
        if (textY - lastY >= 12 * dpr) {
          ctx.fillStyle = LABEL_COLOR;
          ctx.fillText(text, 6 * dpr, textY);
          labels.push({ y: y / dpr, text });
          lastY = textY;
        }
      }
      previous = bucket;
    }
  }
  // A symbol beside each marker row (the first of a run close together).
  const symbols = [];
  let lastSymbolY = -Infinity;
  const r = 3 * dpr;
  for (let age = 0; age < history.count; age++) {
    const kind = ROW_NAMES[history.kindAt(age)];
    if (kind === "data") continue;
    const y = (age + 0.5) * rowPx;
    if (y - lastSymbolY < SYMBOL_SPACING_PX * dpr) continue;
    lastSymbolY = y;
    ctx.fillStyle = "rgba(7, 9, 13, 0.9)";
    ctx.fillRect(0, y - r - dpr, width, 2 * r + 2 * dpr);
    symbol(ctx, kind, width - r - 3 * dpr, y, r);
    symbols.push({ y: y / dpr, kind });
  }
  return { labels, symbols };
}
