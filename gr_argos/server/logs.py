# SPDX-License-Identifier: GPL-3.0-or-later
"""Log lines a client can neither forge nor flood, and that never show a token.

- :func:`quoted`: a value from a client (an Origin, a close reason, a Host) as one token of
  an ``event=... key=value`` line: as is when it is plain, else JSON-quoted, so spaces,
  ``=`` or line breaks in it cannot make up fields or lines.
- :class:`EventLog`: at most ``burst`` lines per event kind in each ``window_s`` window;
  the rest are counted and said in one line (``event=refused suppressed=812 window_s=10``)
  when the window ends, so an attack costs a few lines, not thousands.
- :class:`MaskSecrets`: keeps the token out of the lines of ``websockets`` (which at DEBUG
  print every request line, header and frame) and of asyncio, whatever way a client wrote it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Callable, Mapping
from urllib.parse import unquote

__all__ = ["EventLog", "LimitRepeats", "MaskSecrets", "install_log_filters", "quoted"]

_PLAIN = re.compile(r"[A-Za-z0-9._:/@+\-\[\]]{1,200}")


def quoted(value: object) -> str:
    """``value`` safe inside a ``key=value`` log line (JSON-quoted unless it is plain)."""
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    if len(text) > 200:
        text = text[:200] + "..."
    return json.dumps(text)


class EventLog:
    """Logs events of one kind at a bounded rate, and says how many it left out.

    Args:
        logger: where lines go.
        burst: lines per kind allowed in each window.
        window_s: the window, in seconds.
        bursts: other bursts for some kinds (events every normal run has many of).
        clock: monotonic seconds (a test may pass its own).
    """

    def __init__(self, logger: logging.Logger, burst: int = 5, window_s: float = 10.0,
                 bursts: Mapping[str, int] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._burst = burst
        self._bursts = dict(bursts or {})
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # kind -> (window start, lines)

    def log(self, level: int, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` unless ``kind`` already had its burst of lines this window."""
        burst = self._bursts.get(kind, self._burst)
        now = self._clock()
        with self._lock:
            start, count = self._windows.get(kind, (now, 0))
            if now - start >= self._window_s:
                if count > burst:
                    self._logger.log(level, "event=%s suppressed=%d window_s=%g", kind,
                                     count - burst, self._window_s)
                start, count = now, 0
            self._windows[kind] = (start, count + 1)
        if count < burst:
            self._logger.log(level, message, *args)

    def flush(self) -> None:
        """Say what each kind left out in its current window (at shutdown, say)."""
        with self._lock:
            windows, self._windows = self._windows, {}
        for kind, (_, count) in windows.items():
            burst = self._bursts.get(kind, self._burst)
            if count > burst:
                self._logger.warning("event=%s suppressed=%d", kind, count - burst)


# What may carry a token in a websockets DEBUG line: the request line (?token=...), the
# Authorization header and an auth message's JSON; matched after the line is decoded.
_SECRETS = re.compile(r'(?i)(token=)[^&\s]*|(authorization:\s*).*|("token"\s*:\s*")[^"]*')
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


class MaskSecrets(logging.Filter):
    """Replaces what may be a token in a log record's message with ``***``.

    The message is decoded first (percent-encoding, JSON ``\\u`` escapes), so ``?tok%65n=``
    and ``{"\\u0074oken": ...}`` are caught; and the server's own tokens are masked wherever
    they appear, also in a line cut short.

    Args:
        secrets: returns the tokens to mask wherever they appear.
    """

    def __init__(self, secrets: Callable[[], tuple[str, ...]] = tuple) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        decoded = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), unquote(message))
        masked = _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***",
                              decoded)
        for secret in self._secrets():
            if secret:
                masked = masked.replace(secret, "***")
        if masked != decoded:
            record.msg, record.args = masked, None
        return True


class LimitRepeats(logging.Filter):
    """Lets through at most ``burst`` records with the same message per ``window_s``, and
    then one that says how many were left out: asyncio warns once per failed write to a
    dead socket ("socket.send() raised exception."), thousands of times a second under a
    flood of dropped connections."""

    def __init__(self, burst: int = 5, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._burst = burst
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:200]
        now = self._clock()
        with self._lock:
            start, count = self._windows.get(key, (now, 0))
            if now - start >= self._window_s:
                if count > self._burst:
                    record.msg = f"{record.msg} ({count - self._burst} more like it in " \
                                 f"{self._window_s:g} s)"
                start, count = now, 0
            if len(self._windows) > 1000:  # many distinct messages: forget the old ones
                self._windows.clear()
            self._windows[key] = (start, count + 1)
        return count < self._burst


_registered: set[str] = set()
_registered_lock = threading.Lock()


def _registered_tokens() -> tuple[str, ...]:
    with _registered_lock:
        return tuple(_registered)


def install_log_filters(*tokens: str) -> None:
    """Mask tokens in the lines of ``websockets.server`` (and these ``tokens``, wherever
    they appear). Idempotent; tokens of every server of the process are masked."""
    with _registered_lock:
        _registered.update(token for token in tokens if token)
    logger = logging.getLogger("websockets.server")
    if not any(isinstance(f, MaskSecrets) for f in logger.filters):
        logger.addFilter(MaskSecrets(_registered_tokens))
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, LimitRepeats) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(LimitRepeats())
