// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: pausing the display. While paused nothing new is drawn (the plots hold
// the frame shown, still zoomable, readable and exportable), but the stream keeps coming:
// its frames and gaps are received and counted. Unpausing jumps to the live stream; the
// waterfall marks the rows it did not draw with a grey row.

/** Whether a key press belongs to a form field (which then keeps it). */
export function inField(event) {
  const target = event.target;
  return target instanceof Element &&
    (target.closest("input, select, textarea, button, [contenteditable]") !== null);
}

export class Pause {
  /**
   * `button` toggles it, as does the space key outside a form field; `badge` says "paused"
   * and how many frames came since; `onChange(paused, framesWhilePaused)` after each change.
   */
  constructor(button, badge, onChange) {
    this.button = button;
    this.badge = badge;
    this.onChange = onChange;
    this.paused = false;
    this.sinceMs = 0;
    this.framesWhilePaused = 0;
    button.addEventListener("click", () => this.toggle());
    document.addEventListener("keydown", (event) => {
      if (event.key !== " " || event.ctrlKey || event.metaKey || event.altKey || inField(event)) return;
      event.preventDefault(); // not a page scroll
      this.toggle();
    });
  }

  toggle() {
    this.set(!this.paused);
  }

  set(paused) {
    if (paused === this.paused) return;
    const missed = this.framesWhilePaused;
    this.paused = paused;
    this.sinceMs = Date.now();
    this.framesWhilePaused = 0;
    this.button.setAttribute("aria-pressed", String(paused));
    this.button.textContent = paused ? "Live" : "Pause";
    this.button.title = paused ? "back to the live stream (space)" : "hold the display (space)";
    document.body.dataset.paused = String(paused);
    this.render();
    this.onChange(paused, missed);
  }

  /** A frame came while paused. */
  countFrame() {
    this.framesWhilePaused += 1;
  }

  render() {
    this.badge.hidden = !this.paused;
    if (!this.paused) return;
    const seconds = Math.floor((Date.now() - this.sinceMs) / 1000);
    this.badge.textContent = `Paused ${seconds} s · ${this.framesWhilePaused} frames since` +
      " · space or Live to go on";
  }
}
