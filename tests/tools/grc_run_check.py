# SPDX-License-Identifier: GPL-3.0-or-later
"""Press Run in GNU Radio Companion's own window, then Kill when told, and report what GRC did.

    xvfb-run -a -s "-screen 0 1600x1000x24" /usr/bin/python3 tests/tools/grc_run_check.py \
        OUT_DIR FLOWGRAPH.grc [PARAMETER=VALUE...]

Run with the system Python (GRC's) under a display. It starts GRC on FLOWGRAPH as
``gnuradio-companion FLOWGRAPH`` does, sets each named Parameter block's value (as a user edits
it; GRC saves the flowgraph before running it), and fires GRC's own Run action (F6, the Run
button). A warning dialog GRC opens on the way (its one-time "missing xterm executable") is
answered OK, as a user would, and its text reported. When a ``ws://`` URL appears in GRC's
console it saves a screenshot (OUT_DIR/NAME-running.png) and prints one JSON line
``{"url": ..., "pid": PID of the process GRC started, "tool_pid": this program's PID,
"dialogs": [...], "screenshot": png}``. On SIGUSR1 it fires GRC's Kill action (F7, the Kill
button), waits until
GRC says the flowgraph is done, and prints ``{"returncode": ..., "console": text,
"screenshot": png}`` and quits. Either line may instead be ``{"error": ...}``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

from grc_app import drain, screenshot, start  # first: it loads GTK 3 and GRC in GRC's order
from gi.repository import GLib, Gtk  # isort: skip
from gnuradio.grc.gui import Actions  # isort: skip

SETTLE_MS = 4000  # for the window to open and draw the flowgraph, on a loaded machine
POLL_MS = 200
WAIT_POLLS = 300  # 60 s for the URL to appear, and again for the flowgraph to end after Kill
URL = re.compile(r"ws://[0-9.]+:\d+/")


def say(message: dict[str, object]) -> None:
    print(json.dumps(message), flush=True)


def main() -> None:
    out_dir, path = Path(sys.argv[1]), str(Path(sys.argv[2]).resolve())
    values = dict(arg.split("=", 1) for arg in sys.argv[3:])
    out_dir.mkdir(parents=True, exist_ok=True)
    app, console = start([path])
    dialogs: list[str] = []
    stem = Path(path).stem
    polls = {"left": WAIT_POLLS}

    def answer_dialogs() -> bool:
        """Press OK on GRC's modal warnings (they run a nested main loop until answered)."""
        for window in Gtk.Window.list_toplevels():
            if isinstance(window, Gtk.MessageDialog) and window.get_visible():
                dialogs.append(" ".join(filter(None, (window.props.text,
                                                      window.props.secondary_text))))
                window.response(Gtk.ResponseType.OK)
        return True

    def fail(why: str) -> bool:
        say({"error": why, "console": "".join(console), "dialogs": dialogs})
        page = app.main_window.current_page
        if page.process is not None:
            page.process.kill()
        app.quit()
        return False

    def run() -> bool:
        window = app.main_window
        window.left.set_position(560)  # a taller and wider console, for the flowgraph's output
        window.left_subpanel.set_position(1000)
        page = window.current_page
        flow_graph = page.flow_graph
        for name, value in values.items():
            (block,) = [b for b in flow_graph.blocks if b.name == name]
            block.params["value"].set_value(value)
        flow_graph.update()
        page.state_cache.save_new_state(flow_graph.export_data())  # as GRC does after an edit
        page.saved = False
        Actions.FLOW_GRAPH_SAVE.set_enabled(True)
        app.update_exec_stop()
        if not Actions.FLOW_GRAPH_EXEC.get_enabled():
            return fail(f"GRC's Run is disabled: {list(flow_graph.get_error_messages())}")
        GLib.timeout_add(POLL_MS, answer_dialogs)
        Actions.FLOW_GRAPH_EXEC()
        GLib.timeout_add(POLL_MS, wait_for_url)
        return False

    def wait_for_url() -> bool:
        page = app.main_window.current_page
        found = URL.search("".join(console))
        if found and page.process is not None:
            drain()
            say({"url": found.group(), "pid": page.process.pid, "tool_pid": os.getpid(),
                 "dialogs": dialogs,
                 "screenshot": screenshot(app.main_window, out_dir / f"{stem}-running.png")})
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, kill)
            return False
        polls["left"] -= 1
        if polls["left"] <= 0 or page.process is None:
            return fail("no ws:// URL in GRC's console")
        return True

    def kill() -> bool:
        page = app.main_window.current_page
        process = page.process
        Actions.FLOW_GRAPH_KILL()
        polls["left"] = WAIT_POLLS

        def wait_for_end() -> bool:
            if page.process is None:  # GRC's Executor saw the process end and said "Done"
                drain()
                say({"returncode": process.returncode, "console": "".join(console),
                     "screenshot": screenshot(app.main_window, out_dir / f"{stem}-killed.png")})
                app.quit()
                return False
            polls["left"] -= 1
            return True if polls["left"] > 0 else fail("the flowgraph did not end after Kill")

        GLib.timeout_add(POLL_MS, wait_for_end)
        return False

    def enlarge() -> bool:
        app.main_window.resize(1400, 900)
        GLib.timeout_add(1500, run)
        return False

    GLib.timeout_add(SETTLE_MS, enlarge)
    app.run()


if __name__ == "__main__":
    main()
