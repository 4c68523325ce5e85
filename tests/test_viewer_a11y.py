# SPDX-License-Identifier: GPL-3.0-or-later
"""The viewer for those who do not see the plots or use no mouse, in real headless
Chromium against an in-process :class:`~gr_argos.server.SpectrumServer` fed at about 30
frames/s with a known carrier (``viewer_server``): the plots' names and a text summary
naming the carrier in the accessibility tree; live regions that speak on changes of state
only (not on frames); the plots focusable, with a keyboard cursor the readout follows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from viewer_page import VIEW_DRAWN, carrier_point, open_live
from viewer_server import BINS, CARRIER_BIN, CENTER_FREQ_HZ, SPAN_HZ, Served, serve, start_server

pytestmark = pytest.mark.slow

BIN_HZ = SPAN_HZ / BINS
CARRIER_HZ = CENTER_FREQ_HZ + (CARRIER_BIN - BINS // 2) * BIN_HZ


@pytest.fixture
def served(no_server_thread_left: None) -> Iterator[Served]:
    yield from serve()


def test_the_plots_have_names_and_a_summary_naming_the_carrier(
        served: Served, desktop: BrowserContext) -> None:
    """The accessibility tree names the spectrum and the waterfall as images, and the
    spectrum's text summary says the strongest signal's frequency and level."""
    viewer = open_live(desktop, served.page_url)
    viewer.wait_for(f"s.summary.text.includes('{CARRIER_HZ / 1e6:.4f} MHz at -30.0 dB')")
    snapshot = viewer.page.locator("body").aria_snapshot()
    assert 'img "Spectrum: level in dB over frequency from 98.9990 MHz to 100.9990 MHz' \
        in snapshot, snapshot
    assert 'img "Waterfall: the spectrum over time' in snapshot, snapshot
    assert f"Strongest signals: {CARRIER_HZ / 1e6:.4f} MHz at -30.0 dB" in snapshot, snapshot
    assert viewer.page.get_attribute("#spectrum", "aria-describedby") == "plot-summary plot-keys"
    assert viewer.errors == []


# Every live region of the page (an explicit or implied aria-live), and a count of their
# changes from now on.
WATCH_LIVE_REGIONS_JS = """() => {
    const regions = [...document.querySelectorAll(
        '[aria-live]:not([aria-live="off"]), [role="status"], [role="alert"], [role="log"], output')];
    window.liveChanges = [];
    const observer = new MutationObserver((records) => {
        for (const r of records) {
            const region = regions.find((e) => e.contains(r.target));
            window.liveChanges.push([region.id || region.tagName, region.textContent]);
        }
    });
    for (const region of regions) {
        observer.observe(region, {childList: true, characterData: true, subtree: true});
    }
    return regions.map((r) => r.id || r.tagName);
}"""


def test_live_regions_speak_on_changes_of_state_not_on_frames(
        served: Served, desktop: BrowserContext) -> None:
    """Over 5 s of frames, with the readout and a marker changing on every one under a
    still pointer, no live region changes (the status bar is not one); the connection lost
    and back is said, once each."""
    viewer = open_live(desktop, served.page_url)
    viewer.wait_for("s.said.includes('Connected to the server')")
    viewer.page.mouse.move(*carrier_point(viewer, "#spectrum"))
    viewer.page.keyboard.press("p")
    viewer.wait_for("s.markers.markers.length === 1")
    regions = viewer.page.evaluate(WATCH_LIVE_REGIONS_JS)
    assert "announce" in regions and "status" not in regions, regions
    before = viewer.stats()
    viewer.page.wait_for_timeout(5000)
    after = viewer.stats()
    assert after["framesDrawn"] - before["framesDrawn"] >= 30
    assert after["readout"]["refreshes"] - before["readout"]["refreshes"] >= 30
    assert viewer.page.evaluate("window.liveChanges") == []

    port = served.server.port
    served.server.stop()
    viewer.wait_for("s.said.at(-1) === 'Connection lost: reconnecting'")
    served.server = start_server(port)
    served.publisher.server = served.server
    viewer.wait_for("s.said.at(-1) === 'Connected to the server'")
    viewer.wait_for_more_frames(3)
    # What #announce said (it is emptied before each message, so that one said twice is
    # spoken twice: one message is two changes).
    said = [text for region, text in viewer.page.evaluate("window.liveChanges")
            if region == "announce" and text]
    said = [text for i, text in enumerate(said) if i == 0 or said[i - 1] != text]
    assert said == ["Connection lost: reconnecting", "Connected to the server"], said
    assert [e for e in viewer.errors if "ERR_CONNECTION_REFUSED" not in e] == []


def test_a_focused_plot_moves_a_keyboard_cursor_the_readout_follows(
        served: Served, desktop: BrowserContext) -> None:
    """Tab reaches the spectrum; its cursor starts on the strongest signal, the arrow keys
    move it a bin at a time (not panning the zoomed window) and the readout follows; m puts
    a marker there; on the waterfall the arrows move it down the rows."""
    viewer = open_live(desktop, served.page_url)
    viewer.page.evaluate("window.argosViewer.zoom.setWindow(100.0e6, 100.8e6)")
    viewer.wait_for(VIEW_DRAWN + " && s.zoomed")
    window = viewer.stats()["window"]
    viewer.page.focus("#export-csv")
    viewer.page.keyboard.press("Tab")  # the readout and the controls after it, then the plots
    for _ in range(20):
        if viewer.page.evaluate("document.activeElement.id") == "spectrum":
            break
        viewer.page.keyboard.press("Tab")
    assert viewer.page.evaluate("document.activeElement.id") == "spectrum"
    viewer.wait_for("s.cursor.on === 'spectrum'")
    viewer.page.wait_for_function(
        f"document.getElementById('readout').textContent.startsWith('{CARRIER_HZ / 1e6:.4f} MHz')",
        timeout=30_000)
    assert "-30.0 dB" in (viewer.page.text_content("#readout") or "")
    hz = viewer.stats()["cursor"]["hz"]
    viewer.page.keyboard.press("ArrowRight")
    viewer.wait_for(f"s.cursor.hz > {hz}")
    step = viewer.stats()["cursor"]["hz"] - hz
    bin_width = viewer.stats()["axis"]["binHz"]
    assert step == pytest.approx(bin_width, rel=1e-6)
    assert viewer.stats()["window"] == window  # the arrows moved the cursor, not the window
    assert (viewer.page.text_content("#readout") or "").startswith(f"{(hz + step) / 1e6:.4f} MHz")
    viewer.page.keyboard.press("m")
    viewer.wait_for(f"s.markers.markers.length === 1 && "
                    f"Math.abs(s.markers.markers[0].hz - {hz + step}) < 1")
    viewer.page.wait_for_function(
        "document.getElementById('cursor-say').textContent.includes('MHz')", timeout=30_000)

    viewer.page.keyboard.press("Tab")  # the waterfall
    viewer.wait_for("s.cursor.on === 'waterfall'")
    viewer.page.keyboard.press("Shift+ArrowDown")
    viewer.wait_for("s.readout.surface === 'waterfall' && s.readout.rowAge === 10")
    assert viewer.errors == []
