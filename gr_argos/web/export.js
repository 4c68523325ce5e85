// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the current view downloaded, as a picture (PNG: the spectrum over the
// colour bar, the waterfall and its time axis, as on screen) or as numbers (CSV: a row per
// bin of the frame drawn, its centre frequency and a level per trace).

/** A file name for an export: "argos-100.000MHz-20261207T074109Z.png". */
export function exportName(centerHz, extension, nowMs = Date.now()) {
  const stamp = new Date(nowMs).toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const centre = Number.isFinite(centerHz) ? `-${(centerHz / 1e6).toFixed(3)}MHz` : "";
  return `argos${centre}-${stamp}.${extension}`;
}

/** Save `blob` as `name` through the browser's downloads. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * `canvases` laid out as on screen (each stretched to its box), the first's device pixels
 * to a CSS pixel, on `background`, as a PNG Blob: the spectrum, and under it the colour bar,
 * the waterfall and its time axis.
 */
export function composePng(canvases, background) {
  const boxes = canvases.map((canvas) => canvas.getBoundingClientRect());
  const scale = canvases[0].width / Math.max(1, boxes[0].width);
  const left = Math.min(...boxes.map((box) => box.left));
  const top = Math.min(...boxes.map((box) => box.top));
  const out = document.createElement("canvas");
  out.width = Math.round((Math.max(...boxes.map((box) => box.right)) - left) * scale);
  out.height = Math.round((Math.max(...boxes.map((box) => box.bottom)) - top) * scale);
  const ctx = out.getContext("2d");
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, out.width, out.height);
  canvases.forEach((canvas, i) => {
    const box = boxes[i];
    ctx.drawImage(canvas, (box.left - left) * scale, (box.top - top) * scale,
      box.width * scale, box.height * scale);
  });
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

/**
 * CSV text of the traces of one frame: a header `frequency_hz,level_db` (one trace) or
 * `frequency_hz,<label>_level_db,...` (several), then a row per bin: the bin's centre
 * (from `grid`, see zoom.js binGrid) and the levels, empty where a level is not finite.
 */
export function traceCsv(grid, traces) {
  const header = traces.length === 1 ? ["level_db"]
    : traces.map(({ label }) => `${label.replace(/[^A-Za-z0-9]+/g, "_")}_level_db`);
  const lines = [["frequency_hz", ...header].join(",")];
  for (let i = 0; i < grid.bins; i++) {
    const hz = grid.startHz + (i + 0.5) * grid.binHz;
    const levels = traces.map(({ values }) =>
      (Number.isFinite(values[i]) ? String(+values[i].toFixed(3)) : ""));
    lines.push([String(+hz.toFixed(3)), ...levels].join(","));
  }
  return `${lines.join("\n")}\n`;
}
