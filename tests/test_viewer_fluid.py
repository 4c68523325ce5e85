# SPDX-License-Identifier: GPL-3.0-or-later
"""The browser viewer with a big FFT, in real headless Chromium against a real in-process
:class:`~gr_argos.server.SpectrumServer`: a 65,536-bin stream with a carrier one bin wide,
received whole (``?bins=65536``) and drawn into a plot about 1,000 device pixels wide.

What a user sees, read from the canvases' pixels: the carrier is drawn in the column of its
frequency at its level, in the spectrum and in the newest waterfall row, and the automatic
dB range covers the noise floor and the carrier. Speed is measured by
``benchmarks/viewer_fluid.py``, not here. A page in the background draws nothing and shows the
latest frame when it comes back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import BrowserContext

from gr_argos.protocol import encode_frame
from viewer_page import Viewer, open_viewer
from viewer_server import CENTER_FREQ_HZ, SPAN_HZ, start_server

pytestmark = pytest.mark.slow

BINS = 65536
CARRIER_BIN = 40_000
CARRIER_DB = -30.0
NOISE_FLOOR_DB = -90.0
FPS = 10.0  # enough frames to draw; light on a loaded machine
# The auto range for that stream: 8 dB under the median and 6 dB over the carrier, in 5 dB
# steps (gr_argos/web/autorange.js).
AUTO_RANGE_DB = (-100, -20)

# Per column of the spectrum's plot area, the highest pixel drawn bright (a trace or the
# peak hold: the grid and the fill under the trace are dim), as a dB level; and, per column of
# the waterfall's newest row, the level of its colour in the colour map.
LEVELS_JS = """async () => {
    const { makeLut, LUT_SIZE } = await import("/colormap.js");
    const viewer = window.argosViewer;
    const s = viewer.stats();
    const [dbMin, dbMax] = [s.dbMin, s.dbMax];
    const { left, top, width, height } = s.plot;
    const spectrum = viewer.spectrumCanvas.getContext("2d")
        .getImageData(left, top, width, height).data;
    const trace = [];
    for (let x = 0; x < width; x++) {
        let y = 0;
        while (y < height) {
            const i = 4 * (y * width + x);
            if (spectrum[i] + spectrum[i + 1] + spectrum[i + 2] > 400) break;
            y++;
        }
        trace.push(y < height ? dbMax - (y / height) * (dbMax - dbMin) : null);
    }
    const canvas = viewer.waterfallCanvas;
    const row = new Uint32Array(canvas.getContext("2d")
        .getImageData(0, 0, canvas.width, 1).data.buffer);
    const lut = Array.from(makeLut(s.colormap));
    const waterfall = Array.from(row, (pixel) => {
        const index = lut.indexOf(pixel);
        return index < 0 ? null : dbMin + (index / (LUT_SIZE - 1)) * (dbMax - dbMin);
    });
    return { trace, waterfall, dbMin, dbMax, columns: canvas.width, plotWidth: width,
             canvasWidth: viewer.spectrumCanvas.width,
             cssWidth: viewer.spectrumCanvas.clientWidth * devicePixelRatio };
}"""


class BigPublisher:
    """Publishes 65,536-bin frames (noise around NOISE_FLOOR_DB, the carrier in one bin) at
    FPS to stream 0 of ``server``."""

    def __init__(self, server: object) -> None:
        rng = np.random.default_rng(3)
        self.spectra = []
        for _ in range(4):
            power = (NOISE_FLOOR_DB + rng.normal(0.0, 2.0, BINS)).astype(np.float32)
            power[CARRIER_BIN] = CARRIER_DB
            self.spectra.append(power)
        self.server = server
        self.sequence = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="viewer-test-big-publisher",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1 / FPS):
            self.server.publish_frame(0, encode_frame(  # type: ignore[attr-defined]
                self.spectra[self.sequence % 4], center_freq_hz=CENTER_FREQ_HZ,
                span_hz=SPAN_HZ, timestamp_ns=time.time_ns(), sequence=self.sequence))
            self.sequence += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def big_url(no_server_thread_left: None) -> Iterator[str]:
    server = start_server(bins=BINS)
    publisher = BigPublisher(server)
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        publisher.stop()
        server.stop()


def carrier_columns(columns: int) -> range:
    """The columns of a plot ``columns`` wide over the whole band that the carrier's bin
    overlaps."""
    first = CARRIER_BIN * columns // BINS
    last = ((CARRIER_BIN + 1) * columns - 1) // BINS
    return range(first, last + 1)


def test_a_one_bin_carrier_in_65536_bins_is_drawn_in_its_column_at_its_level(
        big_url: str, context: BrowserContext) -> None:
    """All 65,536 bins reach the page; the spectrum and the waterfall are drawn a column per
    device pixel, each column the strongest of its bins, so the one-bin carrier stands at its
    level in its column and the noise stays at the floor elsewhere; the auto range covers
    both."""
    viewer = open_viewer(context, big_url + "?bins=65536")
    viewer.wait_for(f"s.state === 'open' && s.axis?.bins === {BINS} && s.rowsDrawn >= 3 && "
                    f"s.dbMin === {AUTO_RANGE_DB[0]} && s.dbMax === {AUTO_RANGE_DB[1]}")
    viewer.wait_for_more_frames(3)  # and rows drawn in that range
    levels = viewer.page.evaluate(LEVELS_JS)
    assert viewer.errors == []
    assert levels["canvasWidth"] == round(levels["cssWidth"])  # the canvas's device pixels
    assert levels["columns"] == levels["plotWidth"] > 900  # ~67 bins a column

    for name in ("trace", "waterfall"):
        drawn = levels[name]
        strongest = max(range(len(drawn)), key=lambda c: drawn[c] if drawn[c] is not None
                        else -1e9)
        assert strongest in carrier_columns(len(drawn)), (name, strongest)
        assert drawn[strongest] == pytest.approx(CARRIER_DB, abs=1.5), name
        # Away from the carrier: the noise's strongest of ~67 bins, far under the carrier.
        elsewhere = [v for c, v in enumerate(drawn) if abs(c - strongest) > 3 and v is not None]
        assert len(elsewhere) > 0.9 * len(drawn), name
        assert max(elsewhere) < NOISE_FLOOR_DB + 15, name
        assert np.median(elsewhere) > NOISE_FLOOR_DB - 5, name


def test_a_hidden_page_draws_nothing_and_shows_the_latest_frame_when_back(
        big_url: str, context: BrowserContext) -> None:
    """While the page is hidden (the browser's visibilitychange, with document.hidden), its
    frames are counted but draw no waterfall row; shown again, it draws the latest frame,
    with a grey row for those not drawn."""
    viewer: Viewer = open_viewer(context, big_url + "?bins=65536")
    viewer.wait_for("s.state === 'open' && s.rowsDrawn >= 2")
    viewer.page.evaluate("""() => {
        Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    viewer.wait_for("s.framesWhileHidden >= 1 && s.pendingRows === 0")
    hidden = viewer.stats()
    viewer.wait_for(f"s.framesWhileHidden >= {hidden['framesWhileHidden'] + 5}")
    still = viewer.stats()
    assert still["rowsDrawn"] == hidden["rowsDrawn"]
    assert still["framesReceived"] >= hidden["framesReceived"] + 5
    viewer.page.evaluate("""() => {
        delete document.hidden;
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    viewer.wait_for(f"s.rowsDrawn >= {still['rowsDrawn'] + 2} && "
                    f"s.framesDrawn > {still['framesDrawn']}")
    assert viewer.errors == []
