# SPDX-License-Identifier: GPL-3.0-or-later
"""The check every private key file gets when it is loaded (the TLS key, the ZeroMQ CURVE
secret keys): a warning when every user of the machine can read it."""

from __future__ import annotations

import logging
import os

__all__ = ["readable_by_others", "warn_if_readable_by_others"]


def readable_by_others(path: str) -> bool:
    """Whether every user of this machine may read ``path`` (its mode has o+r)."""
    return bool(os.stat(path).st_mode & 0o004)


def warn_if_readable_by_others(path: str, event: str, what: str,
                               logger: logging.Logger) -> None:
    """Log ``event=EVENT path=PATH: WHAT is readable by every user ...`` if it is.

    Args:
        path: the key file (it exists: it was just read).
        event: the event name of the line (``tls_key_readable``, ``zmq_key_readable``).
        what: what the file holds, e.g. "the TLS private key".
        logger: where the warning goes.
    """
    if readable_by_others(path):
        logger.warning("event=%s path=%s: %s is readable by every user of this machine; "
                       "chmod 600 it", event, path, what)
