# SPDX-License-Identifier: GPL-3.0-or-later
"""The browser viewer as an operator lives in it, in real headless Chromium: honest states
(an outage dims the plots and says since when and when the next attempt is; a restart of
the real ``argos-spectrum`` app is counted in frames missed; an unknown ``?stream=`` and an
impossible dB range are errors on screen; the device panel in labelled units), a live
readout (refreshed under a still pointer, the waterfall's row under the pointer, by tap and
drag on a phone), pause, full screen and export (PNG and CSV).

Most tests use an in-process :class:`~gr_argos.server.SpectrumServer` fed at about 30 frames/s
(``viewer_server``), whose carrier the test switches on and off; the restart test runs the real
app twice on one port.
"""

from __future__ import annotations

import base64
import csv
import io
import re
import socket
import struct
import sys
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from helpers import REPO_ROOT, running
from viewer_page import (DECODE_PNG_JS, WAIT_MS, Viewer, carrier_point, open_live, open_viewer,
                         touch)
from viewer_server import (
    BINS, CARRIER_BIN, CARRIER_DB, FPS, NOISE_FLOOR_DB, Served, serve, start_server,
)

pytestmark = pytest.mark.slow

URL_LINE = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")
READOUT_LEVEL = re.compile(r"(-?\d+\.\d) dB")
ROW_TIME = re.compile(r"at (\d\d):(\d\d):(\d\d\.\d\d\d) \(")


@pytest.fixture
def served(no_server_thread_left: None) -> Iterator[Served]:
    yield from serve()


def opacity(viewer: Viewer, selector: str) -> float:
    return float(viewer.page.eval_on_selector(selector, "e => getComputedStyle(e).opacity"))


def readout(viewer: Viewer) -> str:
    return viewer.page.text_content("#readout") or ""


def level_in(text: str) -> float:
    match = READOUT_LEVEL.search(text)
    assert match, text
    return float(match.group(1))


# -- honest states -------------------------------------------------------------------------

def test_an_outage_dims_the_plots_and_says_since_when_and_when_the_next_attempt_is(
        served: Served, context: BrowserContext) -> None:
    """With the server gone the plots and the device panel fade and a banner says since when
    the page is disconnected and in how many seconds it tries again; once the server is back
    the banner goes and the plots are bright again."""
    viewer = open_live(context, served.page_url + "?backoffBaseMs=2000&backoffCapMs=4000")
    served.server.publish_message("status", {"stream": 0, "device": "hackrf", "lna_gain": 16.0})
    viewer.page.wait_for_selector("#device-panel", state="visible", timeout=WAIT_MS)
    assert not viewer.page.is_visible("#outage")
    assert opacity(viewer, "#spectrum") == 1 and opacity(viewer, "#device") == 1
    port = served.server.port
    stopped = time.localtime()
    served.server.stop()
    viewer.page.wait_for_selector("#outage", state="visible", timeout=WAIT_MS)
    viewer.page.wait_for_function(
        "document.getElementById('outage').textContent.includes('Next attempt in')",
        timeout=WAIT_MS)
    text = viewer.page.text_content("#outage") or ""
    since = re.search(r"Disconnected since (\d\d):(\d\d):(\d\d)", text)
    assert since, text
    shown_s = int(since[1]) * 3600 + int(since[2]) * 60 + int(since[3])
    stopped_s = stopped.tm_hour * 3600 + stopped.tm_min * 60 + stopped.tm_sec
    assert 0 <= (shown_s - stopped_s) % 86400 <= 5, (text, stopped)
    assert re.search(r"Next attempt in \d+ s \(attempt \d+\)", text), text
    assert opacity(viewer, "#spectrum") < 0.5 and opacity(viewer, "#waterfall") < 0.5
    assert opacity(viewer, "#device") < 0.5

    served.server = start_server(port)
    served.publisher.server = served.server
    viewer.page.wait_for_selector("#outage", state="hidden", timeout=WAIT_MS)
    viewer.wait_for_more_frames()
    assert opacity(viewer, "#spectrum") == 1
    assert [e for e in viewer.errors if "ERR_CONNECTION_REFUSED" not in e] == []


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for two runs of the app one after the other."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_restart_of_the_real_app_is_counted_in_frames_missed(context: BrowserContext) -> None:
    """argos-spectrum stopped for about 3 s and started again on the same port starts its
    sequence over; the page reconnects and says about how many frames it missed, from the
    frames' timestamps and the stream's 30 frames/s, and counts them in "missed"."""
    port = free_port()
    app = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum", "--source", "sim",
           "--port", str(port)]
    with running(app, REPO_ROOT, url_pattern=URL_LINE, name="argos-spectrum") as first:
        url = first.wait_for_url().replace("ws://", "http://") + "?backoffCapMs=1000"
        viewer = open_live(context, url, frames=30)
        last_seen = time.monotonic()  # the last frame before the stop came after this
    down_from = time.monotonic()
    viewer.page.wait_for_selector("#status[data-state='reconnecting']", timeout=WAIT_MS)
    time.sleep(max(0.0, 3.0 - (time.monotonic() - down_from)))
    with running(app, REPO_ROOT, url_pattern=URL_LINE, name="argos-spectrum") as second:
        second.wait_for_url()
        viewer.wait_for("s.notices.some((n) => n.includes('frames missed (server restarted)'))")
        back = time.monotonic()
        # The resume_refused error says "the server restarted" too, before or after it.
        notice = next(n for n in viewer.stats()["notices"]
                      if "frames missed (server restarted)" in n)
        viewer.page.wait_for_timeout(700)  # the status bar's next refresh
        shown_missed = int(viewer.page.text_content("#missed") or "0")
    missed = re.search(r"about (\d+) frames missed", notice)
    assert missed, notice
    # The app was down at least from down_from for 3 s; the frames on either side of the
    # outage were made after last_seen and before back.
    assert 3.0 * FPS - 2 <= int(missed[1]) <= (back - last_seen + 1) * FPS, notice
    assert shown_missed >= int(missed[1])
    # The browser logs each refused attempt while the app is down; nothing else.
    assert [e for e in viewer.errors if "ERR_CONNECTION_REFUSED" not in e] == []


def test_an_unknown_stream_is_an_error_that_names_the_streams_there_are(
        served: Served, context: BrowserContext) -> None:
    """?stream=1 on a server with only stream 0 says so over the plots, names stream 0 and
    how to open it, and the status is not a green "open"; ?stream=spectrum is refused alike."""
    for wanted in ("1", "spectrum"):
        viewer = open_viewer(context, served.page_url + f"?stream={wanted}")
        viewer.page.wait_for_selector("#stream-error", state="visible", timeout=WAIT_MS)
        text = viewer.page.text_content("#stream-error") or ""
        assert f'No stream "{wanted}"' in text and "0 (spectrum)" in text and "?stream=0" in text
        viewer.wait_for("s.state === 'open'")
        assert viewer.status_state() == "error"
        assert viewer.page.text_content("#state-text") == "no such stream"
        assert viewer.stats()["framesDrawn"] == 0
        viewer.page.close()


def test_a_range_with_min_not_below_max_says_why_and_keeps_the_range(
        served: Served, context: BrowserContext) -> None:
    """Typing a min above the max keeps the range shown and says why next to the fields;
    a max above the min then applies both and the message goes."""
    viewer = open_live(context, served.page_url + "?min=-100&max=-40")
    viewer.page.fill("#db-min", "-20")
    viewer.page.press("#db-min", "Enter")
    viewer.page.wait_for_selector("#range-error", state="visible", timeout=WAIT_MS)
    text = viewer.page.text_content("#range-error") or ""
    assert "min (-20 dB) must be below max (-40 dB)" in text and "-100 to -40 dB" in text
    stats = viewer.stats()
    assert (stats["dbMin"], stats["dbMax"]) == (-100, -40)
    assert viewer.page.get_attribute("#db-min", "aria-invalid") == "true"
    viewer.page.fill("#db-max", "0")
    viewer.page.press("#db-max", "Enter")
    viewer.wait_for("s.dbMin === -20 && s.dbMax === 0")
    assert not viewer.page.is_visible("#range-error")


DEVICE_STATUS = {
    "stream": 0, "name": "spectrum", "center_freq_hz": 100e6, "span_hz": 8e6, "bins": 2048,
    "fps": 30.0, "frames": 54321, "frames_skipped": 0, "source": "hackrf",
    "args": "hackrf=0000000000000000457863dc2a3b7e1f", "samp_rate": 8e6,
    "samp_rate_measured": 7999872.0, "lna_gain": 16.0, "vga_gain": 20.0, "amp": False,
    "overflows": 3, "board_temp_c": 41.5, "if_offset_hz": 250000.0,
}
DEVICE_LINES = {
    "Stream": "spectrum", "Centre": "100.000 MHz", "Span": "8 MHz", "Bins": "2,048",
    "Frame rate": "30 frames/s", "Frames": "54,321", "Sample rate": "8 MS/s",
    "Measured rate": "7.99987 MS/s", "LNA gain": "16 dB", "VGA gain": "20 dB",
    "Amplifier": "off", "Overflows": "3", "Board temp c": "41.5", "If offset": "250 kHz",
    "Refused": "none", "Shedding load": "no",  # the server's own part
    "Device args": "hackrf=0000000000000000457863dc2a3b7e1f",
}

# For each <dd> of the device panel: its label, its text, and whether a number in it (a word
# of digits, as in "7,999,872 MS/s") is split over two lines (a Range over it with more than
# one line box). A word too long for the panel on its own (a serial number) may break.
PANEL_LINES_JS = """() => [...document.querySelectorAll('#device dd')].map((dd) => {
    const text = dd.textContent;
    const node = dd.firstChild;
    let split = false;
    for (const m of text.matchAll(/(?<=^|\\s)\\d[\\d,.]*(?=\\s|$)/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        if (range.getClientRects().length > 1) split = true;
    }
    return [dd.previousElementSibling.textContent, text, split];
})"""


@pytest.mark.parametrize("screen", ["context", "phone"])
def test_the_device_panel_shows_labelled_values_in_units(
        served: Served, screen: str, request: pytest.FixtureRequest) -> None:
    """A status message shows as labelled lines in the units an operator reads (MHz, MS/s,
    dB, grouped counts), unknown keys readable with the unit their suffix names, no raw key
    names, and no number broken over two lines, on a desktop and on a phone."""
    context: BrowserContext = request.getfixturevalue(screen)
    viewer = open_live(context, served.page_url)
    served.server.publish_message("status", DEVICE_STATUS)
    viewer.page.wait_for_selector("#device-panel", state="visible", timeout=WAIT_MS)
    viewer.wait_for_more_frames(3)  # laid out with the panel
    lines = viewer.page.evaluate(PANEL_LINES_JS)
    shown = {label: text.replace("\xa0", " ") for label, text, _ in lines}
    for label, text in DEVICE_LINES.items():
        assert shown.get(label) == text, (label, shown)
    assert [label for label, _, split in lines if split] == []
    panel = viewer.page.inner_text("#device")
    for raw in ("center_freq_hz", "samp_rate", "lna_gain", "board_temp_c"):
        assert raw not in panel
    assert viewer.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# -- live readout --------------------------------------------------------------------------

def test_the_readout_follows_the_level_under_a_still_pointer(served: Served,
                                                           context: BrowserContext) -> None:
    """With the mouse held still over the carrier on the spectrum, the readout shows its
    level and follows it when it changes, without the pointer moving; leaving the plot clears
    it."""
    viewer = open_live(context, served.page_url)
    viewer.page.mouse.move(*carrier_point(viewer, "#spectrum"))
    viewer.page.wait_for_function(
        f"document.getElementById('readout').textContent.includes('{CARRIER_DB:.1f} dB')",
        timeout=WAIT_MS)
    served.publisher.carrier_db = -50.0
    viewer.page.wait_for_function(
        "document.getElementById('readout').textContent.includes('-50.0 dB')", timeout=WAIT_MS)
    assert readout(viewer).startswith("100.36")
    viewer.page.mouse.move(5, 5)
    assert readout(viewer) == ""
    assert viewer.errors == []


# The rows (canvas y, newest 0) of the waterfall where the carrier's column is brighter than
# the column's median: the frames with the carrier on.
CARRIER_ROWS_JS = """(column) => {
    const canvas = window.argosViewer.waterfallCanvas;
    const data = canvas.getContext("2d").getImageData(column, 0, 1, canvas.height).data;
    const sums = [];
    for (let y = 0; y < canvas.height; y++) sums.push(data[4 * y] + data[4 * y + 1] + data[4 * y + 2]);
    const sorted = [...sums].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    return sums.flatMap((sum, y) => (sum > median + 150 && sum !== 765 ? [y] : []));
}"""


def test_the_waterfall_readout_reads_the_row_under_the_pointer(served: Served,
                                                              context: BrowserContext) -> None:
    """The carrier on for about a second leaves bright rows in the waterfall; paused, the
    pointer over one of them reads the carrier's level and the time it was on the air, a
    newer row above reads the noise, and the spectrum (the latest frame) the noise too."""
    served.publisher.carrier_db = None
    # A fixed range: the auto range would brighten the noise once the carrier is gone.
    viewer = open_live(context, served.page_url + "?min=-100&max=-20")
    on_at = time.time()
    served.publisher.carrier_db = CARRIER_DB
    time.sleep(1.0)
    served.publisher.carrier_db = None
    off_at = time.time()
    viewer.wait_for_more_frames(20)
    viewer.page.keyboard.press(" ")
    viewer.wait_for("s.paused")
    width = viewer.page.evaluate("window.argosViewer.waterfallCanvas.width")
    column = int((CARRIER_BIN + 0.5) / BINS * width)
    rows = viewer.page.evaluate(CARRIER_ROWS_JS, column)
    assert len(rows) >= 10, rows
    height = viewer.page.evaluate("window.argosViewer.waterfallCanvas.height")
    middle = rows[len(rows) // 2]
    viewer.page.mouse.move(*carrier_point(viewer, "#waterfall", (middle + 0.5) / height))
    text = readout(viewer)
    assert level_in(text) == pytest.approx(CARRIER_DB, abs=0.05), text
    clock = ROW_TIME.search(text)
    assert clock, text
    row_s = int(clock[1]) * 3600 + int(clock[2]) * 60 + float(clock[3])
    local = time.localtime(on_at)
    on_s = local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec + on_at % 1
    assert -0.5 <= (row_s - on_s) % 86400 <= off_at - on_at + 0.5, text

    newer = rows[0] - 5
    assert newer >= 0
    viewer.page.mouse.move(*carrier_point(viewer, "#waterfall", (newer + 0.5) / height))
    assert level_in(readout(viewer)) < NOISE_FLOOR_DB + 15, readout(viewer)
    viewer.page.mouse.move(*carrier_point(viewer, "#spectrum"))
    assert level_in(readout(viewer)) < NOISE_FLOOR_DB + 15, readout(viewer)
    assert viewer.stats()["readout"]["surface"] == "spectrum"
    assert viewer.errors == []


def readout_mhz(viewer: Viewer) -> float:
    text = readout(viewer)
    match = re.match(r"(\d+\.\d+) MHz", text)
    assert match, text
    return float(match.group(1))


def wait_for_readout_mhz(viewer: Viewer, mhz: float) -> None:
    """Wait until the readout shows ``mhz`` (within 20 kHz): Chromium delivers touch moves
    with the next animation frame."""
    viewer.page.wait_for_function(
        "(mhz) => Math.abs(parseFloat(document.getElementById('readout').textContent) - mhz)"
        " < 0.02", arg=mhz, timeout=WAIT_MS)


def test_a_tap_and_a_drag_read_out_on_a_phone_without_scrolling(served: Served,
                                                                phone: BrowserContext) -> None:
    """On a 390x844 touch screen a tap on the spectrum shows the frequency and level there,
    and they stay (and stay live) after the finger lifts; a finger dragged along the waterfall
    takes the readout with it and the page does not scroll."""
    viewer = open_live(phone, served.page_url)
    session = phone.new_cdp_session(viewer.page)
    x, y = carrier_point(viewer, "#spectrum")
    touch(session, "touchStart", [(x, y)])
    touch(session, "touchEnd", [])
    wait_for_readout_mhz(viewer, 100.367)
    assert level_in(readout(viewer)) == pytest.approx(CARRIER_DB, abs=0.05)
    refreshes = viewer.stats()["readout"]["refreshes"]
    viewer.wait_for(f"s.readout.refreshes >= {refreshes + 5}")
    assert readout_mhz(viewer) == pytest.approx(100.367, abs=0.01)

    box = viewer.page.locator("#waterfall").bounding_box()
    assert box is not None
    viewer.wait_for("s.rowsDrawn >= 60")
    y = box["y"] + box["height"] * 0.05  # a row with data, about 24 frames old
    touch(session, "touchStart", [(box["x"] + 0.2 * box["width"], y)])
    for step in range(1, 6):
        touch(session, "touchMove", [(box["x"] + (0.2 + 0.1 * step) * box["width"], y + step)])
    expected_mhz = 99.0 + 0.7 * 2.0  # 70 % across the 2 MHz around 100 MHz
    wait_for_readout_mhz(viewer, expected_mhz)
    touch(session, "touchEnd", [])
    viewer.wait_for_more_frames(3)
    assert readout_mhz(viewer) == pytest.approx(expected_mhz, abs=0.02)
    assert viewer.page.evaluate("[window.scrollX, window.scrollY, visualViewport.scale]") == \
        [0, 0, 1]
    assert viewer.stats()["readout"]["surface"] == "waterfall"
    assert viewer.errors == []


# -- pause, full screen, export ------------------------------------------------------------

def test_pause_holds_the_display_while_the_stream_is_counted_and_live_jumps_back(
        served: Served, context: BrowserContext) -> None:
    """Space pauses: nothing more is drawn (the waterfall's pixels stay), frames keep being
    received and counted, and the badge says so; the Live button goes back to the live
    stream, marking the rows not drawn."""
    viewer = open_live(context, served.page_url)
    viewer.page.keyboard.press(" ")
    viewer.wait_for("s.paused")
    assert viewer.page.text_content("#pause") == "Live"
    before = viewer.stats()
    picture = viewer.page.evaluate("window.argosViewer.waterfallCanvas.toDataURL()")
    viewer.wait_for(f"s.framesReceived >= {before['framesReceived'] + 30}")
    during = viewer.stats()
    assert (during["framesDrawn"], during["rowsDrawn"]) == (before["framesDrawn"],
                                                            before["rowsDrawn"])
    assert during["framesWhilePaused"] >= 30
    assert viewer.page.evaluate("window.argosViewer.waterfallCanvas.toDataURL()") == picture
    viewer.page.wait_for_function(
        "/Paused \\d+ s · \\d+ frames since/.test(document.getElementById('paused').textContent)",
        timeout=WAIT_MS)
    assert viewer.page.evaluate("window.scrollY") == 0  # space did not scroll the page

    viewer.page.click("#pause")
    viewer.wait_for(f"!s.paused && s.framesDrawn > {during['framesDrawn']} && "
                    f"s.lastSequence > {during['lastSequence'] + 25}")
    assert not viewer.page.is_visible("#paused")
    assert viewer.errors == []


def test_full_screen_shows_the_plots_alone(served: Served, context: BrowserContext) -> None:
    """The Full screen button puts the plots on the whole screen, wider and taller; the
    button inside them brings the page back."""
    viewer = open_live(context, served.page_url)
    before = viewer.page.locator("#waterfall").bounding_box()
    viewer.page.click("#fullscreen")
    viewer.page.wait_for_function("document.fullscreenElement?.id === 'plots'", timeout=WAIT_MS)
    viewer.wait_for_more_frames(3)
    inside = viewer.page.locator("#waterfall").bounding_box()
    assert before is not None and inside is not None
    assert inside["height"] > before["height"]
    viewer.page.click("#fullscreen-exit")
    viewer.page.wait_for_function("document.fullscreenElement === null", timeout=WAIT_MS)
    assert viewer.errors == []


def test_export_downloads_the_trace_as_csv_and_the_view_as_png(
        served: Served, context: BrowserContext) -> None:
    """Paused, CSV downloads a row per bin of the frame shown: frequency_hz at each bin's
    centre from the frame header's centre, span and bins, and level_db with the carrier in
    its bin; PNG downloads a picture as wide as the spectrum canvas with the waterfall
    under it."""
    viewer = open_live(context, served.page_url)
    viewer.page.keyboard.press(" ")
    viewer.wait_for("s.paused")
    axis = viewer.stats()["axis"]
    with viewer.page.expect_download(timeout=WAIT_MS) as download_info:
        viewer.page.click("#export-csv")
    download = download_info.value
    assert re.fullmatch(r"argos-100\.000MHz-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    rows = list(csv.reader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert rows[0] == ["frequency_hz", "level_db"]
    assert len(rows) - 1 == axis["bins"]
    bin_hz = axis["spanHz"] / axis["bins"]
    start_hz = axis["centerHz"] - (axis["bins"] // 2 + 0.5) * bin_hz
    for i in (0, axis["bins"] // 2, axis["bins"] - 1):
        assert float(rows[1 + i][0]) == pytest.approx(start_hz + (i + 0.5) * bin_hz, abs=0.01)
    assert float(rows[1 + axis["bins"] // 2][0]) == pytest.approx(axis["centerHz"], abs=0.01)
    levels = [float(level) for _, level in rows[1:]]
    strongest = max(range(len(levels)), key=levels.__getitem__)
    carrier_hz = start_hz + (CARRIER_BIN + 0.5) * (2e6 / BINS)
    assert float(rows[1 + strongest][0]) == pytest.approx(carrier_hz, abs=bin_hz)
    assert levels[strongest] == pytest.approx(CARRIER_DB, abs=0.01)

    with viewer.page.expect_download(timeout=WAIT_MS) as download_info:
        viewer.page.click("#export-png")
    png = open(download_info.value.path(), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    spectrum = viewer.page.evaluate("[window.argosViewer.spectrumCanvas.width, "
                                    "window.argosViewer.spectrumCanvas.height]")
    assert width == spectrum[0] and height > spectrum[1] + 100
    assert viewer.errors == []


# The downloaded PNG (base64) decoded by the page, compared with the waterfall's time axis
# on screen where the picture has it (the page lays it out as it does, at the same scale):
# how many of the axis's pixels differ, how many are labels (far from the background) in the
# picture and on screen, and how many pixels the axis has.
PNG_TIME_AXIS_JS = """async (png) => {""" + DECODE_PNG_JS + """
    const picture = await decodePng(png);
    const axis = document.getElementById("waterfall-time");
    const spectrum = document.getElementById("spectrum").getBoundingClientRect();
    const box = axis.getBoundingClientRect();
    const x = Math.round(box.left - spectrum.left), y = Math.round(box.top - spectrum.top);
    const shown = axis.getContext("2d").getImageData(0, 0, axis.width, axis.height).data;
    const saved = picture.getContext("2d").getImageData(x, y, axis.width, axis.height).data;
    const background = Array.from(picture.getContext("2d").getImageData(0, 0, 1, 1).data);
    const counts = { differ: 0, savedLabels: 0, shownLabels: 0, pixels: axis.width * axis.height };
    for (let i = 0; i < shown.length; i += 4) {
        // The axis's pixel as the picture has it: over the background.
        const alpha = shown[i + 3] / 255;
        const over = [0, 1, 2].map((c) => shown[i + c] * alpha + background[c] * (1 - alpha));
        const far = (rgb, j) => [0, 1, 2].some((c) => Math.abs(rgb[c] - j[c]) > 40);
        if (far(over, saved.slice(i, i + 3))) counts.differ += 1;
        if (far(saved.slice(i, i + 3), background)) counts.savedLabels += 1;
        if (far(over, background)) counts.shownLabels += 1;
    }
    return counts;
}"""


def test_the_png_export_has_the_waterfalls_time_axis(served: Served,
                                                     context: BrowserContext) -> None:
    """Paused with the time axis labelled, the PNG has the axis beside the waterfall as on
    screen: its labels are in the picture, pixel for pixel where the page shows them."""
    viewer = open_live(context, served.page_url)
    viewer.wait_for("s.timeLabels.length >= 1")
    viewer.page.keyboard.press(" ")
    viewer.wait_for("s.paused")
    with viewer.page.expect_download(timeout=WAIT_MS) as download_info:
        viewer.page.click("#export-png")
    png = open(download_info.value.path(), "rb").read()
    counts = viewer.page.evaluate(PNG_TIME_AXIS_JS, base64.b64encode(png).decode())
    assert counts["shownLabels"] > 20, counts  # the axis has labels on screen
    assert counts["savedLabels"] >= counts["shownLabels"] * 0.9, counts
    assert counts["differ"] <= counts["shownLabels"] * 0.1, counts
    assert viewer.errors == []
