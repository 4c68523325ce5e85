# SPDX-License-Identifier: GPL-3.0-or-later
"""Open flowgraphs in GNU Radio Companion's own window and report what GRC says of them.

    xvfb-run -a -s "-screen 0 1600x1000x24" /usr/bin/python3 tests/tools/grc_gui_check.py OUT_DIR FLOWGRAPH.grc...

Run with the system Python (GRC's) under a display (Xvfb in the tests). It starts GRC as
``gnuradio-companion FLOWGRAPH...`` does, waits until the window has drawn the flowgraphs,
then for each one: GRC's own validation (the error messages its blocks and connections
report, what GRC shows in red), the blocks drawn over each other (GRC's own extents of each
block, its ports and its comment), and a screenshot of the window showing it, saved as
OUT_DIR/NAME.png. Prints one JSON line ``{"flowgraphs": {path: {"errors": [...],
"blocks": N, "overlaps": [[name, name], ...], "screenshot": png}}, "console": [lines GRC
wrote to its console]}`` and quits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grc_app import drain, screenshot, start  # first: it loads GTK 3 and GRC in GRC's order
from gi.repository import GLib  # isort: skip

SETTLE_MS = 4000  # for the window to open and draw every page, on a loaded machine


def areas(block: object) -> list[tuple[int, int, int, int]]:
    """Where GRC draws a block (its box and ports) and its comment, as (x1, y1, x2, y2)."""
    drawn = [block.get_extents()]  # type: ignore[attr-defined]
    comment = block.get_extents_comment()  # type: ignore[attr-defined]
    if comment[2] > comment[0]:
        drawn.append(comment)
    return drawn


def overlaps(blocks: list[object]) -> list[list[str]]:
    """Pairs of blocks (by name) whose drawn areas intersect."""
    found = []
    for index, block in enumerate(blocks):
        for other in blocks[index + 1:]:
            if any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                   for a in areas(block) for b in areas(other)):
                found.append([block.name, other.name])  # type: ignore[attr-defined]
    return found


def main() -> None:
    out_dir, paths = Path(sys.argv[1]), [str(Path(p).resolve()) for p in sys.argv[2:]]
    out_dir.mkdir(parents=True, exist_ok=True)
    app, console = start(paths)
    report: dict[str, dict[str, object]] = {}

    def enlarge() -> bool:
        app.main_window.resize(1400, 900)
        GLib.timeout_add(1500, inspect)  # for the window manager-less resize to be drawn
        return False

    def inspect() -> bool:
        window = app.main_window
        for page in window.get_pages():
            window.notebook.set_current_page(window.notebook.page_num(page))
            drain()
            flow_graph = page.flow_graph
            flow_graph.validate()
            png = screenshot(window, out_dir / (Path(page.file_path).stem + ".png"))
            report[page.file_path] = {"errors": list(flow_graph.get_error_messages()),
                                      "blocks": len(flow_graph.blocks), "screenshot": png,
                                      "overlaps": overlaps(flow_graph.blocks)}
        print(json.dumps({"flowgraphs": report, "console": console}), flush=True)
        app.quit()
        return False

    GLib.timeout_add(SETTLE_MS, enlarge)
    app.run()


if __name__ == "__main__":
    main()
