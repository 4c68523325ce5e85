"""Tests for the server's security settings: origin allowlist, token, limits, message checks.

A real SpectrumServer on port 0 with real ``websockets`` clients (and a raw HTTP request
where the refusal's body matters). Deadlines are generous; nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gr_argos.client import retry_after_s
from gr_argos.server import ServerConfig, SpectrumServer
from server_helpers import (
    WAIT_S,
    StartServer,
    close_code_seen,
    next_json,
    spectrum_frame,
)

TOKEN = "correct-horse-battery-staple-7f3a"
WRONG_TOKEN = "wrong-token-0b9e"


async def refusal(url: str, **kwargs: Any) -> InvalidStatus:
    """The HTTP refusal a WebSocket connection attempt gets."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=WAIT_S, **kwargs):
            pass
    return refused.value


async def first_json(url: str, **kwargs: Any) -> dict[str, Any]:
    async with connect(url, open_timeout=WAIT_S, **kwargs) as ws:
        return await next_json(ws)


def raw_upgrade(port: int, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """An upgrade request over http.client; the response (read its body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    connection.request("GET", "/", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **(headers or {})})
    return connection.getresponse()


# -- origin -----------------------------------------------------------------------------------


async def test_disallowed_origin_gets_403_and_allowed_ones_are_served(
        start_server: StartServer) -> None:
    """A browser from another origin is refused before the upgrade; listed origins and
    programs without an Origin header are served, also after the refusal."""
    server = start_server(allowed_origins="http://good.example")
    refused = await refusal(server.url, origin="http://good.example.evil")
    assert refused.response.status_code == 403
    assert (await first_json(server.url, origin="http://good.example"))["type"] == "hello"
    assert (await first_json(server.url))["type"] == "hello"
    assert server.counters.refused["origin"] == 1


# -- token ------------------------------------------------------------------------------------


async def test_token_in_the_authorization_header_is_accepted(
        start_server: StartServer) -> None:
    """With the right Bearer token the client gets its hello at once."""
    server = start_server(token=TOKEN)
    hello = await first_json(server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"})
    assert hello["type"] == "hello"


async def test_token_in_the_first_message_is_accepted_and_nothing_comes_before(
        start_server: StartServer) -> None:
    """A client without a header gets nothing, not even frames, until it sends its token."""
    server = start_server(token=TOKEN)
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        for sequence in range(3):
            server.publish_frame(0, spectrum_frame(sequence))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await ws.recv()
        await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        first = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert first["type"] == "hello"
        server.publish_frame(0, spectrum_frame(3))
        async with asyncio.timeout(WAIT_S):
            while not isinstance(await ws.recv(), bytes):
                pass


async def test_query_token_is_only_accepted_when_enabled(start_server: StartServer) -> None:
    """?token= admits a client only with allow_query_token; otherwise it must still send
    an auth message and is closed with 1008 when the handshake timeout passes."""
    enabled = start_server(token=TOKEN, allow_query_token=True)
    assert (await first_json(f"{enabled.url}?token={TOKEN}"))["type"] == "hello"

    disabled = start_server(token=TOKEN, handshake_timeout_s=1.0)
    async with connect(f"{disabled.url}?token={TOKEN}", open_timeout=WAIT_S) as ws:
        assert await close_code_seen(ws) == 1008
    assert disabled.counters.auth_failures["timeout"] == 1


async def test_wrong_token_is_refused_counted_and_never_logged(
        start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong header token gets 401, a wrong auth message 1008; both are counted, and
    neither token appears in any log line."""
    caplog.set_level(logging.DEBUG)
    server = start_server(token=TOKEN, allow_query_token=True)
    refused = await refusal(server.url,
                            additional_headers={"Authorization": f"Bearer {WRONG_TOKEN}"})
    assert refused.response.status_code == 401
    refused = await refusal(f"{server.url}?token={WRONG_TOKEN}")
    assert refused.response.status_code == 401
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        await ws.send(json.dumps({"type": "auth", "token": WRONG_TOKEN}))
        assert await close_code_seen(ws) == 1008
    assert (await first_json(server.url,
                             additional_headers={"Authorization": f"Bearer {TOKEN}"})
            )["type"] == "hello"

    assert dict(server.counters.auth_failures) == {"header": 1, "query": 1, "message": 1}
    assert server.counters.refused["auth"] == 2
    # Everything the server side logs (the test's own client logs its headers at DEBUG).
    logged = "\n".join(record.getMessage() for record in caplog.records
                       if not record.name.startswith("websockets.client"))
    assert "event=auth_failed" in logged and "event=refused reason=auth" in logged
    assert TOKEN not in logged and WRONG_TOKEN not in logged


# -- limits -----------------------------------------------------------------------------------


async def test_max_clients_refuses_with_503_and_retry_after(
        start_server: StartServer, wait_until: Any) -> None:
    """Beyond max_clients a client gets 503 with a JSON body and Retry-After; once one
    leaves, a new one is served."""
    server = start_server(max_clients=2, max_clients_per_ip=0)
    async with connect(server.url, open_timeout=WAIT_S) as first, \
            connect(server.url, open_timeout=WAIT_S):
        await next_json(first)
        response = await asyncio.to_thread(raw_upgrade, server.port)
        body = json.loads(response.read())
        assert response.status == 503
        assert body["retry_after_s"] > 0 and "full" in body["error"]
        assert int(response.headers["Retry-After"]) == body["retry_after_s"]
    await wait_until(lambda: server.hub.client_count == 0, what="clients to leave")
    assert (await first_json(server.url))["type"] == "hello"
    assert server.counters.refused["max_clients"] == 1


async def test_max_clients_per_ip_refuses_with_429(start_server: StartServer) -> None:
    """A second connection from one address beyond max_clients_per_ip gets 429."""
    server = start_server(max_clients_per_ip=1)
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        await next_json(ws)
        refused = await refusal(server.url)
        assert refused.response.status_code == 429
        assert json.loads(refused.response.body)["retry_after_s"] > 0
        assert refused.response.headers["Retry-After"]
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        assert (await next_json(ws))["type"] == "pong"
    assert server.counters.refused["max_clients_per_ip"] == 1


async def test_message_flood_is_closed_with_1008_and_others_are_unaffected(
        start_server: StartServer) -> None:
    """A client sending faster than max_messages_per_s beyond its burst is closed with
    1008 (after a rate_limited error); another client keeps being answered."""
    server = start_server(max_messages_per_s=1.0, max_messages_burst=3)
    async with connect(server.url, open_timeout=WAIT_S) as calm, \
            connect(server.url, open_timeout=WAIT_S) as flood:
        await next_json(calm)
        await next_json(flood)
        errors = []
        try:
            for index in range(50):
                await flood.send(json.dumps({"type": "ping", "id": index}))
        except ConnectionClosed:
            pass
        async with asyncio.timeout(WAIT_S):
            try:
                while True:
                    message = await flood.recv()
                    if isinstance(message, str) and json.loads(message)["type"] == "error":
                        errors.append(json.loads(message)["code"])
            except ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code == 1008
        assert errors == ["rate_limited"]
        await calm.send(json.dumps({"type": "ping", "id": "still here"}))
        assert (await next_json(calm))["id"] == "still here"
    assert server.counters.closed_by_policy["rate_limit"] == 1


# -- message validation -----------------------------------------------------------------------


async def test_invalid_messages_get_bad_message_errors_and_the_client_stays(
        start_server: StartServer) -> None:
    """Each malformed request is answered with a bad_message error naming the problem;
    the connection stays open and valid requests still work."""
    server = start_server()
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        await next_json(ws)
        for bad, field in (({"type": "set_encoding"}, "encoding"),
                           ({"type": "set_encoding", "encoding": 7}, "encoding"),
                           ({"type": "set_encoding", "encoding": "int16", "compress": 2},
                            "compress"),
                           ({"type": "auth", "token": 42}, "token")):
            await ws.send(json.dumps(bad))
            reply = await next_json(ws)
            assert reply["type"] == "error" and reply["code"] == "bad_message"
            assert field in reply["message"]
        await ws.send(json.dumps({"type": "ping", "id": 9}))
        assert (await next_json(ws))["type"] == "pong"


# -- binding ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_server_thread_left")
def test_binding_every_interface_without_a_token_warns(caplog: pytest.LogCaptureFixture) -> None:
    """0.0.0.0 without a token logs an insecure_bind warning; with a token it does not."""
    for token, warned in (("", True), (TOKEN, False)):
        caplog.clear()
        server = SpectrumServer(ServerConfig(host="0.0.0.0", port=0, token=token))
        server.start()
        try:
            text = "\n".join(r.getMessage() for r in caplog.records
                             if r.levelno >= logging.WARNING)
            assert ("event=insecure_bind" in text) is warned
        finally:
            server.stop()


async def test_python_client_reads_retry_after_from_a_refusal(start_server: StartServer) -> None:
    """The client library takes a refusal's Retry-After as the least delay before retrying."""
    server = start_server(max_clients_per_ip=1)
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        await next_json(ws)
        refused = await refusal(server.url)
    assert retry_after_s(refused) == float(refused.response.headers["Retry-After"]) > 0
    assert retry_after_s(ValueError("not a refusal")) == 0.0


async def test_a_handshake_that_outlasts_handshake_timeout_is_dropped_and_counted(
        start_server: StartServer) -> None:
    """A socket that never finishes its upgrade request is closed after handshake_timeout
    and counted as refused (reason handshake_timeout), while a prompt client is served."""
    server = start_server(handshake_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
        await writer.drain()
        async with asyncio.timeout(WAIT_S):
            assert await reader.read() == b""  # the server closed it, sending nothing
        async with connect(server.url, open_timeout=WAIT_S) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
    finally:
        writer.close()

    assert server.counters.refused["handshake_timeout"] == 1
