// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: zoom and pan. Which band the plots show (the window), the gestures that
// move it, and drawing any frame into it by frequency.
//
// A zoom or pan moves the window at once, and the plots draw the frames they already have
// into it (blocky when zoomed past their bins); the viewer then asks the server for the
// window at the plot's resolution (ViewRequester, debounced), whose frames are sharp. Every
// frame is drawn from its own header's frequencies, so frames of any view land where they
// belong.

/** The frame rate divisors offered for slow links (fps_divisor: one frame in N). */
export const RATE_DIVISORS = [1, 2, 3, 6];

const VIEW_REQUEST_DELAY_MS = 150; // a gesture settles before the server is asked
const WHEEL_ZOOM_PER_PIXEL = 0.002; // the window narrows by exp(-this) per pixel of wheel
const WHEEL_LINE_PIXELS = 16; // a wheel that counts lines (deltaMode 1)
const KEY_ZOOM = 1.5;
const KEY_PAN = 0.1; // of the span per arrow key press
const MIN_SPAN_BINS = 8; // of the stream's own bins: zooming further shows nothing more
const DOUBLE_TAP_MS = 350;
const DOUBLE_TAP_PX = 30;
const TAP_PX = 10; // a touch that moved less than this is a tap, not a drag
const GESTURE_GAP_MS = 300; // changes closer together than this are one gesture

/**
 * The frequencies of a frame's bins (docs/protocol.md "Bin frequencies"): bin `bins / 2`
 * (rounded down) is centred on `centerHz`, and bin `i` covers startHz + i * binHz onwards.
 */
export function binGrid(centerHz, spanHz, bins) {
  const binHz = spanHz / bins;
  const startHz = centerHz - (Math.floor(bins / 2) + 0.5) * binHz;
  return { centerHz, spanHz, bins, binHz, startHz, stopHz: startHz + spanHz };
}

/**
 * Sample `sources` ({values, grid}, best first) into `out`: cell `c` covers
 * `startHz + c * cellHz` onwards and gets the largest of the bins it overlaps (a narrow
 * carrier keeps its level), or, where it is narrower than a bin, the bin it lies in. A cell
 * the first source does not cover is taken from the next; NaN where none covers it.
 */
export function sampleInto(out, startHz, cellHz, sources) {
  out.fill(NaN);
  for (const { values, grid } of sources) {
    const bins = values.length;
    const perCell = cellHz / grid.binHz;
    let position = (startHz - grid.startHz) / grid.binHz;
    for (let c = 0; c < out.length; c++, position += perCell) {
      if (out[c] === out[c]) continue; // covered by a better source
      const end = position + perCell;
      if (end <= 0 || position >= bins) continue;
      const first = Math.max(0, Math.floor(position));
      const stop = Math.min(bins, Math.max(first + 1, Math.ceil(end)));
      let max = -Infinity;
      for (let i = first; i < stop; i++) if (values[i] > max) max = values[i];
      out[c] = max;
    }
  }
  return out;
}

/** `values` on the bins of `from` (a binGrid) moved to the bins of `to`: each the largest of
 * the old bins it overlaps, -Infinity where the old bins do not reach (the peak hold across a
 * zoom). */
export function regrid(values, from, to) {
  const out = sampleInto(new Float32Array(to.bins), to.startHz, to.binHz, [{ values, grid: from }]);
  for (let i = 0; i < out.length; i++) if (out[i] !== out[i]) out[i] = -Infinity;
  return out;
}

// The URL keys of a view (docs/protocol.md set_view), in the page's URL as in the server's.
const VIEW_URL_KEYS = ["center_freq_hz", "span_hz", "bins", "fps_divisor"];

/**
 * The view a page URL's query opens: ?center_freq_hz=&span_hz= a window (both needed),
 * &bins= its resolution (without a window: the whole stream's), &fps_divisor= the rate (1
 * unless given). Values the server would refuse are left out.
 *
 * @param {URLSearchParams} params
 * @returns {{centerFreqHz?: number, spanHz?: number, bins?: number, fpsDivisor: number}}
 */
export function viewFromUrl(params) {
  const number = (text) => (text === null ? NaN : Number(text));
  const view = {};
  const centerFreqHz = number(params.get("center_freq_hz"));
  const spanHz = number(params.get("span_hz"));
  if (Number.isFinite(centerFreqHz) && spanHz > 0 && Number.isFinite(spanHz)) {
    Object.assign(view, { centerFreqHz, spanHz });
  }
  const bins = number(params.get("bins"));
  if (Number.isInteger(bins) && bins >= 1 && bins <= 1 << 20) view.bins = bins;
  const fpsDivisor = number(params.get("fps_divisor"));
  view.fpsDivisor = Number.isInteger(fpsDivisor) && fpsDivisor >= 1 && fpsDivisor <= 100
    ? fpsDivisor : 1;
  return view;
}

/** `href` with the window (null: none) and the rate in its query, as viewFromUrl reads them
 * (whole hertz; a divisor of 1 left out); its other keys kept. */
export function urlWithView(href, window, fpsDivisor) {
  const url = new URL(href);
  for (const key of VIEW_URL_KEYS) url.searchParams.delete(key);
  if (window) {
    url.searchParams.set("center_freq_hz", String(Math.round((window.startHz + window.stopHz) / 2)));
    url.searchParams.set("span_hz", String(Math.round(window.stopHz - window.startHz)));
  }
  if (fpsDivisor > 1) url.searchParams.set("fps_divisor", String(fpsDivisor));
  return url.href;
}

/** Fill the rate control `select` with RATE_DIVISORS (and `current`, if it is another),
 * choose `current`, and call `onChoose(divisor)` when the user picks one. */
export function setUpRateControl(select, current, onChoose) {
  const divisors = RATE_DIVISORS.includes(current) ? RATE_DIVISORS : [...RATE_DIVISORS, current];
  for (const divisor of divisors) {
    select.add(new Option(divisor === 1 ? "every frame" : `1/${divisor}`, String(divisor)));
  }
  select.value = String(current);
  select.addEventListener("change", () => onChoose(Number(select.value)));
}

/**
 * The window and the gestures that move it: wheel at the pointer, drag, two-finger pinch,
 * double-click or double-tap to reset, and keys (+ and - zoom, arrows pan, 0 resets).
 *
 * The window is {startHz, stopHz}; until the stream's band is known (setBand) gestures do
 * nothing. `onChange({gestureStart})` is called after every change; `gestureStart` is true
 * for the first change of a gesture (none in the GESTURE_GAP_MS before it).
 */
export class ZoomControl {
  /**
   * @param {{surfaces: HTMLElement[], plotBox: () => DOMRect, keyTarget: EventTarget,
   *   onChange: (change: {gestureStart: boolean}) => void}} options the elements to watch, the box of the plot area (the
   *   window spans its width) and what to call after a change.
   */
  constructor({ surfaces, plotBox, keyTarget, onChange }) {
    this.band = null; // {startHz, stopHz, binHz}: the whole stream
    this.zoomWindow = null; // {startHz, stopHz} while zoomed, else null (the whole band)
    this._plotBox = plotBox;
    this._onChange = onChange;
    this._changedAt = -Infinity;
    this._pointers = new Map(); // pointerId -> {x, y, downX, downY}
    this._pinch = null;
    this._lastTap = null;
    for (const surface of surfaces) this._watch(surface);
    keyTarget.addEventListener("keydown", (event) => this._onKey(event));
  }

  /** The band shown: the zoomed window, else the whole band (null before it is known). */
  get window() {
    return this.zoomWindow ?? this.band;
  }

  get zoomed() {
    return this.zoomWindow !== null;
  }

  /** Set the whole stream's band; a zoomed window is kept (clamped into it). */
  setBand(startHz, stopHz, binHz) {
    this.band = { startHz, stopHz, binHz };
    if (this.zoomWindow) this.setWindow(this.zoomWindow.startHz, this.zoomWindow.stopHz, false);
  }

  /** Move the band and the window by `deltaHz` (the radio was retuned). */
  shift(deltaHz) {
    if (this.band) this.band = { ...this.band, startHz: this.band.startHz + deltaHz,
      stopHz: this.band.stopHz + deltaHz };
    if (this.zoomWindow) {
      this.zoomWindow = { startHz: this.zoomWindow.startHz + deltaHz,
        stopHz: this.zoomWindow.stopHz + deltaHz };
    }
  }

  /** Show startHz .. stopHz, kept within the band and no narrower than a few of its bins;
   * the whole band is "not zoomed". */
  setWindow(startHz, stopHz, notify = true) {
    const band = this.band;
    if (band) {
      const bandSpan = band.stopHz - band.startHz;
      const span = Math.min(bandSpan, Math.max(stopHz - startHz, MIN_SPAN_BINS * band.binHz));
      const centre = (startHz + stopHz) / 2;
      startHz = Math.min(Math.max(centre - span / 2, band.startHz), band.stopHz - span);
      stopHz = startHz + span;
      const whole = span >= bandSpan * (1 - 1e-9);
      this.zoomWindow = whole ? null : { startHz, stopHz };
    } else {
      this.zoomWindow = stopHz > startHz ? { startHz, stopHz } : null;
    }
    if (notify) this._changed();
  }

  /** Zoom by `factor` (under 1: in) keeping the frequency at `fraction` of the width put. */
  zoomAt(fraction, factor) {
    const w = this.window;
    if (!w || !this.band) return;
    const span = w.stopHz - w.startHz;
    const anchorHz = w.startHz + fraction * span;
    const newSpan = span * factor;
    this.setWindow(anchorHz - fraction * newSpan, anchorHz + (1 - fraction) * newSpan);
  }

  /** Pan by `fraction` of the window's width (positive: to higher frequencies). */
  panBy(fraction) {
    const w = this.window;
    if (!w || !this.band || !this.zoomed) return;
    const deltaHz = fraction * (w.stopHz - w.startHz);
    this.setWindow(w.startHz + deltaHz, w.stopHz + deltaHz);
  }

  /** Back to the whole band. */
  reset() {
    const wasZoomed = this.zoomed;
    this.zoomWindow = null;
    if (wasZoomed) this._changed();
  }

  _changed() {
    const now = performance.now();
    const gestureStart = now - this._changedAt > GESTURE_GAP_MS;
    this._changedAt = now;
    this._onChange({ gestureStart });
  }

  // -- input -------------------------------------------------------------------------------

  _fraction(clientX) {
    const box = this._plotBox();
    return Math.min(1, Math.max(0, (clientX - box.left) / Math.max(1, box.width)));
  }

  _watch(surface) {
    surface.addEventListener("wheel", (event) => {
      event.preventDefault(); // the page must not scroll (or zoom, with ctrl) instead
      const pixels = event.deltaY * (event.deltaMode === 1 ? WHEEL_LINE_PIXELS : 1);
      this.zoomAt(this._fraction(event.clientX), Math.exp(pixels * WHEEL_ZOOM_PER_PIXEL));
    }, { passive: false });
    surface.addEventListener("dblclick", (event) => {
      event.preventDefault();
      this.reset();
    });
    surface.addEventListener("pointerdown", (event) => {
      if (event.pointerType === "mouse" && event.button !== 0) return;
      surface.setPointerCapture?.(event.pointerId);
      const { clientX: x, clientY: y } = event;
      this._pointers.set(event.pointerId, { x, y, downX: x, downY: y });
      this._pinch = this._pointers.size === 2 ? this._pinchStart() : null;
    });
    surface.addEventListener("pointermove", (event) => {
      const pointer = this._pointers.get(event.pointerId);
      if (!pointer) return;
      const box = this._plotBox();
      const dx = event.clientX - pointer.x;
      pointer.x = event.clientX;
      pointer.y = event.clientY;
      if (this._pinch) this._pinchMove();
      else if (this._pointers.size === 1 && dx !== 0) this.panBy(-dx / Math.max(1, box.width));
    });
    const up = (event) => {
      const pointer = this._pointers.get(event.pointerId);
      if (!pointer) return;
      this._pointers.delete(event.pointerId);
      const wasPinch = this._pinch !== null;
      this._pinch = null;
      if (event.type === "pointerup" && event.pointerType !== "mouse" && !wasPinch &&
          Math.hypot(event.clientX - pointer.downX, event.clientY - pointer.downY) < TAP_PX) {
        this._tap(event);
      }
    };
    surface.addEventListener("pointerup", up);
    surface.addEventListener("pointercancel", up);
  }

  _tap(event) {
    const now = event.timeStamp;
    const last = this._lastTap;
    if (last && now - last.time < DOUBLE_TAP_MS &&
        Math.hypot(event.clientX - last.x, event.clientY - last.y) < DOUBLE_TAP_PX) {
      this._lastTap = null;
      this.reset();
      return;
    }
    this._lastTap = { time: now, x: event.clientX, y: event.clientY };
  }

  _pinchStart() {
    const w = this.window;
    if (!w) return null;
    const [a, b] = [...this._pointers.values()];
    const box = this._plotBox();
    const middle = ((a.x + b.x) / 2 - box.left) / Math.max(1, box.width);
    return {
      distance: Math.max(1, Math.abs(a.x - b.x)),
      window: { ...w },
      anchorHz: w.startHz + middle * (w.stopHz - w.startHz),
    };
  }

  /** The frequency under the fingers' starting midpoint follows their midpoint, and the
   * span scales with their horizontal distance. */
  _pinchMove() {
    const [a, b] = [...this._pointers.values()];
    const { distance, window: start, anchorHz } = this._pinch;
    const span = (start.stopHz - start.startHz) * distance / Math.max(1, Math.abs(a.x - b.x));
    const fraction = this._fraction((a.x + b.x) / 2);
    this.setWindow(anchorHz - fraction * span, anchorHz + (1 - fraction) * span);
  }

  _onKey(event) {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target?.closest?.("input, select, textarea, [contenteditable]")) return;
    const actions = {
      "+": () => this.zoomAt(0.5, 1 / KEY_ZOOM),
      "=": () => this.zoomAt(0.5, 1 / KEY_ZOOM),
      "-": () => this.zoomAt(0.5, KEY_ZOOM),
      _: () => this.zoomAt(0.5, KEY_ZOOM),
      ArrowLeft: () => this.panBy(-KEY_PAN),
      ArrowRight: () => this.panBy(KEY_PAN),
      0: () => this.reset(),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  }
}

/**
 * Asks the server for the view the plots show, at most once per settled gesture: the
 * window (or the whole stream) at `bins` bins, one frame in `fpsDivisor`; and keeps what was
 * asked and what the server answered.
 */
export class ViewRequester {
  /**
   * @param {import("./argos-client.js").ArgosClient} client
   * @param {(view: object) => void} onSent called with what was asked for.
   */
  constructor(client, onSent) {
    this._client = client;
    this._onSent = onSent;
    this._timer = null;
    this._lastKey = null;
    this.asked = null; // the latest view asked for
    this.answer = null; // the server's latest view reply
    this.sent = 0;
    this.answers = 0;
    this.resets = 0;
    this._last = null; // [streamId, view] of the latest request sent
    this._unanswered = 0; // set_view messages sent on this connection, not answered yet
    const answered = () => { this._unanswered = Math.max(0, this._unanswered - 1); };
    client.addEventListener("hello", () => { this._unanswered = 0; }); // the URL has the view
    client.addEventListener("view", (event) => {
      this.answer = event.detail;
      this.answers += 1;
      if (event.detail?.reset) {
        // The stream's bin count changed: the server sends it whole until asked again.
        this.resets += 1;
        if (this._last !== null) this._send(...this._last);
        return;
      }
      answered();
    });
    client.addEventListener("error", (event) => {
      if (event.detail?.message?.startsWith("set_view:")) answered();
    });
  }

  _send(streamId, view) {
    this._last = [streamId, view];
    this._client.setView(streamId ?? undefined, view);
    if (this._client.state === "open") this._unanswered += 1; // else it is in the next URL
    this.asked = view;
    this.sent += 1;
    this._onSent(view);
  }

  /** Whether a view sent on this connection is not answered yet. */
  get pending() {
    return this._unanswered > 0;
  }

  /**
   * Ask for `window` ({startHz, stopHz}, null: the whole stream) of stream `streamId`
   * (null: the first) at `bins` across it, after VIEW_REQUEST_DELAY_MS without another
   * request, or at once.
   */
  request(streamId, window, bins, fpsDivisor, { now = false } = {}) {
    clearTimeout(this._timer);
    const send = () => {
      // The whole stream too comes at the plot's resolution (a 65,536-bin stream is not
      // sent whole to a 1,000-pixel plot); one with fewer bins than that comes as it is.
      const resolution = Math.min(1 << 20, Math.max(1, Math.round(bins)));
      const view = window === null ? { bins: resolution, fpsDivisor } : {
        centerFreqHz: (window.startHz + window.stopHz) / 2,
        spanHz: window.stopHz - window.startHz,
        bins: resolution,
        fpsDivisor,
      };
      const key = JSON.stringify([streamId, view]);
      if (key === this._lastKey) return;
      this._lastKey = key;
      this._send(streamId, view);
    };
    if (now) send();
    else this._timer = setTimeout(send, VIEW_REQUEST_DELAY_MS);
  }
}
