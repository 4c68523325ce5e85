# SPDX-License-Identifier: GPL-3.0-or-later
"""argos-spectrum behind nginx terminating TLS: the recipe of docs/reverse-proxy.md, run.

The nginx configuration is not copied here: it is the first ```nginx block of
docs/reverse-proxy.md, with its example values (host name, certificate paths, ports) replaced
by a self-signed certificate made with openssl in tmp_path, a free port for TLS and the app's
port. nginx runs in the foreground as a subprocess with its pid file, logs and temporary
directories in tmp_path, never the system service; the app runs as in test_app_spectrum.py.
Skipped only when nginx is not installed (scripts/setup.sh --test installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from gr_argos.protocol import decode_frame, decode_message

from helpers import RECEIVE_TIMEOUT_S, REPO_ROOT, running

pytestmark = pytest.mark.slow

NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx", "/sbin/nginx") if Path(path).exists()), None)
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
DOC = REPO_ROOT / "docs" / "reverse-proxy.md"
APP = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum"]
URL_LINE = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")
TOKEN = "reverse-proxy-test-token-0123456789"
NGINX_START_TIMEOUT_S = 30.0
LIMIT_CONN = 8  # the doc's `limit_conn argos_per_ip 8;`

if NGINX is None:
    pytest.skip("nginx is not installed (scripts/setup.sh --test installs it: apt-get install nginx)",
                allow_module_level=True)


def doc_nginx_block() -> str:
    """The first ```nginx fenced block of docs/reverse-proxy.md: the one source of the config."""
    match = re.search(r"^```nginx\n(.*?)^```$", DOC.read_text(encoding="utf-8"),
                      re.MULTILINE | re.DOTALL)
    assert match, f"no ```nginx block in {DOC}"
    return match.group(1)


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Replace the doc's example values; each must be there exactly once (else the doc and
    this test went apart, and the test would run something other than the doc shows)."""
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {DOC}'s block"
        text = text.replace(old, new)
    return text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (IP subjectAltName, so hostname checks pass)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                    "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def nginx_conf(directory: Path, *, tls_port: int, app_port: int, cert: Path, key: Path) -> str:
    """A whole nginx.conf: everything in tmp_path, the doc's block as the http context."""
    block = substitute(doc_nginx_block(), {
        "listen 443 ssl;": f"listen 127.0.0.1:{tls_port} ssl;",
        "/etc/ssl/certs/argos.example.org.pem": str(cert),
        "/etc/ssl/private/argos.example.org.key": str(key),
        "http://127.0.0.1:8765;": f"http://127.0.0.1:{app_port};",
    })
    temp = "\n".join(f"    {name}_temp_path {directory / name};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"worker_processes 1;\n"
            f"pid {directory / 'nginx.pid'};\n"
            f"error_log {directory / 'error.log'} info;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n"
            f"    access_log {directory / 'access.log'};\n"
            f"{temp}\n"
            f"{block}\n"
            f"}}\n")


@dataclass
class Proxied:
    """The app behind nginx, as the tests reach it."""
    origin: str  # the public origin (the one the app allows)
    wss_url: str
    https_url: str
    ssl_context: ssl.SSLContext
    app_output: Callable[[], str]  # the app's output so far
    nginx_dir: Path


def wait_for_tls(port: int, nginx: subprocess.Popen, directory: Path) -> None:
    deadline = time.monotonic() + NGINX_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if nginx.poll() is not None:
            pytest.fail(f"nginx exited with {nginx.returncode}:\n{nginx_logs(directory)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nginx not listening on {port} after {NGINX_START_TIMEOUT_S:.0f} s:\n"
                f"{nginx_logs(directory)}")


def nginx_logs(directory: Path) -> str:
    return "\n".join(f"--- {name}:\n{(directory / name).read_text(errors='replace')}"
                     for name in ("error.log", "nginx.out") if (directory / name).exists())


def stop_nginx(nginx: subprocess.Popen) -> None:
    if nginx.poll() is None:
        nginx.terminate()  # SIGTERM: fast shutdown of master and workers
        try:
            nginx.wait(timeout=15)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(timeout=15)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    directory = tmp_path_factory.mktemp("reverse_proxy")
    cert, key = make_certificate(directory)
    tls_port = free_port()
    origin = f"https://127.0.0.1:{tls_port}"
    args = ["--source", "sim", "--port", "0", "--allowed-origins", origin,
            "--max-clients-per-ip", "0", "--token", TOKEN, "--fps", "5", "--bins", "256"]
    with ExitStack() as stack:
        app = stack.enter_context(running([*APP, *args], directory, url_pattern=URL_LINE,
                                          name="argos-spectrum"))
        app_port = int(app.wait_for_url().rstrip("/").rsplit(":", 1)[1])
        conf = directory / "nginx.conf"
        conf.write_text(nginx_conf(directory, tls_port=tls_port, app_port=app_port,
                                   cert=cert, key=key), encoding="utf-8")
        out = (directory / "nginx.out").open("w")
        stack.callback(out.close)
        nginx = subprocess.Popen(
            [NGINX, "-p", str(directory), "-e", str(directory / "error.log"),
             "-c", str(conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        stack.callback(stop_nginx, nginx)
        wait_for_tls(tls_port, nginx, directory)
        context = ssl.create_default_context(cafile=str(cert))
        # TLS 1.2 on the test's side. Seen with TLS 1.3 (websockets 17 sync client, OpenSSL
        # 3.0): in about one run in three a client's upgrade request never reached nginx
        # after the TLS handshake (nginx: "client timed out ... while waiting for request"),
        # likely the post-handshake session tickets read by the client's receiving thread
        # while its main thread writes. nginx itself offers TLS 1.2 and 1.3 as the doc says.
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        yield Proxied(origin=origin, wss_url=f"wss://127.0.0.1:{tls_port}/",
                      https_url=f"https://127.0.0.1:{tls_port}", ssl_context=context,
                      app_output=app.output, nginx_dir=directory)


def wait_for_output(proxied: Proxied, pattern: re.Pattern[str]) -> None:
    """The app's log line matching ``pattern`` (its output is read by a thread: poll)."""
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while not pattern.search(proxied.app_output()):
        if time.monotonic() > deadline:
            pytest.fail(f"no line matching {pattern.pattern!r} in the app's output:\n"
                        f"{proxied.app_output()}")
        time.sleep(0.05)


def open_ws(proxied: Proxied, *, origin: str, header_token: bool = True) -> ClientConnection:
    headers = {"Authorization": f"Bearer {TOKEN}"} if header_token else None
    return connect(proxied.wss_url, ssl=proxied.ssl_context, origin=origin,
                   additional_headers=headers, open_timeout=RECEIVE_TIMEOUT_S,
                   close_timeout=5)


def read_hello_and_frames(ws: ClientConnection, count: int) -> tuple[dict, list]:
    hello = decode_message(ws.recv(timeout=RECEIVE_TIMEOUT_S))
    frames = []
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while len(frames) < count and time.monotonic() < deadline:
        message = ws.recv(timeout=RECEIVE_TIMEOUT_S)
        if isinstance(message, bytes):
            frames.append(decode_frame(message))
    return hello, frames


def test_wss_with_the_public_origin_and_bearer_token_streams_through_nginx(
        proxied: Proxied) -> None:
    """TLS at nginx, the upgrade forwarded: hello, then frames; gr-argos sees nginx's address
    and the browser's public https origin."""
    with open_ws(proxied, origin=proxied.origin) as ws:
        hello, frames = read_hello_and_frames(ws, 3)
    assert hello["type"] == "hello" and hello["server"] == "gr-argos"
    assert len(frames) == 3
    assert all(frame.bin_count == hello["streams"][0]["bins"] for frame in frames)
    wait_for_output(proxied, re.compile(rf"event=connect client=\d+ peer=127\.0\.0\.1:\d+ "
                                        rf"origin={re.escape(proxied.origin)}"))


def test_token_in_a_first_auth_message_passes_through_nginx(proxied: Proxied) -> None:
    """The browsers' way: no header, the token in the first WebSocket message."""
    with open_ws(proxied, origin=proxied.origin, header_token=False) as ws:
        ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        hello, frames = read_hello_and_frames(ws, 1)
    assert hello["type"] == "hello" and len(frames) == 1


def test_foreign_origin_gets_gr_argos_403_through_nginx(proxied: Proxied) -> None:
    """gr-argos refuses the other origin; nginx passes the 403 and its body on."""
    with pytest.raises(InvalidStatus) as refused:
        with open_ws(proxied, origin="https://evil.example"):
            pass
    response = refused.value.response
    assert response.status_code == 403
    assert response.headers.get("Server", "").startswith("nginx")  # answered through nginx
    assert b"https://evil.example is not allowed" in response.body
    wait_for_output(proxied, re.compile(r"event=refused reason=origin peer=127\.0\.0\.1:\d+ "
                                        r"status=403 origin=https://evil\.example"))


def test_healthz_over_https_through_nginx(proxied: Proxied) -> None:
    with urllib.request.urlopen(f"{proxied.https_url}/healthz", context=proxied.ssl_context,
                                timeout=RECEIVE_TIMEOUT_S) as response:
        assert response.status == 200
        assert response.headers["Server"].startswith("nginx")
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["server"] == "gr-argos"


def test_limit_conn_at_nginx_replaces_the_per_ip_limit(proxied: Proxied) -> None:
    """With max_clients_per_ip 0 at gr-argos, nginx's limit_conn bounds one client address:
    the doc's 8 connections stream, the 9th gets nginx's 429."""
    with ExitStack() as stack:
        for _ in range(LIMIT_CONN):
            ws = stack.enter_context(open_ws(proxied, origin=proxied.origin))
            assert decode_message(ws.recv(timeout=RECEIVE_TIMEOUT_S))["type"] == "hello"
        with pytest.raises(InvalidStatus) as refused:
            with open_ws(proxied, origin=proxied.origin):
                pass
    assert refused.value.response.status_code == 429
    assert "max_clients_per_ip" not in proxied.app_output()
