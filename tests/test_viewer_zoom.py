# SPDX-License-Identifier: GPL-3.0-or-later
"""Zoom, pan and frame rate in the browser viewer, in real headless Chromium against the real
``argos-spectrum --source sim`` (8 MHz around 100 MHz in 2,048 bins).

Each test drives the page as a user does (wheel, drag, double-click, keys, a two-finger
pinch on a phone-sized touch screen through the DevTools protocol, the rate control, a URL)
and checks the window the page shows, the ``view`` the server answered, and that the frames
it then draws are of that view (their headers' span and bins). One app serves the module;
every test opens its own browser context.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import BrowserContext

from helpers import REPO_ROOT, running
from viewer_page import VIEW_DRAWN, Viewer, open_viewer, touch

pytestmark = pytest.mark.slow

APP = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum", "--source", "sim", "--port", "0"]
URL_LINE = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")
CENTER_FREQ_HZ = 100e6
SPAN_HZ = 8e6

# The window shown, as {startHz, stopHz, centerHz, spanHz}.
SHOWN = "(() => { const w = window.argosViewer.stats().window; " \
        "return {...w, centerHz: (w.startHz + w.stopHz) / 2, spanHz: w.stopHz - w.startHz}; })()"

# The next frame the page receives: its header's range and bins, its sequence and the
# frequency of its strongest bin.
NEXT_FRAME_JS = """() => new Promise((resolve) => {
    window.argosViewer.client.addEventListener("frame", (event) => {
        const f = event.detail.frame;
        let best = 0;
        for (let i = 1; i < f.binCount; i++) if (f.power[i] > f.power[best]) best = i;
        const binHz = f.spanHz / f.binCount;
        resolve({centerHz: f.centerFreqHz, spanHz: f.spanHz, bins: f.binCount,
                 sequence: f.sequence,
                 peakHz: f.centerFreqHz + (best - Math.floor(f.binCount / 2)) * binHz});
    }, {once: true});
})"""

# The sequences of the frames the page receives until `run` in a row are multiples of
# `divisor`, or `limit` frames came.
SEQUENCES_UNTIL_JS = """([divisor, run, limit]) => new Promise((resolve) => {
    const client = window.argosViewer.client;
    const sequences = [];
    let inRow = 0;
    const onFrame = (event) => {
        const sequence = event.detail.frame.sequence;
        sequences.push(sequence);
        inRow = sequence % divisor === 0 ? inRow + 1 : 0;
        if (inRow === run || sequences.length === limit) {
            client.removeEventListener("frame", onFrame);
            resolve(sequences);
        }
    };
    client.addEventListener("frame", onFrame);
})"""
QUEUE_DEPTH = 8  # the app's default: frames queued for a client before a view changes


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """The viewer's URL on one argos-spectrum --source sim for the module."""
    with running(APP, REPO_ROOT, url_pattern=URL_LINE, name="argos-spectrum") as app:
        yield app.wait_for_url().replace("ws://", "http://")


def open_live(context: BrowserContext, url: str) -> Viewer:
    """The viewer at ``url`` once it has drawn frames, knows the stream's band and has its
    final layout (the device panel, which narrows the plots, appears with the app's first
    status message)."""
    viewer = open_viewer(context, url)
    viewer.wait_for("s.state === 'open' && s.status >= 1 && window.argosViewer.zoom.band !== null")
    viewer.wait_for_more_frames(3)  # drawn after that layout
    return viewer


def plot_point(viewer: Viewer, fraction: float, canvas: str = "#spectrum") -> tuple[float, float]:
    """Page coordinates at ``fraction`` of the plot's width (the waterfall's box), halfway
    down ``canvas``."""
    plot = viewer.page.locator("#waterfall").bounding_box()
    box = viewer.page.locator(canvas).bounding_box()
    assert plot is not None and box is not None
    return plot["x"] + fraction * plot["width"], box["y"] + box["height"] / 2


def shown(viewer: Viewer) -> dict[str, float]:
    result: dict[str, float] = viewer.page.evaluate(SHOWN)
    return result


def wait_for_view(viewer: Viewer, condition: str = "true") -> dict[str, Any]:
    """Wait until the frames drawn are of the view asked for last and ``condition`` holds
    (``s`` the stats); return the stats."""
    viewer.wait_for(f"s.viewAsked && {VIEW_DRAWN} && ({condition})")
    return viewer.stats()


def test_wheel_zooms_at_the_pointer_and_the_server_sends_the_narrower_view(
        app_url: str, context: BrowserContext) -> None:
    """Turning the wheel over the spectrum narrows the window around the frequency under
    the pointer at once; the page asks for it at the plot's width in device pixels, and the
    frames it then draws say the span the server answered. The axis, the readout, the page's
    URL and the waterfall follow."""
    viewer = open_live(context, app_url)
    x, y = plot_point(viewer, 0.7)
    anchor_hz = shown(viewer)["startHz"] + 0.7 * SPAN_HZ
    viewer.page.mouse.move(x, y)
    for _ in range(4):
        viewer.page.mouse.wheel(0, -400)
    window = shown(viewer)  # at once, before any answer
    assert window["spanHz"] < SPAN_HZ / 4
    # The frequency under the pointer stays under it (within the pixel the mouse lands on).
    pixel_hz = SPAN_HZ / viewer.page.locator("#waterfall").bounding_box()["width"]  # type: ignore[index]
    assert window["startHz"] + 0.7 * window["spanHz"] == pytest.approx(anchor_hz, abs=pixel_hz)

    stats = wait_for_view(viewer, "s.lastView.span_hz < 8e6")
    reply = stats["lastView"]
    window = shown(viewer)
    assert stats["viewAsked"]["bins"] == stats["plotPixels"] > 100
    assert reply["span_hz"] >= window["spanHz"] and reply["span_hz"] < SPAN_HZ
    assert reply["center_freq_hz"] - reply["span_hz"] / 2 <= window["startHz"] + 1
    assert reply["center_freq_hz"] + reply["span_hz"] / 2 >= window["stopHz"] - 1
    frame = viewer.page.evaluate(NEXT_FRAME_JS)
    assert (frame["spanHz"], frame["bins"]) == (reply["span_hz"], reply["bins"])

    viewer.page.mouse.move(*plot_point(viewer, 0.25))
    readout = viewer.page.text_content("#readout") or ""
    expected_mhz = (window["startHz"] + 0.25 * window["spanHz"]) / 1e6
    assert readout.startswith(f"{expected_mhz:.4f} MHz"), (readout, expected_mhz)
    query = parse_qs(urlsplit(viewer.page.url).query)
    assert float(query["span_hz"][0]) == pytest.approx(window["spanHz"], abs=1)
    assert stats["rowsDrawn"] > 0 and viewer.errors == []


def test_drag_pans_and_keys_zoom_pan_and_reset(app_url: str, context: BrowserContext) -> None:
    """+ zooms in about the centre; dragging the waterfall to the left moves the window to
    higher frequencies by the distance dragged; the arrow keys pan; 0 goes back to the whole
    band, and the server's view and frames follow each step."""
    viewer = open_live(context, app_url)
    for _ in range(3):
        viewer.page.keyboard.press("+")
    window = shown(viewer)
    assert window["spanHz"] == pytest.approx(SPAN_HZ / 1.5 ** 3)
    assert window["centerHz"] == pytest.approx(shown_band_centre(viewer))
    wait_for_view(viewer, f"s.lastView.span_hz < {SPAN_HZ}")

    start = plot_point(viewer, 0.6, "#waterfall")
    end = plot_point(viewer, 0.4, "#waterfall")
    viewer.page.mouse.move(*start)
    viewer.page.mouse.down()
    viewer.page.mouse.move(*end, steps=5)
    viewer.page.mouse.up()
    panned = shown(viewer)
    assert panned["centerHz"] - window["centerHz"] == pytest.approx(0.2 * window["spanHz"],
                                                                    rel=0.05)
    stats = wait_for_view(viewer, f"s.viewAsked.centerFreqHz === {panned['centerHz']!r}")
    reply = stats["lastView"]
    assert reply["center_freq_hz"] - reply["span_hz"] / 2 <= panned["startHz"] + 1
    assert reply["center_freq_hz"] + reply["span_hz"] / 2 >= panned["stopHz"] - 1

    viewer.page.keyboard.press("ArrowLeft")
    assert shown(viewer)["centerHz"] == pytest.approx(panned["centerHz"] - 0.1 * panned["spanHz"])
    viewer.page.keyboard.press("0")
    assert not viewer.stats()["zoomed"]
    wait_for_view(viewer, f"s.lastView.span_hz === {SPAN_HZ} && !s.viewAsked.spanHz")
    assert viewer.errors == []


def shown_band_centre(viewer: Viewer) -> float:
    band: dict[str, float] = viewer.page.evaluate("window.argosViewer.zoom.band")
    return (band["startHz"] + band["stopHz"]) / 2


def test_double_click_goes_back_to_the_whole_stream(app_url: str,
                                                   context: BrowserContext) -> None:
    """After a zoom, a double-click on the plot shows the whole band at once, the Whole band
    button hides, and the server's frames are the whole stream again, at the plot's
    resolution."""
    viewer = open_live(context, app_url)
    viewer.page.mouse.move(*plot_point(viewer, 0.5))
    viewer.page.mouse.wheel(0, -800)
    wait_for_view(viewer, f"s.lastView.span_hz < {SPAN_HZ}")
    assert viewer.page.is_visible("#zoom-reset")
    viewer.page.mouse.dblclick(*plot_point(viewer, 0.3, "#waterfall"))
    assert shown(viewer)["spanHz"] == pytest.approx(SPAN_HZ)
    stats = wait_for_view(viewer, f"s.lastView.span_hz === {SPAN_HZ}")
    # The whole band at the plot's resolution: the coarsest level with a bin per pixel.
    assert (stats["axis"]["spanHz"], stats["axis"]["bins"]) == (SPAN_HZ, stats["lastView"]["bins"])
    assert stats["plotPixels"] <= stats["axis"]["bins"] < 2 * stats["plotPixels"]
    assert not stats["zoomed"] and not viewer.page.is_visible("#zoom-reset")
    assert viewer.errors == []


def test_pinch_zooms_and_double_tap_resets_on_a_phone(app_url: str,
                                                     phone: BrowserContext) -> None:
    """On a 390x844 touch screen two fingers spreading apart over the waterfall zoom in
    about their midpoint (the page does not scroll or zoom itself), the server sends the
    narrower view, and a double tap goes back to the whole band."""
    viewer = open_live(phone, app_url)
    session = phone.new_cdp_session(viewer.page)
    left_x, y = plot_point(viewer, 0.4, "#waterfall")
    right_x, _ = plot_point(viewer, 0.6, "#waterfall")
    middle_x = (left_x + right_x) / 2
    touch(session, "touchStart", [(left_x, y), (right_x, y)])
    for step in range(1, 6):
        spread = (right_x - left_x) / 2 * (1 + step * 0.4)  # up to 3 times as far apart
        touch(session, "touchMove", [(middle_x - spread, y), (middle_x + spread, y)])
    touch(session, "touchEnd", [])
    window = shown(viewer)
    assert window["spanHz"] == pytest.approx(SPAN_HZ / 3, rel=0.02)
    assert window["centerHz"] == pytest.approx(shown_band_centre(viewer), abs=SPAN_HZ / 100)
    assert viewer.page.evaluate("[window.scrollX, window.scrollY, visualViewport.scale]") == \
        [0, 0, 1]
    wait_for_view(viewer, f"s.lastView.span_hz < {SPAN_HZ}")

    # Two taps in quick succession; a machine too busy to deliver them within the double-tap
    # time gets another pair (this is not a test of speed).
    for _ in range(5):
        for _ in range(2):
            touch(session, "touchStart", [(middle_x, y)])
            touch(session, "touchEnd", [])
        if not viewer.stats()["zoomed"]:
            break
    wait_for_view(viewer, f"s.lastView.span_hz === {SPAN_HZ}")
    assert viewer.errors == []


def test_the_rate_control_asks_for_one_frame_in_n(app_url: str,
                                                 context: BrowserContext) -> None:
    """Choosing 1/3 asks the server for fps_divisor 3: it answers so, and the frames that
    follow (after any the server had queued already) are those whose sequence is a multiple
    of 3."""
    viewer = open_live(context, app_url)
    viewer.page.select_option("#rate", "3")
    viewer.wait_for("s.lastView && s.lastView.fps_divisor === 3")
    sequences = viewer.page.evaluate(SEQUENCES_UNTIL_JS, [3, 6, QUEUE_DEPTH + 6])
    assert all(sequence % 3 == 0 for sequence in sequences[-6:]), sequences
    assert viewer.stats()["fpsDivisor"] == 3
    assert parse_qs(urlsplit(viewer.page.url).query)["fps_divisor"] == ["3"]
    assert viewer.errors == []


def test_the_url_opens_a_view(app_url: str, context: BrowserContext) -> None:
    """?center_freq_hz=&span_hz=&fps_divisor= opens the page zoomed on that band at that
    rate: the window, the rate control, the server's view, and the strongest carrier sharp
    (one bin of the view) at its frequency."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER  # imports GNU Radio

    carrier_hz = CENTER_FREQ_HZ + STRONGEST_CARRIER[0] * SPAN_HZ  # on a bin centre
    url = f"{app_url}?center_freq_hz={carrier_hz + 50e3:.0f}&span_hz=400000&fps_divisor=2"
    viewer = open_live(context, url)
    window = shown(viewer)
    assert (window["startHz"], window["stopHz"]) == pytest.approx(
        (carrier_hz - 150e3, carrier_hz + 250e3), abs=1)
    assert viewer.page.input_value("#rate") == "2"
    stats = wait_for_view(viewer, "s.lastView.fps_divisor === 2")
    assert stats["zoomed"] and stats["lastView"]["span_hz"] < SPAN_HZ / 8
    frame = viewer.page.evaluate(NEXT_FRAME_JS)
    assert frame["sequence"] % 2 == 0
    bin_hz = frame["spanHz"] / frame["bins"]
    assert bin_hz == SPAN_HZ / 2048  # the stream's own resolution: 400 kHz < plot pixels
    assert frame["peakHz"] == pytest.approx(carrier_hz, abs=bin_hz / 2)
    assert viewer.errors == []
