// SPDX-License-Identifier: GPL-3.0-or-later
// The viewer's zoom arithmetic (gr_argos/web/zoom.js) as plain code: a frame's bin
// frequencies, sampling frames into a window, the peak hold across a zoom, and a view in the
// page's URL. The gestures are tested in the browser (tests/test_viewer_zoom.py).
//
// Run: node --test tests/js/zoom.test.mjs

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { binGrid, regrid, sampleInto, urlWithView, viewFromUrl, ViewRequester } from "../../gr_argos/web/zoom.js";

describe("binGrid", () => {
  test("bin bins/2 is centred on the centre frequency (docs/protocol.md)", () => {
    const grid = binGrid(100e6, 8e6, 2048);
    assert.equal(grid.binHz, 3906.25);
    assert.equal(grid.startHz + 1024.5 * grid.binHz, 100e6);
    assert.equal(grid.stopHz - grid.startHz, 8e6);
  });
});

describe("sampleInto", () => {
  const grid = binGrid(1000, 8, 8); // bins 1 Hz wide, bin 0 from 995.5 Hz
  const values = Float32Array.from([-90, -90, -90, -20, -90, -90, -90, -90]);

  test("a cell wider than a bin keeps the largest of its bins: a one-bin carrier survives", () => {
    const out = sampleInto(new Float32Array(2), grid.startHz, 4, [{ values, grid }]);
    assert.deepEqual([...out], [-20, -90]);
  });

  test("cells narrower than a bin take the bin they lie in; outside any bin is NaN", () => {
    const out = sampleInto(new Float32Array(6), grid.startHz + 2, 0.5, [{ values, grid }]);
    assert.deepEqual([...out], [-90, -90, -20, -20, -90, -90]);
    const beyond = sampleInto(new Float32Array(2), grid.stopHz + 1, 1, [{ values, grid }]);
    assert.ok(beyond.every(Number.isNaN));
  });

  test("a second source fills only the cells the first does not cover", () => {
    const narrow = { values: Float32Array.from([-10, -10]), grid: binGrid(1000, 2, 2) };
    const out = sampleInto(new Float32Array(8), grid.startHz, 1, [narrow, { values, grid }]);
    assert.deepEqual([...out], [-90, -90, -90, -10, -10, -90, -90, -90]);
  });
});

describe("regrid", () => {
  test("the peak hold moves to a zoomed view's bins, -Infinity where it has none", () => {
    const from = binGrid(1000, 8, 8);
    const peak = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    const zoomed = binGrid(998, 8, 16); // half-hertz bins from 993.75 Hz, before the old band
    const out = regrid(peak, from, zoomed);
    assert.equal(out.length, 16);
    assert.deepEqual([...out.slice(0, 6)], [-Infinity, -Infinity, -Infinity, 1, 1, 2]);
    assert.equal(out[15], 7); // 1001.25 .. 1001.75 Hz: old bins 5 and 6
  });
});

describe("a view in the page's URL", () => {
  test("urlWithView writes what viewFromUrl reads, keeping the other keys", () => {
    const href = urlWithView("http://h:1/?traces=second&span_hz=5",
      { startHz: 101.4e6, stopHz: 101.8e6 }, 3);
    const url = new URL(href);
    assert.equal(url.searchParams.get("traces"), "second");
    assert.deepEqual(viewFromUrl(url.searchParams),
      { centerFreqHz: 101.6e6, spanHz: 400e3, fpsDivisor: 3 });
    assert.equal(urlWithView(href, null, 1), "http://h:1/?traces=second");
  });

  test("values a server would refuse are left out", () => {
    const read = (query) => viewFromUrl(new URLSearchParams(query));
    assert.deepEqual(read("center_freq_hz=1e8"), { fpsDivisor: 1 }); // no span
    assert.deepEqual(read("center_freq_hz=1e8&span_hz=-1&fps_divisor=0"), { fpsDivisor: 1 });
    assert.deepEqual(read("center_freq_hz=1e8&span_hz=1e6&bins=1.5&fps_divisor=101"),
      { centerFreqHz: 1e8, spanHz: 1e6, fpsDivisor: 1 });
    assert.deepEqual(read("center_freq_hz=1e8&span_hz=1e6&bins=512&fps_divisor=6"),
      { centerFreqHz: 1e8, spanHz: 1e6, bins: 512, fpsDivisor: 6 });
    assert.deepEqual(read("bins=65536"), { bins: 65536, fpsDivisor: 1 }); // the whole stream
  });
});

describe("ViewRequester", () => {
  function fakeClient() {
    const client = new EventTarget();
    client.state = "open";
    client.sent = [];
    client.setView = (streamId, view) => client.sent.push([streamId, view]);
    client.answer = (detail) => client.dispatchEvent(new CustomEvent("view", { detail }));
    return client;
  }

  test("a view reset by the server (the stream's bin count changed) is asked for again", () => {
    const client = fakeClient();
    const requester = new ViewRequester(client, () => {});
    requester.request(0, { startHz: 100e6, stopHz: 100.2e6 }, 800, 1, { now: true });
    assert.equal(client.sent.length, 1);
    client.answer({ stream_id: 0, bins: 1024, center_freq_hz: 100.1e6 });
    assert.equal(requester.pending, false);
    client.answer({ stream_id: 0, bins: 4096, reset: true, message: "stream 0 now has 4096 bins" });
    assert.equal(client.sent.length, 2);
    assert.deepEqual(client.sent[1], client.sent[0]);
    assert.equal(requester.resets, 1);
    assert.equal(requester.pending, true); // the new request waits for its answer
  });

  test("a reset before anything was asked asks for nothing", () => {
    const client = fakeClient();
    const requester = new ViewRequester(client, () => {});
    client.answer({ stream_id: 0, bins: 4096, reset: true });
    assert.equal(client.sent.length, 0);
    assert.equal(requester.resets, 1);
  });
});
