"""Who may upgrade to a WebSocket: the origin allowlist, the connection limits and the token.

Plain code, no sockets: the server describes an upgrade request as an :class:`UpgradeRequest`
and :func:`admit` answers with an :class:`Admission` or a :class:`Refusal` (an HTTP status,
a reason for the metrics and a message for the client). Nothing here logs or returns a token.
"""

from __future__ import annotations

import hmac
import http
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gr_argos.server.config import ServerConfig

__all__ = ["Admission", "RETRY_AFTER_S", "Refusal", "UpgradeRequest", "admit",
           "bearer_token", "origin_allowed", "token_matches"]

#: Seconds a client refused for a limit is asked to wait before it tries again (Retry-After).
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class UpgradeRequest:
    """What admission looks at in a WebSocket upgrade request.

    Attributes:
        path: the request target, query included (``/?encoding=uint8``).
        origin: the ``Origin`` header (browsers always send one), or None.
        authorization: the ``Authorization`` header, or None.
        peer_ip: the client's address.
    """

    path: str
    origin: str | None
    authorization: str | None
    peer_ip: str


@dataclass(frozen=True)
class Admission:
    """An admitted upgrade. ``authenticated_by`` is how the token was given ("header" or
    "query"), or None: no token is needed, or it must come in a first ``auth`` message."""

    authenticated_by: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A refused upgrade.

    Attributes:
        reason: why, as counted in the metrics (``origin``, ``max_clients``,
            ``max_clients_per_ip``, ``auth``).
        status: the HTTP status to answer with.
        error: what the client is told.
        retry_after_s: seconds to wait before trying again, for a limit.
        details: more fields for the log line (never a token).
    """

    reason: str
    status: http.HTTPStatus
    error: str
    retry_after_s: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body of the refusal."""
        body: dict[str, Any] = {"error": self.error}
        if self.retry_after_s is not None:
            body["retry_after_s"] = self.retry_after_s
        return body


def admit(request: UpgradeRequest, config: ServerConfig, clients: int,
          clients_from_ip: int) -> Admission | Refusal:
    """Whether an upgrade may go on, checked in this order: 403 for an origin not allowed,
    503 / 429 over the connection limits, 401 for a wrong token in the header (or the URL,
    when allowed).

    Args:
        request: the upgrade request.
        config: the server's settings.
        clients: clients connected now.
        clients_from_ip: clients connected now from ``request.peer_ip``.
    """
    if not origin_allowed(request.origin, config.origins):
        return Refusal("origin", http.HTTPStatus.FORBIDDEN,
                       f"origin {request.origin} is not allowed on this server",
                       details={"origin": request.origin})
    if config.max_clients and clients >= config.max_clients:
        return Refusal("max_clients", http.HTTPStatus.SERVICE_UNAVAILABLE,
                       f"server full: {config.max_clients} clients connected",
                       retry_after_s=RETRY_AFTER_S)
    if config.max_clients_per_ip and clients_from_ip >= config.max_clients_per_ip:
        return Refusal("max_clients_per_ip", http.HTTPStatus.TOO_MANY_REQUESTS,
                       f"too many connections from your address "
                       f"(at most {config.max_clients_per_ip})", retry_after_s=RETRY_AFTER_S)
    if not config.token:
        return Admission()
    given, method = bearer_token(request.authorization), "header"
    if given is None and config.allow_query_token:
        given = parse_qs(urlsplit(request.path).query).get("token", [None])[-1]
        method = "query"
    if given is None:
        return Admission()  # it may still send an auth message
    if not token_matches(given, config.token):
        return Refusal("auth", http.HTTPStatus.UNAUTHORIZED, "wrong token",
                       details={"method": method})
    return Admission(authenticated_by=method)


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a request's ``Origin`` passes the allowlist: exact matches only.

    An empty allowlist allows any origin. A request without ``Origin`` (not a browser)
    passes: browsers always send it, and the token is what keeps other programs out.
    """
    if not allowed or origin is None:
        return True
    return origin.strip() in allowed


def token_matches(given: object, expected: str) -> bool:
    """Constant-time comparison of a client's token with the server's."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()
