# SPDX-License-Identifier: GPL-3.0-or-later
"""Log lines a client can neither forge nor flood (gr_argos/server/logs.py), as plain code."""

from __future__ import annotations

import logging

import pytest

from gr_argos.server.logs import EventLog, LimitRepeats, MaskSecrets, quoted


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("value", "logged"), [
    ("http://console.example:8443", "http://console.example:8443"),
    ("http://x.example event=auth_ok", '"http://x.example event=auth_ok"'),
    ("line\nbreak", '"line\\nbreak"'),
    ("", '""'),
])
def test_a_clients_value_is_one_token_of_the_line(value: str, logged: str) -> None:
    """Plain values stay as they are; anything with a space, = or a line break is quoted."""
    assert quoted(value) == logged


def test_each_kind_is_logged_up_to_its_burst_then_summarised(
        caplog: pytest.LogCaptureFixture) -> None:
    """Past its burst in a window, a kind is counted; the next window's first line says how
    many were left out; another kind has its own burst; flush() says the rest."""
    clock = Clock()
    logger = logging.getLogger("test.events")
    events = EventLog(logger, burst=2, window_s=10, bursts={"connect": 4}, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.events"):
        for n in range(6):
            events.log(logging.WARNING, "refused", "event=refused n=%d", n)
            events.log(logging.INFO, "connect", "event=connect n=%d", n)
        clock.now += 10
        events.log(logging.WARNING, "refused", "event=refused n=%d", 6)
        events.log(logging.INFO, "connect", "event=connect n=%d", 6)
        events.flush()
    lines = [record.getMessage() for record in caplog.records]
    assert [line for line in lines if line.startswith("event=refused")] == [
        "event=refused n=0", "event=refused n=1", "event=refused suppressed=4 window_s=10",
        "event=refused n=6"]
    assert [line for line in lines if line.startswith("event=connect")] == [
        "event=connect n=0", "event=connect n=1", "event=connect n=2", "event=connect n=3",
        "event=connect suppressed=2 window_s=10", "event=connect n=6"]


def test_a_repeated_message_passes_a_few_times_then_says_how_many_more() -> None:
    """LimitRepeats lets 2 of 5 identical records through, then one saying 3 more came."""
    clock = Clock()
    limit = LimitRepeats(burst=2, window_s=10, clock=clock)

    def record() -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.WARNING, __file__, 1,
                                 "socket.send() raised exception.", None, None)

    assert [limit.filter(record()) for _ in range(5)] == [True, True, False, False, False]
    clock.now += 10
    late = record()
    assert limit.filter(late) and "(3 more like it in 10 s)" in late.getMessage()


@pytest.mark.parametrize("line", [
    "< GET /?tok%65n=s3cret-Token HTTP/1.1",
    '< TEXT \'{"type": "auth", "\\u0074oken": "s3cret-Token"}\' [64 bytes]',
    "< Authorization: Bearer s3cret-Token",
    "< TEXT '{\"type\": \"auth\", \"token\": \"s3cret-To...' [700 bytes, cut]",
])
def test_a_token_is_masked_whatever_its_spelling(line: str) -> None:
    """Percent-encoded, JSON-escaped, in a header, or cut short: no token survives."""
    record = logging.LogRecord("websockets.server", logging.DEBUG, __file__, 1, line, None,
                               None)
    MaskSecrets(lambda: ("s3cret-Token",)).filter(record)
    assert "s3cret" not in record.getMessage()
