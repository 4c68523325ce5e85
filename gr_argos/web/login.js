// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: the login form for a server with a token, and where the token is kept.
//
// The token lives in sessionStorage (this tab, until it is closed) unless the user asks to
// remember it on this device (localStorage). It is stored only once the server has accepted
// it, is sent only in the client's first `auth` message, and never goes in the URL, the
// page or the console: the password field is emptied as soon as the form is submitted.

const KEY_PREFIX = "gr-argos.token:";

const MESSAGES = {
  needed: "This server streams only to those who give its token. Ask its operator for it.",
  refused: "The server refused this token. Check it and try again.",
  savedRefused: "The server refused the saved token, so it is forgotten here. " +
    "Enter the current one.",
  loggedOut: "Logged out: the token is forgotten on this device.",
  checking: "Checking the token…",
};

/** The storage named, or null where a page may not use it (a sandboxed frame, blocked
 * third-party storage): the token then lasts as long as the page. */
function storage(name) {
  try {
    const store = globalThis[name];
    store.getItem(KEY_PREFIX);
    return store;
  } catch {
    return null;
  }
}

/** Where the viewer keeps the token of one server (tokens of other servers are apart). */
export class TokenStore {
  /**
   * @param {string} serverUrl the WebSocket URL; its host names the token.
   */
  constructor(serverUrl) {
    this.key = KEY_PREFIX + new URL(serverUrl).host;
    this.session = storage("sessionStorage");
    this.local = storage("localStorage");
  }

  /** The token of this session, else the one remembered on this device, else null. */
  load() {
    return this.session?.getItem(this.key) ?? this.local?.getItem(this.key) ?? null;
  }

  /** Keep `token` for this session, and on this device too when `remember` is true. */
  save(token, remember) {
    this.session?.setItem(this.key, token);
    if (remember) this.local?.setItem(this.key, token);
    else this.local?.removeItem(this.key);
  }

  /** Forget the token everywhere. */
  forget() {
    this.session?.removeItem(this.key);
    this.local?.removeItem(this.key);
  }
}

/**
 * Show the login form when the server refuses the client (it needs a token, or not this
 * one), hand the typed token to the client, keep it once accepted, and log out.
 *
 * @param {import("./argos-client.js").ArgosClient} client not yet connected.
 * @param {TokenStore} store
 * @param {object} el the page's elements: panel (hidden until needed), form, token (the
 *   password field), remember (the checkbox), help (a polite live region), error (an
 *   alert) and logout (a button).
 */
export function setUpLogin(client, store, el) {
  let source = null; // where the client's token came from: null, "saved" or "typed"
  let pending = null; // {token, remember} typed and not yet accepted by the server

  /** Show the form with this help text and error (empty: none); focus the field when the
   * form appears or on an error, so the token can be typed again at once. */
  function show(help, error = "") {
    el.help.textContent = help;
    el.error.textContent = error;
    el.error.hidden = error === "";
    el.token.setAttribute("aria-invalid", String(error !== ""));
    if (el.panel.hidden || error !== "") {
      el.panel.hidden = false;
      el.token.focus();
    }
  }

  function hide() {
    el.panel.hidden = true;
  }

  const saved = store.load();
  if (saved !== null) {
    try {
      client.setToken(saved);
      source = "saved";
    } catch {
      store.forget(); // not a token any server could hold: never sent
    }
  }

  client.addEventListener("hello", () => {
    if (pending !== null) {
      store.save(pending.token, pending.remember);
      pending = null;
    }
    hide();
    el.logout.hidden = source === null;
  });

  client.addEventListener("authfailed", () => {
    pending = null;
    el.logout.hidden = true;
    show(MESSAGES.needed, source === null ? "" : source === "saved" ? MESSAGES.savedRefused
      : MESSAGES.refused);
    if (source === "saved") {
      store.forget();
      client.setToken(null);
      source = null;
    }
  });

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = el.token.value.trim(); // a pasted line break or space is never part of it
    el.token.value = "";
    try {
      client.setToken(token);
    } catch (error) {
      show(MESSAGES.needed, error.message);
      return;
    }
    source = "typed";
    pending = { token, remember: el.remember.checked };
    show(MESSAGES.checking);
    client.close(); // a client still trying an earlier token starts over with this one
    client.connect();
  });

  el.logout.addEventListener("click", () => {
    store.forget();
    client.setToken(null);
    source = null;
    el.logout.hidden = true;
    client.close();
    show(MESSAGES.loggedOut);
  });
}
