# SPDX-License-Identifier: GPL-3.0-or-later
"""The server's settings (gr_argos/server/config.py): checked where they are declared."""

from __future__ import annotations

import pytest

from gr_argos.server.config import ServerConfig
from gr_argos.settings import ConfigError

TOKEN = "s3cret-Token"


def test_origins_are_parsed_from_the_comma_separated_setting() -> None:
    """allowed_origins is one string; origins is its list, blanks and trailing / removed."""
    config = ServerConfig(allowed_origins=" http://a , ,https://b:8443/")
    assert config.origins == ("http://a", "https://b:8443")
    assert ServerConfig().origins == ()


def test_the_token_is_never_in_the_repr() -> None:
    """A config printed in a log line does not show its token."""
    assert TOKEN not in repr(ServerConfig(token=TOKEN))
    assert TOKEN not in str(ServerConfig(token=TOKEN))


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("port", 70000, "bad value 70000 for port: must be between 0 and 65535"),
    ("queue_depth", 0, "bad value 0 for queue_depth: must be at least 1"),
    ("max_messages_burst", 0, "bad value 0 for max_messages_burst: must be at least 1"),
    ("handshake_timeout_s", 0, "bad value 0 for handshake_timeout_s: must be greater than 0"),
    ("ping_interval_s", -1, "bad value -1 for ping_interval_s: must be 0 or more"),
    ("max_clients", "many", "bad value 'many' for max_clients: expected an integer"),
])
def test_a_bad_value_is_refused_naming_the_setting(field: str, value: object,
                                                   problem: str) -> None:
    """Each declared check runs when a config is made, with a message naming the setting."""
    with pytest.raises(ConfigError, match=f"^ServerConfig: {problem}"):
        ServerConfig(**{field: value})  # type: ignore[arg-type]


def test_ints_given_for_seconds_become_floats() -> None:
    """A whole number of seconds is accepted and stored as a float."""
    config = ServerConfig(ping_interval_s=5, handshake_timeout_s=2)
    assert config.ping_interval_s == 5.0 and isinstance(config.ping_interval_s, float)
