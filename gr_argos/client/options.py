# SPDX-License-Identifier: GPL-3.0-or-later
"""What a client checks and prepares before it connects: the URL, the token, TLS, and the
frame format and view asked for in the URL."""

from __future__ import annotations

import logging
import ssl
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from gr_argos.protocol import ENCODING_CODES, VIEW_KEYS, ViewRequest, check_step_db

__all__ = ["MaskingLogger", "check_token", "check_url", "client_tls_context", "with_format",
           "with_view"]

# The server's limit on a token (its auth message schema); longer ones can never match.
_MAX_TOKEN_CHARS = 4096


def check_url(url: str) -> None:
    """Check that ``url`` is a WebSocket URL a client can connect to.

    Raises:
        ValueError: with a message that says what is wrong and what is expected.
    """
    try:
        parse_uri(url)
    except InvalidURI as exc:
        problem = exc.msg
    except ValueError as exc:  # urllib's complaints about ports and IPv6 brackets
        problem = str(exc)
    else:
        return
    raise ValueError(f"bad URL {url!r}: {problem}; expected ws://HOST:PORT/ or wss://HOST:PORT/")


def check_token(token: str) -> None:
    """Check that ``token`` can be a server's token, sent in an ``Authorization`` header.

    The message never contains the token.

    Raises:
        ValueError: if it is empty, longer than 4096 characters, starts or ends with
            whitespace (a server strips it from the header, so it could never match) or
            holds a control character such as a line break.
    """
    if not token:
        raise ValueError("the token is empty: give the server's token")
    if len(token) > _MAX_TOKEN_CHARS:
        raise ValueError(f"the token is {len(token)} characters long; a server's token "
                         f"has at most {_MAX_TOKEN_CHARS}")
    if token != token.strip():
        raise ValueError("the token starts or ends with whitespace, which a server never "
                         "matches: remove it")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in token):
        raise ValueError("the token holds a control character (a line break?): give the "
                         "token alone, on one line")


class MaskingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for one websockets connection that writes ``***`` for the token: at DEBUG
    level websockets logs every request header, the ``Authorization`` one included.

    Args:
        name: the logger to write to.
        secret: the text to mask.
    """

    def __init__(self, name: str, secret: str) -> None:
        super().__init__(logging.getLogger(name), {})
        self._secret = secret

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, text.replace(self._secret, "***"), **kwargs)


def client_tls_context(url: str, ssl_cafile: str | None) -> ssl.SSLContext | None:
    """The TLS context to connect to ``url`` with: one that trusts ``ssl_cafile``, or None
    (plain ws://, or wss:// with the system's CAs, which websockets sets up itself).

    Raises:
        ValueError: ``ssl_cafile`` with a ws:// URL, or a file that cannot be loaded.
    """
    if not ssl_cafile:
        return None
    if not url.lower().startswith("wss://"):
        raise ValueError(f"ssl_cafile ({ssl_cafile}) is for wss:// URLs; {url!r} is not "
                         "one (use wss://HOST:PORT/)")
    try:
        return ssl.create_default_context(cafile=ssl_cafile)
    except OSError as exc:
        raise ValueError(f"cannot read CA file {ssl_cafile}: {exc.strerror or exc}") from exc
    except ssl.SSLError as exc:
        raise ValueError(f"CA file {ssl_cafile} holds no usable PEM certificate: {exc}") from exc


def with_format(url: str, encoding: str | None, compress: bool, step_db: float = 0.0,
                second_trace: bool = False) -> str:
    """``url`` with the frame format to ask for in its query (see docs/protocol.md)."""
    step_db = check_step_db(step_db)  # a ProtocolError (a ValueError) naming the range
    if step_db and encoding != "uint8":
        raise ValueError(f"step_db applies to the uint8 encoding only: ask for encoding "
                         f"'uint8' too (got {encoding!r})")
    if encoding is None and not compress and not second_trace:
        return url
    if encoding is not None and encoding not in ENCODING_CODES:
        raise ValueError(f"unknown encoding {encoding!r}: use one of "
                         + ", ".join(repr(name) for name in ENCODING_CODES))
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query)
             if k not in ("encoding", "compress", "step_db", "second_trace")]
    query.append(("encoding", encoding or "float32"))
    if compress:
        query.append(("compress", "1"))
    if step_db:
        query.append(("step_db", format(step_db, ".15g")))
    if second_trace:
        query.append(("second_trace", "1"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_view(url: str, view: ViewRequest | None) -> str:
    """``url`` with the view to ask for in its query, replacing any there (see
    docs/protocol.md ``set_view``); None leaves it as it is, an empty view asks for none.

    Raises:
        ValueError: a value the server would refuse, naming it.
    """
    if view is None:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in VIEW_KEYS]
    ViewRequest.parse(dict(view.query()))  # a ProtocolError (ValueError) naming the key
    query.extend(view.query())
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_resume(url: str, session: str | None, after: dict[int, int]) -> str:
    """``url`` asking to resume ``session`` after the sequences ``after`` (stream id -> the
    last sequence received), replacing any resume or backfill request there (see
    docs/protocol.md, "Resume and backfill"); no session or no sequence leaves the request
    out."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query)
             if k not in ("resume_from", "resume_session", "backfill_s")]
    if session and after:
        query.append(("resume_session", session))
        query.append(("resume_from", ",".join(f"{stream_id}:{sequence}"
                                              for stream_id, sequence in sorted(after.items()))))
    return urlunsplit(parts._replace(query=urlencode(query, safe=":,")))


def with_backfill(url: str, backfill_s: float) -> str:
    """``url`` asking for the last ``backfill_s`` seconds of every stream first (0: none)."""
    if not backfill_s:
        return url
    if not 0 < backfill_s <= 3600:
        raise ValueError(f"backfill_s must be more than 0 and at most 3600 s, got {backfill_s}")
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "backfill_s"]
    query.append(("backfill_s", format(backfill_s, "g")))
    return urlunsplit(parts._replace(query=urlencode(query)))
