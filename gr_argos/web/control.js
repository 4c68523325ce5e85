// SPDX-License-Identifier: GPL-3.0-or-later
// The viewer's control of the radio (docs/control.md): a side panel, shown only to a client
// that may control, with the lease (who holds it, take or give it back), the centre frequency
// in MHz, the source's other settings as sliders and switches, and tap-to-tune on the plots.
// Every client sees who holds the lease and each change made, in the notices.

/** A setting's label in the panel (the name is the settings' own otherwise). */
const LABELS = {
  center_freq: "Centre (MHz)", lna_gain: "LNA gain", vga_gain: "VGA gain", gain: "Gain",
  amp: "RF amplifier", bandwidth: "Bandwidth (MHz)", freq_min: "From (MHz)",
  freq_max: "To (MHz)", samp_rate: "Sample rate (MS/s)", fps: "Frames/s",
  detector: "Detector", avg_alpha: "Averaging weight", window: "Window", overlap: "Overlap",
  bins: "FFT size (bins)", second_detector: "Second trace",
};
/** Settings shown in millions (MHz, MS/s), entered so and sent in Hz. */
const IN_MHZ = new Set(["center_freq", "bandwidth", "freq_min", "freq_max", "samp_rate"]);

function clock(ns) {
  return new Date(Number(BigInt(ns) / 1000000n)).toISOString().slice(11, 19);
}

/** What the panel says of the lease for the client `me`. */
export function leaseText(holder, me) {
  if (!holder) return "free";
  const who = holder.client_id === me ? "you" : `${holder.name} (${holder.role})`;
  return `held by ${who} since ${clock(holder.since_ns)} UTC`;
}

/** One line saying what a `tuned` message changed. */
export function describeTuned(tuned) {
  const changes = Object.entries(tuned.changes).map(([name, { new: value }]) => {
    const shown = IN_MHZ.has(name) ? `${(value / 1e6).toFixed(6)} MHz` : String(value);
    return `${name} ${shown}`;
  });
  return `${tuned.name || "a client"} tuned ${changes.join(", ")}`;
}

export class Control {
  /**
   * @param {import("./argos-client.js").ArgosClient} client
   * @param {{panel: HTMLElement, lease: HTMLElement, acquire: HTMLButtonElement,
   *   release: HTMLButtonElement, take: HTMLButtonElement, form: HTMLFormElement,
   *   settings: HTMLElement, tap: HTMLInputElement, error: HTMLElement}} el
   * @param {{notice: (text: string) => void, shown: () => void, name?: string | null,
   *   surfaces: HTMLElement[], hzAt: (clientX: number) => number | null}} page
   */
  constructor(client, el, page) {
    this.client = client;
    this.el = el;
    this.page = page;
    this.state = null; // hello's control object, kept up to date
    // What the other clients see for this page's lease.
    this.name = (page.name ?? "").slice(0, 64) || "viewer";
    this.tunes = 0; // tune messages sent
    this.tuned = 0; // tuned messages seen
    client.addEventListener("hello", (event) => this._show(event.detail.control ?? null));
    client.addEventListener("control", (event) => this._onControl(event.detail));
    client.addEventListener("tuned", (event) => this._onTuned(event.detail));
    client.addEventListener("error", (event) => {
      const { code, message } = event.detail;
      if (code === "control_refused" || code === "tune_refused") this._say(message);
    });
    el.acquire.addEventListener("click", () => this._lease("acquire"));
    el.release.addEventListener("click", () => this._lease("release"));
    el.take.addEventListener("click", () => this._lease("take"));
    el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this._tuneFromForm();
    });
    this._downX = null; // where the pointer went down: a drag (a pan) is not a tap
    for (const surface of page.surfaces) {
      surface.addEventListener("pointerdown", (event) => { this._downX = event.clientX; });
      surface.addEventListener("click", (event) => this._tapToTune(event));
    }
  }

  get holds() {
    const me = this.state?.you?.client_id;
    return me !== undefined && this.state?.holder?.client_id === me;
  }

  _show(state) {
    this.state = state;
    const may = Boolean(state?.you?.may_control);
    this.el.panel.hidden = !may;
    if (!may) return;
    this._buildSettings(state.settings ?? {});
    this._render();
    this.page.shown();
  }

  _onControl(message) {
    if (!this.state) return;
    if (message.you) { // our role rose: a state like hello's
      this._show({ ...this.state, ...message });
      return;
    }
    this.state.holder = message.holder ?? null;
    const holder = message.holder;
    if (message.event === "taken" || message.event === "acquired") {
      this.page.notice(`control ${message.event} by ${holder?.name} (${holder?.role})`);
    } else if (message.event === "expired") {
      this.page.notice("control lease expired (idle)");
    }
    this._render();
  }

  _onTuned(tuned) {
    this.tuned += 1;
    if (this.state?.settings) {
      for (const [name, { new: value }] of Object.entries(tuned.changes)) {
        if (this.state.settings[name]) this.state.settings[name].value = value;
      }
      if (!this.el.panel.hidden) this._fillValues();
    }
    this.page.notice(describeTuned(tuned));
  }

  _lease(action) {
    this._say("");
    try {
      this.client.control(action, this.name);
    } catch (error) {
      this._say(error.message);
    }
  }

  tune(changes) {
    this._say("");
    try {
      this.client.tune(changes);
      this.tunes += 1;
    } catch (error) {
      this._say(error.message);
    }
  }

  _tuneFromForm() {
    const changes = {};
    for (const input of this.el.settings.querySelectorAll("[data-setting]")) {
      const name = input.dataset.setting;
      const setting = this.state.settings[name];
      let value;
      if (input.type === "checkbox") {
        value = input.checked;
      } else if (setting.type === "choice") {
        value = setting.choices[input.selectedIndex];
      } else {
        value = Number(input.value);
        if (input.value.trim() === "" || !Number.isFinite(value)) {
          this._say(`${LABELS[name] ?? name}: not a number`);
          return;
        }
        if (IN_MHZ.has(name)) value = Math.round(value * 1e6);
      }
      if (value !== setting.value) changes[name] = value;
    }
    if (Object.keys(changes).length === 0) {
      this._say("nothing changed");
      return;
    }
    this.tune(changes);
  }

  _tapToTune(event) {
    if (!this.el.tap.checked || !this.holds || !this.state?.settings?.center_freq) return;
    if (this._downX !== null && Math.abs(event.clientX - this._downX) > 5) return;
    const hz = this.page.hzAt(event.clientX);
    if (hz === null) return;
    const step = 1e3; // a tap is not finer than a kHz
    this.tune({ center_freq: Math.round(hz / step) * step });
  }

  _buildSettings(settings) {
    const box = this.el.settings;
    box.replaceChildren();
    for (const [name, setting] of Object.entries(settings)) {
      const label = document.createElement("label");
      label.className = "control-setting";
      const text = document.createElement("span");
      text.textContent = LABELS[name] ?? name;
      let input;
      const parts = [text];
      if (setting.type === "choice") {
        input = document.createElement("select");
        for (const choice of setting.choices) {
          input.add(new Option(choice === "" ? "none" : String(choice)));
        }
      } else {
        input = document.createElement("input");
        if (setting.type === "bool") {
          input.type = "checkbox";
        } else if (setting.step) { // a gain in steps: a slider showing its value
          input.type = "range";
          input.min = String(setting.min);
          input.max = String(setting.max);
          input.step = String(setting.step);
          const shown = document.createElement("output");
          input.addEventListener("input", () => {
            shown.textContent = `${input.value}${setting.unit ?? ""}`;
          });
          parts.push(input, shown);
        } else {
          const scale = IN_MHZ.has(name) ? 1e6 : 1;
          input.type = "number";
          input.step = "any";
          input.inputMode = "decimal";
          if (Number.isFinite(setting.min)) input.min = String(setting.min / scale);
          if (Number.isFinite(setting.max)) input.max = String(setting.max / scale);
        }
      }
      input.dataset.setting = name;
      input.setAttribute("aria-label", LABELS[name] ?? name);
      if (!parts.includes(input)) parts.push(input);
      label.append(...parts);
      box.append(label);
    }
    this._fillValues();
  }

  _fillValues() {
    for (const input of this.el.settings.querySelectorAll("[data-setting]")) {
      const name = input.dataset.setting;
      const setting = this.state.settings[name];
      if (!setting || setting.value === null || setting.value === undefined) continue;
      if (input.type === "checkbox") input.checked = Boolean(setting.value);
      else if (setting.type === "choice") {
        input.selectedIndex = Math.max(0, setting.choices.indexOf(setting.value));
      } else if (IN_MHZ.has(name)) input.value = String(setting.value / 1e6);
      else {
        input.value = String(setting.value);
        input.dispatchEvent(new Event("input"));
      }
    }
  }

  _render() {
    const me = this.state?.you?.client_id;
    const holder = this.state?.holder ?? null;
    this.el.lease.textContent = leaseText(holder, me);
    this.el.lease.dataset.holds = String(this.holds);
    this.el.acquire.hidden = this.holds || holder !== null;
    this.el.release.hidden = !this.holds;
    this.el.take.hidden = this.holds || holder === null
      || this.state?.you?.control_role !== "admin";
    this.el.form.hidden = !this.holds;
  }

  _say(text) {
    this.el.error.textContent = text;
    this.el.error.hidden = !text;
  }
}
