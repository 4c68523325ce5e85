# SPDX-License-Identifier: GPL-3.0-or-later
"""The viewer's control panel, in real headless Chromium against the real ``argos-spectrum
--source sim`` (docs/control.md): shown to a client that may control (here: on the server's
own machine, as no operator tokens are set), hidden from one that may not; taking the
lease, tuning from the form and by tapping the plot on a phone, and what other viewers see.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from helpers import REPO_ROOT, running
from viewer_page import Viewer, open_viewer

pytestmark = pytest.mark.slow

APP = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum", "--source", "sim", "--port", "0",
       "--no-detect"]
URL_LINE = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")
CENTER_FREQ_HZ = 100e6
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "viewer"


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """One argos-spectrum --source sim for the module (a test's pages release the lease when
    they close; each test tunes to where it wants)."""
    with running(APP, REPO_ROOT, url_pattern=URL_LINE, name="argos-spectrum") as app:
        yield app.wait_for_url().replace("ws://", "http://")


def open_live(context: BrowserContext, url: str) -> Viewer:
    viewer = open_viewer(context, url)
    viewer.wait_for("s.state === 'open' && s.framesDrawn >= 3 && s.control.shown")
    return viewer


def test_take_control_and_tune_from_the_panel_while_another_viewer_watches(
        app_url: str, context: BrowserContext, browser: object) -> None:
    """The panel shows the lease as free; Take control makes it this page's; a new centre in
    MHz, applied, retunes the radio: this page's frames and another viewer's say the new
    frequency, and the other viewer is told who holds the lease and what changed."""
    viewer = open_live(context, app_url)
    other = open_live(context, app_url)
    assert viewer.page.inner_text("#control-lease") == "free"
    assert viewer.page.is_hidden("#control-form") and viewer.page.is_hidden("#control-release")

    viewer.page.click("#control-acquire")
    viewer.wait_for("s.control.holds")
    assert viewer.page.inner_text("#control-lease").startswith("held by you since")
    other.wait_for("s.control.holder !== null")
    assert other.page.inner_text("#control-lease").startswith("held by viewer (admin)")
    assert other.page.is_hidden("#control-form")

    # Every setting of the source is there with its value: the detector a choice.
    assert viewer.page.input_value("#control-settings [data-setting='detector']") == "peak"
    assert viewer.page.input_value("#control-settings [data-setting='samp_rate']") == "8"
    viewer.page.fill("#control-settings [data-setting='center_freq']", "100.25")
    viewer.page.click("#control-form button[type='submit']")
    for page in (viewer, other):
        page.wait_for("s.axis && Math.abs(s.axis.centerHz - 100.25e6) < 2e4 && s.control.tuned >= 1")
    assert "viewer tuned center_freq 100.250000 MHz" in other.stats()["notices"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewer.page.screenshot(path=str(SCREENSHOTS / "control-desktop.png"))

    viewer.page.click("#control-release")
    other.wait_for("s.control.holder === null")
    assert viewer.errors == [] and other.errors == []


def test_tap_to_tune_on_a_phone(app_url: str, phone: BrowserContext) -> None:
    """On a 390x844 touch screen the panel is below the plots; with tap-to-tune on, a tap at
    three quarters of the plot's width retunes the centre to the frequency under it."""
    viewer = open_live(phone, app_url)
    viewer.page.tap("#control-acquire")
    viewer.wait_for("s.control.holds")
    viewer.page.check("#control-tap")
    viewer.page.locator("#spectrum").scroll_into_view_if_needed()
    plot = viewer.page.locator("#waterfall").bounding_box()
    spectrum = viewer.page.locator("#spectrum").bounding_box()
    assert plot is not None and spectrum is not None
    band = viewer.stats()["window"]
    expected_hz = band["startHz"] + 0.75 * (band["stopHz"] - band["startHz"])
    viewer.page.touchscreen.tap(plot["x"] + 0.75 * plot["width"],
                                spectrum["y"] + spectrum["height"] / 2)
    viewer.wait_for(f"s.control.tuned >= 1 && Math.abs(s.axis.centerHz - {expected_hz}) < 3e4")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewer.page.screenshot(path=str(SCREENSHOTS / "control-phone.png"), full_page=True)
    assert viewer.errors == []


def test_the_panel_stays_hidden_from_a_client_that_may_not_control(
        browser: object, context: BrowserContext) -> None:
    """With control_without_token nobody, the page shows no control panel and says nothing
    about it; watching works as before."""
    with running([*APP, "--control-without-token", "nobody"], REPO_ROOT, url_pattern=URL_LINE,
                 name="argos-spectrum") as app:
        viewer = open_viewer(context, app.wait_for_url().replace("ws://", "http://"))
        viewer.wait_for("s.state === 'open' && s.framesDrawn >= 5")
        assert viewer.page.is_hidden("#control-panel")
        assert viewer.stats()["control"]["shown"] is False
        assert viewer.errors == []


def test_a_new_fft_size_from_the_panel_reaches_every_viewer(
        app_url: str, context: BrowserContext, browser: object) -> None:
    """The FFT size is a list in the panel (16 to 65536, the size now chosen) and the second
    trace one with "none": 4096 applied, this page (the whole band, at its plot's width:
    a coarser level of the finer stream) and another one zoomed on 400 kHz stay open, and
    the zoomed one draws bins half as wide (1953 Hz at 8 MS/s); back to 2048 afterwards."""
    viewer = open_live(context, app_url)
    zoomed = open_viewer(context, app_url + "?center_freq_hz=101.6e6&span_hz=400e3&bins=256")
    zoomed.wait_for("s.state === 'open' && s.framesDrawn >= 3 && s.axis.binHz === 3906.25")
    viewer.page.click("#control-acquire")
    viewer.wait_for("s.control.holds")
    bins = "#control-settings [data-setting='bins']"
    assert viewer.page.input_value(bins) == "2048"
    options = viewer.page.locator(f"{bins} option").all_inner_texts()
    assert options[0] == "16" and options[-1] == "65536"
    assert viewer.page.locator(
        "#control-settings [data-setting='second_detector'] option").first.inner_text() == "none"
    level = viewer.stats()["lastView"]["level"]
    viewer.page.select_option(bins, "4096")
    viewer.page.click("#control-form button[type='submit']")
    viewer.wait_for(f"s.control.tuned >= 1 && s.lastView.level === {level + 1}")
    zoomed.wait_for("s.axis.binHz === 1953.125")
    drawn = zoomed.stats()["framesDrawn"]
    zoomed.wait_for(f"s.state === 'open' && s.framesDrawn > {drawn + 5}")
    assert abs(zoomed.stats()["axis"]["spanHz"] - 400e3) < 200e3  # still zoomed on its band
    viewer.page.select_option(bins, "2048")
    viewer.page.click("#control-form button[type='submit']")
    viewer.wait_for(f"s.control.tuned >= 2 && s.lastView.level === {level}")
    zoomed.wait_for("s.axis.binHz === 3906.25")
    viewer.page.click("#control-release")
    assert viewer.errors == [] and zoomed.errors == []
