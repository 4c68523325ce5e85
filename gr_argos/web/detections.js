// SPDX-License-Identifier: GPL-3.0-or-later
// The viewer's detections: the signals the server reports (docs/detections.md) listed in a
// side panel with their time, frequency, width, duration, SNR and position, marked on the
// spectrum while they are on the air and on the waterfall row where each started, and a beep
// on each start when asked for.

/** Most recent detections listed. */
export const LISTED = 12;
/** An active signal not updated for this long is taken as ended (its end was lost). */
const STALE_MS = 5000;
/** Waterfall rows a start mark spans (the newest ones when it is drawn). */
export const MARK_ROWS = 12;
/** Starts waiting for the next waterfall rows at most (a burst of them keeps the newest). */
const PENDING_MARKS = 64;
/** A start mark's outline: white inside a black edge, seen on any colormap and by anyone
 * who cannot tell its colours apart (a shape, not a hue). */
const MARK_INNER = "#ffffff";
const MARK_EDGE = "#000000";

function mhz(hz) {
  return `${(hz / 1e6).toFixed(4)} MHz`;
}

function width(hz) {
  return hz >= 1e6 ? `${(hz / 1e6).toFixed(2)} MHz` : `${(hz / 1e3).toFixed(1)} kHz`;
}

function clock(ns) {
  const date = new Date(Number(BigInt(ns) / 1000000n));
  return date.toISOString().slice(11, 19);
}

/** One line of the list for a detection event: what a person reads first, first. */
export function describe(event) {
  const parts = [
    clock(event.start_ns),
    mhz(event.center_freq_hz),
    width(event.bandwidth_hz),
    event.event === "end" ? `${event.duration_s.toFixed(2)} s` : "on air",
    `${event.snr_db.toFixed(0)} dB SNR`,
  ];
  const gps = event.gps;
  if (gps && typeof gps.lat === "number" && typeof gps.lon === "number") {
    parts.push(`${gps.lat.toFixed(5)}, ${gps.lon.toFixed(5)}`);
  }
  return parts.join("  ·  ");
}

/** A rectangle's outline, `t` pixels thick, inside (x, y, w, h). */
function frame(ctx, style, x, y, w, h, t) {
  ctx.fillStyle = style;
  ctx.fillRect(x, y, w, t);
  ctx.fillRect(x, y + h - t, w, t);
  ctx.fillRect(x, y, t, h);
  ctx.fillRect(x + w - t, y, t, h);
}

/** A start's box: white inside a black edge, `top` rows down, MARK_ROWS high. */
function box(ctx, left, width, top) {
  frame(ctx, MARK_EDGE, left, top, width, MARK_ROWS, 1);
  frame(ctx, MARK_INNER, left + 1, top + 1, width - 2, MARK_ROWS - 2, 2);
}

export class Detections {
  /**
   * @param {EventTarget} client the ArgosClient (its "detection" events).
   * @param {{panel: HTMLElement, list: HTMLElement, beep: HTMLInputElement}} el
   * @param {() => void} changed called when the marks or the list change.
   */
  constructor(client, el, changed) {
    this.el = el;
    this.changed = changed;
    this.active = new Map(); // id -> latest event of a signal on the air
    this.recent = []; // latest event per id, newest first, at most LISTED
    this.events = 0;
    this.beeps = 0;
    this.waterfallMarks = 0; // start marks drawn into the waterfall so far
    this.pendingMarks = []; // starts not yet marked on the waterfall: {startHz, stopHz}
    this.boxes = []; // the boxes on the waterfall: {serial (of the newest row then), left, width}
    this.streamId = null; // only this stream's (null: any)
    this._audio = null;
    client.addEventListener("detection", (event) => this.add(event.detail));
    client.addEventListener("hello", () => { this.active.clear(); this.changed(); });
  }

  add(event) {
    if (this.streamId !== null && event.stream !== this.streamId) return;
    this.events += 1;
    if (event.event === "end") this.active.delete(event.id);
    else this.active.set(event.id, { ...event, seenAt: performance.now() });
    this.recent = [event, ...this.recent.filter((e) => e.id !== event.id)].slice(0, LISTED);
    if (event.event === "start") {
      if (this.el.beep.checked) this.beep();
      const half = Math.max(event.bandwidth_hz, 1) / 2;
      this.pendingMarks.push({ startHz: event.center_freq_hz - half,
                               stopHz: event.center_freq_hz + half });
      this.pendingMarks.splice(0, this.pendingMarks.length - PENDING_MARKS);
    }
    this.render();
    this.changed();
  }

  /** The signals on the air as marks for the spectrum: {startHz, stopHz, label}. */
  marks() {
    const now = performance.now();
    const marks = [];
    for (const [id, event] of this.active) {
      if (now - event.seenAt > STALE_MS) {
        this.active.delete(id);
        continue;
      }
      const half = Math.max(event.bandwidth_hz, 1) / 2;
      marks.push({ startHz: event.center_freq_hz - half, stopHz: event.center_freq_hz + half,
                   label: mhz(event.center_freq_hz) });
    }
    return marks;
  }

  /**
   * Mark each start not yet marked on the waterfall's newest rows, which it has just drawn:
   * an outlined box over the signal's frequencies, MARK_ROWS high, drawn into the canvas so
   * it scrolls down with the rows (and stays where the signal started).
   * @param {HTMLCanvasElement} canvas the waterfall (one column a pixel, one row a pixel).
   * @param {{startHz: number, stopHz: number} | null} band the frequencies it shows.
   * @param {number} serial the serial number of the newest row (RowHistory.pushed).
   */
  markWaterfall(canvas, band, serial = 0) {
    const marks = this.pendingMarks;
    this.pendingMarks = [];
    // The boxes scrolled off the waterfall are forgotten.
    this.boxes = this.boxes.filter((box) => serial - box.serial < canvas.height);
    if (!band || band.stopHz <= band.startHz) return;
    const ctx = canvas.getContext("2d");
    const perHz = canvas.width / (band.stopHz - band.startHz);
    for (const { startHz, stopHz } of marks) {
      if (stopHz < band.startHz || startHz > band.stopHz) continue; // out of view
      // At least 5 columns wide, so a one-bin signal still shows a box around it.
      const middle = ((startHz + stopHz) / 2 - band.startHz) * perHz;
      const half = Math.max(2.5, ((stopHz - startHz) * perHz) / 2);
      const left = Math.round(middle - half) - 2;
      const width = Math.round(2 * half) + 4;
      // A frame, not a bar: the signal's own rows stay visible inside it.
      box(ctx, left, width, 0);
      this.boxes.push({ serial, left, width });
      this.waterfallMarks += 1;
    }
  }

  /** Draw again the boxes still on the waterfall, after its rows were painted again: a box
   * drawn when row `serial` was the newest is as many rows down as rows came since. */
  redrawWaterfall(canvas, serialNow) {
    const ctx = canvas.getContext("2d");
    for (const { serial, left, width } of this.boxes) box(ctx, left, width, serialNow - serial);
  }

  render() {
    const { panel, list } = this.el;
    const items = this.recent.map((event) => {
      const item = document.createElement("li");
      item.textContent = describe(event);
      item.dataset.event = event.event;
      item.title = JSON.stringify(event);
      return item;
    });
    list.replaceChildren(...items);
    panel.hidden = false;
  }

  /** A short tone (the page must have had a user gesture: the checkbox's click is one). */
  beep() {
    try {
      this._audio ??= new AudioContext();
      const oscillator = this._audio.createOscillator();
      const gain = this._audio.createGain();
      gain.gain.value = 0.1;
      oscillator.frequency.value = 880;
      oscillator.connect(gain).connect(this._audio.destination);
      oscillator.start();
      oscillator.stop(this._audio.currentTime + 0.12);
      this.beeps += 1;
    } catch {
      // No audio (a page without sound): the list still says it.
    }
  }
}
