# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for a server out of file descriptors: it still answers new connections (503), says
so in ``status`` and ``/metrics``, logs no traceback, and serves again once some are free.

The server runs in a child process with a low RLIMIT_NOFILE (tests/server/fd_limited_server.py)
and this process fills its descriptors with idle connections. Deadlines are generous;
nothing here measures speed.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from server_helpers import WAIT_S

HELPER = Path(__file__).with_name("fd_limited_server.py")
OPEN_FILES = 48  # the child needs ~12 for itself; the rest go to connections
# Idle connections may stay (no cap on pending handshakes, a long timeout): they are what
# fills the child's descriptors.
SETTINGS = ("max_pending_handshakes=0", "max_pending_handshakes_per_ip=0",
            "handshake_timeout_s=120.0")


class LimitedServer:
    """The child process: its port, and its log once it stopped."""

    def __init__(self, repo_root: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HELPER), str(OPEN_FILES), *SETTINGS], cwd=repo_root,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip().isdigit(), f"the server did not start: {line!r}"
        self.port = int(line)
        self.url = f"ws://127.0.0.1:{self.port}/"

    def stop(self) -> str:
        """Stop it (it stops when its stdin closes); its log."""
        try:
            _, log = self.process.communicate("", timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, log = self.process.communicate()
        return log


@pytest.fixture
def limited_server(repo_root: Path) -> Iterator[LimitedServer]:
    server = LimitedServer(repo_root)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def read_to_end(sock: socket.socket) -> bytes:
    """What the server sent on ``sock`` until it closed it."""
    sock.settimeout(WAIT_S)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def fill_until_refused(port: int, idle: list[socket.socket]) -> bytes:
    """Open more connections than the server has descriptors for: keep the ones it took
    and waits on in ``idle``; the answer one of the others got."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
               for _ in range(2 * OPEN_FILES)]
    readable, _, _ = select.select(sockets, [], [], WAIT_S)
    time.sleep(0.5)  # let the server answer the rest of them
    readable, _, _ = select.select(sockets, [], [], 0)
    answers = []
    for sock in sockets:
        if sock in readable:
            answers.append(read_to_end(sock))
            sock.close()
        else:
            idle.append(sock)
    assert idle and any(answers), f"{len(idle)} connections taken, {len(answers)} answered"
    return next(answer for answer in answers if answer)


def status_with_refusals(ws: ClientConnection) -> dict[str, Any]:
    """The first ``status`` message whose ``server`` object counts an fd_limit refusal."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        message = ws.recv(timeout=WAIT_S)
        if isinstance(message, str):
            body = json.loads(message)
            if body["type"] == "status" and body["server"]["refused"].get("fd_limit"):
                return dict(body["server"])
    raise AssertionError("no status counted the fd_limit refusal")


def test_a_server_out_of_file_descriptors_answers_503_and_recovers(
        limited_server: LimitedServer) -> None:
    """With every descriptor taken by idle connections, a new connection gets a 503 with
    Retry-After and Connection: close; a connected client's status says the server sheds
    (refused fd_limit); once the idle ones go, a new client gets hello and /metrics counts
    the refusal; the log has a refused line and no traceback."""
    with connect(limited_server.url, open_timeout=WAIT_S) as watcher:
        assert json.loads(watcher.recv(timeout=WAIT_S))["type"] == "hello"
        idle: list[socket.socket] = []
        try:
            answer = fill_until_refused(limited_server.port, idle)
            head, _, body = answer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            assert lines[0] == "HTTP/1.1 503 Service Unavailable", answer
            assert "Retry-After: 5" in lines and "Connection: close" in lines
            assert json.loads(body)["retry_after_s"] == 5
            server_status = status_with_refusals(watcher)
            assert server_status["shedding"] is True
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + WAIT_S
        while True:  # the server notices the closed ones, and has descriptors again
            try:
                with connect(limited_server.url, open_timeout=WAIT_S) as ws:
                    assert json.loads(ws.recv(timeout=WAIT_S))["type"] == "hello"
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    with urllib.request.urlopen(f"http://127.0.0.1:{limited_server.port}/metrics",
                                timeout=WAIT_S) as metrics:
        text = metrics.read().decode()
    refused = [line for line in text.splitlines()
               if line.startswith('argos_connections_refused_total{reason="fd_limit"}')]
    assert refused and float(refused[0].split()[-1]) >= 1, text
    log = limited_server.stop()
    assert "reason=fd_limit" in log
    assert "Traceback" not in log and "out of system resource" not in log, log
