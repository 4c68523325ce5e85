// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the current view downloaded, as a picture (PNG: the spectrum over the
// colour bar and the waterfall, as on screen) or as numbers (CSV: a row per bin of the
// frame drawn, its centre frequency and a level per trace).

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
 * The spectrum canvas above the colour bar and the waterfall, at the spectrum's device
 * pixels and laid out as on screen (the waterfall stretched to its box), as a PNG Blob.
 */
export function composePng({ spectrum, colorbar, waterfall }, background) {
  const boxOf = (canvas) => canvas.getBoundingClientRect();
  const top = boxOf(spectrum).top;
  const left = boxOf(spectrum).left;
  const scale = spectrum.width / Math.max(1, boxOf(spectrum).width);
  const bottom = Math.max(boxOf(colorbar).bottom, boxOf(waterfall).bottom);
  const out = document.createElement("canvas");
  out.width = spectrum.width;
  out.height = Math.round((bottom - top) * scale);
  const ctx = out.getContext("2d");
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, out.width, out.height);
  for (const canvas of [spectrum, colorbar, waterfall]) {
    const box = boxOf(canvas);
    ctx.drawImage(canvas, (box.left - left) * scale, (box.top - top) * scale,
      box.width * scale, box.height * scale);
  }
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
