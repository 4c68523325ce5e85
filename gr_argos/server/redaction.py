"""Keeps tokens out of the ``websockets`` library's DEBUG lines, which print every request
line, header and frame."""

from __future__ import annotations

import logging
import re

__all__ = ["RedactSecrets", "redact_websockets_logs"]

# What may carry a token: the request line (?token=...), the Authorization header and an
# auth message's JSON.
_SECRETS = re.compile(r'(?i)(token=)[^&\s]*|(authorization:\s*).*|("token"\s*:\s*")[^"]*')


class RedactSecrets(logging.Filter):
    """Replaces what may be a token in a log record's message with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***",
                                message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_websockets_logs() -> None:
    """Install :class:`RedactSecrets` on the ``websockets.server`` logger, once."""
    logger = logging.getLogger("websockets.server")
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
