# SPDX-License-Identifier: GPL-3.0-or-later
"""TLS: the server on wss:// and https:// from certificate and key files, and the clients.

A self-signed certificate for 127.0.0.1 and localhost is made with openssl in the test's
temporary directory. Clients that trust it get the hello and frames over wss:// and the
health check over https://; a plain ws:// client and one that does not trust it fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from gr_argos.client import ArgosClient, FrameEvent, StateEvent
from gr_argos.server import ServerConfig, ServerError, SpectrumServer, http_url

from helpers import running
from server_helpers import WAIT_S, StartServer, next_frames, next_json, spectrum_frame

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="openssl is needed to make a test certificate")


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate and its key for 127.0.0.1 and localhost."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "2", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts the test certificate (and verifies it)."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture
def tls_server(start_server: StartServer, certificate: tuple[Path, Path]) -> SpectrumServer:
    cert, key = certificate
    return start_server(tls_cert=str(cert), tls_key=str(key))


async def publish_until_stopped(server: SpectrumServer, stop: asyncio.Event) -> None:
    sequence = 0
    while not stop.is_set():
        server.publish_frame(0, spectrum_frame(sequence))
        sequence += 1
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def publishing_from_a_thread(server: SpectrumServer) -> Iterator[None]:
    """Frames published every 10 ms from a thread, for code that runs its own event loop
    (argos-client's main())."""
    stop = threading.Event()

    def publish() -> None:
        sequence = 0
        while not stop.wait(0.01):
            server.publish_frame(0, spectrum_frame(sequence))
            sequence += 1

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        yield
    finally:
        stop.set()
        publisher.join()


def test_url_says_wss_and_health_https(tls_server: SpectrumServer) -> None:
    assert tls_server.url == f"wss://127.0.0.1:{tls_server.port}/"
    assert tls_server.health_url == f"https://127.0.0.1:{tls_server.port}/healthz"
    assert http_url("ws://h:1/") == "http://h:1/" and http_url("wss://h:1/") == "https://h:1/"


async def test_trusting_client_gets_hello_and_frames_over_wss(
        tls_server: SpectrumServer, trusting: ssl.SSLContext) -> None:
    stop = asyncio.Event()
    publisher = asyncio.ensure_future(publish_until_stopped(tls_server, stop))
    try:
        async with connect(tls_server.url, ssl=trusting, open_timeout=WAIT_S) as ws:
            hello = await next_json(ws)
            assert hello["type"] == "hello"
            assert hello["streams"][0]["name"] == "spectrum"
            assert len(await next_frames(ws, 3)) == 3
            assert ws.transport.get_extra_info("ssl_object").version() in ("TLSv1.2",
                                                                           "TLSv1.3")
    finally:
        stop.set()
        await publisher


def test_healthz_over_https(tls_server: SpectrumServer, trusting: ssl.SSLContext) -> None:
    with urllib.request.urlopen(tls_server.health_url, context=trusting,
                                timeout=WAIT_S) as response:
        body = json.loads(response.read())
    assert response.status == 200 and body["status"] == "ok"


async def test_plain_ws_client_cannot_connect(tls_server: SpectrumServer) -> None:
    plain = tls_server.url.replace("wss://", "ws://")
    with pytest.raises((InvalidHandshake, OSError, EOFError)):
        async with connect(plain, open_timeout=WAIT_S):
            pass


async def test_client_that_does_not_trust_the_certificate_fails_verification(
        tls_server: SpectrumServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        async with connect(tls_server.url, ssl=ssl.create_default_context(),
                           open_timeout=WAIT_S):
            pass


def test_missing_key_file_is_a_server_error_naming_it(
        certificate: tuple[Path, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.key"
    server = SpectrumServer(ServerConfig(port=0, tls_cert=str(certificate[0]),
                                         tls_key=str(missing)))
    with pytest.raises(ServerError, match=re.escape(str(missing))):
        server.start()
    assert not server.running


def test_key_of_another_certificate_is_a_server_error_naming_both(
        certificate: tuple[Path, Path], tmp_path: Path) -> None:
    _other_cert, other_key = make_certificate(tmp_path, "other")
    server = SpectrumServer(ServerConfig(port=0, tls_cert=str(certificate[0]),
                                         tls_key=str(other_key)))
    with pytest.raises(ServerError, match="does not match") as error:
        server.start()
    assert str(other_key) in str(error.value) and str(certificate[0]) in str(error.value)


def test_cert_without_key_is_a_server_error(certificate: tuple[Path, Path]) -> None:
    server = SpectrumServer(ServerConfig(port=0, tls_cert=str(certificate[0])))
    with pytest.raises(ServerError, match="tls_key"):
        server.start()


def test_sink_constructor_raises_the_server_error(certificate: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    pytest.importorskip("gnuradio")
    from gr_argos.websocket_sink import websocket_sink

    missing = tmp_path / "missing.crt"
    with pytest.raises(ServerError, match=re.escape(str(missing))):
        websocket_sink(vlen=16, port=0, tls_cert=str(missing), tls_key=str(certificate[1]))


async def test_argos_client_with_ssl_cafile_receives_frames(
        tls_server: SpectrumServer, certificate: tuple[Path, Path]) -> None:
    stop = asyncio.Event()
    publisher = asyncio.ensure_future(publish_until_stopped(tls_server, stop))
    try:
        async with asyncio.timeout(WAIT_S):
            async with ArgosClient(tls_server.url, ssl_cafile=str(certificate[0]),
                                   heartbeat_interval_s=0) as client:
                async for event in client:
                    if isinstance(event, FrameEvent):
                        break
        assert client.hello is not None and client.stats.frames >= 1
    finally:
        stop.set()
        await publisher


def test_argos_client_ssl_cafile_needs_wss_and_a_readable_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wss://"):
        ArgosClient("ws://127.0.0.1:1/", ssl_cafile=str(tmp_path / "ca.pem"))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "ca.pem"))):
        ArgosClient("wss://127.0.0.1:1/", ssl_cafile=str(tmp_path / "ca.pem"))


def test_argos_client_cli_with_ssl_cafile(tls_server: SpectrumServer,
                                          certificate: tuple[Path, Path]) -> None:
    """argos-client --ssl-cafile (--cafile is accepted too) receives frames over wss://."""
    from gr_argos.apps.client import argument_parser, main

    assert argument_parser().parse_args(["--cafile", "ca.pem", "wss://h:1/"]).ssl_cafile \
        == "ca.pem"
    with publishing_from_a_thread(tls_server):
        status = main(["--ssl-cafile", str(certificate[0]), "--count", "2", "--duration",
                       str(WAIT_S), tls_server.url])
    assert status == 0


TOKEN = "correct-horse-battery-staple-7f3a"


@pytest.fixture
def tls_token_server(start_server: StartServer,
                     certificate: tuple[Path, Path]) -> SpectrumServer:
    cert, key = certificate
    return start_server(tls_cert=str(cert), tls_key=str(key), token=TOKEN)


async def test_argos_client_with_a_token_over_wss(tls_token_server: SpectrumServer,
                                                  certificate: tuple[Path, Path]) -> None:
    """Over wss:// the right token gets frames; a wrong one ends the client at once with
    the refusal (the Authorization header travels inside TLS like any other)."""
    stop = asyncio.Event()
    publisher = asyncio.ensure_future(publish_until_stopped(tls_token_server, stop))
    try:
        async with asyncio.timeout(WAIT_S):
            async with ArgosClient(tls_token_server.url, ssl_cafile=str(certificate[0]),
                                   token=TOKEN, heartbeat_interval_s=0) as client:
                async for event in client:
                    if isinstance(event, FrameEvent):
                        break
            assert client.stats.frames >= 1 and not client.auth_failed
            async with ArgosClient(tls_token_server.url, ssl_cafile=str(certificate[0]),
                                   token="not-" + TOKEN, heartbeat_interval_s=0) as refused:
                states = [event.state async for event in refused
                          if isinstance(event, StateEvent)]
        assert states == ["connecting", "closed"] and refused.auth_failed
        assert refused.last_error is not None and "HTTP 401" in refused.last_error
    finally:
        stop.set()
        await publisher


@pytest.mark.parametrize(("token", "status"), [(TOKEN, 0), ("not-" + TOKEN, 3)])
def test_argos_client_cli_with_a_token_file_over_wss(
        token: str, status: int, tls_token_server: SpectrumServer,
        certificate: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """argos-client --ssl-cafile --token-file over wss:// exits 0 with the right token and
    3 with a wrong one, and prints neither."""
    from gr_argos.apps.client import main

    token_path = tmp_path / "token"
    token_path.write_text(token + "\n", encoding="utf-8")
    with publishing_from_a_thread(tls_token_server):
        result = main(["--ssl-cafile", str(certificate[0]), "--token-file", str(token_path),
                       "--count", "2", "--duration", str(WAIT_S), tls_token_server.url])
    assert result == status
    output = capsys.readouterr()
    assert token not in output.out + output.err


def test_apps_share_the_tls_settings() -> None:
    from gr_argos.apps.gateway import SETTINGS as GATEWAY_SETTINGS
    from gr_argos.apps.spectrum import SETTINGS as SPECTRUM_SETTINGS

    for settings in (SPECTRUM_SETTINGS, GATEWAY_SETTINGS):
        assert {"tls_cert", "tls_key"} <= {s.name for s in settings}


@pytest.mark.slow
def test_argos_spectrum_with_tls_prints_a_wss_url(certificate: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    cert, key = certificate
    command = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum", "--source", "sim",
               "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)]
    pattern = re.compile(r"argos-spectrum: connect to (wss://127\.0\.0\.1:\d+/)")
    with running(command, tmp_path, url_pattern=pattern, name="argos-spectrum") as app:
        url = app.wait_for_url()
        assert f"health: {url.replace('wss://', 'https://')}healthz" in app.output()
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(url.replace("wss://", "https://") + "healthz",
                                    context=context, timeout=WAIT_S) as response:
            assert json.loads(response.read())["status"] == "ok"


@pytest.mark.usefixtures("no_server_thread_left")
def test_token_over_plain_ws_on_a_network_bind_warns(caplog: pytest.LogCaptureFixture,
                                                     certificate: tuple[Path, Path]) -> None:
    """A token on 0.0.0.0 without TLS logs token_without_tls; with TLS it does not."""
    cert, key = certificate
    for tls, warned in (({}, True), ({"tls_cert": str(cert), "tls_key": str(key)}, False)):
        caplog.clear()
        server = SpectrumServer(ServerConfig(host="0.0.0.0", port=0, token="t" * 32, **tls))
        server.start()
        try:
            text = "\n".join(r.getMessage() for r in caplog.records
                             if r.levelno >= logging.WARNING)
            assert ("event=token_without_tls" in text) is warned
            assert "t" * 32 not in text
        finally:
            server.stop()


@pytest.mark.parametrize("cipher", ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA"])
def test_tls12_without_forward_secrecy_or_aead_is_refused(
        tls_server: SpectrumServer, trusting: ssl.SSLContext, cipher: str) -> None:
    """A TLS 1.2 client offering only a suite without forward secrecy (RSA key exchange) or
    without AEAD (CBC, SHA-1) cannot connect; one offering ECDHE + AES-GCM can."""
    def handshake(suites: str) -> str | None:
        context = ssl.create_default_context(cafile=str(tls_server.config.tls_cert))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(suites)
        with socket.create_connection(("127.0.0.1", tls_server.port), timeout=WAIT_S) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.cipher()[0] if tls.cipher() else None

    with pytest.raises(ssl.SSLError):
        handshake(cipher)
    assert handshake("ECDHE-RSA-AES128-GCM-SHA256") == "ECDHE-RSA-AES128-GCM-SHA256"
