# SPDX-License-Identifier: GPL-3.0-or-later
"""What a client may send once connected: the message types, their fields, and how often.

Plain code, no sockets: a connection checks each inbound message with
:func:`validate_message` and its rate with a :class:`TokenBucket`, and answers a message it
cannot decode with the code :func:`error_code` gives. Nothing here logs or returns a token.
"""

from __future__ import annotations

import json
import time
from typing import Any

from gr_argos.server.detection_history import DETECTIONS_KEPT
from gr_argos.protocol import (
    MAX_FPS_DIVISOR,
    MAX_VIEW_BINS,
    UINT8_STEP_DB_MAX,
    UINT8_STEP_DB_MIN,
    ProtocolError,
    ViewRequest,
    check_step_db,
)
from gr_argos.server.control import CONTROL_ACTIONS
from gr_argos.server.recording_switch import RECORD_ACTIONS, RECORDING_KINDS

__all__ = ["CLIENT_MESSAGE_TYPES", "TokenBucket", "error_code", "validate_message"]


class TokenBucket:
    """Inbound message rate limit of one client: ``rate_per_s`` sustained, ``burst`` at once.

    Args:
        rate_per_s: messages per second refilled (0 turns the limit off).
        burst: messages the bucket holds when full (at least 1).
        clock: monotonic seconds (a test may pass its own).
    """

    __slots__ = ("rate_per_s", "burst", "_tokens", "_last", "_clock")

    def __init__(self, rate_per_s: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        """Spend one token; False when the client is over its rate."""
        if self.rate_per_s <= 0:
            return True
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def _is_step_db(value: int | float) -> bool:
    """A uint8 step a client may ask for (the range check of :func:`check_step_db`)."""
    try:
        check_step_db(value)
    except ProtocolError:
        return False
    return True


def _whole_number(low: int, high: int) -> Any:
    """A check that a JSON value is a whole number (not true/false) from low to high."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _view_field(name: str, what: str) -> tuple[bool, Any, str]:
    """An optional ``set_view`` field: a JSON number (or null) that :class:`ViewRequest`
    takes."""
    def check(value: object) -> bool:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return False
        try:
            ViewRequest.parse({name: value})
        except ProtocolError:
            return False
        return True
    return False, check, what


# Fields each client message type may carry: name -> (required, check, what it must be).
_SCHEMAS: dict[str, dict[str, tuple[bool, Any, str]]] = {
    "ping": {"id": (False, lambda v: True, "any JSON value (echoed in the pong)")},
    "stats": {},
    "set_encoding": {
        "encoding": (True, lambda v: isinstance(v, str), "a string"),
        "compress": (False, lambda v: isinstance(v, bool), "true or false"),
        "second_trace": (False, lambda v: isinstance(v, bool), "true or false"),
        "step_db": (False, lambda v: isinstance(v, (int, float)) and _is_step_db(v),
                    f"0 (automatic) or a number of dB from {UINT8_STEP_DB_MIN:g} to "
                    f"{UINT8_STEP_DB_MAX:g}"),
    },
    "set_view": {
        "stream_id": _view_field("stream_id", "a stream id from hello"),
        "center_freq_hz": _view_field("center_freq_hz", "a finite number of Hz"),
        "span_hz": _view_field("span_hz", "a number of Hz more than 0"),
        "bins": _view_field("bins", f"a whole number from 1 to {MAX_VIEW_BINS}"),
        "fps_divisor": _view_field("fps_divisor", f"a whole number from 1 to {MAX_FPS_DIVISOR}"),
    },
    "detections": {
        "limit": (False, _whole_number(1, DETECTIONS_KEPT),
                  f"a whole number from 1 to {DETECTIONS_KEPT}"),
        "since_ns": (False, _whole_number(0, (1 << 63) - 1),
                     "a whole number of ns since the Unix epoch (0 or more)"),
        "stream": (False, _whole_number(0, 0xFFFF), "a stream id from hello"),
    },
    "auth": {"token": (True, lambda v: isinstance(v, str) and 0 < len(v) <= 4096,
                       "a non-empty string")},
    "control": {
        "action": (True, lambda v: v in CONTROL_ACTIONS, " or ".join(CONTROL_ACTIONS)),
        "name": (False, lambda v: isinstance(v, str) and len(v) <= 200,
                 "a string of at most 200 characters (the name others see)"),
    },
    "record": {
        "action": (True, lambda v: v in RECORD_ACTIONS, " or ".join(RECORD_ACTIONS)),
        "kind": (False, lambda v: v in RECORDING_KINDS,
                 " or ".join(RECORDING_KINDS) + " (omitted: every recording)"),
    },
    "tune": {},  # the settings' names; checked against the source (server/control.py)
    "set_limits": {},  # the control_* limits; checked by server/control.py
}

#: The message types a client may send.
CLIENT_MESSAGE_TYPES = tuple(_SCHEMAS)


def validate_message(message: dict[str, Any]) -> str | None:
    """What is wrong with a decoded client message (an object with a string ``type``), or
    None when it is fine. Unknown extra fields are allowed (newer clients may send them);
    an unknown ``type`` is reported by the caller."""
    schema = _SCHEMAS.get(message["type"])
    if schema is None:
        return None
    for name, (required, check, what) in schema.items():
        if name not in message:
            if required:
                return f"{message['type']}: missing field {name!r} ({what})"
            continue
        if not check(message[name]):
            return f"{message['type']}: field {name!r} must be {what}"
    return None


def error_code(text: str) -> str:
    """The ``error`` code for a message that did not decode (see docs/protocol.md):
    ``bad_json`` when it is not JSON at all, ``bad_message`` when it is the wrong shape."""
    try:
        json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return "bad_json"
    return "bad_message"
