# SPDX-License-Identifier: GPL-3.0-or-later
"""Reconnect delays of the clients: the same policy as the JavaScript client's.

Plain code without sockets.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Reconnect delays: exponential backoff with full jitter, reset once a link is stable.

    Attempt ``n`` (counting from 0) waits ``random.uniform(0, min(cap_s, base_s * 2**n))``
    seconds, so many clients cut off together do not all come back at the same moment.
    The attempt counter goes back to 0 when a connection stayed open ``stable_after_s``.

    Args:
        base_s: delay ceiling of the first attempt, in seconds (> 0).
        cap_s: largest delay ceiling, in seconds (>= base_s).
        stable_after_s: how long a connection must stay open to reset the counter, in s.
        rng: random source (pass ``random.Random(seed)`` for repeatable delays).

    Raises:
        ValueError: if a duration is negative or zero where it must be positive.
    """

    def __init__(
        self,
        base_s: float = 0.5,
        cap_s: float = 10.0,
        stable_after_s: float = 5.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if base_s <= 0:
            raise ValueError(f"backoff base must be > 0 s, got {base_s}")
        if cap_s < base_s:
            raise ValueError(f"backoff cap ({cap_s} s) must be >= its base ({base_s} s)")
        if stable_after_s < 0:
            raise ValueError(f"stable_after must be >= 0 s, got {stable_after_s}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.stable_after_s = stable_after_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling_s(self) -> float:
        """The largest delay the next attempt can get, in seconds."""
        return min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, 1023))

    def next_delay_s(self) -> float:
        """Draw the delay before the next attempt (in seconds) and count the attempt."""
        delay_s = self._rng.uniform(0.0, self.ceiling_s())
        if self.ceiling_s() < self.cap_s:
            # Stop counting once the cap is reached: 2**attempt would grow without need.
            self.attempt += 1
        return delay_s

    def connection_closed(self, open_for_s: float) -> None:
        """Report that a connection closed after ``open_for_s`` seconds open."""
        if open_for_s >= self.stable_after_s:
            self.attempt = 0
