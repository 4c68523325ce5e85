// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: a replay (argos-replay, docs/recording.md). Every status message of a
// replaying server carries `replay` (the recording, where it is, its speed, paused or not,
// looping or not); the replay bar shows it, moves on with it between status messages, and
// sends the `replay` messages that play, pause, seek, change the speed and loop it. The
// replay is shared by every client of that server: what one does, all see.

const SPEEDS = [0.5, 1, 2, 4, 8, 16, 32];

/** Seconds as m:ss.s (h:mm:ss past an hour). */
export function clock(seconds) {
  const s = Math.max(0, seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  const secondsText = hours ? Math.floor(rest).toString().padStart(2, "0")
    : rest.toFixed(1).padStart(4, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secondsText}`
    : `${minutes}:${secondsText}`;
}

/** Where a replay is now, in s from its start: its state's position, moved on by the time
 * since `receivedMs` at its speed (unless paused), within the recording. */
export function positionS(replay, receivedMs, nowMs) {
  const lengthS = (replay.end_ns - replay.start_ns) / 1e9;
  let at = (replay.position_ns - replay.start_ns) / 1e9;
  if (!replay.paused) at += (nowMs - receivedMs) / 1000 * replay.speed;
  return Math.min(Math.max(at, 0), lengthS);
}

export class ReplayBar {
  /**
   * `elements`: the bar (`bar`), its `play` button, `position` range input, `time`
   * output, `speed` select, `loop` checkbox and `name`; and the status bar's `badge` and
   * `badgeText`. `client`: the ArgosClient, whose "status" and "replay" events it follows
   * and whose replay() it calls.
   */
  constructor(elements, client) {
    this.el = elements;
    this.client = client;
    this.replay = null; // the latest state
    this.receivedMs = 0;
    this.seeking = false; // the user is dragging the position: do not move it under them
    for (const speed of SPEEDS) {
      const option = document.createElement("option");
      option.value = String(speed);
      option.textContent = `${speed}x`;
      elements.speed.append(option);
    }
    client.addEventListener("status", (event) => {
      if (event.detail?.replay) this.update(event.detail.replay);
      else if (this.replay && event.detail && !("replay" in event.detail)) this.update(null);
    });
    client.addEventListener("replay", (event) => this.update(event.detail));
    elements.play.addEventListener("click", () => {
      this.send(this.replay?.paused ? "play" : "pause");
    });
    elements.position.addEventListener("input", () => {
      this.seeking = true;
      this.render();
    });
    elements.position.addEventListener("change", () => {
      this.seeking = false;
      this.send("seek", { offset_s: Number(elements.position.value) });
    });
    elements.speed.addEventListener("change", () => {
      this.send("speed", { speed: Number(elements.speed.value) });
    });
    elements.loop.addEventListener("change", () => {
      this.send("loop", { loop: elements.loop.checked });
    });
    setInterval(() => this.render(), 250);
  }

  send(action, fields) {
    try {
      this.client.replay(action, fields);
    } catch {
      // not connected: the bar is disabled then, and the next status says where it is
    }
  }

  /** A replay state from the server (null: not a replay). */
  update(replay) {
    this.replay = replay;
    this.receivedMs = performance.now();
    this.render();
  }

  render() {
    const { el, replay } = this;
    el.bar.hidden = el.badge.hidden = !replay;
    document.body.dataset.replay = String(Boolean(replay));
    if (!replay) return;
    const lengthS = (replay.end_ns - replay.start_ns) / 1e9;
    const atS = this.seeking ? Number(el.position.value)
      : positionS(replay, this.receivedMs, performance.now());
    el.name.textContent = replay.file;
    el.name.title = `recording ${replay.file}, ${lengthS.toFixed(1)} s`;
    el.play.textContent = replay.paused ? "Play" : "Pause";
    el.play.setAttribute("aria-pressed", String(!replay.paused));
    el.position.max = String(lengthS);
    el.position.step = "any";
    if (!this.seeking) el.position.value = String(atS);
    el.position.setAttribute("aria-valuetext", `${clock(atS)} of ${clock(lengthS)}`);
    el.time.textContent = `${clock(atS)} / ${clock(lengthS)}`;
    if (document.activeElement !== el.speed) el.speed.value = String(replay.speed);
    if (el.speed.value !== String(replay.speed)) {
      // a speed another client chose that is not in the list: show it too
      const option = document.createElement("option");
      option.value = option.textContent = String(replay.speed);
      option.textContent += "x";
      el.speed.append(option);
      el.speed.value = String(replay.speed);
    }
    el.loop.checked = Boolean(replay.loop);
    el.badgeText.textContent = `${replay.paused ? "paused" : `${replay.speed}x`} ` +
      `${clock(atS)} / ${clock(lengthS)}`;
  }
}
