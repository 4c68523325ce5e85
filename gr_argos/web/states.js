// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: what the page says about its connection and its stream when things are
// not well, so that an operator never takes old data for live data.
//
// - OutageBanner: while the page has no connection, the plots are dimmed (CSS, from the
//   `data-connection` attribute of <body>) and a banner over them says since when and when
//   the next attempt is.
// - gapNotice: the words and the count for the frames missed before a frame; across a
//   restart of the server (or the stream) the sequence starts over, so the count is
//   estimated from the two frames' timestamps and the stream's frame rate.
// - streamProblem: the error for a `?stream=` the server does not have, naming those it has.
// - rangeProblem: why a typed dB range cannot be used.

import { GAP_STREAM_RESTARTED } from "./argos-client.js";

// A page that never connected is down once an attempt failed ("connecting" with an attempt
// number); a refused token is not an outage (the login form says what to do).
const isDown = (state, attempt) => state === "reconnecting" || state === "closed" ||
  (state === "connecting" && attempt > 0);

/** "07:41:09" in the page's local time. */
export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
}

/** "12 s", "3 min 05 s", "1 h 02 min". */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")} min`;
}

/**
 * The banner over the plots while the connection is down. `update(state, detail)` takes
 * each ArgosClient "state" event; `tick()` refreshes the times (the status bar's timer).
 */
export class OutageBanner {
  constructor(banner, { now = () => Date.now() } = {}) {
    this.banner = banner;
    this.now = now;
    this.downSinceMs = null; // when the last open connection was lost
    this.nextAttemptMs = null;
    this.attempt = 0;
    this.error = "";
  }

  get down() {
    return this.downSinceMs !== null;
  }

  update(state, { attempt, delayMs, error } = {}) {
    if (state === "open" || state === "unauthorized") {
      this.downSinceMs = null;
    } else if (isDown(state, attempt) && this.downSinceMs === null) {
      this.downSinceMs = this.now();
      this.everOpen = state !== "connecting";
    }
    this.state = state;
    this.attempt = attempt ?? 0;
    this.error = error ?? "";
    this.nextAttemptMs = Number.isFinite(delayMs) ? this.now() + delayMs : null;
    document.body.dataset.connection = this.down ? "down" : "up";
    this.tick();
  }

  /** The banner's text now, "" when it is hidden. */
  text() {
    if (!this.down) return "";
    const now = this.now();
    const since = `since ${clockTime(this.downSinceMs)} (${duration(now - this.downSinceMs)})`;
    const parts = [this.everOpen
      ? `Disconnected ${since}: what you see is from then, not live.`
      : `No connection to the server ${since}.`];
    if (this.nextAttemptMs !== null && this.nextAttemptMs > now) {
      parts.push(`Next attempt in ${Math.ceil((this.nextAttemptMs - now) / 1000)} s` +
        (this.attempt ? ` (attempt ${this.attempt}).` : "."));
    } else if (this.state !== "closed") {
      parts.push("Connecting…");
    }
    if (this.error) parts.push(`Last error: ${this.error}.`);
    return parts.join(" ");
  }

  tick() {
    const text = this.text();
    this.banner.hidden = text === "";
    if (this.banner.textContent !== text) this.banner.textContent = text;
  }
}

/**
 * The notice for a gap before `frame` ({lost, reason, sessionChanged} from the client's
 * "gap" event) and how many frames it counts as missed. `previousMs` is the timestamp of
 * the frame before the gap and `framePeriodMs` the time between two frames this page gets.
 *
 * Across a restart (a new server session, or a sequence that went backwards) the sequences
 * of the two frames are not comparable: the count is the time between their timestamps
 * over the frame period, less one, said as "about N".
 */
export function gapNotice({ lost, reason, sessionChanged }, frameMs, previousMs, framePeriodMs) {
  const restarted = sessionChanged || reason === GAP_STREAM_RESTARTED;
  if (!restarted) return { missed: lost ?? 0, text: `${lost ?? "?"} frames lost (${reason})` };
  const why = sessionChanged ? "server restarted" : "stream restarted";
  if (!Number.isFinite(previousMs) || !(framePeriodMs > 0)) {
    return { missed: 0, text: `frames missed (${why}; how many is unknown)` };
  }
  const missed = Math.max(0, Math.round((frameMs - previousMs) / framePeriodMs) - 1);
  return { missed, text: `about ${missed} frames missed (${why})` };
}

/** The error for `?stream=` (its text, `wanted`) the server does not have, or null. */
export function streamProblem(wanted, streams) {
  const id = Number(wanted);
  if (streams.some((s) => s.id === id) && Number.isInteger(id)) return null;
  const list = streams.map((s) => (s.name ? `${s.id} (${s.name})` : `${s.id}`)).join(", ");
  const offer = streams.length ? `This server has stream ${list}: open ?stream=` +
    `${streams[0].id}, or leave ?stream= out for the first.` : "This server has no streams.";
  return `No stream "${wanted}" on this server. ${offer}`;
}

/** Why `min`..`max` (dB, the inputs' text) cannot be the range, or null when it can. */
export function rangeProblem(minText, maxText) {
  if (minText === "" || maxText === "") return "type both a min and a max";
  const min = Number(minText);
  const max = Number(maxText);
  if (!Number.isFinite(min) || !Number.isFinite(max)) return "min and max must be numbers";
  if (min >= max) return `min (${min} dB) must be below max (${max} dB)`;
  return null;
}
