# SPDX-License-Identifier: GPL-3.0-or-later
"""Regenerate docs/viewer.png: the browser viewer showing argos-spectrum's simulated band.

Starts ``argos-spectrum --source sim --second-detector average --port 0`` (the peak trace
with the average under it), opens the viewer in headless Chromium at 1280x800, waits until
the waterfall has filled, saves the screenshot and stops everything.
With ``--login`` it regenerates docs/viewer-login.png instead: the app gets a token and the
viewer, on a 390x844 phone screen, shows its login form. With ``--zoom`` it regenerates
docs/viewer-zoom.png: after some seconds of the whole band the viewer zooms in on 100.2 to
102.6 MHz (as a wheel or pinch would), so the waterfall shows the whole band below a marker
row and the zoomed window above it, the narrow carriers one bin wide. With ``--markers`` it
regenerates docs/viewer-markers.png: marker 1 on the strongest carrier, marker 2 on the next
peak to its right, with the delta readout, and the keyboard cursor on the waterfall. With
``--phone`` it regenerates docs/viewer-phone.png: the viewer on a 390x844 touch screen, a
marker placed by a tap on the strongest carrier, the readout under the finger. The PNG is
reduced to a 128-colour palette with Pillow (Debian's python3-pil, visible in the venv), which keeps it small enough
for the repository.

Usage: .venv/bin/python scripts/screenshot_viewer.py [--out docs/viewer.png] [--wait-s 8]
       .venv/bin/python scripts/screenshot_viewer.py --login
       .venv/bin/python scripts/screenshot_viewer.py --zoom
       .venv/bin/python scripts/screenshot_viewer.py --markers
       .venv/bin/python scripts/screenshot_viewer.py --phone
"""

from __future__ import annotations

import argparse
import io
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT))

from helpers import headless_chromium, running  # noqa: E402  (tests/helpers.py: test tooling)

URL_LINE = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")
VIEWPORT = {"width": 1280, "height": 800}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}
TIMEOUT_MS = 30_000
# The zoomed window of --zoom: the strongest carrier (101.60 MHz), one at 100.40 MHz and the
# bursty one (102.40 MHz), 614 of the stream's bins across a plot wider than that.
ZOOM_HZ = (100.2e6, 102.6e6)
ZOOMED_JS = """([start, stop]) => {
    const s = window.argosViewer.stats();
    return s.zoomed && s.lastView !== null && s.axis.spanHz === s.lastView.span_hz &&
        s.lastView.center_freq_hz - s.lastView.span_hz / 2 <= start &&
        s.lastView.center_freq_hz + s.lastView.span_hz / 2 >= stop;
}"""


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="PNG file to write (default: docs/viewer.png, with --login "
                             "docs/viewer-login.png)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--login", action="store_true",
                      help="the login form of a server with a token, on a phone screen")
    mode.add_argument("--zoom", action="store_true",
                      help="a zoomed view of the simulated band (docs/viewer-zoom.png)")
    mode.add_argument("--markers", action="store_true",
                      help="two markers with their delta (docs/viewer-markers.png)")
    mode.add_argument("--phone", action="store_true",
                      help="the viewer on a phone, a marker tapped (docs/viewer-phone.png)")
    parser.add_argument("--wait-s", type=float, default=16.0,
                        help="seconds of spectrum to let scroll into the waterfall first")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    name = ("viewer-login.png" if args.login else "viewer-zoom.png" if args.zoom
            else "viewer-markers.png" if args.markers
            else "viewer-phone.png" if args.phone else "viewer.png")
    out = args.out or REPO_ROOT / "docs" / name
    command = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum", "--source", "sim",
               "--port", "0"]
    if args.login:
        command += ["--token", secrets.token_urlsafe(16)]  # no one needs to know it
    else:
        command += ["--second-detector", "average"]
    with running(command, REPO_ROOT, url_pattern=URL_LINE, name="argos-spectrum") as app:
        page_url = app.wait_for_url().replace("ws://", "http://")
        with headless_chromium() as browser:
            page = browser.new_page(**(PHONE if args.login or args.phone
                                       else {"viewport": VIEWPORT}))
            page.goto(page_url)
            if args.login:
                page.wait_for_selector("#login", state="visible", timeout=TIMEOUT_MS)
            else:
                page.wait_for_function("window.argosViewer?.stats().rowsDrawn > 30",
                                       timeout=TIMEOUT_MS)
                # The page fills the waterfall in real time; no event says "full enough".
                if args.zoom:
                    page.wait_for_timeout(args.wait_s * 1000 / 2)
                    page.evaluate("([start, stop]) => window.argosViewer.zoom.setWindow(start, stop)",
                                  list(ZOOM_HZ))
                    page.wait_for_function(ZOOMED_JS, arg=list(ZOOM_HZ), timeout=TIMEOUT_MS)
                    page.wait_for_timeout(args.wait_s * 1000 / 2)
                else:
                    page.wait_for_timeout(args.wait_s * 1000)
                if args.markers:
                    # Marker 1 on the strongest carrier, marker 2 on the next peak right of
                    # it, the delta between them; the keyboard cursor on the waterfall.
                    for key in ("p", "m", "]", "d"):
                        page.keyboard.press(key)
                    page.wait_for_function(
                        "window.argosViewer.stats().markers.deltas.length === 1",
                        timeout=TIMEOUT_MS)
                    page.focus("#waterfall")
                    page.keyboard.press("Shift+ArrowDown")
                    page.wait_for_timeout(500)
                if args.phone:
                    # A tap on the strongest carrier places marker 1 there; the readout
                    # says its frequency and level.
                    from gr_argos.sim_band_source import STRONGEST_CARRIER

                    band = page.locator("#waterfall").bounding_box()  # the band's width
                    plot = page.locator("#spectrum").bounding_box()
                    assert band is not None and plot is not None
                    page.touchscreen.tap(
                        band["x"] + (0.5 + STRONGEST_CARRIER[0]) * band["width"],
                        plot["y"] + plot["height"] / 2)
                    page.wait_for_function("window.argosViewer.stats().markers.drawn >= 1",
                                           timeout=TIMEOUT_MS)
                    page.wait_for_timeout(1000)
            png = page.screenshot()
    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(io.BytesIO(png)) as image:
        palette = image.convert("RGB").quantize(
            colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        palette.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
