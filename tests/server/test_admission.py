"""Admission of WebSocket upgrades (gr_argos/server/admission.py), as plain code: no sockets."""

from __future__ import annotations

import http

import pytest

from gr_argos.server.admission import (
    Admission,
    Refusal,
    UpgradeRequest,
    admit,
    bearer_token,
    origin_allowed,
)
from gr_argos.server.config import ServerConfig, parse_origins

TOKEN = "s3cret-Token"


def request(path: str = "/", origin: str | None = None, authorization: str | None = None,
            peer_ip: str = "10.0.0.9") -> UpgradeRequest:
    return UpgradeRequest(path=path, origin=origin, authorization=authorization,
                          peer_ip=peer_ip)


def test_origins_match_exactly_never_as_substrings() -> None:
    """Only an exact listed origin passes; a longer or shorter look-alike does not."""
    allowed = parse_origins("https://console.example.org, http://10.0.0.5:8765/")
    assert allowed == ("https://console.example.org", "http://10.0.0.5:8765")
    assert origin_allowed("https://console.example.org", allowed)
    assert not origin_allowed("https://console.example.org.evil.net", allowed)
    assert not origin_allowed("https://example.org", allowed)
    assert not origin_allowed("http://10.0.0.5", allowed)
    assert origin_allowed("https://anything", ())
    assert parse_origins("a, ,b") == ("a", "b")


def test_bearer_header_is_parsed() -> None:
    """Only the Bearer scheme with a non-empty token yields a token."""
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None



def test_a_plain_server_admits_anyone_without_authentication() -> None:
    """No allowlist, no limits reached, no token: admitted, nothing to authenticate."""
    assert admit(request(origin="https://any.example"), ServerConfig(), 0, 0) == Admission()


def test_an_origin_not_listed_is_refused_with_403_naming_it() -> None:
    """An origin outside allowed_origins gets 403; a request without Origin (not a
    browser) passes."""
    config = ServerConfig(allowed_origins="https://console.example.org")
    refusal = admit(request(origin="https://evil.example"), config, 0, 0)
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.status) == ("origin", http.HTTPStatus.FORBIDDEN)
    assert refusal.body() == {"error": "origin https://evil.example is not allowed on this "
                                       "server"}
    assert admit(request(origin=None), config, 0, 0) == Admission()


@pytest.mark.parametrize(("clients", "from_ip", "reason", "status"), [
    (2, 0, "max_clients", http.HTTPStatus.SERVICE_UNAVAILABLE),
    (1, 1, "max_clients_per_ip", http.HTTPStatus.TOO_MANY_REQUESTS),
])
def test_limits_refuse_with_a_retry_after(clients: int, from_ip: int, reason: str,
                                          status: http.HTTPStatus) -> None:
    """At max_clients the answer is 503, at max_clients_per_ip 429, both with Retry-After."""
    config = ServerConfig(max_clients=2, max_clients_per_ip=1)
    refusal = admit(request(), config, clients, from_ip)
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.status, refusal.retry_after_s) == (reason, status, 5)
    assert refusal.body()["retry_after_s"] == 5
    assert admit(request(), ServerConfig(max_clients=0, max_clients_per_ip=0), 10**6,
                 10**6) == Admission()


def test_the_origin_is_checked_before_the_limits() -> None:
    """A full server still says 403 to an origin it would never serve."""
    config = ServerConfig(allowed_origins="https://good.example", max_clients=1)
    refusal = admit(request(origin="https://evil.example"), config, 1, 1)
    assert isinstance(refusal, Refusal) and refusal.reason == "origin"


def test_a_token_in_the_header_authenticates_and_a_wrong_one_is_refused() -> None:
    """The right Bearer token admits as authenticated by header; a wrong one gets 401 and
    names the method, never the token; none at all is left to the auth message."""
    config = ServerConfig(token=TOKEN)
    assert admit(request(authorization=f"Bearer {TOKEN}"), config, 0, 0) == Admission("header")
    refusal = admit(request(authorization="Bearer guess"), config, 0, 0)
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.status) == ("auth", http.HTTPStatus.UNAUTHORIZED)
    assert refusal.details == {"method": "header"}
    assert "guess" not in repr(refusal) and TOKEN not in repr(refusal)
    assert admit(request(), config, 0, 0) == Admission(authenticated_by=None)


def test_a_token_in_the_url_counts_only_when_allowed() -> None:
    """?token= authenticates with allow_query_token, and is ignored without it."""
    path = f"/?encoding=uint8&token={TOKEN}"
    assert admit(request(path), ServerConfig(token=TOKEN), 0, 0) == Admission()
    allowed = ServerConfig(token=TOKEN, allow_query_token=True)
    assert admit(request(path), allowed, 0, 0) == Admission("query")
    refusal = admit(request("/?token=nope"), allowed, 0, 0)
    assert isinstance(refusal, Refusal) and refusal.details == {"method": "query"}
