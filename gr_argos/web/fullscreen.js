// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the plots alone on the whole screen (the Fullscreen API), for a wall
// display or a phone held sideways. Escape (the browser's) or the button again leaves.

/** Make `button` toggle `area` full screen and `exit` (inside `area`, shown there by the
 * CSS) leave it; both hidden where the browser cannot. `onChange()` after entering or
 * leaving (the plots change size). */
export function setUpFullscreen({ button, exit }, area, onChange) {
  if (!document.fullscreenEnabled || !area.requestFullscreen) {
    button.hidden = true;
    exit.hidden = true;
    return;
  }
  button.addEventListener("click", () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else area.requestFullscreen().catch((error) => console.warn(`gr-argos: full screen: ${error}`));
  });
  exit.addEventListener("click", () => document.exitFullscreen());
  document.addEventListener("fullscreenchange", () => {
    button.setAttribute("aria-pressed", String(document.fullscreenElement === area));
    onChange();
  });
}
