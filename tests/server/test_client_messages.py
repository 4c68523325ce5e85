# SPDX-License-Identifier: GPL-3.0-or-later
"""What a client may send (gr_argos/server/client_messages.py), as plain code: no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from gr_argos.server.client_messages import TokenBucket, error_code, validate_message


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    """A full bucket lets ``burst`` through at once, then one per 1/rate seconds."""
    now = [0.0]
    bucket = TokenBucket(2.0, 3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.take() and not bucket.take()
    assert all(TokenBucket(0, 1).take() for _ in range(100))


@pytest.mark.parametrize("message, problem", [
    ({"type": "set_encoding"}, "missing field 'encoding'"),
    ({"type": "set_encoding", "encoding": 7}, "field 'encoding' must be a string"),
    ({"type": "set_encoding", "encoding": "int16", "compress": "yes"}, "'compress'"),
    ({"type": "set_encoding", "encoding": "int16", "second_trace": 1},
     "field 'second_trace' must be true or false"),
    ({"type": "set_encoding", "encoding": "uint8", "step_db": "1"},
     "field 'step_db' must be 0 (automatic) or a number of dB from 0.01 to 20"),
    ({"type": "set_encoding", "encoding": "uint8", "step_db": 20.5}, "'step_db'"),
    ({"type": "set_encoding", "encoding": "uint8", "step_db": 0.001}, "'step_db'"),
    ({"type": "set_encoding", "encoding": "uint8", "step_db": True}, "'step_db'"),
    ({"type": "auth"}, "missing field 'token'"),
    ({"type": "auth", "token": 5}, "field 'token'"),
])
def test_invalid_messages_are_named(message: dict[str, Any], problem: str) -> None:
    """Each schema violation is reported with the field it concerns."""
    found = validate_message(message)
    assert found is not None and problem in found


def test_valid_messages_pass() -> None:
    for message in ({"type": "ping", "id": {"any": [1]}}, {"type": "stats"},
                    {"type": "set_encoding", "encoding": "uint8", "compress": True},
                    {"type": "set_encoding", "encoding": "uint8", "second_trace": True},
                    {"type": "set_encoding", "encoding": "uint8", "step_db": 1},
                    {"type": "set_encoding", "encoding": "uint8", "step_db": 0.0},
                    {"type": "auth", "token": "x"}, {"type": "ping", "extra": 1}):
        assert validate_message(message) is None


@pytest.mark.parametrize(("text", "code"), [
    ("{not json", "bad_json"),
    ("[" * 100_000, "bad_json"),
    ('["a list"]', "bad_message"),
    ('{"no": "type"}', "bad_message"),
])
def test_error_code_tells_bad_json_from_a_bad_message(text: str, code: str) -> None:
    """Text that is not JSON is bad_json; JSON of the wrong shape is bad_message."""
    assert error_code(text) == code
