"""Regenerate docs/viewer.png: the browser viewer showing argos-spectrum's simulated band.

Starts ``argos-spectrum --source sim --port 0``, opens the viewer in headless Chromium at
1280x800, waits until the waterfall has filled, saves the screenshot and stops everything.
The PNG is reduced to a 128-colour palette with Pillow (Debian's python3-pil, visible in the
venv), which keeps it small enough for the repository.

Usage: .venv/bin/python scripts/screenshot_viewer.py [--out docs/viewer.png] [--wait-s 8]
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from helpers import headless_chromium, running  # noqa: E402  (tests/helpers.py: test tooling)

URL_LINE = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 30_000


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "viewer.png",
                        help="PNG file to write (default: docs/viewer.png)")
    parser.add_argument("--wait-s", type=float, default=16.0,
                        help="seconds of spectrum to let scroll into the waterfall first")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    command = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum", "--source", "sim",
               "--port", "0"]
    with running(command, REPO_ROOT, url_pattern=URL_LINE, name="argos-spectrum") as app:
        page_url = app.wait_for_url().replace("ws://", "http://")
        with headless_chromium() as browser:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(page_url)
            page.wait_for_function("window.argosViewer?.stats().rowsDrawn > 30",
                                   timeout=TIMEOUT_MS)
            # The page fills the waterfall in real time; no event says "full enough".
            page.wait_for_timeout(args.wait_s * 1000)
            png = page.screenshot()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(io.BytesIO(png)) as image:
        palette = image.convert("RGB").quantize(
            colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        palette.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
