# SPDX-License-Identifier: GPL-3.0-or-later
"""The viewer opened with ?backfillS= draws the last seconds the server holds at once, and
goes on live; a reconnect under it loses no row."""

from __future__ import annotations

import time

from playwright.sync_api import BrowserContext

from server_helpers import StartServer, spectrum_frame
from viewer_page import open_viewer


def test_the_viewer_fills_its_waterfall_with_the_last_seconds(
        start_server: StartServer, context: BrowserContext) -> None:
    """30 frames published before the page opens (1 ns apart: all within the backfill): the
    page gets all 30 and draws rows of them without a new frame (a burst of rows beyond what
    one animation frame draws is skipped, as always), with no gap, then live frames."""
    server = start_server()
    for sequence in range(30):
        server.publish_frame(0, spectrum_frame(sequence))
    deadline = time.monotonic() + 20
    while server.stats()["total"]["resume_ring"]["frames"] < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    viewer = open_viewer(context, server.url.replace("ws://", "http://") + "?backfillS=60")
    viewer.wait_for("s.state === 'open' && s.framesReceived >= 30 && s.rowsDrawn > 0")
    for sequence in range(30, 35):
        server.publish_frame(0, spectrum_frame(sequence))
    viewer.wait_for("s.framesReceived >= 35")
    stats = viewer.stats()
    assert stats["gapEvents"] == 0
    assert viewer.page.evaluate("window.argosViewer.client.stats.replayed") == 30
    assert viewer.errors == []
