// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: starting and stopping the server's recordings (docs/recording.md). A page
// that may control the radio (an operator's or admin's, docs/control.md), on a server that
// has a recording (record_dir, argos-spectrum's record_iq_dir), shows a Record / Stop
// recording button; it sends the `record` message, and follows the state every client is
// told (`hello`, `recording`, and `status`'s server.recorder and server.iq_recorder).

const STATUS_KEYS = { recorder: "spectrum", iq_recorder: "iq" };

export class RecordButton {
  /**
   * `button`: the button (hidden while the page may not record or there is nothing to
   * record); `client`: the ArgosClient; `notice(text)` says on the page what others did.
   */
  constructor(button, client, notice) {
    this.button = button;
    this.client = client;
    this.notice = notice;
    this.mayRecord = false;
    this.recordings = {}; // kind -> the state the server said
    client.addEventListener("hello", (event) => {
      this.mayRecord = Boolean(event.detail.control?.you?.may_control);
      this.recordings = { ...(event.detail.recording ?? {}) };
      this.render();
    });
    client.addEventListener("control", (event) => {
      if (event.detail.you) { // the page's role rose (an auth message)
        this.mayRecord = Boolean(event.detail.you.may_control);
        this.render();
      }
    });
    client.addEventListener("recording", (event) => {
      const { event: what, kinds, role, recording } = event.detail;
      this.recordings = { ...(recording ?? {}) };
      this.notice(`recording ${what} (${(kinds ?? []).join(", ")}) by ${role ?? "a client"}`);
      this.render();
    });
    client.addEventListener("status", (event) => {
      const server = event.detail?.server ?? {};
      for (const [key, kind] of Object.entries(STATUS_KEYS)) {
        if (server[key]) this.recordings[kind] = server[key];
      }
      this.render();
    });
    button.addEventListener("click", () => {
      try {
        this.client.record(this.started ? "stop" : "start");
      } catch {
        // not connected: nothing to switch; the next hello says the state
      }
    });
  }

  /** Whether any recording is switched on. */
  get started() {
    return Object.values(this.recordings).some((r) => r?.started);
  }

  render() {
    const kinds = Object.keys(this.recordings);
    this.button.hidden = !(this.mayRecord && kinds.length);
    const started = this.started;
    this.button.textContent = started ? "Stop recording" : "Record";
    this.button.setAttribute("aria-pressed", String(started));
    this.button.title = (started ? "stop recording " : "start recording ") +
      kinds.map((kind) => (kind === "iq" ? "the IQ samples" : "the spectra")).join(" and ") +
      " on the server, for every client";
    document.body.dataset.recording = String(started);
  }
}
