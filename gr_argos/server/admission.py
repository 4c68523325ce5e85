# SPDX-License-Identifier: GPL-3.0-or-later
"""Who may talk to the server: the Host it was reached by, the origin allowlist, the
connection limits and the token.

Plain code, no sockets: the server describes an upgrade request as an :class:`UpgradeRequest`
and :func:`admit` answers with an :class:`Admission` or a :class:`Refusal` (an HTTP status,
a reason for the metrics and a message for the client); :func:`host_refusal` checks any
request's ``Host``. Nothing here logs or returns a token.

Two checks keep web pages of other sites away from a server on the user's machine or LAN:
the ``Origin`` a browser sends must be the server's own (its viewer) unless
``allowed_origins`` lists it, and the ``Host`` must be a name the server is known by, so a
page that rebinds its own DNS name to the server's address (DNS rebinding) is refused too.
"""

from __future__ import annotations

import functools
import hmac
import http
import ipaddress
import itertools
import math
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from gr_argos.server.config import ServerConfig
from gr_argos.server.control import role_of

__all__ = ["Admission", "Gate", "RETRY_AFTER_S", "Refusal", "UpgradeRequest", "admit",
           "bearer_token", "host_allowed", "host_refusal", "origin_allowed", "token_matches"]

#: Headers of which a request may carry one only: a second one is refused (400), never
#: guessed at (which one would a proxy have checked?).
SINGLE_HEADERS = ("Host", "Origin", "Upgrade", "Connection", "Authorization",
                  "Sec-WebSocket-Key", "Sec-WebSocket-Version")

#: Seconds a client refused for a limit is asked to wait before it tries again (Retry-After).
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class UpgradeRequest:
    """What admission looks at in a WebSocket upgrade request.

    Attributes:
        path: the request target, query included (``/?encoding=uint8``).
        host: the ``Host`` header (``name[:port]``), or None.
        origin: the ``Origin`` header (browsers always send one), or None.
        authorization: the ``Authorization`` header, or None.
        peer_ip: the client's address.
    """

    path: str
    host: str | None
    origin: str | None
    authorization: str | None
    peer_ip: str


@dataclass(frozen=True)
class Admission:
    """An admitted upgrade. ``authenticated_by`` is how the token was given ("header" or
    "query"), or None: no token is needed, or it must come in a first ``auth`` message.
    ``role`` is what the token given makes the client (:mod:`gr_argos.server.control`), or
    None without one."""

    authenticated_by: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A refused upgrade.

    Attributes:
        reason: why, as counted in the metrics (``host``, ``origin``, ``max_clients``,
            ``max_clients_per_ip``, ``max_unauthenticated``, ``auth``, ``auth_backoff``).
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


class Gate:
    """What admission counts between requests (touched on the server's loop only).

    Clients (admitted, authenticated when a token is set) and connections still waiting to
    send their ``auth`` message are counted apart, by address, so that connections without
    the token cannot take the clients' places; an address whose authentication failed
    ``FAILURES_BEFORE_BACKOFF`` times in a row is refused for a time that doubles with each
    further failure (up to :data:`BACKOFF_MAX_S`), on every path (header, auth message,
    ``/metrics``).

    Args:
        config: the server's settings (the limits).
        clock: monotonic seconds (a test may pass its own).
    """

    FAILURES_BEFORE_BACKOFF = 3
    BACKOFF_MAX_S = 60.0
    #: A pending handshake that has sent nothing for this long is taken for an idle socket.
    SILENT_AFTER_S = 1.0
    #: Addresses remembered for their failures; beyond that the oldest are forgotten.
    MAX_ADDRESSES = 10_000

    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._config = config
        self._clock = clock
        self.clients: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()
        self.handshakes: Counter[str] = Counter()  # TCP connections not yet upgraded, by ip
        # The same by ip, those that sent nothing yet apart: key -> when it started (time,
        # then a sequence number for equal times).
        self.silent: dict[str, dict[object, tuple[float, int]]] = {}
        self.spoken: dict[str, dict[object, tuple[float, int]]] = {}
        self._pending_ip: dict[object, str] = {}  # key -> ip
        self._sequence = itertools.count()
        self._failures: dict[str, tuple[int, float]] = {}  # ip -> (failures, blocked until)

    def handshake_started(self, key: object, ip: str) -> tuple[bool, object | None]:
        """A new TCP connection (``key``) from ``ip``: may its handshake go on, and which
        pending one to drop for it.

        An address over ``max_pending_handshakes_per_ip`` is refused. When all
        ``max_pending_handshakes`` are taken, one pending handshake makes room (it is
        returned, to be dropped and ended with :meth:`handshake_ended`): one that has sent
        nothing for :attr:`SILENT_AFTER_S` (:meth:`handshake_spoke`) if there is any, else
        any; of those, one from the address with the most pending handshakes, its oldest.
        A real client sends its request as it connects and finishes its handshake in
        milliseconds, so the idle sockets of a flood go first, a flood from many addresses
        cannot lock new clients out, and a new client is not taken for an idle socket in
        the moment before its request arrives.
        """
        cfg = self._config
        if cfg.max_pending_handshakes_per_ip and (self.handshakes[ip]
                                                  >= cfg.max_pending_handshakes_per_ip):
            return False, None
        evicted = None
        if cfg.max_pending_handshakes and len(self._pending_ip) >= cfg.max_pending_handshakes:
            evicted = self._to_evict()
        self._pending_ip[key] = ip
        self.silent.setdefault(ip, {})[key] = (self._clock(), next(self._sequence))
        self.handshakes[ip] += 1
        return True, evicted

    def _to_evict(self) -> object:
        """The pending handshake to drop for a new one (see :meth:`handshake_started`)."""
        idle_since = (self._clock() - self.SILENT_AFTER_S, math.inf)
        candidates = {ip: started for ip, started in self.silent.items()
                      if min(started.values()) <= idle_since}
        if not candidates:
            for pool in (self.silent, self.spoken):
                for ip, started in pool.items():
                    candidates[ip] = {**candidates.get(ip, {}), **started}
        most = max(map(self.handshakes.__getitem__, candidates))
        ip = min((ip for ip in candidates if self.handshakes[ip] == most),
                 key=lambda ip: min(candidates[ip].values()))
        started = candidates[ip]
        return min(started, key=started.__getitem__)

    def handshake_spoke(self, key: object) -> None:
        """A pending handshake received its first bytes (a request, or part of one)."""
        ip = self._pending_ip.get(key)
        if ip is not None and key in self.silent.get(ip, ()):
            self.spoken.setdefault(ip, {})[key] = _pop(self.silent, ip, key)

    def handshake_ended(self, key: object) -> None:
        """A handshake :meth:`handshake_started` let in ended (upgraded, refused, dropped)."""
        ip = self._pending_ip.pop(key, None)
        if ip is not None:
            _pop(self.silent if key in self.silent.get(ip, ()) else self.spoken, ip, key)
            _decrement(self.handshakes, ip)

    def client_refusal(self, ip: str) -> Refusal | None:
        """503 or 429 when one more client (from ``ip``) would be over the limits."""
        cfg = self._config
        if cfg.max_clients and sum(self.clients.values()) >= cfg.max_clients:
            return Refusal("max_clients", http.HTTPStatus.SERVICE_UNAVAILABLE,
                           f"server full: {cfg.max_clients} clients connected",
                           retry_after_s=RETRY_AFTER_S)
        if cfg.max_clients_per_ip and self.clients[ip] >= cfg.max_clients_per_ip:
            return Refusal("max_clients_per_ip", http.HTTPStatus.TOO_MANY_REQUESTS,
                           f"too many connections from your address "
                           f"(at most {cfg.max_clients_per_ip})", retry_after_s=RETRY_AFTER_S)
        return None

    def waiting_refusal(self, ip: str) -> Refusal | None:
        """503 or 429 when one more connection waiting to authenticate would be too many."""
        cfg = self._config
        if cfg.max_unauthenticated and (sum(self.waiting.values())
                                        >= cfg.max_unauthenticated):
            return Refusal("max_unauthenticated", http.HTTPStatus.SERVICE_UNAVAILABLE,
                           f"{cfg.max_unauthenticated} connections are waiting to "
                           "authenticate: send the token in an Authorization: Bearer header",
                           retry_after_s=RETRY_AFTER_S)
        if cfg.max_unauthenticated_per_ip and (self.waiting[ip]
                                               >= cfg.max_unauthenticated_per_ip):
            return Refusal("max_unauthenticated", http.HTTPStatus.TOO_MANY_REQUESTS,
                           "too many connections from your address are waiting to "
                           "authenticate", retry_after_s=RETRY_AFTER_S)
        return None

    def backoff_refusal(self, ip: str) -> Refusal | None:
        """429 while ``ip`` is refused for its failed authentications."""
        failures, until = self._failures.get(ip, (0, 0.0))
        remaining_s = until - self._clock()
        if remaining_s <= 0:
            return None
        return Refusal("auth_backoff", http.HTTPStatus.TOO_MANY_REQUESTS,
                       f"{failures} failed authentications from your address: wait before "
                       "trying again", retry_after_s=max(1, math.ceil(remaining_s)))

    def authenticate(self, ip: str, given: object, token: str) -> bool:
        """Whether ``given`` (a token a client sent from ``ip``) is ``token``: the right one
        clears the address's failures, a wrong one counts toward its backoff. (A client
        that sent none made no guess: it is refused without counting.)"""
        if token_matches(given, token):
            self.succeeded(ip)
            return True
        self.failed(ip)
        return False

    def role(self, ip: str, given: object, config: ServerConfig) -> str | None:
        """The role ``given`` (a token a client sent from ``ip``) gives, counted as
        :meth:`authenticate` counts: None for a token that is none of the server's."""
        role = token_role(given, config)
        if role is None:
            self.failed(ip)
        else:
            self.succeeded(ip)
        return role

    def failed(self, ip: str) -> None:
        """Count a failed authentication from ``ip`` (and start or lengthen its backoff)."""
        failures = self._failures.pop(ip, (0, 0.0))[0] + 1
        blocked_s = 0.0
        if failures >= self.FAILURES_BEFORE_BACKOFF:
            blocked_s = min(self.BACKOFF_MAX_S,
                            2.0 ** (failures - self.FAILURES_BEFORE_BACKOFF))
        if len(self._failures) >= self.MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]
        self._failures[ip] = (failures, self._clock() + blocked_s)

    def succeeded(self, ip: str) -> None:
        """Forget ``ip``'s failures: it knows the token."""
        self._failures.pop(ip, None)

    def enter(self, ip: str, waiting: bool) -> None:
        """A connection from ``ip`` was upgraded: a client, or waiting to authenticate."""
        (self.waiting if waiting else self.clients)[ip] += 1

    def promote(self, ip: str) -> Refusal | None:
        """A waiting connection authenticated: it becomes a client, unless the limits say
        no (the refusal; it stays waiting until it leaves)."""
        refusal = self.client_refusal(ip)
        if refusal is None:
            _decrement(self.waiting, ip)
            self.clients[ip] += 1
        return refusal

    def leave(self, ip: str, waiting: bool) -> None:
        """A connection from ``ip`` ended."""
        _decrement(self.waiting if waiting else self.clients, ip)


def _pop(by_ip: dict[str, dict[object, tuple[float, int]]], ip: str, key: object
         ) -> tuple[float, int]:
    """Take ``key`` out of ``by_ip[ip]`` (and the address out when it has no more); when it
    started."""
    started = by_ip[ip]
    when = started.pop(key)
    if not started:
        del by_ip[ip]
    return when


def _decrement(counts: Counter[str], ip: str) -> None:
    counts[ip] -= 1
    if counts[ip] <= 0:
        del counts[ip]


def admit(request: UpgradeRequest, config: ServerConfig, gate: Gate) -> Admission | Refusal:
    """Whether an upgrade may go on, checked in this order: 421 for a Host the server is not
    known by, 403 for an origin not allowed, 429 for an address in backoff after failed
    authentications, 401 for a wrong token in the header (or the URL, when allowed), 503 /
    429 over the client limits (or over those of connections waiting to authenticate, when
    the token must still come in an ``auth`` message).

    Args:
        request: the upgrade request.
        config: the server's settings.
        gate: the counts and backoffs so far (read here; the caller records the outcome of
            a token in the request, as :meth:`Gate.authenticate` does for the other paths).
    """
    refusal = host_refusal(request.host, config)
    if refusal is not None:
        return refusal
    if not origin_allowed(request.origin, config.origins, request.host):
        return Refusal("origin", http.HTTPStatus.FORBIDDEN,
                       f"origin {request.origin} is not allowed on this server: list it in "
                       "the server's allowed_origins", details={"origin": request.origin})
    if not config.token and not config.role_tokens:
        return gate.client_refusal(request.peer_ip) or Admission()
    refusal = gate.backoff_refusal(request.peer_ip)
    if refusal is not None:
        return refusal
    given, method = bearer_token(request.authorization), "header"
    if given is None and config.allow_query_token:
        given = parse_qs(urlsplit(request.path).query).get("token", [None])[-1]
        method = "query"
    if given is None:
        if not config.token:  # watching needs no token; control may come with an auth message
            return gate.client_refusal(request.peer_ip) or Admission()
        return gate.waiting_refusal(request.peer_ip) or Admission()  # it may send auth
    role = token_role(given, config)
    if role is None:
        return Refusal("auth", http.HTTPStatus.UNAUTHORIZED, "wrong token",
                       details={"method": method})
    return gate.client_refusal(request.peer_ip) or Admission(authenticated_by=method, role=role)


def token_role(given: object, config: ServerConfig) -> str | None:
    """The role a token gives on this server (the viewers' ``token``, an operator's or an
    admin's), or None."""
    return role_of(given, config.token, config.operator_tokens, config.admin_tokens)


def origin_allowed(origin: str | None, allowed: tuple[str, ...], host: str | None) -> bool:
    """Whether a request's ``Origin`` passes: the server's own origin (the page came from the
    ``host`` it asks: the viewer) always; others when the allowlist has them exactly, or
    has ``*``.

    A request without ``Origin`` (not a browser) passes: browsers always send it, and the
    token is what keeps other programs out.
    """
    if origin is None or "*" in allowed:
        return True
    origin = origin.strip()
    if host is not None and urlsplit(origin).netloc.lower() == host.strip().lower():
        return True
    return origin in allowed


def host_refusal(host: str | None, config: ServerConfig) -> Refusal | None:
    """421 for a request whose ``Host`` is not a name this server is known by (see
    :func:`host_allowed`), 400 without one; None when it is fine."""
    if host is None or not host.strip():
        return Refusal("host", http.HTTPStatus.BAD_REQUEST,
                       "the request has no Host header", details={"host": host})
    if host_allowed(host, config):
        return None
    return Refusal("host", http.HTTPStatus.MISDIRECTED_REQUEST,
                   f"this server is not known as {_host_name(host)!r}: list that name in the "
                   "server's allowed_hosts", details={"host": host})


def host_allowed(host: str, config: ServerConfig) -> bool:
    """Whether ``host`` (a ``Host`` header, ``name[:port]``) names this server.

    ``allowed_hosts`` empty: any IP address, ``localhost``, this machine's names (host name,
    fully qualified name, ``NAME.local``) and the hosts of ``allowed_origins``; ``*``: any;
    else the names listed (and IP addresses).
    """
    allowed = tuple(name.strip().lower() for name in config.allowed_hosts.split(",")
                    if name.strip())
    if "*" in allowed:
        return True
    name = _host_name(host)
    if _is_ip_address(name):
        return True
    if allowed:
        return name in allowed
    return name in _machine_names() or name in {
        (urlsplit(origin).hostname or "").lower() for origin in config.origins}


def _host_name(host: str) -> str:
    """The name of a ``Host`` header, without port or IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@functools.cache
def _machine_names() -> frozenset[str]:
    """localhost and the names of this machine (looked up once)."""
    hostname = socket.gethostname().lower()
    names = {"localhost", "localhost.localdomain", hostname, f"{hostname}.local"}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:  # no resolver: the names above are enough
        pass
    return frozenset(name for name in names if name)


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
