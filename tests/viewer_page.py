# SPDX-License-Identifier: GPL-3.0-or-later
"""The browser viewer as the tests see it: a page in headless Chromium and its console.

A plain module like ``helpers``: ``from viewer_page import Viewer, open_viewer``. The
``browser``, ``context`` and ``phone`` fixtures are in ``conftest.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import BrowserContext, Page

from viewer_server import BINS, CARRIER_BIN

WAIT_MS = 30_000  # generous: a loaded 2-core machine; a passing test never waits this long

# For Viewer.wait_for: the frames drawn are of a view the server answered, with no view asked
# for unanswered (the latest frame's header is the server's latest view reply).
VIEW_DRAWN = ("s.lastView && !s.viewPending && s.axis.spanHz === s.lastView.span_hz && "
              "s.axis.bins === s.lastView.bins && s.axis.centerHz === s.lastView.center_freq_hz")


# JavaScript for page.evaluate snippets: `await decodePng(png)` is a canvas holding the PNG
# whose base64 text `png` is, decoded by the page itself (no image library needed).
DECODE_PNG_JS = """
const decodePng = async (png) => {
    const image = new Image();
    image.src = "data:image/png;base64," + png;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.width;
    canvas.height = image.height;
    canvas.getContext("2d").drawImage(image, 0, 0);
    return canvas;
};
"""


@dataclass
class Viewer:
    """An open viewer page and what it printed to its console."""

    page: Page
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  # every console line, errors too

    def stats(self) -> dict[str, Any]:
        return self.page.evaluate("window.argosViewer.stats()")

    def wait_for(self, expression: str) -> None:
        """Wait until a JavaScript expression (``s`` = the viewer's stats) is true."""
        self.page.wait_for_function(
            f"(() => {{ const s = window.argosViewer?.stats(); return !!s && ({expression}); }})()",
            timeout=WAIT_MS)

    def wait_for_more_frames(self, count: int = 10) -> None:
        """Wait until the page has received and drawn ``count`` more frames than now."""
        now = self.stats()
        self.wait_for(f"s.framesReceived >= {now['framesReceived'] + count} && "
                      f"s.framesDrawn > {now['framesDrawn']}")

    def status_state(self) -> str | None:
        return self.page.get_attribute("#status", "data-state")


def open_viewer(context: BrowserContext, url: str) -> Viewer:
    """Open ``url`` in a new tab, recording console errors, warnings and page errors."""
    page = context.new_page()
    viewer = Viewer(page)

    def on_console(message: Any) -> None:
        viewer.console.append(message.text)
        if message.type == "error":
            viewer.errors.append(message.text)
        elif message.type == "warning":
            viewer.warnings.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: viewer.errors.append(f"page error: {error}"))
    page.goto(url)
    return viewer


def open_live(context: BrowserContext, url: str, frames: int = 10) -> Viewer:
    """Open ``url`` and wait until it has drawn ``frames`` frames and waterfall rows."""
    viewer = open_viewer(context, url)
    viewer.wait_for(f"s.state === 'open' && s.framesDrawn >= {frames} && s.rowsDrawn >= {frames}")
    return viewer


def carrier_point(viewer: Viewer, canvas: str, y_fraction: float = 0.5,
                  bin_index: int = CARRIER_BIN) -> tuple[float, float]:
    """Page coordinates over bin ``bin_index`` (default: the carrier's) of the in-process
    server's stream (viewer_server.py; the whole band shown), at ``y_fraction`` of
    ``canvas``'s height."""
    plot = viewer.page.locator("#waterfall").bounding_box()
    box = viewer.page.locator(canvas).bounding_box()
    assert plot is not None and box is not None
    return (plot["x"] + (bin_index + 0.5) / BINS * plot["width"],
            box["y"] + y_fraction * box["height"])


def touch(session: Any, kind: str, points: list[tuple[float, float]]) -> None:
    """A touch event through the DevTools protocol, as a touch screen sends it."""
    session.send("Input.dispatchTouchEvent", {
        "type": kind,
        "touchPoints": [{"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)],
    })
