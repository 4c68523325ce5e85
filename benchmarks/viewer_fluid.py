# SPDX-License-Identifier: GPL-3.0-or-later
"""The browser viewer with a big FFT: does it keep up with 65,536 bins at 30 frames/s?

    .venv/bin/python -m benchmarks.viewer_fluid                     # 65,536 bins, 20 s, ~40 s
    .venv/bin/python -m benchmarks.viewer_fluid --web-from /tmp/argos-before   # an older viewer
    .venv/bin/python -m benchmarks.viewer_fluid --tabs 5 --views               # five tabs sharing
    .venv/bin/python -m benchmarks.viewer_fluid --hidden                       # a background tab

A real ``SpectrumServer`` on 127.0.0.1 (port 0) in this process, fed by a thread that
publishes a 65,536-bin float32 spectrum (noise and one narrow carrier) at 30 frames/s; the
viewer in headless Chromium (Debian's, through Playwright) at 1920x1080. The page gets the
whole stream: its ``set_view`` messages are dropped before they leave the page (as with a
server that makes no views), so every frame brings all the bins; ``--views`` lets them through
(the usual case: the server cuts the stream to the plot's width).

Measured over ``--seconds`` after ``--warmup-s``:

- frames received and drawn per second (the viewer's own counters: a frame is drawn when an
  animation frame draws its trace), waterfall rows drawn and skipped per second;
- the main thread's busy share: the renderer's ``TaskDuration`` (Chrome DevTools protocol
  ``Performance.getMetrics``) over the wall time, and its script share (``ScriptDuration``);
- long tasks (over 50 ms, the Long Tasks API: ``PerformanceObserver`` ``longtask``);
- how far the page falls behind: the age of each frame when the page handles it (the
  viewer's ``ageMs``: its header's timestamp to the page's clock), sampled four times a
  second: median and maximum.

``--tabs N`` opens N pages of the viewer in one browser context (tabs of one browser) and
reports each, with its role in the shared connection, and the server's client count at the
end (one when the tabs share it; ``--query '?share=0'`` for one each).

``--hidden`` sends the pages (all but the first, with ``--tabs``) to the background once
they draw: ``document.hidden`` true and a ``visibilitychange`` event, as a browser does with a
tab not shown (headless Chromium never hides a page by itself; a real browser also slows a
hidden tab's timers, so this is the most a background tab can cost).

``--web-from CHECKOUT`` serves the viewer's files from another checkout's ``gr_argos/web``
(the same server and stream), to measure before and after a change. Results: a JSON line
(``--out``) and a summary on stdout; docs/performance.md "The viewer at 65,536 bins".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.run import machine
from gr_argos.protocol import StreamInfo, encode_frame
from gr_argos.server import ServerConfig, SpectrumServer

CHROMIUM = "/usr/bin/chromium"
# A page answered by Playwright (--web-from) has no address, so Chromium's local network
# access checks would keep it from the server on 127.0.0.1: off, in every run alike.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-features=LocalNetworkAccessChecks"]
CENTER_FREQ_HZ = 100e6
SPAN_HZ = 2e6
NOISE_FLOOR_DB = -90.0
CARRIER_DB = -30.0
DISTINCT_SPECTRA = 16  # generated once, published in turn

# Before the page's own scripts: count long tasks, and (unless views are wanted) keep the
# page's set_view messages from the server, so it gets every bin of the stream.
INIT_SCRIPT = """
window.__bench = { longTasks: 0, longTaskMs: 0 };
try {
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      window.__bench.longTasks += 1;
      window.__bench.longTaskMs += entry.duration;
    }
  }).observe({ type: "longtask", buffered: true });
} catch (error) { window.__bench.noLongTasks = String(error); }
// --hidden: the page can be sent to the background (document.hidden, visibilitychange) the
// way a browser does with a tab not shown; headless Chromium never hides a page itself.
window.__benchHidden = false;
Object.defineProperty(Document.prototype, "hidden", { get: () => window.__benchHidden });
Object.defineProperty(Document.prototype, "visibilityState",
                      { get: () => (window.__benchHidden ? "hidden" : "visible") });
window.__benchHide = (hidden) => {
  window.__benchHidden = hidden;
  document.dispatchEvent(new Event("visibilitychange"));
};
if (DROP_VIEWS) {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === "string" && data.includes('"set_view"')) return;
    return send.call(this, data);
  };
}
"""


class Publisher:
    """Publishes ``bins``-bin frames at ``fps`` to ``server``'s stream 0 until stopped."""

    def __init__(self, server: SpectrumServer, bins: int, fps: float) -> None:
        rng = np.random.default_rng(7)
        self.spectra = []
        for _ in range(DISTINCT_SPECTRA):
            power = (NOISE_FLOOR_DB + rng.normal(0.0, 2.0, bins)).astype(np.float32)
            power[bins * 5 // 8] = CARRIER_DB  # one bin wide
            self.spectra.append(power)
        self.server = server
        self.bins = bins
        self.period_s = 1.0 / fps
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-publisher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            power = self.spectra[self.published % DISTINCT_SPECTRA]
            self.server.publish_frame(0, encode_frame(
                power, center_freq_hz=CENTER_FREQ_HZ, span_hz=SPAN_HZ,
                timestamp_ns=time.time_ns(), sequence=self.published))
            self.published += 1
            next_at += self.period_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def serve_files_from(page: Any, base_url: str, web_dir: Path) -> None:
    """Answer the page's requests for the viewer's files from ``web_dir``."""
    def handle(route: Any) -> None:
        path = route.request.url[len(base_url):].split("?", 1)[0]
        name = path or "index.html"
        file = web_dir / name
        if "/" not in name and file.is_file():
            route.fulfill(path=str(file))
        else:
            route.continue_()

    page.route(f"{base_url}*", handle)


def snapshot(page: Any, cdp: Any) -> dict[str, Any]:
    """The page's counters, its renderer's busy times and the time now."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    page_side = page.evaluate("""() => {
        const s = window.argosViewer.stats();
        return { framesReceived: s.framesReceived, framesDrawn: s.framesDrawn,
                 rowsDrawn: s.rowsDrawn, rowsSkipped: s.rowsSkipped, bins: s.axis?.bins ?? 0,
                 waterfallColumns: s.waterfallColumns, plotPixels: s.plotPixels,
                 ageMs: s.ageMs, role: s.shared?.role ?? "none",
                 frameMs: s.work?.frames.ms ?? null, drawMs: s.work?.draws.ms ?? null,
                 ...window.__bench };
    }""")
    return {"wall_s": time.monotonic(), "task_s": metrics["TaskDuration"],
            "script_s": metrics["ScriptDuration"], **page_side}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    server = SpectrumServer(ServerConfig(port=0, host="127.0.0.1"))
    server.add_stream(StreamInfo(stream_id=0, bins=args.bins, center_freq_hz=CENTER_FREQ_HZ,
                                 span_hz=SPAN_HZ, fps=args.fps))
    server.start()
    publisher = Publisher(server, args.bins, args.fps)
    base_url = f"http://127.0.0.1:{server.port}/"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": args.width,
                                                        "height": args.height})
                context.add_init_script(INIT_SCRIPT.replace("DROP_VIEWS",
                                                            "false" if args.views else "true"))
                pages = []
                for _ in range(args.tabs):
                    page = context.new_page()
                    if args.web_from:
                        serve_files_from(page, base_url,
                                         Path(args.web_from) / "gr_argos" / "web")
                    cdp = context.new_cdp_session(page)
                    cdp.send("Performance.enable")
                    page.goto(base_url + args.query)
                    pages.append((page, cdp))
                for page, _ in pages:
                    page.wait_for_function("window.argosViewer?.stats().framesDrawn > 0",
                                           timeout=60_000)
                for page, _ in pages[1 if args.tabs > 1 else 0:] if args.hidden else []:
                    page.evaluate("window.__benchHide(true)")
                time.sleep(args.warmup_s)
                load_before = os.getloadavg()
                starts = [snapshot(page, cdp) for page, cdp in pages]
                published_before = publisher.published
                ages: list[list[Any]] = [[] for _ in pages]
                deadline = time.monotonic() + args.seconds
                while time.monotonic() < deadline:
                    time.sleep(0.25)
                    for (page, _), page_ages in zip(pages, ages):
                        page_ages.append(page.evaluate("window.argosViewer.stats().ageMs"))
                ends = [snapshot(page, cdp) for page, cdp in pages]
                published = publisher.published - published_before
                clients = server.hub.client_count
                load_after = os.getloadavg()
            finally:
                browser.close()
    finally:
        publisher.stop()
        server.stop()
    return {
        "bins": args.bins, "fps": args.fps, "viewport": f"{args.width}x{args.height}",
        "web_from": args.web_from or "this checkout", "views": args.views,
        "query": args.query, "tabs": args.tabs, "hidden": args.hidden,
        "server_clients": clients,
        "published_per_s": round(published / (ends[0]["wall_s"] - starts[0]["wall_s"]), 1),
        "pages": [page_result(start, end, page_ages)
                  for start, end, page_ages in zip(starts, ends, ages)],
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }


def page_result(start: dict[str, Any], end: dict[str, Any], ages: list[Any]) -> dict[str, Any]:
    """One page's rates, busy shares and frame ages between two snapshots."""
    wall_s = end["wall_s"] - start["wall_s"]
    ages = [a for a in ages if isinstance(a, (int, float))]
    per_s = lambda key: round((end[key] - start[key]) / wall_s, 1)  # noqa: E731
    return {
        "role": end["role"], "bins_received": end["bins"], "seconds": round(wall_s, 1),
        "received_per_s": per_s("framesReceived"), "drawn_per_s": per_s("framesDrawn"),
        "rows_per_s": per_s("rowsDrawn"), "rows_skipped_per_s": per_s("rowsSkipped"),
        "main_thread_busy": round((end["task_s"] - start["task_s"]) / wall_s, 3),
        "script_busy": round((end["script_s"] - start["script_s"]) / wall_s, 3),
        # The viewer's own frame handling and drawing (its stats' work), ms per second.
        "frame_ms_per_s": None if end["frameMs"] is None
        else round((end["frameMs"] - start["frameMs"]) / wall_s, 1),
        "draw_ms_per_s": None if end["drawMs"] is None
        else round((end["drawMs"] - start["drawMs"]) / wall_s, 1),
        "long_tasks": end["longTasks"] - start["longTasks"],
        "long_task_ms": round(end["longTaskMs"] - start["longTaskMs"]),
        "age_ms_p50": round(statistics.median(ages)) if ages else None,
        "age_ms_max": round(max(ages)) if ages else None,
        "plot_pixels": end["plotPixels"], "waterfall_columns": end["waterfallColumns"],
    }


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bins", type=int, default=65536)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--query", default="", help="the page's URL query, e.g. ?encoding=uint8")
    parser.add_argument("--tabs", type=int, default=1,
                        help="pages of the viewer open at once (tabs of one browser)")
    parser.add_argument("--views", action="store_true",
                        help="let the page ask for views (the server cuts frames to its width)")
    parser.add_argument("--web-from", default="",
                        help="a checkout whose gr_argos/web the page is served from")
    parser.add_argument("--hidden", action="store_true",
                        help="send the pages to the background after they draw (all but the "
                             "first with --tabs), as a browser does with tabs not shown")
    parser.add_argument("--out", default="", help="append the result as a JSON line to FILE")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = argument_parser().parse_args(argv)
    result = {**measure(args), "machine": machine()}
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
