// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the help overlay, a list of every key and gesture of the page. `?` or the
// help button opens it (a modal <dialog>: the browser keeps the focus in it and Escape
// closes it), as does the button for touch screens; the close button, Escape or a click
// outside the card close it.

/** The keys of the rest of the page (zoom.js, pause.js, a11y.js), as the help lists them. */
const PAGE_KEYS = [
  ["+  -", "zoom in / out about the centre"],
  ["←  →", "pan a zoomed window (over a focused plot: move the cursor)"],
  ["0", "back to the whole band (also: double-click, double-tap)"],
  ["space", "pause / live"],
  ["Tab", "focus the spectrum or the waterfall; then ← → move a cursor bin by bin " +
    "(Shift: 10 bins), ↑ ↓ row by row on the waterfall, Home / End to the edges, " +
    "Escape to leave it; the readout follows"],
  ["?", "this help (Escape closes it)"],
];

const GESTURES = [
  ["click / tap the spectrum", "a marker on the strongest bin under the pointer or finger; " +
    "on a marker, make it the active one"],
  ["wheel / pinch", "zoom about the pointer or the fingers"],
  ["drag", "pan a zoomed window"],
  ["hover / tap a plot", "the frequency and level there in the readout"],
];

function table(caption, rows) {
  const element = document.createElement("table");
  const title = element.createCaption();
  title.textContent = caption;
  const body = element.createTBody();
  for (const [keys, does] of rows) {
    const row = body.insertRow();
    const key = document.createElement("th");
    key.scope = "row";
    for (const part of keys.split(/\s{2,}/)) {
      const kbd = document.createElement("kbd");
      kbd.textContent = part;
      key.append(kbd, " ");
    }
    row.append(key);
    row.insertCell().textContent = does;
  }
  return element;
}

/**
 * Fill `dialog` (a <dialog> with a `.help-body` and a close button `[data-close]`) with the
 * key tables, and open it with `?` or `button`.
 * @param {HTMLDialogElement} dialog
 * @param {HTMLButtonElement} button
 * @param {Array<[string, string]>} markerKeys the markers' keys (markers.js).
 */
export function setUpHelp(dialog, button, markerKeys) {
  dialog.querySelector(".help-body").replaceChildren(
    table("Markers", markerKeys), table("View", PAGE_KEYS), table("Mouse and touch", GESTURES));
  const open = () => {
    if (!dialog.open) dialog.showModal();
  };
  button.addEventListener("click", open);
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  // A click on the backdrop (the dialog itself, outside its card) closes it.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  // The page's own keys (zoom, pause, markers) do nothing while it is open; Escape, the
  // browser's, still closes it.
  dialog.addEventListener("keydown", (event) => event.stopPropagation());
  document.addEventListener("keydown", (event) => {
    if (event.key !== "?" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target?.closest?.("input, select, textarea, [contenteditable]")) return;
    event.preventDefault();
    open();
  });
}
