# SPDX-License-Identifier: GPL-3.0-or-later
"""The browser viewer at ``/`` in real headless Chromium, against real gr-argos servers.

Two tests run the real ``argos-spectrum --source sim`` app and check what a user sees: the
waterfall fills and the strongest simulated carrier is where the simulation put it; with
``--second-detector average`` the page asks for the second trace and draws the average under
the peak. The others use an in-process :class:`~gr_argos.server.SpectrumServer` fed by a
publisher thread at about 30 frames/s, so they can restart the server, inject malformed
messages, retune and offer a second trace at will.
They read the page's state through its ``window.argosViewer`` hook and its canvases' pixels.
Every browser, page, server, thread and process is closed in a fixture or ``finally``.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext

from helpers import REPO_ROOT, expected_bin, running
from viewer_page import DECODE_PNG_JS, VIEW_DRAWN, WAIT_MS, Viewer, open_viewer
from viewer_server import (
    BINS, CARRIER_BIN, CARRIER_DB, CENTER_FREQ_HZ, FPS, NOISE_FLOOR_DB, SECOND_CARRIER_BIN,
    SPAN_HZ, Served, serve, start_server,
)

pytestmark = pytest.mark.slow

APP = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum", "--source", "sim", "--port", "0"]
URL_LINE = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")

NEWEST_ROWS = 10  # waterfall rows drawn after a change of trace, checked for its carrier

TOKEN = "viewer-test-token-3e7b1"


# The waterfall's summed brightness per column (over its newest maxRows rows if given), its
# width and the colours of its top row. Pure white and pure black pixels are left out: they
# are the detection marks' outlines (and view marker rows), not data.
WATERFALL_COLUMNS_JS = """(maxRows) => {
    const canvas = window.argosViewer.waterfallCanvas;
    const rows = Math.min(canvas.height, window.argosViewer.stats().rowsDrawn,
                          maxRows ?? Infinity);
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, rows).data;
    const brightness = new Array(canvas.width).fill(0);
    const topRow = new Set();
    for (let y = 0; y < rows; y++) {
        for (let x = 0; x < canvas.width; x++) {
            const i = 4 * (y * canvas.width + x);
            const sum = data[i] + data[i + 1] + data[i + 2];
            if (sum !== 0 && sum !== 765) brightness[x] += sum;
            if (y === 0) topRow.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
        }
    }
    return {width: canvas.width, brightness, topRowColours: topRow.size};
}"""


@pytest.fixture
def served(no_server_thread_left: None) -> Iterator[Served]:
    yield from serve()


@pytest.fixture
def two_trace_served(no_server_thread_left: None) -> Iterator[Served]:
    """A server whose stream is a peak trace with an average under it."""
    yield from serve(second_trace=True)


@pytest.fixture
def token_served(no_server_thread_left: None) -> Iterator[Served]:
    """A server that streams only to clients that send TOKEN."""
    yield from serve(token=TOKEN)


def test_viewer_shows_the_simulated_band_from_the_real_app(context: BrowserContext) -> None:
    """Against argos-spectrum --source sim the page loads cleanly, fills the waterfall and
    shows the strongest carrier in the waterfall column of its bin."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER  # imports GNU Radio

    with running(APP, REPO_ROOT, url_pattern=URL_LINE, name="argos-spectrum") as app:
        viewer = open_viewer(context, app.wait_for_url().replace("ws://", "http://"))
        viewer.wait_for("s.state === 'open' && s.rowsDrawn >= 90 && s.lastView !== null "
                        "&& s.axis.bins === s.lastView.bins")
        stats = viewer.stats()
        # The whole band at the plot's resolution: each bin the maximum of 2**level bins,
        # centred on their mean frequency (so within half a bin of the stream's centre).
        assert stats["axis"]["centerHz"] == pytest.approx(
            100e6, abs=stats["axis"]["spanHz"] / stats["axis"]["bins"] / 2)
        assert stats["axis"]["spanHz"] == pytest.approx(8e6)
        assert stats["axis"]["bins"] >= min(stats["plotPixels"], 2048)
        columns = viewer.page.evaluate(WATERFALL_COLUMNS_JS)
    bins = stats["axis"]["bins"]
    assert columns["topRowColours"] > 20, "the newest waterfall row is blank or flat"
    carrier_bin = expected_bin(STRONGEST_CARRIER[0], bins)
    expected_x = (carrier_bin + 0.5) / bins * columns["width"]
    brightest_x = int(np.argmax(columns["brightness"])) + 0.5
    assert abs(brightest_x - expected_x) <= 3, (brightest_x, expected_x)
    assert viewer.errors == []


def test_viewer_reconnects_when_the_server_restarts(served: Served,
                                                    context: BrowserContext) -> None:
    """A server restarted on the same port under an open page brings it back to open, frames
    resume and the frames missed while it was down are marked by a gap row."""
    viewer = open_viewer(context, served.page_url + "?backoffCapMs=1000")
    viewer.wait_for("s.state === 'open' && s.framesReceived >= 10")
    port = served.server.port
    served.server.stop()
    viewer.page.wait_for_selector("#status[data-state='reconnecting']", timeout=WAIT_MS)
    assert "reconnecting" in viewer.page.inner_text("#state-text")
    time.sleep(0.5)  # the publisher goes on: the sequence jumps over the downtime
    served.server = start_server(port)
    served.publisher.server = served.server
    viewer.page.wait_for_selector("#status[data-state='open']", timeout=WAIT_MS)
    viewer.wait_for("s.gapRowsDrawn >= 1 && s.client.reconnects >= 1")
    viewer.wait_for_more_frames()
    assert viewer.stats()["client"]["lost"] > 0


# A window around the carrier of the synthetic stream (bin 700: 100.367 MHz), in the URL.
ZOOMED_QUERY = "?center_freq_hz=100350000&span_hz=300000"


def test_a_zoomed_view_with_two_traces_survives_a_server_restart(
        two_trace_served: Served, context: BrowserContext) -> None:
    """A page opened zoomed on a stream with a second trace gets both traces of its view;
    after the server restarts it reconnects to the same view (the URL the client keeps) and
    keeps its window."""
    served = two_trace_served
    viewer = open_viewer(context, served.page_url + ZOOMED_QUERY + "&backoffCapMs=1000")
    viewer.wait_for(f"s.state === 'open' && {VIEW_DRAWN} && s.secondFramesReceived >= 3 && "
                    "s.tracesDrawn.length === 2")
    before = viewer.stats()
    assert before["zoomed"] and before["lastView"]["span_hz"] < SPAN_HZ
    port = served.server.port
    served.server.stop()
    viewer.page.wait_for_selector("#status[data-state='reconnecting']", timeout=WAIT_MS)
    served.server = start_server(port, second_trace=True)
    served.publisher.server = served.server
    viewer.wait_for(f"s.state === 'open' && s.client.reconnects >= 1 && "
                    f"s.viewReplies > {before['viewReplies']} && {VIEW_DRAWN} && "
                    f"s.secondFramesReceived > {before['secondFramesReceived']}")
    after = viewer.stats()
    assert after["window"] == before["window"] and after["lastView"] == before["lastView"]


def test_two_tabs_both_receive_frames(served: Served, context: BrowserContext) -> None:
    """Two viewer tabs open at once each receive and draw the stream."""
    first = open_viewer(context, served.page_url)
    second = open_viewer(context, served.page_url)
    for viewer in (first, second):
        viewer.wait_for("s.state === 'open' && s.framesReceived >= 10 && s.rowsDrawn >= 1")
        assert viewer.errors == []


def test_malformed_frame_and_bad_json_are_skipped(served: Served,
                                                  context: BrowserContext) -> None:
    """A garbage binary frame and a non-JSON text message are skipped with a console warning,
    an unknown message type is ignored, and newer frames keep being drawn."""
    viewer = open_viewer(context, served.page_url)
    viewer.wait_for("s.state === 'open' && s.framesReceived >= 5")
    served.server.publish_frame(0, b"garbage, not a gr-argos frame" * 4)
    served.server.hub.publish_message('{"type": "mystery", "value": 1}')
    served.server.hub.publish_message("not json")
    viewer.wait_for("s.warnings >= 2 && s.client.malformed >= 2")
    viewer.wait_for_more_frames()
    malformed = [text for text in viewer.warnings if "malformed" in text]
    assert len(malformed) == 2, viewer.warnings
    assert viewer.errors == []
    assert viewer.stats()["state"] == "open"


def test_axis_follows_a_retune(served: Served, context: BrowserContext) -> None:
    """When the frames' centre frequency changes the MHz axis moves with it and a retune row
    is marked in the waterfall."""
    viewer = open_viewer(context, served.page_url)
    viewer.wait_for("s.framesReceived >= 5")
    assert viewer.stats()["axis"]["centerHz"] == pytest.approx(CENTER_FREQ_HZ)
    served.publisher.center_freq_hz = 433.92e6
    viewer.wait_for("s.axis.centerHz === 433.92e6 && s.retunes >= 1")
    axis = viewer.stats()["axis"]
    bin_hz = SPAN_HZ / BINS
    assert axis["startHz"] == pytest.approx(433.92e6 - (BINS // 2 + 0.5) * bin_hz)
    assert axis["stopHz"] - axis["startHz"] == pytest.approx(SPAN_HZ)
    assert "433.920 MHz" in viewer.page.inner_text("#stream-info")


def test_db_range_controls(served: Served, context: BrowserContext) -> None:
    """Typing a dB range fixes it and turns auto off; the Auto button fits the range around
    the noise floor and the strongest peak again."""
    viewer = open_viewer(context, served.page_url + "?min=-60&max=-50")
    viewer.wait_for("s.framesReceived >= 5")
    assert viewer.stats()["auto"] is False
    viewer.page.fill("#db-min", "-120")
    viewer.page.fill("#db-max", "-10")
    viewer.page.press("#db-max", "Enter")
    viewer.wait_for("s.dbMin === -120 && s.dbMax === -10 && !s.auto")
    viewer.page.click("#auto")
    viewer.wait_for(f"s.auto && s.dbMin < {NOISE_FLOOR_DB} && s.dbMax > {CARRIER_DB} && "
                    f"s.dbMax - s.dbMin < 100")
    assert viewer.page.get_attribute("#auto", "aria-pressed") == "true"


def test_gps_and_status_panels_appear_with_their_messages(served: Served,
                                                          context: BrowserContext) -> None:
    """The GPS and device panels stay hidden until a gps or status message arrives, then show
    its values."""
    viewer = open_viewer(context, served.page_url)
    viewer.wait_for("s.state === 'open'")
    assert not viewer.page.is_visible("#gps-panel")
    assert not viewer.page.is_visible("#device-panel")
    served.server.publish_message("gps", {"stream": 0, "lat": 52.2297, "lon": -21.0122,
                                          "alt_m": 110.5, "mode": 3, "satellites_used": 7,
                                          "satellites_visible": 11,
                                          "time": "2024-05-01T12:00:00Z"})
    served.server.publish_message("status", {"stream": 0, "device": "hackrf",
                                             "gain_db": 40.0, "overflows": 0})
    viewer.page.wait_for_selector("#gps-panel", state="visible", timeout=WAIT_MS)
    viewer.page.wait_for_selector("#device-panel", state="visible", timeout=WAIT_MS)
    gps = viewer.page.inner_text("#gps")
    for text in ("52.229700° N", "21.012200° W", "110.5 m", "3D", "2024-05-01T12:00:00Z",
                 "7 of 11"):
        assert text in gps
    device = viewer.page.inner_text("#device")
    lines = dict(viewer.page.eval_on_selector_all(
        "#device dt", "dts => dts.map((dt) => [dt.textContent, "
        "dt.nextElementSibling.textContent.replace(/\\u00a0/g, ' ')])"))
    expected = {"Device": "hackrf", "Gain": "40 dB", "Overflows": "0"}
    assert {label: lines.get(label) for label in expected} == expected
    assert "stream" not in device


def test_phone_sized_screen(served: Served, phone: BrowserContext) -> None:
    """At 390x844 nothing overflows sideways and both canvases are visible and drawn."""
    viewer = open_viewer(phone, served.page_url)
    viewer.wait_for("s.framesDrawn >= 5 && s.rowsDrawn >= 5")
    layout = viewer.page.evaluate("""() => {
        const box = (id) => document.getElementById(id).getBoundingClientRect();
        return {scrollWidth: document.documentElement.scrollWidth,
                innerWidth: window.innerWidth,
                spectrum: box("spectrum").toJSON(), waterfall: box("waterfall").toJSON()};
    }""")
    assert layout["scrollWidth"] <= layout["innerWidth"], layout
    for name in ("spectrum", "waterfall"):
        rect = layout[name]
        assert rect["width"] > 200 and rect["height"] > 100, (name, rect)
        assert rect["left"] >= 0 and rect["right"] <= layout["innerWidth"], (name, rect)
    assert viewer.page.is_visible("#spectrum") and viewer.page.is_visible("#waterfall")
    assert viewer.errors == []


def test_compress_once_frames_are_inflated_and_drawn(served: Served,
                                                     context: BrowserContext) -> None:
    """With ?encoding=uint8&compress=1 the server sends this page deflated uint8 frames;
    Chromium's DecompressionStream inflates them, the page draws them without a console
    error, and the carrier shows in the waterfall column of its bin."""
    viewer = open_viewer(context, served.page_url + "?encoding=uint8&compress=1")
    viewer.wait_for("s.state === 'open' && s.framesDrawn >= 10 && s.rowsDrawn >= 30")
    stats = viewer.stats()
    assert stats["client"]["malformed"] == 0
    assert stats["axis"]["bins"] == BINS
    clients = served.server.stats()["clients"]
    assert [c["format"] for c in clients] == ["uint8+deflate"], clients
    assert served.server.stats()["total"]["encodes"].get("uint8+deflate", 0) >= 10
    columns = viewer.page.evaluate(WATERFALL_COLUMNS_JS)
    assert columns["topRowColours"] > 20, "the newest waterfall row is blank or flat"
    expected_x = (CARRIER_BIN + 0.5) / BINS * columns["width"]
    brightest_x = int(np.argmax(columns["brightness"])) + 0.5
    assert abs(brightest_x - expected_x) <= 3, (brightest_x, expected_x)
    assert viewer.errors == []


# -- two traces -----------------------------------------------------------------------------

# Both traces of the next frame the page receives, and their detectors.
NEXT_FRAME_JS = """() => new Promise((resolve) => {
    window.argosViewer.client.addEventListener("frame", (event) => {
        const frame = event.detail.frame;
        resolve({detector: frame.detector, secondDetector: frame.secondDetector,
                 first: Array.from(frame.power),
                 second: frame.secondPowerDb && Array.from(frame.secondPowerDb)});
    }, {once: true});
})"""

# The label of each trace button and which one is pressed.
TRACE_BUTTONS_JS = """() => Object.fromEntries([...document.querySelectorAll("#traces button")]
    .map((b) => [b.dataset.show, [b.textContent.trim(), b.getAttribute("aria-pressed")]]))"""


def brightest_column_of_newest_rows(viewer: Viewer) -> float:
    """The waterfall column (its centre, in bins) brightest over the newest rows."""
    columns = viewer.page.evaluate(WATERFALL_COLUMNS_JS, NEWEST_ROWS)
    return (int(np.argmax(columns["brightness"])) + 0.5) * BINS / columns["width"]


def choose_traces(viewer: Viewer, show: str, drawn: str, *, tap: bool = False) -> None:
    """Press (or tap) the trace button ``show``; wait until the spectrum draws ``drawn``
    (trace keys, bottom first) and NEWEST_ROWS more waterfall rows came in."""
    selector = f"#traces button[data-show='{show}']"
    if tap:
        viewer.page.tap(selector)
    else:
        viewer.page.click(selector)
    viewer.wait_for(f"s.traces === '{show}' && s.tracesDrawn.join() === '{drawn}'")
    rows = viewer.stats()["rowsDrawn"]
    viewer.wait_for(f"s.rowsDrawn >= {rows + NEWEST_ROWS + 2}")
    pressed = {key: state for key, (_, state) in viewer.page.evaluate(TRACE_BUTTONS_JS).items()}
    assert pressed == {key: str(key == show).lower() for key in ("both", "first", "second")}


def test_viewer_draws_peak_and_average_from_an_app_with_a_second_trace(
        context: BrowserContext) -> None:
    """Against argos-spectrum --second-detector average the page asks for the second trace,
    draws the average under the peak (no bin of it above the peak), names both in the
    trace control and the stream line, and logs no error."""
    with running(APP + ["--second-detector", "average"], REPO_ROOT, url_pattern=URL_LINE,
                 name="argos-spectrum") as app:
        viewer = open_viewer(context, app.wait_for_url().replace("ws://", "http://"))
        viewer.wait_for("s.state === 'open' && s.secondFramesReceived >= 10 && "
                        "s.tracesDrawn.join() === 'second,first'")
        frame = viewer.page.evaluate(NEXT_FRAME_JS)
        stats = viewer.stats()
        client_url = viewer.page.evaluate("window.argosViewer.client.url")
        buttons = viewer.page.evaluate(TRACE_BUTTONS_JS)
        stream_info = viewer.page.inner_text("#stream-info")
        assert viewer.page.is_visible("#traces")
    assert "second_trace=1" in client_url
    assert (stats["detector"], stats["secondDetector"]) == ("peak", "average")
    assert (frame["detector"], frame["secondDetector"]) == ("peak", "average")
    first, second = np.array(frame["first"]), np.array(frame["second"])
    assert np.all(second <= first + 1e-3), "an average above the peak of its own period"
    assert np.median(first) - np.median(second) > 1.0, "the peak is not above the average"
    assert buttons == {"both": ["both", "true"], "first": ["peak", "false"],
                       "second": ["average", "false"]}
    assert "peak + average" in stream_info
    assert viewer.errors == []


def test_trace_control_shows_both_the_first_or_the_second(two_trace_served: Served,
                                                          context: BrowserContext) -> None:
    """?traces=second starts with only the second trace; the buttons switch to the first
    alone, both (the second under the first) and back; the waterfall follows the first
    trace unless only the second is shown; the server sends this page two-trace frames."""
    viewer = open_viewer(context, two_trace_served.page_url + "?traces=second")
    viewer.wait_for("s.secondFramesReceived >= 5 && s.tracesDrawn.join() === 'second' && "
                    f"s.rowsDrawn >= {NEWEST_ROWS + 5}")
    clients = two_trace_served.server.stats()["clients"]
    assert [c["format"] for c in clients] == ["float32+second_trace"], clients
    assert abs(brightest_column_of_newest_rows(viewer) - SECOND_CARRIER_BIN) <= 3
    for show, drawn, carrier_bin in [("first", "first", CARRIER_BIN),
                                     ("both", "second,first", CARRIER_BIN),
                                     ("second", "second", SECOND_CARRIER_BIN)]:
        choose_traces(viewer, show, drawn)
        assert abs(brightest_column_of_newest_rows(viewer) - carrier_bin) <= 3, show
    assert viewer.errors == []


def test_without_a_second_trace_the_control_is_hidden_and_frames_render(
        served: Served, context: BrowserContext) -> None:
    """A stream without a second trace: the control stays hidden, the page asks for no
    format (the server sends it the stream's own frames), draws the one trace and its
    carrier, even with ?traces=second."""
    viewer = open_viewer(context, served.page_url + "?traces=second")
    viewer.wait_for("s.state === 'open' && s.framesDrawn >= 10 && "
                    f"s.rowsDrawn >= {NEWEST_ROWS + 5}")
    stats = viewer.stats()
    assert stats["tracesDrawn"] == ["first"]
    assert (stats["secondDetector"], stats["secondFramesReceived"]) == ("", 0)
    assert viewer.page.is_hidden("#traces")
    client_url = viewer.page.evaluate("window.argosViewer.client.url")
    assert client_url.startswith(served.server.url) and "encoding" not in client_url
    assert [c["format"] for c in served.server.stats()["clients"]] == [None]
    assert abs(brightest_column_of_newest_rows(viewer) - CARRIER_BIN) <= 3
    assert viewer.errors == []


def test_trace_control_on_a_phone_with_touch(two_trace_served: Served,
                                             phone: BrowserContext) -> None:
    """At 390x844 with touch the trace buttons are on screen, finger-sized and overlap no
    other control or plot, and tapping them switches the traces."""
    viewer = open_viewer(phone, two_trace_served.page_url)
    viewer.wait_for("s.tracesDrawn.join() === 'second,first'")
    layout = viewer.page.evaluate("""() => {
        const box = (e) => e.getBoundingClientRect().toJSON();
        const others = [...document.querySelectorAll(
            ".controls input, .controls select, .controls button:not(#traces button), " +
            "#readout, #spectrum, #waterfall")].map(box);
        return {scrollWidth: document.documentElement.scrollWidth,
                innerWidth: window.innerWidth,
                buttons: [...document.querySelectorAll("#traces button")].map(box), others};
    }""")
    assert layout["scrollWidth"] <= layout["innerWidth"], layout

    def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
        return (min(a["right"], b["right"]) > max(a["left"], b["left"])
                and min(a["bottom"], b["bottom"]) > max(a["top"], b["top"]))

    buttons = layout["buttons"]
    for i, button in enumerate(buttons):
        assert button["left"] >= 0 and button["right"] <= layout["innerWidth"], button
        assert button["height"] >= 44, button
        for other in buttons[i + 1:] + layout["others"]:
            assert not overlap(button, other), (button, other)
    choose_traces(viewer, "second", "second", tap=True)
    choose_traces(viewer, "first", "first", tap=True)
    choose_traces(viewer, "both", "second,first", tap=True)
    assert viewer.errors == []


def test_docs_list_every_url_parameter_the_viewer_reads() -> None:
    """docs/viewer.md's URL table names exactly the query parameters the viewer reads:
    those viewer.js, zoom.js (a view's keys) and shared-connection.js (``share``) ask
    ``params`` for and the ArgosClient options viewer.js passes through."""
    web = REPO_ROOT / "gr_argos" / "web"
    script = (web / "viewer.js").read_text(encoding="utf-8")
    others = [(web / name).read_text(encoding="utf-8")
              for name in ("zoom.js", "shared-connection.js")]
    read = {name for module in (script, *others)
            for name in re.findall(r'params\.(?:get|has)\("([^"]+)"\)', module)}
    passed = re.search(r"const CLIENT_OPTIONS = \[(.*?)\];", script, re.DOTALL)
    assert passed is not None, "viewer.js no longer lists CLIENT_OPTIONS"
    read |= set(re.findall(r'"(\w+)"', passed.group(1)))

    docs = (REPO_ROOT / "docs" / "viewer.md").read_text(encoding="utf-8")
    table = docs.split("## URL parameters", 1)[1].split("\n## ", 1)[0]
    documented = {name for row in table.splitlines() if row.startswith("| `")
                  for name in re.findall(r"`([^`]+)`", row.split("|")[1])}

    assert documented == read


# -- a server with a token ------------------------------------------------------------------

# What the page keeps in its two storages (for this page's origin).
STORED_TOKENS_JS = """() => {
    const pick = (store) => Object.keys(store).filter((k) => k.startsWith("gr-argos.token:"))
        .map((k) => store.getItem(k));
    return {session: pick(sessionStorage), local: pick(localStorage)};
}"""


def log_in(viewer: Viewer, token: str, *, remember: bool = False) -> None:
    """Type ``token`` into the login form, tick "remember" if asked, and press Enter."""
    viewer.page.wait_for_selector("#login", state="visible", timeout=WAIT_MS)
    viewer.page.fill("#login-token", token)
    viewer.page.set_checked("#login-remember", remember)
    viewer.page.press("#login-token", "Enter")


def wait_for_login_form(viewer: Viewer) -> None:
    viewer.page.wait_for_selector("#login", state="visible", timeout=WAIT_MS)
    viewer.page.wait_for_selector("#status[data-state='unauthorized']", timeout=WAIT_MS)


def wait_for_live_spectrum(viewer: Viewer) -> None:
    """Frames arrive and are drawn, and the status bar shows a frame rate."""
    viewer.wait_for("s.state === 'open' && s.framesReceived >= 10 && s.framesDrawn >= 1 && "
                    "s.rowsDrawn >= 1")
    viewer.page.wait_for_function(
        "/^[0-9.]+ fps$/.test(document.getElementById('fps').textContent)", timeout=WAIT_MS)
    assert viewer.page.is_hidden("#login")


def assert_token_nowhere(viewer: Viewer, token: str) -> None:
    """Neither the URL, the page's markup (the password field too) nor the console holds
    the token."""
    assert token not in viewer.page.url
    assert token not in viewer.page.content()
    assert viewer.page.input_value("#login-token") == ""
    assert not [line for line in viewer.console if token in line]


def test_a_server_with_a_token_asks_for_it_refuses_a_wrong_one_and_streams_with_it(
        token_served: Served, context: BrowserContext) -> None:
    """Without a token the page shows the login form (field focused) and no frames; a wrong
    token is refused with an error and still no frames; the right one, submitted with
    Enter, brings the spectrum, kept in sessionStorage only and shown nowhere."""
    viewer = open_viewer(context, token_served.page_url)
    wait_for_login_form(viewer)
    assert viewer.page.evaluate("document.activeElement.id") == "login-token"
    assert viewer.page.inner_text("#state-text") == "token needed"
    assert "Ask its operator" in viewer.page.inner_text("#login-help")
    assert viewer.page.is_hidden("#login-error")
    assert viewer.page.is_hidden("#logout")

    log_in(viewer, "not-the-token")
    viewer.page.wait_for_selector("#login-error", state="visible", timeout=WAIT_MS)
    assert "refused this token" in viewer.page.inner_text("#login-error")
    assert viewer.page.get_attribute("#login-token", "aria-invalid") == "true"
    assert viewer.page.evaluate("document.activeElement.id") == "login-token"
    wait_for_login_form(viewer)
    assert viewer.stats()["framesReceived"] == 0
    assert viewer.page.evaluate(STORED_TOKENS_JS) == {"session": [], "local": []}

    log_in(viewer, TOKEN)
    wait_for_live_spectrum(viewer)
    assert viewer.page.is_visible("#logout")
    assert viewer.page.evaluate(STORED_TOKENS_JS) == {"session": [TOKEN], "local": []}
    assert_token_nowhere(viewer, TOKEN)
    # Two refusals: no token, then the wrong one; the client retried neither.
    assert dict(token_served.server.counters.auth_failures) == {"message": 2}


def test_a_zoomed_url_opens_its_view_after_logging_in(token_served: Served,
                                                      context: BrowserContext) -> None:
    """A zoomed page on a server with a token shows the login form first, and after the
    token the view it asked for."""
    viewer = open_viewer(context, token_served.page_url + ZOOMED_QUERY)
    log_in(viewer, TOKEN)
    wait_for_live_spectrum(viewer)
    viewer.wait_for(f"{VIEW_DRAWN} && s.lastView.span_hz < {SPAN_HZ}")
    assert viewer.stats()["zoomed"]
    assert_token_nowhere(viewer, TOKEN)


def test_a_reload_keeps_the_session_token_and_a_new_browser_forgets_it(
        token_served: Served, browser: Browser, context: BrowserContext) -> None:
    """Reloading the tab streams at once with the session's token; a new browser context
    with this one's saved state (as after closing the browser) asks for it again."""
    viewer = open_viewer(context, token_served.page_url)
    log_in(viewer, TOKEN)
    wait_for_live_spectrum(viewer)
    viewer.page.reload()
    wait_for_live_spectrum(viewer)

    reopened = browser.new_context(storage_state=context.storage_state())
    try:
        again = open_viewer(reopened, token_served.page_url)
        wait_for_login_form(again)
        assert again.stats()["framesReceived"] == 0
    finally:
        reopened.close()


def test_remember_keeps_the_token_across_browser_contexts_until_log_out(
        token_served: Served, browser: Browser, context: BrowserContext) -> None:
    """With "remember on this device" a new browser context streams without asking; "Log
    out" forgets the token there, disconnects and shows the form again."""
    viewer = open_viewer(context, token_served.page_url)
    log_in(viewer, TOKEN, remember=True)
    wait_for_live_spectrum(viewer)
    assert viewer.page.evaluate(STORED_TOKENS_JS) == {"session": [TOKEN], "local": [TOKEN]}

    reopened = browser.new_context(storage_state=context.storage_state())
    try:
        again = open_viewer(reopened, token_served.page_url)
        wait_for_live_spectrum(again)
        again.page.click("#logout")
        again.page.wait_for_selector("#login", state="visible", timeout=WAIT_MS)
        assert "Logged out" in again.page.inner_text("#login-help")
        assert again.page.evaluate(STORED_TOKENS_JS) == {"session": [], "local": []}
        again.wait_for("s.state === 'closed'")
        again.page.reload()
        wait_for_login_form(again)
        assert_token_nowhere(again, TOKEN)
    finally:
        reopened.close()


def test_a_saved_token_the_server_refuses_is_forgotten(token_served: Served,
                                                       browser: Browser) -> None:
    """A remembered token that is no longer the server's (it was changed) is refused once,
    forgotten, and the form says so."""
    origin = token_served.page_url.rstrip("/")
    host = origin.split("//", 1)[1]
    stale = browser.new_context(storage_state={"cookies": [], "origins": [{
        "origin": origin, "localStorage": [{"name": f"gr-argos.token:{host}",
                                            "value": "an-old-token"}]}]})
    try:
        viewer = open_viewer(stale, token_served.page_url)
        wait_for_login_form(viewer)
        assert "saved token" in viewer.page.inner_text("#login-error")
        assert viewer.page.evaluate(STORED_TOKENS_JS) == {"session": [], "local": []}
        assert dict(token_served.server.counters.auth_failures) == {"message": 1}
    finally:
        stale.close()


def test_logging_in_on_a_phone_with_touch(token_served: Served, phone: BrowserContext) -> None:
    """At 390x844 with touch the form fits the screen, its controls are finger-sized, and
    tapping the field, "remember" and Connect logs in."""
    viewer = open_viewer(phone, token_served.page_url)
    wait_for_login_form(viewer)
    layout = viewer.page.evaluate("""() => {
        const box = (selector) => document.querySelector(selector).getBoundingClientRect().toJSON();
        return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
                innerHeight: window.innerHeight, card: box("#login-form"),
                field: box("#login-token"), remember: box("#login .check"),
                connect: box("#login-form button")};
    }""")
    assert layout["scrollWidth"] <= layout["innerWidth"], layout
    card = layout["card"]
    assert card["left"] >= 0 and card["right"] <= layout["innerWidth"], layout
    assert card["bottom"] <= layout["innerHeight"], layout
    for name in ("field", "remember", "connect"):
        assert layout[name]["height"] >= 44, (name, layout[name])
    viewer.page.tap("#login-token")
    viewer.page.keyboard.type(TOKEN)
    viewer.page.tap("#login .check")
    viewer.page.tap("#login-form button")
    wait_for_live_spectrum(viewer)
    assert viewer.page.evaluate(STORED_TOKENS_JS)["local"] == [TOKEN]


def test_detections_are_listed_marked_while_on_the_air_and_beep(served: Served,
                                                                 context: BrowserContext) -> None:
    """A detection start shows the Detections panel with the signal's time, frequency,
    width and position, a mark on the spectrum while it is on the air, and a beep when the
    user asked for them; its end takes the mark away and says how long it lasted."""
    viewer = open_viewer(context, served.page_url)
    viewer.wait_for("s.state === 'open' && s.framesDrawn > 3")
    assert viewer.page.is_hidden("#detections-panel")
    center = CENTER_FREQ_HZ + 250e3
    signal = {"stream": 0, "id": 7, "center_freq_hz": center, "bandwidth_hz": 25e3,
              "low_freq_hz": center - 12.5e3, "high_freq_hz": center + 12.5e3,
              "peak_db": -40.0, "mean_db": -45.0, "snr_db": 31.0,
              "start_ns": 1_700_000_000_000_000_000, "duration_s": 0.0333,
              "tuning": {"center_freq_hz": CENTER_FREQ_HZ, "span_hz": 2.048e6},
              "gps": {"fix": True, "mode": 3, "lat": 52.2297, "lon": 21.0122, "age_s": 0.4}}
    served.server.publish_message("detection", {**signal, "event": "start"})
    viewer.wait_for("s.detectionsOnAir === 1 && s.marksDrawn === 1")
    item = viewer.page.inner_text("#detections li")
    assert "22:13:20" in item and f"{center / 1e6:.4f} MHz" in item and "25.0 kHz" in item
    assert "on air" in item and "52.22970, 21.01220" in item
    assert viewer.stats()["beeps"] == 0
    viewer.page.check("#beep")  # a user gesture: the page may play sound from now on
    other = {**signal, "id": 8, "center_freq_hz": center - 500e3}
    served.server.publish_message("detection", {**other, "event": "start"})
    viewer.wait_for("s.detectionsOnAir === 2 && s.marksDrawn === 2 && s.beeps === 1")
    for ended in (signal, other):
        served.server.publish_message("detection", {**ended, "event": "end", "duration_s": 0.4})
    viewer.wait_for("s.detectionsOnAir === 0 && s.marksDrawn === 0")
    items = viewer.page.locator("#detections li")
    assert items.count() == 2 and all("0.40 s" in text for text in items.all_inner_texts())
    assert viewer.errors == []


# The screenshot of an element, decoded by the page itself (no image library needed): its
# size and, per pixel column, the rows whose pixel is white or black.
SCREENSHOT_PIXELS_JS = """async (png) => {""" + DECODE_PNG_JS + """
    const image = await decodePng(png);
    const data = image.getContext("2d").getImageData(0, 0, image.width, image.height).data;
    const white = [], black = [];
    for (let y = 0; y < image.height; y++) {
        for (let x = 0; x < image.width; x++) {
            const i = 4 * (y * image.width + x);
            if (data[i] >= 245 && data[i + 1] >= 245 && data[i + 2] >= 245) white.push([x, y]);
            if (data[i] <= 12 && data[i + 1] <= 12 && data[i + 2] <= 12) black.push([x, y]);
        }
    }
    return {width: image.width, height: image.height, white, black};
}"""


def test_crowded_signals_keep_their_bands_and_labels_that_do_not_overlap(
        served: Served, phone: BrowserContext) -> None:
    """Eight signals 40 kHz apart on a phone's narrow plot: every band is drawn; the labels
    go on two rows (the first two signals named), none over another on its row."""
    viewer = open_viewer(phone, served.page_url)
    viewer.wait_for("s.state === 'open' && s.framesDrawn > 3")
    for index in range(8):
        center = CENTER_FREQ_HZ - 300e3 + index * 40e3
        served.server.publish_message("detection", {
            "stream": 0, "event": "start", "id": 20 + index, "center_freq_hz": center,
            "bandwidth_hz": 10e3, "low_freq_hz": center - 5e3, "high_freq_hz": center + 5e3,
            "peak_db": -40.0, "mean_db": -45.0, "snr_db": 30.0,
            "start_ns": time.time_ns(), "duration_s": 0.0333, "time_ns": time.time_ns(),
            "tuning": {"center_freq_hz": CENTER_FREQ_HZ, "span_hz": SPAN_HZ}, "gps": None})
    viewer.wait_for("s.detectionsOnAir === 8 && s.marksDrawn === 8")
    labels = viewer.stats()["markLabels"]
    assert 2 <= len(labels) < 8, labels  # too crowded for all of them, on two rows
    assert {label["row"] for label in labels} == {0, 1}, labels
    for row in (0, 1):
        spans = sorted((label["left"], label["right"]) for label in labels if label["row"] == row)
        assert all(right < left for (_, right), (left, _) in zip(spans, spans[1:])), spans
    assert viewer.errors == []


def test_a_detection_start_marks_the_waterfall_where_it_started_and_scrolls_with_it(
        served: Served, context: BrowserContext) -> None:
    """A detection start draws a white box with a black edge (a shape, not a colour) on the
    waterfall at the signal's frequency; as rows come in it moves down with the row it
    marked. Seen on a screenshot of the page: white pixels only at the carrier's columns,
    below the top by the rows drawn since, beside black edge pixels."""
    import base64

    viewer = open_viewer(context, served.page_url)
    viewer.wait_for("s.state === 'open' && s.rowsDrawn > 20")
    assert viewer.stats()["waterfallMarks"] == 0
    bin_hz = SPAN_HZ / BINS
    carrier_hz = CENTER_FREQ_HZ + (CARRIER_BIN - BINS // 2) * bin_hz
    served.server.publish_message("detection", {
        "stream": 0, "event": "start", "id": 3, "center_freq_hz": carrier_hz,
        "bandwidth_hz": 3 * bin_hz, "low_freq_hz": carrier_hz - 1.5 * bin_hz,
        "high_freq_hz": carrier_hz + 1.5 * bin_hz, "peak_db": CARRIER_DB, "mean_db": CARRIER_DB,
        "snr_db": 60.0, "start_ns": time.time_ns(), "duration_s": 1 / FPS,
        "time_ns": time.time_ns(), "watched": True,
        "tuning": {"center_freq_hz": CENTER_FREQ_HZ, "span_hz": SPAN_HZ}, "gps": None})
    viewer.wait_for("s.waterfallMarks === 1")
    marked_at = viewer.stats()["rowsDrawn"]
    viewer.wait_for(f"s.rowsDrawn >= {marked_at + 60}")
    viewer.page.click("#pause")  # nothing more drawn: the screenshot shows these rows
    viewer.wait_for("s.paused")
    rows_since = viewer.stats()["rowsDrawn"] - marked_at
    png = viewer.page.locator("#waterfall").screenshot()
    found = viewer.page.evaluate(SCREENSHOT_PIXELS_JS, base64.b64encode(png).decode())
    width, height = found["width"], found["height"]
    window = viewer.stats()["window"]
    expected_x = (carrier_hz - window["startHz"]) / (window["stopHz"] - window["startHz"]) * width
    white = found["white"]
    assert white, "no white mark on the waterfall"
    xs = [x for x, _ in white]
    ys = [y for _, y in white]
    assert min(xs) >= expected_x - 12 and max(xs) <= expected_x + 12, (expected_x, min(xs), max(xs))
    assert max(xs) - min(xs) >= 4  # a box's two sides, not one line
    row_px = height / viewer.stats()["waterfallRows"]
    # The mark's top edge was the newest row when drawn; it has moved down by the rows since
    # (slack: a batch of rows is drawn per animation frame, and on a loaded machine the
    # count was read up to a second after the mark was drawn, so it may be lower still).
    assert (rows_since - 20) * row_px <= min(ys) <= (rows_since + 30) * row_px, (
        min(ys), rows_since, row_px)
    black = {tuple(p) for p in found["black"]}
    assert any((x - 1, y) in black or (x + 1, y) in black for x, y in white), \
        "the white outline has no black edge beside it"
    assert viewer.errors == []
