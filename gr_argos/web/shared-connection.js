// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: tabs of the same viewer share one WebSocket.
//
// Tabs of one origin that open the same viewer URL (same server, stream, format and view)
// form a group. One of them, the leader, holds the group's only connection; every message the
// server sends it is posted on a BroadcastChannel, and the other tabs (followers) read their
// frames from there. The server sees one client. Who leads is decided by a Web Lock where the
// page has one, else over the channel alone (leader-election.js).
//
// The tab's ArgosClient is unchanged: it gets a WebSocket constructor (SharedConnection's
// `WebSocket`) that makes the leader's socket a real one, relayed to the channel, and a
// follower's a RelaySocket that opens when the leader welcomes it (with the messages a late
// comer needs: hello, the view and format replies, the latest status, gps and control) and
// closes when the leader goes. So each tab keeps its own gap detection, missed count,
// reconnect and resume: when the leader tab closes, another tab leads, and
// reconnects with resume_session/resume_from (the frames it has seen) and gets the frames
// missed meanwhile from the server's resume ring; the other followers join it, each skipping
// the replayed frames it already has.
//
// A follower's ping, stats and detections go out on the leader's connection, and their answers
// come back to that follower alone (a ping with an id the leader maps back; the others answered
// in the order asked), so each tab gets its own round-trip time.
//
// A tab that needs a connection of its own leaves the group for good: a zoom or another frame
// rate (a set_view the group does not share), another format, the control lease, a tune or a
// new token. The message that needed it goes out on the tab's own connection; a leader that
// leaves keeps its connection and hands the group over. Without BroadcastChannel, with
// ?share=0, or for a page opened zoomed, every tab has its own connection.

import { BeaconElection, LEADER_KINDS, LockElection } from "./leader-election.js";

const CHANNEL_PREFIX = "gr-argos-viewer ";
// The messages a tab that joins late needs before the live ones, by type, hello first.
const CACHED_TYPES = ["hello", "view", "encoding", "status", "gps", "control"];
// What a follower may ask over the leader's connection (a ping with an id of the leader's).
const FORWARDED_TYPES = new Set(["ping", "detections", "stats"]);
// Requests without an id, answered by one message of their type (or a bad_message error
// naming it) in the order asked: the leader routes each answer to the tab that asked.
const ANSWERED_IN_TURN = ["detections", "stats"];
// The id of a follower's ping on the leader's connection: this prefix, the follower's relay
// id, a space and the JSON of its own id, so its pong goes back to it alone.
const RELAYED_PING = "tab ";
// Frames the leader keeps after relaying them, for a follower that rejoins after a handover
// (its resume point in the join): 3 s at 30 frames/s, and at most 4 MiB of them.
const RECENT_FRAMES = 90;
const RECENT_BYTES = 4 * 2 ** 20;
const OPEN = 1;
const CLOSED = 3;
const CLOSE_GOING_AWAY = 1001;

/** Why tabs of a page with these URL `params` cannot share a connection, or null. */
export function shareProblem(params, scope = globalThis) {
  if (["0", "false"].includes(params.get("share"))) return "turned off (?share=0)";
  if (params.has("center_freq_hz") || params.has("span_hz")) return "the page opened zoomed";
  if (typeof scope.BroadcastChannel !== "function") return "no BroadcastChannel";
  return null;
}

/** A JSON message as an object ({} for one that is not JSON). */
function parseMessage(text) {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

/** The frame rate divisor a set_view message asks for, if it asks for the whole stream. */
function wholeStreamDivisor(message) {
  if (message.center_freq_hz !== undefined || message.span_hz !== undefined) return null;
  return message.fps_divisor ?? 1;
}

/** The format a set_encoding message asks for, comparable as a string. */
function formatKey(message) {
  return JSON.stringify([message.encoding, Boolean(message.compress), message.step_db ?? 0,
    Boolean(message.second_trace)]);
}

/** A frame's stream id and sequence, read from its header (docs/protocol.md). */
function frameSequence(data) {
  if (!(data instanceof ArrayBuffer) || data.byteLength < 24) return null;
  const view = new DataView(data);
  return [view.getUint16(12, true), view.getBigUint64(16, true)];
}

/**
 * The connection of one tab, shared with the other tabs of its group when it can be.
 *
 * Make one, pass its `WebSocket` (undefined when not sharing) to the ArgosClient, then
 * `start(key)` and connect the client when the promise it returns resolves (the tab knows
 * whether it leads).
 */
export class SharedConnection {
  /**
   * @param {URLSearchParams} params the page's URL query (?share=, a view, the frame rate).
   * @param {object} [scope] where BroadcastChannel and navigator.locks are (the window).
   */
  constructor(params, scope = globalThis) {
    this.problem = shareProblem(params, scope);
    this.role = this.problem === null ? "starting" : "off"; // "leader" | "follower" | "own"
    this.leftBecause = null; // why a tab that shared now has its own connection
    this._scope = scope;
    this._id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    this._divisor = Number(params.get("fps_divisor") ?? 1) || 1;
    this._relays = new Set(); // this tab's RelaySockets (one at a time in practice)
    this._socket = null; // the leader's (or own) socket: a TappedSocket
    this._cache = new Map(); // type -> the latest text of that type on this connection
    this._recent = []; // the latest frames relayed (RECENT_FRAMES, RECENT_BYTES)
    this._recentBytes = 0;
    this._helloSeen = false;
    this._waitingJoins = new Map(); // relay id -> its join, asked before hello
    this._followers = new Set(); // ids of the relays welcomed and not gone: posts go to them
    this._format = null; // formatKey of the leader's latest set_encoding
    // ANSWERED_IN_TURN type -> who asked on this connection, in turn: "" this tab, else a
    // follower's relay id.
    this._asked = new Map(ANSWERED_IN_TURN.map((type) => [type, []]));
    this._pendingSends = []; // for the own connection a tab leaves the group with
    this._election = null; // who leads: a LockElection or a BeaconElection
    this._relayCount = 0;
    this.counters = { relayed: 0, relayedBytes: 0, welcomed: 0, leads: 0, joins: 0,
      skippedAgain: 0, yielded: 0 };
    const group = this;
    /** The WebSocket constructor for the tab's ArgosClient (undefined when not sharing). */
    this.WebSocket = this.problem !== null ? undefined : function SharedSocket(url) {
      return group._open(url);
    };
  }

  /** What the page shows in its stats: the role, the leader and the counters. */
  stats() {
    return { role: this.role, problem: this.problem, leftBecause: this.leftBecause,
      election: this._election?.kind ?? null, relays: this._relays.size, ...this.counters };
  }

  /**
   * Join the group of `key` (the client's URL: server, stream, format and view): lead it if
   * no tab does, else follow, waiting in line to lead. Resolves once the role is known.
   */
  async start(key) {
    if (this.problem !== null) return;
    const name = CHANNEL_PREFIX + key;
    this._channel = new this._scope.BroadcastChannel(name);
    this._channel.onmessage = (event) => this._onPost(event.data);
    this._scope.addEventListener?.("pagehide", () => this.leave("the page closed"));
    const locks = this._scope.navigator?.locks;
    this._election = locks ? new LockElection(locks, name)
      : new BeaconElection((post) => this._post(post), this._id, this._scope);
    await this._election.start({ onLead: () => this._lead(), onFollow: () => this._follow(),
      onLeaderChange: (id) => this._leaderChanged(id) });
    if (this.role === "starting") this.role = "follower";
  }

  /**
   * Leave the group for good (a connection of this tab's own from now on): a leader hands
   * the group over and keeps its connection; a follower's relay closes and its client
   * reconnects on its own.
   */
  leave(reason) {
    if (this.role !== "leader" && this.role !== "follower") return;
    const wasLeader = this.role === "leader";
    this.role = "own";
    this.leftBecause = reason;
    if (wasLeader) this._post({ kind: "gone" });
    this._election.resign();
    for (const relay of [...this._relays]) relay._lost(`this tab left the shared connection: ${reason}`);
    this._channel.close(); // no more frames posted for the group
  }

  // -- leading -----------------------------------------------------------------------------

  /** The election made this tab the leader: lead until it leaves. Whether it leads (not
   * once it left the group). */
  _lead() {
    if (this.role === "own") return false;
    this.role = "leader";
    this.counters.leads += 1;
    this._post({ kind: "lead" });
    // A relay of this tab reconnects: its client then gets a real socket, resuming.
    for (const relay of [...this._relays]) relay._lost("this tab leads the shared connection now");
    return true;
  }

  /** Another tab leads (over the channel, two tabs led at once and the other led first):
   * this tab's followers go to it, and so does this tab's client, once its socket closes
   * (it reconnects through the leader, resuming after the frames it has). */
  _follow() {
    if (this.role !== "leader") return;
    this.role = "follower";
    this.counters.yielded += 1;
    this._post({ kind: "gone" });
    this._followers.clear();
    this._waitingJoins.clear();
    this._socket?.drop("another tab leads the shared connection");
  }

  _open(url) {
    if (this.role === "follower") return new RelaySocket(this, url, `${this._id}/${++this._relayCount}`);
    const socket = new TappedSocket(this, url);
    this._socket = socket;
    this._cache.clear();
    this._helloSeen = false;
    return socket;
  }

  /** A message from the server on `socket`: relay it (texts of CACHED_TYPES kept), or send
   * an answer to the follower that asked. Whether this tab's own client gets it. */
  _fromServer(socket, data) {
    if (socket !== this._socket) return true;
    if (typeof data === "string") {
      const message = parseMessage(data);
      const asker = this._askerOf(message, data);
      if (asker !== null) {
        if (asker.to === "") return true;
        const text = asker.text ?? data;
        if (this.role === "leader") this._post({ kind: "answer", to: asker.to, data: text });
        return false;
      }
      if (this.role !== "leader") return true;
      const { type } = message;
      if (CACHED_TYPES.includes(type)) {
        // A view reset by the server (a new FFT size) is, for a tab joining later, just the
        // view: answered with "reset" it would ask again, and be answered again.
        this._cache.set(type, type === "view" && message.reset
          ? JSON.stringify({ ...message, reset: undefined, message: undefined }) : data);
      }
      // The format in force, however it was asked for (set_encoding, or the URL of a
      // connection this tab opened after taking over the group).
      if (type === "encoding") this._format = formatKey(message);
      if (type === "hello") {
        this._cache = new Map([["hello", data]]); // a new connection: the rest is older
        this._helloSeen = true;
        for (const join of this._waitingJoins.values()) this._welcome(join);
        this._waitingJoins.clear();
      }
    }
    if (this.role !== "leader" || !this._helloSeen) return true;
    if (typeof data !== "string") {
      this._recent.push(data);
      this._recentBytes += data.byteLength;
      while (this._recent.length > RECENT_FRAMES || this._recentBytes > RECENT_BYTES) {
        this._recentBytes -= this._recent.shift().byteLength;
      }
    }
    if (this._followers.size === 0) return true; // a tab alone posts nothing
    this.counters.relayed += 1;
    this.counters.relayedBytes += typeof data === "string" ? data.length : data.byteLength;
    this._post({ kind: "message", data });
    return true;
  }

  /**
   * Who asked for the server's `message`, when it answers one tab's request: `{to}` ("" for
   * this tab, else a follower's relay id) and, for a follower's pong, `text`: the pong with
   * the follower's own id back. Null for a message to everyone.
   */
  _askerOf(message, data) {
    const { type } = message;
    if (type === "pong") {
      const id = typeof message.id === "string" && message.id.startsWith(RELAYED_PING)
        ? message.id.slice(RELAYED_PING.length) : null;
      const space = id?.indexOf(" ") ?? -1;
      if (space < 0) return { to: "" };
      // Back in the text as the server wrote it (its server_time_ns exact, as it came).
      const own = id.slice(space + 1);
      let text = data.replace(JSON.stringify(message.id), own);
      if (text === data) text = JSON.stringify({ ...message, id: parseMessage(own) });
      return { to: id.slice(0, space), text };
    }
    const asked = this._asked.get(type === "error" && message.code === "bad_message"
      ? String(message.message).split(":")[0] : type);
    if (asked === undefined) return null;
    return { to: asked.shift() ?? "" };
  }

  /** Whether this tab's own client may send `data` as it is; a message the group cannot
   * share makes a leader leave first (it keeps the connection). */
  _fromClient(socket, data, first) {
    if (socket !== this._socket || typeof data !== "string") return;
    const message = parseMessage(data);
    if (socket.readyState === OPEN) this._asked.get(message.type)?.push("");
    if (this.role !== "leader") return;
    if (message.type === "set_encoding") {
      this._format = formatKey(message);
    } else if (message.type === "set_view") {
      if (wholeStreamDivisor(message) !== this._divisor) this.leave("a view of its own");
    } else if (!FORWARDED_TYPES.has(message.type) && !(message.type === "auth" && first)) {
      this.leave(`a ${message.type} message`);
    }
  }

  _socketClosed(socket) {
    if (socket !== this._socket) return;
    this._socket = null;
    this._helloSeen = false;
    this._cache.clear();
    for (const asked of this._asked.values()) asked.length = 0; // no answers on a new one
    if (this.role === "leader") this._post({ kind: "down" });
  }

  /** Welcome a relay (`join`: its id and resume point) with what a late comer needs, and
   * the frames after its resume point that this tab still has. */
  _welcome({ from, after, session }) {
    this.counters.welcomed += 1;
    this._followers.add(from);
    const cached = CACHED_TYPES.map((type) => this._cache.get(type)).filter(Boolean);
    // Sequences after a resume point mean something only in the session it was of.
    if (after.size > 0 && session === parseMessage(this._cache.get("hello")).session) {
      for (const data of this._recent) {
        const [stream, sequence] = frameSequence(data) ?? [];
        if (after.has(stream) && sequence > after.get(stream)) cached.push(data);
      }
    }
    this._post({ kind: "welcome", to: from, cached });
  }

  /** What a follower's client sent: forward it, answer it from the cache, or tell the
   * follower to leave and send it on a connection of its own. */
  _fromFollower(from, data) {
    const message = parseMessage(data);
    const answer = (type) => {
      const text = this._cache.get(type);
      if (text) this._post({ kind: "answer", to: from, data: text });
    };
    if (message.type === "ping") {
      const id = `${RELAYED_PING}${from} ${JSON.stringify(message.id ?? null)}`;
      this._socket?.sendNow(JSON.stringify({ ...message, id }));
    } else if (FORWARDED_TYPES.has(message.type)) {
      if (this._socket?.readyState === OPEN) this._asked.get(message.type).push(from);
      this._socket?.sendNow(data);
    } else if (message.type === "set_view" && wholeStreamDivisor(message) === this._divisor) {
      answer("view");
    } else if (message.type === "set_encoding" && formatKey(message) === this._format) {
      answer("encoding");
    } else {
      this._post({ kind: "refused", to: from, data });
    }
  }

  /** Over the channel alone, the leader this tab follows changed (null: it went silent or
   * gone): a relay of another leader's is lost, and its client reconnects (to the new one). */
  _leaderChanged(id) {
    for (const relay of [...this._relays]) {
      if (relay._leader !== null && relay._leader !== id) {
        relay._lost("the tab that shared its connection is gone");
      }
    }
  }

  // -- the channel -------------------------------------------------------------------------

  _post(post) {
    try {
      const since = this._election?.since ?? null; // a leader's, for BeaconElection
      this._channel.postMessage({ ...post, leader: this._id, since });
    } catch {
      // the channel is closed: this tab left
    }
  }

  _onPost(post) {
    this._election.hear(post);
    if (this.role === "leader") {
      if (post.kind === "join") {
        this.counters.joins += 1;
        if (this._helloSeen) this._welcome(post);
        else this._waitingJoins.set(post.from, post);
      } else if (post.kind === "send") {
        this._fromFollower(post.from, post.data);
      } else if (post.kind === "leave") {
        this._followers.delete(post.from);
        this._waitingJoins.delete(post.from);
      }
      return;
    }
    if (this.role !== "follower") return;
    if (LEADER_KINDS.has(post.kind) && !this._election.accepts(post)) return;
    for (const relay of [...this._relays]) relay._onPost(post);
  }
}

/**
 * The socket of a tab with a connection (the leader's, or one of its own): a real WebSocket
 * whose messages the group relays.
 */
class TappedSocket {
  constructor(group, url) {
    this._group = group;
    this._sentAny = false;
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    ws.onopen = (event) => {
      this.onopen?.(event);
      // The messages a tab left the group with go after the client's own first (auth).
      for (const data of group._pendingSends.splice(0)) this.sendNow(data);
    };
    ws.onmessage = (event) => {
      if (group._fromServer(this, event.data)) this.onmessage?.(event);
    };
    ws.onerror = (event) => this.onerror?.(event);
    ws.onclose = (event) => {
      group._socketClosed(this);
      this.onclose?.(event);
    };
  }

  get readyState() {
    return this._ws.readyState;
  }

  get binaryType() {
    return "arraybuffer";
  }

  set binaryType(_) {
    // always arraybuffer: the relay posts the bytes as they came
  }

  send(data) {
    this._group._fromClient(this, data, !this._sentAny);
    this.sendNow(data);
  }

  sendNow(data) {
    if (this._ws.readyState !== OPEN) return; // nothing sent: the next one is still the first
    this._sentAny = true;
    this._ws.send(data);
  }

  close(code, reason) {
    this._group._socketClosed(this);
    this._ws.close(code, reason);
  }

  /** Close the real socket for the client to see a lost connection (and reconnect). */
  drop(reason) {
    this._ws.close(1000, reason);
  }
}

/**
 * A follower's socket: opens when the leader welcomes it, gets what the leader's connection
 * gets, and closes when the leader goes (its client then reconnects, to the next leader).
 */
class RelaySocket {
  constructor(group, url, id) {
    this._group = group;
    this._id = id;
    this._leader = null;
    this._sentAny = false;
    this.readyState = 0;
    this.binaryType = "arraybuffer";
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    // A reconnect resumes after the frames this tab has: frames the leader relays that are
    // not newer (its own resume started earlier) are skipped, not counted twice.
    this._after = new Map();
    const query = new URL(url).searchParams;
    this._session = query.get("resume_session"); // the server's session of those frames
    for (const item of (query.get("resume_from") ?? "").split(",")) {
      const [stream, sequence] = item.split(":");
      if (sequence !== undefined) this._after.set(Number(stream), BigInt(sequence));
    }
    group._relays.add(this);
    this._join();
  }

  _join() {
    this._group._post({ kind: "join", from: this._id, after: this._after,
      session: this._session });
  }

  send(data) {
    if (this.readyState !== OPEN) throw new Error("the shared connection is not open");
    const first = !this._sentAny;
    this._sentAny = true;
    // The leader's connection is authenticated already: the first auth is not needed.
    if (first && typeof data === "string" && parseMessage(data).type === "auth") return;
    this._group._post({ kind: "send", from: this._id, data });
  }

  close() {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this._group._relays.delete(this);
    this._group._post({ kind: "leave", from: this._id });
  }

  _onPost(post) {
    if (post.kind === "lead" && post.leader !== this._leader) {
      if (this._leader === null) this._join(); // waiting: ask the new leader
      else this._lost("the tab that shared its connection is gone");
      return;
    }
    if (post.to !== undefined && post.to !== this._id) return;
    if (this.readyState === 0) {
      if (post.kind !== "welcome") return;
      this._leader = post.leader;
      // Another session (the server restarted): its sequences started again, skip none.
      if (post.cached.length && parseMessage(post.cached[0]).session !== this._session) {
        this._after.clear();
      }
      this.readyState = OPEN;
      this.onopen?.({ type: "open" });
      for (const data of post.cached) this._deliver(data);
      return;
    }
    if (this.readyState !== OPEN || post.leader !== this._leader) return;
    if (post.kind === "message" || post.kind === "answer") {
      this._deliver(post.data);
    } else if (post.kind === "down" || post.kind === "gone") {
      this._lost("the tab that shared its connection lost it or left");
    } else if (post.kind === "refused") {
      this._group._pendingSends.push(post.data);
      this._group.leave(`a ${parseMessage(post.data).type} message`);
    }
  }

  _deliver(data) {
    if (this._after.size > 0) {
      const header = frameSequence(data);
      if (header !== null) {
        const after = this._after.get(header[0]);
        if (after !== undefined && header[1] <= after) {
          this._group.counters.skippedAgain += 1;
          return;
        }
        this._after.delete(header[0]);
      }
    }
    this.onmessage?.({ data });
  }

  /** The relay is gone: the client sees a closed connection and reconnects. */
  _lost(reason) {
    if (this.readyState === CLOSED) return;
    this.close();
    this.onclose?.({ type: "close", code: CLOSE_GOING_AWAY, reason, wasClean: true });
  }
}
