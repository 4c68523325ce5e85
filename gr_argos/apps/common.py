# SPDX-License-Identifier: GPL-3.0-or-later
"""What every gr-argos command does the same way: logging, stopping on signals, the URL line."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any

from gr_argos.settings import setting

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "LogSettings", "connect_line",
           "setup_logging", "stop_event_on_signals"]

log = logging.getLogger("gr_argos.apps")

#: Exit codes of every command: stopped, a failure at run time, bad flags or configuration.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class LogSettings:
    """The setting every command has."""

    log_level: str = setting("info", "log level", choices=("debug", "info", "warning", "error"),
                             group="logging")


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` ("debug", "info", ...), with timestamps."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # websockets logs every connection at INFO; gr_argos.server already says what matters.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.root.level))


def stop_event_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (call from the main thread)."""
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop_requested


def connect_line(prog: str, url: str) -> str:
    """The line that tells a user where to connect (tests and scripts read it too)."""
    page = "http" + url[2:] if url.startswith("ws") else url  # ws -> http, wss -> https
    return (f"{prog}: connect to {url}  (viewer: {page}; try: argos-client {url}; "
            f"health: {page}healthz)")
