// SPDX-License-Identifier: GPL-3.0-or-later
// The viewer's leader election over a BroadcastChannel alone (gr_argos/web/leader-election.js,
// BeaconElection), as plain code: tabs on a simulated channel (posts delivered to the other
// tabs a step later, as a BroadcastChannel does) with a simulated clock and timers.
//
// Run: node --test tests/js/leader-election.test.mjs

import assert from "node:assert/strict";
import { test } from "node:test";

import { BeaconElection } from "../../gr_argos/web/leader-election.js";

const STEP_MS = 10;

/** Tabs of one browser sharing a channel, on a clock the test moves. */
class World {
  constructor() {
    this.now = 1_700_000_000_000;
    this.timers = new Map(); // id -> {due, every, run}
    this.nextTimer = 1;
    this.posts = []; // posted, not yet delivered
    this.tabs = [];
    this.cut = new Set(); // tabs that hear and say nothing (ids)
  }

  scope() {
    const add = (run, ms, every) => {
      const id = this.nextTimer++;
      this.timers.set(id, { due: this.now + ms, every: every ? ms : 0, run });
      return id;
    };
    return {
      Date: { now: () => this.now },
      setTimeout: (run, ms) => add(run, ms, false),
      setInterval: (run, ms) => add(run, ms, true),
      clearTimeout: (id) => this.timers.delete(id),
      clearInterval: (id) => this.timers.delete(id),
    };
  }

  /** A tab with `id` that starts claiming now. */
  open(id) {
    const tab = { id, leads: 0, follows: 0, leaders: [], started: null, closed: false };
    const post = (message) => {
      if (!tab.closed && !this.cut.has(id)) {
        this.posts.push({ ...message, leader: id, since: tab.election.since });
      }
    };
    tab.election = new BeaconElection(post, id, this.scope());
    tab.started = tab.election.start({
      // As shared-connection.js does: a tab that starts leading says so.
      onLead: () => { tab.leads += 1; post({ kind: "lead" }); return true; },
      onFollow: () => { tab.follows += 1; },
      onLeaderChange: (leader) => tab.leaders.push(leader),
    });
    this.tabs.push(tab);
    return tab;
  }

  /** A tab closed without a word (a crash): it hears, says and runs nothing more. */
  crash(tab) {
    tab.closed = true;
    tab.election.resign();
  }

  /** Move the clock on by `ms`, delivering posts and running timers as they fall due. */
  advance(ms) {
    for (const end = this.now + ms; this.now < end;) {
      this.now += STEP_MS;
      const posts = this.posts.splice(0);
      for (const post of posts) {
        for (const tab of this.tabs) {
          if (tab.id !== post.leader && !tab.closed && !this.cut.has(tab.id)) {
            tab.election.hear(post);
          }
        }
      }
      for (const [id, timer] of [...this.timers]) {
        if (timer.due > this.now || !this.timers.has(id)) continue;
        if (timer.every) timer.due += timer.every;
        else this.timers.delete(id);
        timer.run();
      }
    }
  }

  leaders() {
    return this.tabs.filter((tab) => !tab.closed && tab.election.since !== null)
      .map((tab) => tab.id);
  }
}

test("a tab alone leads once its claim is unanswered; one that opens later follows it", async () => {
  const world = new World();
  const first = world.open("b");
  world.advance(400);
  assert.deepEqual(world.leaders(), []); // still claiming
  world.advance(200);
  assert.equal(await first.started, true);
  assert.deepEqual(world.leaders(), ["b"]);
  const second = world.open("a"); // a lower id, but "b" leads already
  world.advance(50);
  assert.equal(await second.started, false);
  assert.equal(second.election.leaderId, "b");
  world.advance(10_000);
  assert.deepEqual(world.leaders(), ["b"]);
  assert.equal(second.leads, 0);
});

test("of tabs claiming at once, the lowest id leads and the others follow it", async () => {
  const world = new World();
  const tabs = ["c", "a", "b"].map((id) => world.open(id));
  world.advance(1000);
  assert.deepEqual(world.leaders(), ["a"]);
  assert.deepEqual(await Promise.all(tabs.map((tab) => tab.started)), [false, true, false]);
  for (const tab of tabs.filter((t) => t.id !== "a")) assert.equal(tab.election.leaderId, "a");
});

test("a leader that says it is gone is followed by the next one at once", () => {
  const world = new World();
  const [leader, ...rest] = ["a", "b", "c"].map((id) => world.open(id));
  world.advance(1000);
  world.posts.push({ kind: "gone", leader: "a", since: leader.election.since });
  world.crash(leader);
  world.advance(700); // a claim, well before a silence would count
  assert.deepEqual(world.leaders(), ["b"]);
  assert.deepEqual(rest[1].leaders, ["a", null, "b"]);
});

test("a leader that goes silent is taken for gone after a few seconds", () => {
  const world = new World();
  const [leader] = ["a", "b", "c"].map((id) => world.open(id));
  world.advance(1000);
  world.crash(leader);
  world.advance(3000);
  assert.deepEqual(world.leaders(), []); // a beat or two late is not gone
  world.advance(3000);
  assert.deepEqual(world.leaders(), ["b"]);
});

test("two leaders that hear each other resolve to the one that led first", () => {
  const world = new World();
  const first = world.open("b");
  world.advance(1000);
  world.cut.add("a"); // "a" hears nothing: it leads too
  const second = world.open("a");
  world.advance(1000);
  assert.deepEqual(world.leaders().sort(), ["a", "b"]);
  world.cut.clear();
  world.advance(1500);
  assert.deepEqual(world.leaders(), ["b"]); // led first, though its id is higher
  assert.deepEqual([first.follows, second.follows], [0, 1]);
  assert.equal(second.election.leaderId, "b");
});
