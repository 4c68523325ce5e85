# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for the server's security settings: origin allowlist, token, limits, message checks.

A real SpectrumServer on port 0 with real ``websockets`` clients (and a raw HTTP request
where the refusal's body matters). Deadlines are generous; nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import logging
import os
import re
import select
import socket
import urllib.error
import urllib.request
from typing import Any, Awaitable, Callable

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gr_argos.client import retry_after_s
from gr_argos.server import ServerConfig, SpectrumServer
from gr_argos.server.admission import Gate
from server_helpers import (
    OP_PING,
    WAIT_S,
    RawClient,
    StartServer,
    close_code_seen,
    next_frames,
    next_json,
    spectrum_frame,
)

WaitUntil = Callable[..., Awaitable[None]]  # the conftest fixture

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
    neither token appears in any log line. After those three failures the address waits
    (429 with Retry-After) before even the right token is tried."""
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
    headers = {"Authorization": f"Bearer {TOKEN}"}
    waiting = await refusal(server.url, additional_headers=headers)
    assert waiting.response.status_code == 429
    await asyncio.sleep(float(waiting.response.headers["Retry-After"]) + 0.2)
    assert (await first_json(server.url, additional_headers=headers))["type"] == "hello"

    assert dict(server.counters.auth_failures) == {"header": 1, "query": 1, "message": 1}
    assert server.counters.refused["auth"] == 2
    assert server.counters.refused["auth_backoff"] == 1
    # Everything the server side logs (the test's own client logs its headers at DEBUG).
    logged = "\n".join(record.getMessage() for record in caplog.records
                       if not record.name.startswith("websockets.client"))
    assert "event=auth_failed" in logged and "event=refused reason=auth" in logged
    assert TOKEN not in logged and WRONG_TOKEN not in logged


# -- limits -----------------------------------------------------------------------------------


async def test_max_clients_refuses_with_503_and_retry_after(
        start_server: StartServer, wait_until: WaitUntil) -> None:
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


# -- hardening: requests, hosts, origins, authentication pool, logs -------------------------


def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    """Send raw HTTP bytes; the response's status code and body (the server closes after)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received:
                head, _, body = received.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: (\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
    status = int(received.split(b" ", 2)[1])
    return status, received.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("header", ["Origin", "Upgrade", "Authorization", "Host"])
async def test_a_duplicated_critical_header_is_refused_with_400_not_a_traceback(
        start_server: StartServer, header: str, caplog: pytest.LogCaptureFixture) -> None:
    """Two Origin (Upgrade, Authorization, Host) headers get 400 naming the header, and the
    server logs no traceback; it serves the next client as usual."""
    server = start_server()
    values = {"Origin": "http://127.0.0.1", "Upgrade": "websocket",
              "Authorization": "Bearer x", "Host": f"127.0.0.1:{server.port}"}
    request = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"Sec-WebSocket-Version: 13\r\n{header}: {values[header]}\r\n"
               f"{header}: {values[header]}\r\n\r\n").encode()
    if header == "Host":
        request = request.replace(f"Host: 127.0.0.1:{server.port}\r\n".encode(), b"", 1)
    status, body = await asyncio.to_thread(raw_request, server.port, request)
    assert status == 400 and f"more than one {header} header".encode() in body
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert (await first_json(server.url))["type"] == "hello"


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/", "/?encoding=uint8"])
async def test_a_host_the_server_is_not_known_by_gets_421(start_server: StartServer,
                                                          path: str) -> None:
    """A page whose DNS name was rebound to this server's address reads nothing: its
    requests carry that name in Host, and get 421 (upgrades too)."""
    server = start_server()
    upgrade = path.startswith("/?")
    request = (f"GET {path} HTTP/1.1\r\nHost: attacker.example:{server.port}\r\n"
               + ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                  "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" if upgrade else "")
               + "\r\n").encode()
    status, body = await asyncio.to_thread(raw_request, server.port, request)
    assert status == 421 and b"allowed_hosts" in body
    assert server.counters.refused["host"] == 1


async def test_methods_other_than_get_get_405(start_server: StartServer) -> None:
    """POST, DELETE and TRACE are refused; HEAD has no body."""
    server = start_server()
    for method in ("POST", "DELETE", "TRACE"):
        status, _ = await asyncio.to_thread(raw_request, server.port, (
            f"{method} /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        ).encode())
        assert status == 405, method
    status, body = await asyncio.to_thread(raw_request, server.port,
                                           b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 200 and body == b""


async def test_by_default_another_sites_page_cannot_connect_but_the_viewer_can(
        start_server: StartServer) -> None:
    """With no allowed_origins, a browser page from another site gets 403, the server's own
    pages (the viewer) and non-browser clients get hello; * lets any origin in."""
    server = start_server()
    own = f"http://127.0.0.1:{server.port}"
    assert (await refusal(server.url, origin="http://evil.example")).response.status_code == 403
    assert (await first_json(server.url, origin=own))["type"] == "hello"
    assert (await first_json(server.url))["type"] == "hello"
    listed = start_server(allowed_origins="https://console.example.org")
    assert (await first_json(listed.url, origin=f"http://127.0.0.1:{listed.port}"))[
        "type"] == "hello"  # its own pages even with a list
    anyone = start_server(allowed_origins="*")
    assert (await first_json(anyone.url, origin="http://evil.example"))["type"] == "hello"


async def test_connections_without_the_token_cannot_take_the_clients_places(
        start_server: StartServer) -> None:
    """Upgraded connections that never authenticate fill only their own small pool (then
    503), and a client with the token is still served; each is dropped after
    auth_timeout_s."""
    server = start_server(token=TOKEN, max_clients=3, max_unauthenticated=4,
                          max_unauthenticated_per_ip=0, auth_timeout_s=30)
    squatters = [await connect(server.url, open_timeout=WAIT_S) for _ in range(4)]
    try:
        assert (await refusal(server.url)).response.status_code == 503
        for _ in range(3):
            hello = await first_json(server.url,
                                     additional_headers={"Authorization": f"Bearer {TOKEN}"})
            assert hello["type"] == "hello"
        assert server.counters.refused["max_unauthenticated"] == 1
    finally:
        for squatter in squatters:
            await squatter.close()


async def test_a_squatter_is_dropped_after_auth_timeout_s(start_server: StartServer) -> None:
    """A connection that sends nothing gets auth_failed and 1008 after auth_timeout_s."""
    server = start_server(token=TOKEN, auth_timeout_s=0.5, handshake_timeout_s=30)
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        error = await next_json(ws)
        assert error["code"] == "auth_failed" and "within 0.5 s" in error["message"]
        assert await close_code_seen(ws) == 1008
    assert server.counters.auth_failures["timeout"] == 1


async def test_ended_connections_are_freed_without_the_cyclic_garbage_collector(
        start_server: StartServer, wait_until: WaitUntil) -> None:
    """A squatter dropped after auth_timeout_s, a socket closed before its request, one
    dropped over the pending-handshake cap and a client that got hello leave no server
    connection behind once they ended, with the cyclic garbage collector off: nothing of
    theirs waits in a reference cycle (under a flood that memory adds up between
    collections)."""
    server = start_server(token=TOKEN, auth_timeout_s=0.3, handshake_timeout_s=30,
                          max_pending_handshakes_per_ip=1)

    def server_connections() -> int:
        return sum(issubclass(type(o), ServerConnection) for o in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        assert (await first_json(server.url, additional_headers={
            "Authorization": f"Bearer {TOKEN}"}))["type"] == "hello"
        async with connect(server.url, open_timeout=WAIT_S) as squatter:
            assert await close_code_seen(squatter) == 1008
        silent = pending_socket(server.port, "127.0.0.2")
        over_cap = pending_socket(server.port, "127.0.0.2")
        assert await dropped(over_cap)
        silent.close()
        over_cap.close()
        await wait_until(lambda: not server.gate.handshakes and not server.hub.client_count)
        await wait_until(lambda: server_connections() == 0,
                         what="the server's connections to be freed")
    finally:
        gc.enable()


async def test_token_guesses_on_metrics_are_counted_and_slowed(
        start_server: StartServer) -> None:
    """Wrong tokens on /metrics count as failed authentications; from the third one the
    address waits (429 with Retry-After), whatever it then sends."""
    server = start_server(token=TOKEN)

    def get_metrics(token: str) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=WAIT_S) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return error.code

    statuses = [await asyncio.to_thread(get_metrics, WRONG_TOKEN) for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert await asyncio.to_thread(get_metrics, TOKEN) == 429
    assert server.counters.auth_failures["metrics"] == 3


async def test_a_forged_origin_cannot_make_up_log_fields(
        start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    """An Origin carrying ' event=auth_ok peer=...' is logged quoted, as one value."""
    caplog.set_level(logging.INFO, logger="gr_argos.server")
    server = start_server(allowed_origins="http://good.example")
    forged = "http://x.example event=auth_ok peer=10.9.8.7:4444"
    await refusal(server.url, origin=forged)
    lines = [r.getMessage() for r in caplog.records if "event=refused" in r.getMessage()]
    assert lines and all('origin="http://x.example event=auth_ok peer=10.9.8.7:4444"' in line
                         for line in lines)
    assert not any(r.getMessage().startswith("event=auth_ok") for r in caplog.records)


async def test_a_flood_of_refusals_logs_a_few_lines_and_counts_the_rest(
        start_server: StartServer, caplog: pytest.LogCaptureFixture) -> None:
    """200 refused upgrades make at most a handful of refusal lines; the metrics count all."""
    caplog.set_level(logging.INFO, logger="gr_argos.server")
    server = start_server(allowed_origins="http://good.example")
    for _ in range(200):
        await refusal(server.url, origin="http://evil.example")
    lines = [r for r in caplog.records if "event=refused" in r.getMessage()]
    assert len(lines) <= 10
    assert server.counters.refused["origin"] == 200


@pytest.mark.parametrize("dodge", ["?tok%65n={token}", "?token={token}"])
async def test_the_token_never_reaches_the_log_whatever_its_spelling(
        start_server: StartServer, caplog: pytest.LogCaptureFixture, dodge: str) -> None:
    """At DEBUG, websockets logs request lines and frames; the token is masked there even
    percent-encoded in the URL or JSON-escaped in an auth message."""
    caplog.set_level(logging.DEBUG)
    server = start_server(token=TOKEN, allow_query_token=True)
    try:
        async with connect(server.url + dodge.format(token=TOKEN), open_timeout=WAIT_S) as ws:
            await ws.send('{"\\u0074ype": "auth", "\\u0074oken": "%s"}'
                          % "".join(f"\\u{ord(c):04x}" for c in TOKEN))
            await next_json(ws)
    except InvalidStatus:
        pass
    logged = "\n".join(record.getMessage() for record in caplog.records
                       if not record.name.startswith("websockets.client"))
    assert "websockets.server" in {r.name for r in caplog.records}
    unescaped = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), logged)
    assert TOKEN not in logged and TOKEN not in unescaped


async def test_hello_does_not_say_which_process_serves(start_server: StartServer) -> None:
    """No pid in hello: a client has no business knowing it."""
    server = start_server()
    hello = await first_json(server.url)
    assert "pid" not in hello and str(os.getpid()) not in json.dumps(hello)


# -- control frames -------------------------------------------------------------------------


async def test_a_ping_flood_is_closed_with_1008_and_counted(start_server: StartServer) -> None:
    """More pings than max_pings_per_s (beyond a burst of 10) close the connection with
    1008; a client pinging now and then is not bothered."""
    server = start_server(max_pings_per_s=5)
    async with connect(server.url, open_timeout=WAIT_S, ping_interval=None) as calm:
        await next_json(calm)
        for _ in range(3):
            await (await calm.ping())
        flood = await asyncio.to_thread(RawClient, server.port)
        try:
            await asyncio.to_thread(flood.send_frames, OP_PING, b"x" * 20, 200)
            _, code = await asyncio.to_thread(flood.read_until_close)
        finally:
            flood.close()
        assert code == 1008
        assert server.counters.closed_by_policy["ping_rate"] == 1
        await (await calm.ping())  # still served


async def test_a_client_that_pings_without_reading_is_not_read_either(
        start_server: StartServer) -> None:
    """With no ping limit, a client that sends pings and never reads its socket gets its
    sends blocked once the server's writes to it are paused: the server stops reading it,
    so pongs never pile up in its memory (before, it read and answered without bound)."""
    server = start_server(max_pings_per_s=0, queue_depth=4, ping_interval_s=0)
    raw = await asyncio.to_thread(RawClient, server.port, True)
    try:
        raw.sock.settimeout(2.0)
        for sequence in range(200):  # fill its socket: the server's writes pause
            server.publish_frame(0, spectrum_frame(sequence))
        await asyncio.sleep(1.0)

        def ping_until_blocked(limit_bytes: int) -> int:
            sent = 0
            batch = bytes((0x89, 0x80 | 120)) + b"\0\0\0\0" + b"p" * 120
            try:
                while sent < limit_bytes:
                    raw.sock.sendall(batch * 500)
                    sent += len(batch) * 500
            except (TimeoutError, socket.timeout):
                return sent
            return sent

        sent = await asyncio.to_thread(ping_until_blocked, 64 * 2**20)
        assert sent < 64 * 2**20, "the server kept reading pings from a client it could not write to"
    finally:
        raw.close()


# -- before the upgrade ---------------------------------------------------------------------


async def test_idle_sockets_from_one_address_cannot_block_the_others(
        start_server: StartServer) -> None:
    """Sockets that never send their upgrade request count against a per-address cap: one
    more from that address is dropped at once, unread and counted, while a client from
    another address connects as usual; the idle ones go at handshake_timeout_s."""
    server = start_server(max_pending_handshakes=0, max_pending_handshakes_per_ip=3,
                          handshake_timeout_s=30)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
            for _ in range(3)]
    try:
        # Wait until the server has counted them (accepted on its loop).
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while server.gate.handshakes["127.0.0.1"] < 3:
            assert asyncio.get_running_loop().time() < deadline, "idle sockets not counted"
            await asyncio.sleep(0.02)
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
        try:
            assert await asyncio.to_thread(extra.recv, 1) == b""  # dropped, nothing read
        except ConnectionResetError:
            pass  # dropped with a reset
        finally:
            extra.close()
        assert server.counters.refused["max_pending_handshakes_per_ip"] == 1
        other = await first_json(server.url, local_addr=("127.0.0.2", 0))
        assert other["type"] == "hello"
    finally:
        for sock in idle:
            sock.close()
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while server.gate.handshakes:
        assert asyncio.get_running_loop().time() < deadline, dict(server.gate.handshakes)
        await asyncio.sleep(0.02)


# -- the cost a client can ask for ----------------------------------------------------------


async def test_clients_cannot_make_the_server_encode_more_formats_than_its_limit(
        start_server: StartServer) -> None:
    """With max_formats 3, a fourth distinct format asked for is answered with the nearest
    one in use (snapped): its client gets the very bytes another client gets."""
    server = start_server(max_formats=3)
    asked = ["/?encoding=uint8&step_db=1", "/?encoding=uint8&compress=1", "/?encoding=int16",
             "/?encoding=uint8&step_db=2"]
    clients = []
    try:
        replies = []
        for path in asked:
            ws = await connect(server.url.rstrip("/") + path, open_timeout=WAIT_S)
            clients.append(ws)
            await next_json(ws)  # hello
            replies.append(await next_json(ws))  # the encoding it gets
        assert [r.get("snapped", False) for r in replies] == [False, False, False, True]
        assert (replies[3]["encoding"], replies[3]["step_db"]) == ("uint8", 1.0)
        assert "at most 3 frame formats" in replies[3]["message"]
        for sequence in range(3):
            server.publish_frame(0, spectrum_frame(sequence))
        received = [await next_frames(ws, 3) for ws in clients]
        assert received[3] == received[0]
        assert len({frame for frames in received for frame in frames}) == 3 * 3
    finally:
        for ws in clients:
            await ws.close()


async def test_permessage_deflate_is_negotiated_with_at_most_max_deflate_clients(
        start_server: StartServer) -> None:
    """Past max_deflate_clients, clients offering permessage-deflate get uncompressed
    frames (they are still served)."""
    server = start_server(permessage_deflate=True, max_deflate_clients=2)
    clients = [await connect(server.url, open_timeout=WAIT_S, compression="deflate")
               for _ in range(3)]
    try:
        negotiated = [bool(ws.protocol.extensions) for ws in clients]
        assert negotiated == [True, True, False]
        for ws in clients:
            assert (await next_json(ws))["type"] == "hello"
    finally:
        for ws in clients:
            await ws.close()


async def test_idle_sockets_from_many_addresses_cannot_lock_new_clients_out(
        start_server: StartServer) -> None:
    """With every pending-handshake place taken by idle sockets, a new client still gets
    its hello: the oldest idle socket is dropped for it, and counted."""
    server = start_server(max_pending_handshakes=4, max_pending_handshakes_per_ip=0,
                          handshake_timeout_s=30)
    idle = []
    try:
        for index in range(4):
            sock = socket.socket()
            sock.bind((f"127.0.0.{index + 2}", 0))
            sock.settimeout(WAIT_S)
            sock.connect(("127.0.0.1", server.port))
            idle.append(sock)
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while sum(server.gate.handshakes.values()) < 4:
            assert asyncio.get_running_loop().time() < deadline, "idle sockets not counted"
            await asyncio.sleep(0.02)
        assert (await first_json(server.url))["type"] == "hello"
        assert server.counters.refused["max_pending_handshakes"] >= 1
        try:
            assert await asyncio.to_thread(idle[0].recv, 1) == b""  # the oldest: dropped
        except ConnectionResetError:
            pass
    finally:
        for sock in idle:
            sock.close()


def pending_socket(port: int, source: str, request_part: bytes = b"") -> socket.socket:
    """A connection from ``source`` in its handshake: silent, or having sent a part of its
    upgrade request."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(WAIT_S)
    sock.connect(("127.0.0.1", port))
    if request_part:
        sock.sendall(request_part)
    return sock


async def dropped(sock: socket.socket) -> bool:
    """Wait for the server to close ``sock`` (True), or for WAIT_S (False)."""
    try:
        return await asyncio.to_thread(sock.recv, 1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def still_open(*sockets: socket.socket) -> bool:
    """No EOF or reset waiting on any of ``sockets`` (the server sends nothing in a
    handshake, so a readable one was closed)."""
    readable, _, _ = select.select(sockets, [], [], 0.2)
    return not readable


async def test_past_the_pending_handshake_limit_silent_sockets_go_first(
        start_server: StartServer, wait_until: WaitUntil) -> None:
    """With every pending-handshake place taken, the one dropped for a new client is one
    that has sent nothing for SILENT_AFTER_S, though another has waited longer; when all
    have sent part of their request, the address with the most pending loses its oldest
    one."""
    server = start_server(max_pending_handshakes=3, max_pending_handshakes_per_ip=0,
                          handshake_timeout_s=60)
    part = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    oldest = pending_socket(server.port, "127.0.0.2", part)
    silent = pending_socket(server.port, "127.0.0.3")
    other = pending_socket(server.port, "127.0.0.4", part)
    pending = [oldest, silent, other]
    try:
        await wait_until(lambda: sum(map(len, server.gate.spoken.values())) == 2
                         and sum(server.gate.handshakes.values()) == 3,
                         what="three pending handshakes, two with bytes")
        await asyncio.sleep(Gate.SILENT_AFTER_S)  # the silent one is taken for idle now
        assert (await first_json(server.url))["type"] == "hello"
        assert await dropped(silent)
        assert still_open(oldest, other)

        pending.append(second := pending_socket(server.port, "127.0.0.4", part))
        await wait_until(lambda: sum(map(len, server.gate.spoken.values())) == 3,
                         what="three pending handshakes with bytes")
        assert (await first_json(server.url))["type"] == "hello"
        assert await dropped(other)  # 127.0.0.4 had two: its oldest
        assert still_open(oldest, second)
        assert server.counters.refused["max_pending_handshakes"] == 2
    finally:
        for sock in pending:
            sock.close()


async def test_status_messages_say_what_the_server_refused_and_whether_it_sheds(
        start_server: StartServer, wait_until: WaitUntil) -> None:
    """Every status message carries the server's own object: no refusals and not shedding
    at first; after a connection is dropped over the pending-handshake cap of its address,
    that refusal counted and shedding true. Other messages do not get it."""
    server = start_server(max_pending_handshakes=0, max_pending_handshakes_per_ip=1,
                          handshake_timeout_s=60)
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        assert (await next_json(ws))["type"] == "hello"
        server.publish_message("status", {"stream": 0, "fps": 30.0})
        status = await next_json(ws)
        assert status == {"type": "status", "stream": 0, "fps": 30.0,
                          "server": {"refused": {}, "shedding": False},
                          "control": {"holder": None}}
        first = pending_socket(server.port, "127.0.0.2")
        second = pending_socket(server.port, "127.0.0.2")
        try:
            assert await dropped(second)
            await wait_until(lambda: server.counters.refused["max_pending_handshakes_per_ip"])
            server.publish_message("gps", {"stream": 0, "lat": 1.0})
            assert "server" not in await next_json(ws)
            server.publish_message("status", {"stream": 0})
            status = await next_json(ws)
            assert status["server"] == {"refused": {"max_pending_handshakes_per_ip": 1},
                                        "shedding": True}
        finally:
            first.close()
            second.close()


async def test_connecting_without_a_token_is_not_taken_for_guessing(
        start_server: StartServer) -> None:
    """A viewer that loads without a stored token (it sends no auth message first, and is
    told the token is needed) does so any number of times without earning a wait: only
    wrong tokens do. Then the right token gets in at once."""
    server = start_server(token=TOKEN)
    for _ in range(5):
        async with connect(server.url, open_timeout=WAIT_S) as ws:
            await ws.send(json.dumps({"type": "ping", "id": 1}))
            error = await next_json(ws)
            assert error["code"] == "auth_failed" and "needed" in error["message"]
    assert server.counters.auth_failures["message"] == 5
    assert server.counters.refused["auth_backoff"] == 0
    assert (await first_json(server.url, additional_headers={
        "Authorization": f"Bearer {TOKEN}"}))["type"] == "hello"
