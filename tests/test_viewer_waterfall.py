# SPDX-License-Identifier: GPL-3.0-or-later
"""The viewer's waterfall in real headless Chromium, against an in-process
:class:`~gr_argos.server.SpectrumServer` fed at about 30 frames/s (``viewer_server``): the
time axis beside it in wall-clock time from the frames' timestamps, its speed (one row per 3
frames), and the rows kept painted again in a new dB range and a new colour map.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext

from viewer_page import Viewer, open_live
from viewer_server import BINS, CARRIER_BIN, Served, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def served(no_server_thread_left: None) -> Iterator[Served]:
    yield from serve()


def seconds_of_day(text: str) -> int:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def test_the_time_axis_labels_rows_with_the_wall_clock(served: Served,
                                                      desktop: BrowserContext) -> None:
    """Beside the waterfall, labels at round seconds in local time (HH:MM:SS) run down from
    the newest row: each within a few seconds before now, older further down."""
    viewer = open_live(desktop, served.page_url)
    viewer.wait_for("s.timeLabels.length >= 2")
    labels = viewer.stats()["timeLabels"]
    local = time.localtime()
    now_s = local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec
    for label in labels:
        assert 0 <= (now_s - seconds_of_day(label["text"])) % 86400 <= 30, (labels, local)
    ys = [label["y"] for label in labels]
    times = [seconds_of_day(label["text"]) for label in labels]
    assert ys == sorted(ys) and times == sorted(times, reverse=True), labels
    box = viewer.page.locator("#waterfall-time").bounding_box()
    waterfall = viewer.page.locator("#waterfall").bounding_box()
    assert box is not None and waterfall is not None
    assert box["x"] >= waterfall["x"] + waterfall["width"] - 1  # beside it, on the right
    assert viewer.errors == []


def test_the_speed_draws_one_row_per_three_frames(served: Served,
                                                  desktop: BrowserContext) -> None:
    """With "1 per 3" chosen the waterfall makes a row of every three frames received
    (and draws them: a loaded machine may skip some, each counted)."""
    viewer = open_live(desktop, served.page_url)
    viewer.page.select_option("#row-every", "3")
    viewer.wait_for("s.rowsEvery === 3")
    before = viewer.stats()
    viewer.wait_for(f"s.framesReceived >= {before['framesReceived'] + 90}")
    after = viewer.stats()
    frames = after["framesReceived"] - before["framesReceived"]
    rows = after["rowsMade"] - before["rowsMade"]
    assert frames / 3 - 1 <= rows <= frames / 3 + 1, (frames, rows)
    drawn = after["rowsDrawn"] - before["rowsDrawn"]
    skipped = after["rowsSkipped"] - before["rowsSkipped"]
    # Each row made is drawn, skipped (a grey row then marks those) or still pending.
    assert rows - 1 <= drawn + skipped + after["pendingRows"], (rows, drawn, skipped)
    assert drawn <= rows + before["pendingRows"] + skipped + 1, (rows, drawn, skipped)
    assert after["rowCombine"] == "average"
    assert viewer.page.is_visible("#row-combine")  # only with rows of several frames
    assert viewer.errors == []


# The colour (r, g, b) of canvas rows `first` .. `last` (canvas y, newest 0) of one column.
COLUMN_JS = """([column, first, last]) => {
    const canvas = window.argosViewer.waterfallCanvas;
    const data = canvas.getContext("2d").getImageData(column, first, 1, last - first + 1).data;
    const out = [];
    for (let i = 0; i < data.length; i += 4) out.push([data[i], data[i + 1], data[i + 2]]);
    return out;
}"""


# The colours of marker rows and of no data (colormap.js, waterfall-rows.js).
MARKER_COLOURS = [[255, 0, 255], [90, 90, 90], [0, 220, 255], [255, 255, 255], [7, 9, 13]]


def column_colours(viewer: Viewer, bin_index: int, first: int, last: int) -> list[list[int]]:
    width = viewer.page.evaluate("window.argosViewer.waterfallCanvas.width")
    column = int((bin_index + 0.5) / BINS * width)
    colours: list[list[int]] = viewer.page.evaluate(COLUMN_JS, [column, first, last])
    return colours


def test_a_new_range_and_colour_map_repaint_the_rows_already_drawn(
        served: Served, desktop: BrowserContext) -> None:
    """Paused (no new rows), a new dB range repaints the old rows: the noise (-90 dB) under
    a -60 dB floor turns the colour map's lowest colour; then the gray map repaints them in
    gray, the carrier (-30 dB in -60 .. -20) at three quarters of white."""
    viewer = open_live(desktop, served.page_url + "?min=-100&max=-20", frames=150)
    viewer.page.keyboard.press(" ")
    viewer.wait_for("s.paused")
    noise_bin = 200
    before = column_colours(viewer, noise_bin, 20, 100)
    # The rows of data (not a marker row: a busy tab may have skipped some).
    data = [i for i, colour in enumerate(before) if colour not in MARKER_COLOURS]
    assert len(data) > 60 and all(before[i] != [0, 0, 4] for i in data), before

    viewer.page.fill("#db-min", "-60")
    viewer.page.press("#db-min", "Enter")
    viewer.wait_for("s.dbMin === -60 && s.repaints >= 1")
    after = column_colours(viewer, noise_bin, 20, 100)
    assert all(after[i] == [0, 0, 4] for i in data), after  # inferno's lowest
    viewer.page.select_option("#colormap", "gray")
    viewer.wait_for("s.colormap === 'gray' && s.repaints >= 2")
    after = column_colours(viewer, noise_bin, 20, 100)
    assert all(after[i] == [0, 0, 0] for i in data), after
    carrier = column_colours(viewer, CARRIER_BIN, 20, 100)
    assert all(abs(carrier[i][0] - 191) <= 2 and carrier[i][0] == carrier[i][1] == carrier[i][2]
               for i in data), carrier
    assert viewer.stats()["paused"]
    assert viewer.errors == []


# The canvas rows (y, newest 0) of the waterfall in grey dashes two columns long (rows the
# page did not draw, waterfall-rows.js) and the time axis's symbols, drawn with them.
SKIPPED_ROWS_JS = """() => {
    const canvas = window.argosViewer.waterfallCanvas;
    const data = canvas.getContext("2d").getImageData(0, 0, 16, canvas.height).data;
    const rows = [];
    for (let y = 0; y < canvas.height; y++) {
        let dashed = true;
        for (let x = 0; x < 16; x++) {
            const grey = x % 4 < 2;
            const r = data[4 * (y * 16 + x)];
            if (r !== (grey ? 90 : 7)) dashed = false;
        }
        if (dashed) rows.push(y);
    }
    return {rows, symbols: window.argosViewer.stats().timeSymbols};
}"""


def test_rows_not_drawn_are_a_dashed_row_with_a_symbol_beside_it(
        served: Served, desktop: BrowserContext) -> None:
    """Paused for a moment and back to live, the rows not drawn are one row of grey dashes
    (a pattern, not only a colour) with three dots beside it on the time axis, at its
    height."""
    viewer = open_live(desktop, served.page_url)
    viewer.page.keyboard.press(" ")
    viewer.wait_for("s.paused && s.framesWhilePaused >= 20")
    viewer.page.click("#pause")
    viewer.wait_for("!s.paused && s.timeSymbols.some((x) => x.kind === 'skipped')")
    drawn = viewer.page.evaluate(SKIPPED_ROWS_JS)
    rows = drawn["rows"]
    assert len(rows) >= 1, rows
    symbol = next(x for x in drawn["symbols"] if x["kind"] == "skipped")
    box = viewer.page.locator("#waterfall").bounding_box()
    assert box is not None
    canvas_rows = viewer.stats()["waterfallRows"]
    assert abs(symbol["y"] - (rows[0] + 0.5) * box["height"] / canvas_rows) <= 3, (symbol, rows)
    assert viewer.errors == []
