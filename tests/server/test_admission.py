# SPDX-License-Identifier: GPL-3.0-or-later
"""Admission of WebSocket upgrades (gr_argos/server/admission.py), as plain code: no sockets."""

from __future__ import annotations

import http

import pytest

from gr_argos.server.admission import (
    Admission,
    Gate,
    Refusal,
    UpgradeRequest,
    admit,
    bearer_token,
    host_allowed,
    host_refusal,
    origin_allowed,
)
from gr_argos.server.config import ServerConfig, parse_origins

TOKEN = "s3cret-Token"


def request(path: str = "/", origin: str | None = None, authorization: str | None = None,
            peer_ip: str = "10.0.0.9", host: str | None = "127.0.0.1:8765") -> UpgradeRequest:
    return UpgradeRequest(path=path, host=host, origin=origin, authorization=authorization,
                          peer_ip=peer_ip)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gate_with(config: ServerConfig, clients: dict[str, int] | None = None,
              waiting: dict[str, int] | None = None) -> Gate:
    gate = Gate(config)
    for ip, count in (clients or {}).items():
        for _ in range(count):
            gate.enter(ip, waiting=False)
    for ip, count in (waiting or {}).items():
        for _ in range(count):
            gate.enter(ip, waiting=True)
    return gate


def test_origins_match_exactly_never_as_substrings() -> None:
    """Only an exact listed origin passes; a longer or shorter look-alike does not."""
    allowed = parse_origins("https://console.example.org, http://10.0.0.5:8765/")
    assert allowed == ("https://console.example.org", "http://10.0.0.5:8765")
    host = "10.0.0.5:8765"
    assert origin_allowed("https://console.example.org", allowed, host)
    assert not origin_allowed("https://console.example.org.evil.net", allowed, host)
    assert not origin_allowed("https://example.org", allowed, host)
    assert not origin_allowed("http://10.0.0.5", allowed, host)
    assert origin_allowed("http://10.0.0.5:8765", (), host)  # its own pages, always
    assert origin_allowed("https://anything", ("*",), host)
    assert parse_origins("a, ,b") == ("a", "b")


def test_without_an_allowlist_only_the_servers_own_pages_may_connect() -> None:
    """No allowed_origins: a page from the server itself (its viewer) passes, a page of any
    other site does not; a client that sends no Origin (not a browser) passes."""
    assert origin_allowed("http://127.0.0.1:8765", (), "127.0.0.1:8765")
    assert origin_allowed("http://Pi.Local:8765", (), "pi.local:8765")
    assert not origin_allowed("http://evil.example", (), "127.0.0.1:8765")
    assert not origin_allowed("http://127.0.0.1:9999", (), "127.0.0.1:8765")
    assert not origin_allowed("http://127.0.0.1:8765", (), None)
    assert origin_allowed(None, (), "127.0.0.1:8765")


def test_bearer_header_is_parsed() -> None:
    """Only the Bearer scheme with a non-empty token yields a token."""
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_a_plain_server_admits_its_own_pages_without_authentication() -> None:
    """No allowlist, no limits reached, no token: its viewer is admitted, nothing to
    authenticate; another site's page is not."""
    config = ServerConfig()
    assert admit(request(origin="http://127.0.0.1:8765"), config, Gate(config)) == Admission()
    refusal = admit(request(origin="https://any.example"), config, Gate(config))
    assert isinstance(refusal, Refusal) and refusal.reason == "origin"


@pytest.mark.parametrize(("host", "allowed_hosts", "ok"), [
    ("127.0.0.1:8765", "", True),
    ("[::1]:8765", "", True),
    ("10.1.2.3", "", True),
    ("localhost:8765", "", True),
    ("evil.example:8765", "", False),
    ("console.example.org", "", True),  # the host of an allowed origin
    ("pi.example.net:8765", "pi.example.net", True),
    ("localhost:8765", "pi.example.net", False),
    ("anything.example", "*", True),
])
def test_the_host_must_be_a_name_of_this_server(host: str, allowed_hosts: str,
                                                ok: bool) -> None:
    """A page whose DNS name was rebound to the server's address is refused by its Host."""
    config = ServerConfig(allowed_hosts=allowed_hosts,
                          allowed_origins="https://console.example.org")
    assert host_allowed(host, config) is ok
    refusal = host_refusal(host, config)
    assert (refusal is None) is ok
    if refusal is not None:
        assert (refusal.reason, refusal.status) == ("host", http.HTTPStatus.MISDIRECTED_REQUEST)
        assert "allowed_hosts" in refusal.error


def test_a_request_without_host_is_refused() -> None:
    refusal = host_refusal(None, ServerConfig())
    assert refusal is not None and refusal.status == http.HTTPStatus.BAD_REQUEST


def test_an_origin_not_listed_is_refused_with_403_naming_it() -> None:
    """An origin outside allowed_origins gets 403; a request without Origin (not a
    browser) passes."""
    config = ServerConfig(allowed_origins="https://console.example.org")
    refusal = admit(request(origin="https://evil.example"), config, Gate(config))
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.status) == ("origin", http.HTTPStatus.FORBIDDEN)
    assert refusal.body()["error"].startswith("origin https://evil.example is not allowed")
    assert admit(request(origin=None), config, Gate(config)) == Admission()


@pytest.mark.parametrize(("clients", "reason", "status"), [
    ({"10.0.0.1": 1, "10.0.0.2": 1}, "max_clients", http.HTTPStatus.SERVICE_UNAVAILABLE),
    ({"10.0.0.9": 1}, "max_clients_per_ip", http.HTTPStatus.TOO_MANY_REQUESTS),
])
def test_limits_refuse_with_a_retry_after(clients: dict[str, int], reason: str,
                                          status: http.HTTPStatus) -> None:
    """At max_clients the answer is 503, at max_clients_per_ip 429, both with Retry-After."""
    config = ServerConfig(max_clients=2, max_clients_per_ip=1)
    refusal = admit(request(), config, gate_with(config, clients))
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.status, refusal.retry_after_s) == (reason, status, 5)
    assert refusal.body()["retry_after_s"] == 5
    unlimited = ServerConfig(max_clients=0, max_clients_per_ip=0)
    assert admit(request(), unlimited, gate_with(unlimited, {"10.0.0.9": 10**4})) == Admission()


def test_the_origin_is_checked_before_the_limits() -> None:
    """A full server still says 403 to an origin it would never serve."""
    config = ServerConfig(allowed_origins="https://good.example", max_clients=1)
    refusal = admit(request(origin="https://evil.example"), config,
                    gate_with(config, {"10.0.0.1": 1}))
    assert isinstance(refusal, Refusal) and refusal.reason == "origin"


def test_a_token_in_the_header_authenticates_and_a_wrong_one_is_refused() -> None:
    """The right Bearer token admits as authenticated by header; a wrong one gets 401 and
    names the method, never the token; none at all is left to the auth message."""
    config = ServerConfig(token=TOKEN)
    gate = Gate(config)
    assert admit(request(authorization=f"Bearer {TOKEN}"), config, gate) == Admission("header", "viewer")
    refusal = admit(request(authorization="Bearer guess"), config, gate)
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.status) == ("auth", http.HTTPStatus.UNAUTHORIZED)
    assert refusal.details == {"method": "header"}
    assert "guess" not in repr(refusal) and TOKEN not in repr(refusal)
    assert admit(request(), config, gate) == Admission(authenticated_by=None)


def test_a_token_in_the_url_counts_only_when_allowed() -> None:
    """?token= authenticates with allow_query_token, and is ignored without it."""
    path = f"/?encoding=uint8&token={TOKEN}"
    config = ServerConfig(token=TOKEN)
    assert admit(request(path), config, Gate(config)) == Admission()
    allowed = ServerConfig(token=TOKEN, allow_query_token=True)
    assert admit(request(path), allowed, Gate(allowed)) == Admission("query", "viewer")
    refusal = admit(request("/?token=nope"), allowed, Gate(allowed))
    assert isinstance(refusal, Refusal) and refusal.details == {"method": "query"}


def test_connections_waiting_to_authenticate_never_take_the_clients_places() -> None:
    """A full waiting pool refuses more connections without the token (503, or 429 from one
    address), while a client with the token in its header is still admitted."""
    config = ServerConfig(token=TOKEN, max_clients=4, max_unauthenticated=3,
                          max_unauthenticated_per_ip=2)
    gate = gate_with(config, waiting={"10.0.0.1": 2, "10.0.0.2": 1})
    refusal = admit(request(peer_ip="10.0.0.3"), config, gate)
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.status) == ("max_unauthenticated",
                                                http.HTTPStatus.SERVICE_UNAVAILABLE)
    assert admit(request(authorization=f"Bearer {TOKEN}", peer_ip="10.0.0.3"), config,
                 gate) == Admission("header", "viewer")
    per_ip_only = ServerConfig(token=TOKEN, max_unauthenticated=0, max_unauthenticated_per_ip=2)
    per_ip = admit(request(peer_ip="10.0.0.1"), per_ip_only,
                   gate_with(per_ip_only, waiting={"10.0.0.1": 2}))
    assert isinstance(per_ip, Refusal) and per_ip.status == http.HTTPStatus.TOO_MANY_REQUESTS


def test_a_waiting_connection_becomes_a_client_when_there_is_room() -> None:
    """promote() moves a connection from the waiting pool to the clients, or refuses it
    when the clients are at their limit (it stays waiting until it leaves)."""
    config = ServerConfig(token=TOKEN, max_clients=1)
    gate = gate_with(config, waiting={"10.0.0.9": 2})
    assert gate.promote("10.0.0.9") is None
    assert (gate.clients["10.0.0.9"], gate.waiting["10.0.0.9"]) == (1, 1)
    refusal = gate.promote("10.0.0.9")
    assert refusal is not None and refusal.reason == "max_clients"
    gate.leave("10.0.0.9", waiting=True)
    gate.leave("10.0.0.9", waiting=False)
    assert not gate.clients and not gate.waiting


def test_repeated_failures_from_one_address_earn_a_growing_backoff() -> None:
    """From the third failure on, the address is refused (429 with Retry-After) for 1, 2,
    4... s up to 60 s, whatever the token it then brings; a success forgets its failures;
    other addresses are not affected."""
    clock = Clock()
    config = ServerConfig(token=TOKEN)
    gate = Gate(config, clock=clock)
    right = request(authorization=f"Bearer {TOKEN}")
    for _ in range(2):
        gate.failed("10.0.0.9")
    assert admit(right, config, gate) == Admission("header", "viewer")
    waits = []
    for _ in range(9):
        gate.failed("10.0.0.9")
        refusal = admit(right, config, gate)
        assert isinstance(refusal, Refusal) and refusal.reason == "auth_backoff"
        waits.append(refusal.retry_after_s)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert admit(request(authorization=f"Bearer {TOKEN}", peer_ip="10.0.0.8"), config,
                 gate) == Admission("header", "viewer")
    clock.now += 61
    assert admit(right, config, gate) == Admission("header", "viewer")
    gate.succeeded("10.0.0.9")
    gate.failed("10.0.0.9")
    assert gate.backoff_refusal("10.0.0.9") is None


def test_past_the_pending_handshake_limit_the_busiest_address_makes_room() -> None:
    """At max_pending_handshakes, a new connection is let in and the oldest pending one of
    the address with the most is named for dropping; an address at its own cap is refused;
    ending frees the place."""
    config = ServerConfig(max_pending_handshakes=3, max_pending_handshakes_per_ip=2)
    gate = Gate(config)
    assert gate.handshake_started("a1", "10.0.0.1") == (True, None)
    assert gate.handshake_started("a2", "10.0.0.1") == (True, None)
    assert gate.handshake_started("a3", "10.0.0.1") == (False, None)  # its own cap
    assert gate.handshake_started("b1", "10.0.0.2") == (True, None)
    assert gate.handshake_started("c1", "10.0.0.3") == (True, "a1")  # the oldest goes
    gate.handshake_ended("a1")
    gate.handshake_ended("a1")  # ending twice is harmless
    assert dict(gate.handshakes) == {"10.0.0.1": 1, "10.0.0.2": 1, "10.0.0.3": 1}
    for key in ("a2", "b1", "c1"):
        gate.handshake_ended(key)
    assert not gate.handshakes


def test_idle_pending_handshakes_make_room_before_those_that_sent_bytes() -> None:
    """A pending handshake that has sent nothing for SILENT_AFTER_S is dropped first, even
    when its address has fewer and another has waited longer; one silent for less is not
    taken for idle (a client whose request is on its way); among equals, the address with
    the most pending handshakes loses its oldest, and between addresses with as many, the
    oldest handshake goes."""
    clock = Clock()
    gate = Gate(ServerConfig(max_pending_handshakes=3, max_pending_handshakes_per_ip=0),
                clock)
    for key, ip in (("a1", "10.0.0.1"), ("a2", "10.0.0.1"), ("b1", "10.0.0.2")):
        assert gate.handshake_started(key, ip) == (True, None)
    gate.handshake_spoke("a1")
    gate.handshake_spoke("a2")
    gate.handshake_spoke("a2")  # more bytes change nothing
    clock.now += Gate.SILENT_AFTER_S
    assert gate.handshake_started("c1", "10.0.0.3") == (True, "b1")  # idle
    gate.handshake_ended("b1")
    assert gate.handshake_started("d1", "10.0.0.4") == (True, "a1")  # 10.0.0.1 has two
    gate.handshake_ended("a1")
    assert gate.handshake_started("e1", "10.0.0.5") == (True, "a2")  # one each: the oldest
    gate.handshake_ended("a2")
    clock.now += Gate.SILENT_AFTER_S
    gate.handshake_spoke("d1")
    assert gate.handshake_started("f1", "10.0.0.5") == (True, "c1")  # idle, one each: oldest
    gate.handshake_ended("c1")
    for key in ("d1", "e1", "f1"):
        gate.handshake_ended(key)
    gate.handshake_spoke("c1")  # after its end: ignored
    assert not gate.handshakes and not gate.silent and not gate.spoken


def test_only_a_wrong_token_counts_toward_the_backoff() -> None:
    """authenticate() counts a wrong token and clears on the right one; a client that sent
    none is refused elsewhere without counting (it made no guess)."""
    gate = Gate(ServerConfig(token=TOKEN))
    assert not gate.authenticate("10.0.0.9", "guess", TOKEN)
    assert not gate.authenticate("10.0.0.9", None, TOKEN)  # counted: a guess of nothing
    assert gate.authenticate("10.0.0.9", TOKEN, TOKEN)
    for _ in range(Gate.FAILURES_BEFORE_BACKOFF):
        gate.authenticate("10.0.0.9", "guess", TOKEN)
    assert gate.backoff_refusal("10.0.0.9") is not None
