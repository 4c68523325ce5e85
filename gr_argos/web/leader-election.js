// SPDX-License-Identifier: GPL-3.0-or-later
// gr-argos viewer: which tab of a group of shared tabs leads (holds the connection).
//
// Two ways, one interface (start, hear, accepts, resign), used by shared-connection.js:
// - LockElection: a Web Lock (navigator.locks), exactly one holder in the browser, the other
//   tabs waiting in line. Web Locks exist only in a secure context (https, or http to
//   localhost).
// - BeaconElection: the group's BroadcastChannel alone, for a page over plain http from
//   another machine (a Raspberry Pi at http://192.168.1.20:9002/). The leader says so on
//   the channel at least every BEAT_MS (every relayed message says so too); a tab that hears
//   no leader for SILENT_MS, or hears it go (it posts "gone" on pagehide), claims the lead,
//   and of the tabs claiming at once the lowest id leads. Two leaders that hear each other
//   (a claim nobody heard in time) resolve to one: the one that led first stays, the other
//   becomes a follower (its client reconnects through the leader, resuming after its frames).

// What a leader posts; any of them shows it is alive.
export const LEADER_KINDS = new Set(["lead", "beat", "message", "welcome", "answer", "refused",
  "down", "gone"]);
const BEAT_MS = 1000;
// Silence after which a follower takes the leader for gone (a leader whose tab was closed
// without pagehide, e.g. a crash): several beats, as a background tab's timers run late.
const SILENT_MS = 4000;
// How long a claim waits for a leader or a lower claim to answer before leading.
const CLAIM_MS = 500;

/** Whether leader `a` ({since, leader}) wins over `b`: the earlier start, then the lower id. */
function winsOver(a, b) {
  if (a.since !== b.since) return a.since < b.since;
  return a.leader < b.leader;
}

/** Leadership by a Web Lock named `name`. */
export class LockElection {
  constructor(locks, name) {
    this.kind = "lock";
    this._locks = locks;
    this._name = name;
    this._release = null;
    this._queue = null;
  }

  /**
   * Lead if no tab does (`onLead()`, which says whether the tab takes it), else wait in
   * line and call `onLead()` on this tab's turn. Resolves to whether this tab leads now.
   */
  start({ onLead }) {
    const hold = () => {
      if (!onLead()) return undefined; // the tab left meanwhile: the lock goes at once
      return new Promise((resolve) => { this._release = resolve; });
    };
    return new Promise((resolve) => {
      this._locks.request(this._name, { ifAvailable: true }, (lock) => {
        if (lock === null) {
          this._queue = new AbortController();
          this._locks.request(this._name, { signal: this._queue.signal }, hold)
            .catch(() => {}); // aborted: the tab left the group
          resolve(false);
          return undefined;
        }
        resolve(true);
        return hold();
      });
    });
  }

  /** The lock decides: a post from a leader is always from the one leader. */
  hear() {}

  accepts() {
    return true;
  }

  /** Leave: release the lock, or leave the line. */
  resign() {
    this._release?.();
    this._queue?.abort();
  }
}

/**
 * Leadership over a BroadcastChannel alone. `post(message)` posts on the group's channel
 * (shared-connection.js adds this tab's id as `leader` and `since`); every post on the
 * channel goes to `hear(post)`. `scope` has the timers and the wall clock (`Date`): the
 * window, or a test's.
 */
export class BeaconElection {
  constructor(post, id, scope = globalThis) {
    this.kind = "channel";
    this.since = null; // when this tab started leading (Date.now()), while it leads
    this.leaderId = null; // the leader this tab follows
    this._post = post;
    this._id = id;
    this._scope = scope;
    this._state = "claiming"; // "following" | "claiming" | "leading" | "resigned"
    this._leader = null; // {leader, since} of the leader followed
    this._heardMs = 0;
    this._claimTimer = null;
    this._beatTimer = null;
    this._callbacks = null;
    this._resolveStart = null;
  }

  /**
   * Claim the lead: lead (`onLead()`) if no leader answers and no lower claim comes within
   * CLAIM_MS, else follow. Later, `onLead()` when this tab takes over from a silent or gone
   * leader, `onFollow()` when a leader that led first is heard while this tab leads, and
   * `onLeaderChange(id)` when the leader this tab follows changes (null: gone or silent).
   * Resolves to whether this tab leads now.
   */
  start({ onLead, onFollow, onLeaderChange }) {
    this._callbacks = { onLead, onFollow, onLeaderChange };
    this._beatTimer = this._scope.setInterval(() => this._tick(), BEAT_MS);
    return new Promise((resolve) => {
      this._resolveStart = resolve;
      this._claim();
    });
  }

  hear(post) {
    if (this._state === "resigned" || post.leader === this._id) return;
    if (post.kind === "claim") {
      if (this._state === "leading") this._beat(); // a leader is here: the claim is moot
      else if (this._state === "claiming" && post.leader < this._id) this._standDown();
      return;
    }
    if (post.kind === "gone") {
      if (this._state === "following" && post.leader === this.leaderId) {
        this._setLeader(null);
        this._claim(); // the leader closed: the next one now, not after SILENT_MS
      }
      return;
    }
    if (!LEADER_KINDS.has(post.kind) || typeof post.since !== "number") return;
    const heard = { leader: post.leader, since: post.since };
    if (this._state === "leading") {
      if (winsOver(heard, { leader: this._id, since: this.since })) this._follow(heard);
      else this._beat(); // it will hear this tab and follow
      return;
    }
    if (this._state === "following" && this._leader?.leader === post.leader
        && this._leader.since === post.since) {
      this._heardMs = this._now(); // the leader followed already (every frame it relays)
      return;
    }
    if (this._leader === null || post.leader === this._leader.leader
        || winsOver(heard, this._leader)) {
      this._follow(heard);
    }
  }

  /** Whether a post from a leader is from the one this tab follows ("gone" from any: each
   * relay knows its own leader). */
  accepts(post) {
    return post.kind === "gone" || post.leader === this.leaderId;
  }

  resign() {
    this._state = "resigned";
    this.since = null;
    this._scope.clearTimeout(this._claimTimer);
    this._scope.clearInterval(this._beatTimer);
    this._settle(false);
  }

  _claim() {
    this._state = "claiming";
    this._post({ kind: "claim" });
    this._scope.clearTimeout(this._claimTimer);
    this._claimTimer = this._scope.setTimeout(() => {
      if (this._state !== "claiming") return;
      this._state = "leading";
      this.since = this._now();
      this._setLeader(null);
      this._settle(true);
      this._callbacks.onLead();
    }, CLAIM_MS);
  }

  /** A lower claim: wait for it to lead (or claim again after SILENT_MS of nothing). */
  _standDown() {
    this._scope.clearTimeout(this._claimTimer);
    this._state = "following";
    this._heardMs = this._now();
  }

  _follow(leader) {
    const wasLeading = this._state === "leading";
    this._scope.clearTimeout(this._claimTimer);
    this._state = "following";
    this.since = null;
    this._setLeader(leader);
    this._heardMs = this._now();
    this._settle(false);
    if (wasLeading) this._callbacks.onFollow();
  }

  _beat() {
    this._post({ kind: "beat" });
  }

  _tick() {
    if (this._state === "leading") {
      this._beat();
    } else if (this._state === "following" && this._now() - this._heardMs > SILENT_MS) {
      this._setLeader(null);
      this._claim();
    }
  }

  /** The wall clock, in ms: `since` is compared across tabs. */
  _now() {
    return this._scope.Date.now();
  }

  _setLeader(leader) {
    const id = leader?.leader ?? null;
    const changed = id !== this.leaderId;
    this._leader = leader;
    this.leaderId = id;
    if (changed) this._callbacks.onLeaderChange(id);
  }

  _settle(leads) {
    this._resolveStart?.(leads);
    this._resolveStart = null;
  }
}
