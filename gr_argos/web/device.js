// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the device panel's lines from a `status` message (docs/protocol.md):
// each known key with a label and its value in the unit an operator reads (MHz, MS/s, dB),
// and any other key still shown, its name made readable and its unit taken from its suffix
// (`_hz`, `_db`, `_s`, `_m`).

const GROUPED = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 6 });
const NBSP = "\u00a0"; // between a number and its unit: they stay on one line

/** 2048 -> "2,048"; 7999872.5 -> "7,999,872.5". */
export function count(value) {
  return GROUPED.format(value);
}

/** A frequency in the unit that reads best: "100.000 MHz", "8 MHz", "12.5 kHz". */
export function frequency(hz, decimals = null) {
  const abs = Math.abs(hz);
  const [scale, unit] = abs >= 1e9 ? [1e9, "GHz"] : abs >= 1e6 ? [1e6, "MHz"]
    : abs >= 1e3 ? [1e3, "kHz"] : [1, "Hz"];
  const text = decimals === null ? String(+(hz / scale).toPrecision(9)) : (hz / scale).toFixed(decimals);
  return `${text}${NBSP}${unit}`;
}

function sampleRate(value) {
  return `${+(value / 1e6).toPrecision(6)}${NBSP}MS/s`;
}

function decibels(value) {
  return `${+value.toFixed(2)}${NBSP}dB`;
}

function onOff(value) {
  return value === true ? "on" : value === false ? "off" : plain(value);
}

/** A value with no known unit. */
export function plain(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") return Number.isInteger(value) ? count(value) : count(+value.toPrecision(6));
  if (Array.isArray(value)) return value.map(plain).join(", ");
  if (typeof value === "object") {
    const entries = Object.entries(value);
    return entries.length ? entries.map(([k, v]) => `${readable(k)} ${plain(v)}`).join(", ") : "none";
  }
  return String(value);
}

// Known keys: [label, format]. Their order is the panel's.
const KNOWN = {
  name: ["Stream", plain],
  source: ["Source", plain],
  device: ["Device", plain],
  args: ["Device args", plain],
  center_freq_hz: ["Centre", (v) => frequency(v, 3)],
  span_hz: ["Span", (v) => frequency(v)],
  bins: ["Bins", count],
  samp_rate: ["Sample rate", sampleRate],
  samp_rate_measured: ["Measured rate", sampleRate],
  fps: ["Frame rate", (v) => `${+v.toFixed(1)}${NBSP}frames/s`],
  frames: ["Frames", count],
  frames_skipped: ["Frames skipped", count],
  overflows: ["Overflows", count],
  gain: ["Gain", decibels],
  gain_db: ["Gain", decibels],
  lna_gain: ["LNA gain", decibels],
  vga_gain: ["VGA gain", decibels],
  if_gain: ["IF gain", decibels],
  bb_gain: ["BB gain", decibels],
  amp: ["Amplifier", onOff],
  detector: ["Detector", plain],
  second_detector: ["Second trace", plain],
  window: ["Window", plain],
  overlap: ["Overlap", (v) => `${+(v * 100).toFixed(1)}${NBSP}%`],
  fft_per_frame: ["FFTs per frame", count],
  fft_sample_fraction: ["Samples in FFTs", (v) => `${+(v * 100).toFixed(1)}${NBSP}%`],
  detect_log_written: ["Detections logged", count],
  detect_log_failed: ["Detections not logged", count],
};
const UNIT_SUFFIXES = [
  ["_hz", (v) => frequency(v)], ["_db", decibels], ["_ms", (v) => `${plain(v)}${NBSP}ms`],
  ["_s", (v) => `${plain(v)}${NBSP}s`], ["_m", (v) => `${plain(v)}${NBSP}m`],
];
// control has a panel of its own, a replay its bar (replay.js)
const HIDDEN = new Set(["type", "stream", "control", "replay"]);
// The server's recorders (docs/recording.md), each said in a few words.
const RECORDERS = { recorder: "Recording", iq_recorder: "IQ recording" };

/** "lna_gain_db" -> "Lna gain db"; "sampleCount" -> "Sample count". */
export function readable(key) {
  const words = key.replace(/([a-z])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " ").trim().toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function unknownEntry(key, value) {
  if (typeof value === "number") {
    for (const [suffix, format] of UNIT_SUFFIXES) {
      if (key.endsWith(suffix)) return [readable(key.slice(0, -suffix.length)), format(value)];
    }
  }
  return [readable(key), plain(value)];
}

/** A recorder's state in a few words: on (MB written, anything dropped), stopped (by a
 * client), or what failed. */
export function recorderText(recorder) {
  if (!recorder || typeof recorder !== "object") return plain(recorder);
  if (recorder.error) return `failed: ${recorder.error}`;
  if (!recorder.started) return "stopped";
  const dropped = (recorder.dropped_frames ?? 0) + (recorder.dropped_samples ?? 0);
  return [recorder.recording ? "on" : "starting",
    `${count(+((recorder.bytes ?? 0) / 1e6).toFixed(1))}${NBSP}MB`,
    dropped ? `${count(dropped)} dropped` : ""].filter(Boolean).join(" · ");
}

/** The server's own part: its refusals, whether it sheds load, its recorders. */
function serverEntries(server) {
  if (!server || typeof server !== "object") return [["Server", plain(server)]];
  const entries = [];
  if ("refused" in server) {
    const refused = Object.entries(server.refused ?? {});
    entries.push(["Refused", refused.length
      ? refused.map(([why, n]) => `${count(n)} (${why.replace(/_/g, " ")})`).join(", ") : "none"]);
  }
  if ("shedding" in server) entries.push(["Shedding load", server.shedding ? "yes" : "no"]);
  for (const [key, value] of Object.entries(server)) {
    if (key in RECORDERS) entries.push([RECORDERS[key], recorderText(value)]);
    else if (key !== "refused" && key !== "shedding") entries.push(unknownEntry(key, value));
  }
  return entries;
}

/** The device panel's [label, text] lines for a `status` message: known keys first. */
export function statusEntries(message) {
  const entries = [];
  for (const [key, [label, format]] of Object.entries(KNOWN)) {
    const value = message[key];
    if (value === undefined) continue;
    entries.push([label, typeof value === "number" || format === plain || format === onOff
      ? format(value) : plain(value)]);
  }
  for (const [key, value] of Object.entries(message)) {
    if (HIDDEN.has(key) || key in KNOWN) continue;
    if (key === "server") entries.push(...serverEntries(value));
    else entries.push(unknownEntry(key, value));
  }
  return entries;
}
