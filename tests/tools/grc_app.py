# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio Companion's own application, started as ``gnuradio-companion FLOWGRAPH...`` starts
it, for the tools beside this file (run with the system Python, GRC's, under a display)."""

from __future__ import annotations

from pathlib import Path

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
gi.require_version("PangoCairo", "1.0")
from gi.repository import Gdk, Gtk  # noqa: E402
from gnuradio import gr  # noqa: E402
# In GRC's own order (gnuradio.grc.main): the other breaks a circular import in its gui package.
from gnuradio.grc.gui.Platform import Platform  # noqa: E402  isort: skip
from gnuradio.grc.gui.Application import Application  # noqa: E402  isort: skip
from gnuradio.grc.core import Messages  # noqa: E402  isort: skip


def start(paths: list[str]) -> tuple[Application, list[str]]:
    """GRC's application on ``paths`` (not yet running: call its ``run()``), and the list that
    collects what GRC writes to its console."""
    console: list[str] = []
    Messages.register_messenger(console.append)
    platform = Platform(version=gr.version(),
                        version_parts=(gr.major_version(), gr.api_version(), gr.minor_version()),
                        prefs=gr.prefs(), install_prefix=gr.prefix())
    platform.build_library()
    return Application(paths, platform), console


def drain() -> None:
    """Handle every pending GTK event (redraws included)."""
    while Gtk.events_pending():
        Gtk.main_iteration()


def screenshot(window: Gtk.Window, png: Path) -> str:
    """Save what ``window`` shows as ``png``; returns its path."""
    drawn = window.get_window()
    shot = Gdk.pixbuf_get_from_window(drawn, 0, 0, drawn.get_width(), drawn.get_height())
    shot.savev(str(png), "png", [], [])
    return str(png)
