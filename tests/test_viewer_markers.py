# SPDX-License-Identifier: GPL-3.0-or-later
"""The viewer's markers and help overlay in real headless Chromium, against an in-process
:class:`~gr_argos.server.SpectrumServer` fed at about 30 frames/s (``viewer_server``) with a
known carrier and, for peak search, two weaker ones: markers placed by a click (1440x900)
and by a tap (a 390x844 touch screen) read the carrier's frequency and level, live; a delta
between two; peak search and the next peak left and right by keys and by buttons; the help
overlay listing the keys, opened with ``?`` or its button and closed with Escape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext

from viewer_page import VIEW_DRAWN, WAIT_MS, Viewer, carrier_point, open_live, touch
from viewer_server import BINS, CARRIER_BIN, CARRIER_DB, CENTER_FREQ_HZ, SPAN_HZ, Served, serve

pytestmark = pytest.mark.slow

BIN_HZ = SPAN_HZ / BINS
LEFT_BIN, LEFT_DB = 300, -50.0  # weaker carriers either side of the carrier (bin 700)
RIGHT_BIN, RIGHT_DB = 900, -60.0


def bin_hz(index: int) -> float:
    """The centre frequency of bin ``index`` of the stream (docs/protocol.md)."""
    return CENTER_FREQ_HZ + (index - BINS // 2) * BIN_HZ


@pytest.fixture
def served(no_server_thread_left: None) -> Iterator[Served]:
    for served in serve():
        served.publisher.extra_carriers = {LEFT_BIN: LEFT_DB, RIGHT_BIN: RIGHT_DB}
        yield served


def markers(viewer: Viewer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = viewer.stats()["markers"]["markers"]
    return result


def wait_for_marker_at(viewer: Viewer, number: int, index: int, tolerance_hz: float = 1.0) -> None:
    """Wait until marker ``number`` is at bin ``index``'s centre (within ``tolerance_hz``)."""
    viewer.wait_for(f"s.markers.markers.some((m) => m.number === {number} && "
                    f"Math.abs(m.hz - {bin_hz(index)}) <= {tolerance_hz})")


def list_text(viewer: Viewer) -> str:
    return (viewer.page.text_content("#marker-list") or "").replace("\xa0", " ")


def test_markers_placed_by_click_read_the_carrier_live_with_a_delta_and_follow_zoom(
        served: Served, desktop: BrowserContext) -> None:
    """A click on the carrier puts marker 1 on it with its frequency and level, a click on a
    weaker carrier marker 2; Δ shows marker 2 from marker 1 (frequency and level); the
    level follows the carrier on each frame; a zoom keeps the marker on its frequency."""
    viewer = open_live(desktop, served.page_url + "?min=-100&max=-10")
    viewer.page.mouse.click(*carrier_point(viewer, "#spectrum", 0.7))
    wait_for_marker_at(viewer, 1, CARRIER_BIN)
    [first] = markers(viewer)
    assert first["levelDb"] == pytest.approx(CARRIER_DB, abs=0.05)
    assert f"{bin_hz(CARRIER_BIN) / 1e6:.4f} MHz  -30.0 dB" in list_text(viewer)

    viewer.page.mouse.click(*carrier_point(viewer, "#spectrum", 0.7, LEFT_BIN))
    wait_for_marker_at(viewer, 2, LEFT_BIN)
    assert viewer.page.get_attribute("#marker-list [data-marker='2'] .marker-id",
                                     "aria-pressed") == "true"  # the new one is active
    viewer.page.click("#marker-delta")
    viewer.wait_for("s.markers.deltas.length === 1")
    [delta] = viewer.stats()["markers"]["deltas"]
    assert delta["number"] == 2 and delta["reference"] == 1
    assert delta["dfHz"] == pytest.approx(bin_hz(LEFT_BIN) - bin_hz(CARRIER_BIN), abs=1)
    assert delta["dDb"] == pytest.approx(LEFT_DB - CARRIER_DB, abs=0.05)
    assert "Δ1 -781.25 kHz  -20.0 dB" in list_text(viewer)

    viewer.wait_for("s.markers.drawn === 2")
    served.publisher.carrier_db = -40.0
    viewer.wait_for("Math.abs(s.markers.markers[0].levelDb + 40) < 0.05")
    assert "-40.0 dB" in list_text(viewer)

    # Zoomed in on 100.2 .. 100.5 MHz: marker 1 stays at the carrier's frequency and reads
    # it in the zoomed frames; marker 2, out of the window, keeps its frequency.
    viewer.page.evaluate("window.argosViewer.zoom.setWindow(100.2e6, 100.5e6)")
    viewer.wait_for(VIEW_DRAWN + " && s.zoomed")
    viewer.wait_for_more_frames(3)
    first, second = markers(viewer)
    assert first["hz"] == pytest.approx(bin_hz(CARRIER_BIN), abs=1)
    assert first["levelDb"] == pytest.approx(-40.0, abs=0.05)
    assert second["hz"] == pytest.approx(bin_hz(LEFT_BIN), abs=1)
    viewer.wait_for("s.markers.drawn === 1")  # only marker 1 is in the window
    assert viewer.errors == []


def test_a_double_click_on_the_spectrum_goes_back_to_the_whole_band_without_a_marker(
        served: Served, desktop: BrowserContext) -> None:
    """A double-click on the zoomed spectrum shows the whole band (zoom.js) and leaves no
    marker behind: its first click's marker goes with the second."""
    viewer = open_live(desktop, served.page_url)
    viewer.page.evaluate("window.argosViewer.zoom.setWindow(100.2e6, 100.5e6)")
    viewer.wait_for("s.zoomed")
    viewer.page.mouse.dblclick(*carrier_point(viewer, "#spectrum", 0.7))
    viewer.wait_for("!s.zoomed")
    viewer.wait_for_more_frames(2)
    assert markers(viewer) == []
    assert viewer.errors == []


def test_peak_search_and_the_next_peaks_by_keys(served: Served,
                                                desktop: BrowserContext) -> None:
    """p puts a marker on the strongest signal; [ and ] move it to the next peak left and
    right (past the noise), and no further than the last; m puts a new marker at the
    pointer; 1 makes marker 1 active, Delete removes it, c removes all."""
    viewer = open_live(desktop, served.page_url)
    viewer.page.mouse.move(5, 5)  # not over the plots
    keyboard = viewer.page.keyboard
    keyboard.press("p")
    wait_for_marker_at(viewer, 1, CARRIER_BIN)
    keyboard.press("[")
    wait_for_marker_at(viewer, 1, LEFT_BIN)
    assert markers(viewer)[0]["levelDb"] == pytest.approx(LEFT_DB, abs=0.05)
    keyboard.press("]")
    wait_for_marker_at(viewer, 1, CARRIER_BIN)
    keyboard.press("]")
    wait_for_marker_at(viewer, 1, RIGHT_BIN)
    keyboard.press("]")  # no peak further right: it stays
    viewer.wait_for_more_frames(2)
    wait_for_marker_at(viewer, 1, RIGHT_BIN)

    viewer.page.mouse.move(*carrier_point(viewer, "#spectrum", 0.5, LEFT_BIN))
    keyboard.press("m")
    wait_for_marker_at(viewer, 2, LEFT_BIN)
    keyboard.press("1")
    viewer.wait_for("s.markers.active === 1")
    keyboard.press("Delete")
    viewer.wait_for("s.markers.markers.length === 1 && s.markers.markers[0].number === 2")
    keyboard.press("c")
    viewer.wait_for("s.markers.markers.length === 0")
    assert viewer.page.is_hidden("#marker-list")
    assert viewer.errors == []


def test_a_tap_places_a_marker_and_the_buttons_search_peaks_on_a_phone(
        served: Served, phone: BrowserContext) -> None:
    """On a 390x844 touch screen a tap a few pixels beside the carrier puts a marker on it
    (the strongest bin near the finger) with its level; the finger-sized marker buttons
    move it to the next peak right and back; the help button opens the help."""
    viewer = open_live(phone, served.page_url)
    session = phone.new_cdp_session(viewer.page)
    x, y = carrier_point(viewer, "#spectrum", 0.7)
    touch(session, "touchStart", [(x + 3, y)])
    touch(session, "touchEnd", [])
    viewer.wait_for("s.markers.markers.length === 1")
    # The page asks for the plot's resolution: a bin of the frames may merge a few of the
    # stream's (the carrier keeps its level, its bin is wider).
    bin_width = viewer.stats()["axis"]["binHz"]
    wait_for_marker_at(viewer, 1, CARRIER_BIN, tolerance_hz=bin_width)
    assert markers(viewer)[0]["levelDb"] == pytest.approx(CARRIER_DB, abs=0.05)

    for button in ("#marker-peak", "#marker-left", "#marker-right", "#marker-delta",
                   "#marker-clear", "#help-button"):
        box = viewer.page.locator(button).bounding_box()
        assert box is not None and box["height"] >= 44 and box["width"] >= 44, (button, box)
    viewer.page.tap("#marker-right")
    wait_for_marker_at(viewer, 1, RIGHT_BIN, tolerance_hz=bin_width)
    viewer.page.tap("#marker-left")
    wait_for_marker_at(viewer, 1, CARRIER_BIN, tolerance_hz=bin_width)
    viewer.page.tap("#help-button")
    viewer.page.wait_for_selector("#help", state="visible", timeout=WAIT_MS)
    viewer.page.tap("#help [data-close]")
    viewer.page.wait_for_selector("#help", state="hidden", timeout=WAIT_MS)
    assert viewer.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert viewer.errors == []


def test_the_help_opens_with_a_question_mark_lists_the_keys_and_closes_with_escape(
        served: Served, desktop: BrowserContext) -> None:
    """? opens the help over the page with every marker key and the page's other keys;
    while it is open the keys do nothing to the plots; Escape closes it."""
    viewer = open_live(desktop, served.page_url)
    viewer.page.keyboard.press("?")
    viewer.page.wait_for_selector("#help", state="visible", timeout=WAIT_MS)
    keys = viewer.page.eval_on_selector_all("#help kbd", "all => all.map((k) => k.textContent)")
    for key in ("m", "p", "[", "]", "d", "Delete", "c", "1", "+", "-", "0", "space", "?"):
        assert key in keys, (key, keys)
    text = viewer.page.inner_text("#help")
    assert "next peak left" in text and "delta" in text and "Escape" in text
    viewer.page.keyboard.press("p")  # for the dialog, not the markers
    viewer.page.keyboard.press("Escape")
    viewer.page.wait_for_selector("#help", state="hidden", timeout=WAIT_MS)
    assert markers(viewer) == []
    assert viewer.errors == []


# Where the marker list, the signals' labels and the legend are, in CSS px of the page.
BOXES_JS = """() => {
    const s = window.argosViewer.stats();
    const canvas = document.getElementById("spectrum");
    const box = canvas.getBoundingClientRect();
    const scale = box.width / canvas.width;
    const page = (r) => ({ left: box.left + r.left * scale, right: box.left + r.right * scale,
                           top: box.top + r.top * scale, bottom: box.top + r.bottom * scale });
    const list = document.getElementById("marker-list").getBoundingClientRect();
    const plot = { left: s.plot.left, right: s.plot.left + s.plot.width,
                   top: s.plot.top, bottom: s.plot.top + s.plot.height };
    return { list: { left: list.left, right: list.right, top: list.top, bottom: list.bottom },
             labels: s.markLabels.map(page), legend: s.legendBox && page(s.legendBox),
             plot: page(plot),
             waterfall: document.getElementById("waterfall").getBoundingClientRect().toJSON() };
}"""


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and \
        a["top"] < b["bottom"] and b["top"] < a["bottom"]


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_the_marker_list_hides_no_signal_label_legend_or_plot(
        no_server_thread_left: None, request: pytest.FixtureRequest, screen: str) -> None:
    """With markers set, a signal on the air at the left of the band and a stream with two
    traces (a legend), on a 1440x900 desktop and a 390x844 phone: the markers' list is
    shown, and its box covers neither the signals' labels, nor the legend, nor any part of
    the spectrum's plot or the waterfall."""
    context: BrowserContext = request.getfixturevalue(screen)
    for served in serve(second_trace=True):
        viewer = open_live(context, served.page_url + "?min=-100&max=-10")
        center = CENTER_FREQ_HZ - SPAN_HZ / 2 + 40e3  # at the plot's left edge
        served.server.publish_message("detection", {
            "stream": 0, "event": "start", "id": 1, "center_freq_hz": center,
            "bandwidth_hz": 10e3, "low_freq_hz": center - 5e3, "high_freq_hz": center + 5e3,
            "peak_db": -40.0, "mean_db": -45.0, "snr_db": 30.0, "start_ns": 1,
            "duration_s": 0.0333, "time_ns": 1,
            "tuning": {"center_freq_hz": CENTER_FREQ_HZ, "span_hz": SPAN_HZ}, "gps": None})
        viewer.wait_for("s.marksDrawn === 1 && s.markLabels.length === 1 && s.legendBox")
        viewer.page.keyboard.press("p")  # marker 1 on the strongest signal
        viewer.page.keyboard.press("m")  # marker 2, nothing under the pointer: the strongest
        viewer.page.keyboard.press("d")  # with the delta: the widest list
        viewer.wait_for("s.markers.markers.length === 2 && s.markers.delta")
        viewer.wait_for_more_frames(3)
        boxes = viewer.page.evaluate(BOXES_JS)
        assert viewer.page.is_visible("#marker-list")
        assert boxes["list"]["bottom"] > boxes["list"]["top"]
        for name, box in [("a signal's label", label) for label in boxes["labels"]] + [
                ("the legend", boxes["legend"]), ("the plot", boxes["plot"]),
                ("the waterfall", boxes["waterfall"])]:
            assert not overlap(boxes["list"], box), (name, boxes)
        assert viewer.errors == []
