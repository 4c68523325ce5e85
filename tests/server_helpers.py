# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for tests of gr_argos.server: clients that behave and one that does not.

Well-behaved clients use the ``websockets`` asyncio client. Clients that misbehave (stop
reading, never answer pings) are :class:`RawClient`: a bare TCP socket that completes the
WebSocket handshake and then does only what the test tells it to. The ``start_server``
fixture is in conftest.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gr_argos.protocol import encode_frame
from gr_argos.server import SpectrumServer

WAIT_S = 20.0  # deadline for anything that normally takes milliseconds
OP_TEXT, OP_CLOSE, OP_PING = 0x1, 0x8, 0x9

StartServer = Callable[..., SpectrumServer]


def spectrum_frame(sequence: int) -> bytes:
    """An encoded 2048-bin frame of stream 0 whose payload differs with its sequence."""
    power_db = np.linspace(-120.0, -20.0, 2048, dtype=np.float32) + np.float32(sequence % 97)
    return encode_frame(power_db, center_freq_hz=100e6, span_hz=2.048e6,
                        timestamp_ns=1_700_000_000_000_000_000 + sequence, sequence=sequence)


@contextlib.asynccontextmanager
async def client(server: SpectrumServer) -> AsyncIterator[ClientConnection]:
    """A connected client whose hello has been read, so the server now sends it frames."""
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        hello = await next_json(ws)
        assert hello["type"] == "hello"
        yield ws


async def next_json(ws: ClientConnection) -> dict[str, Any]:
    """The next text message, skipping spectrum frames."""
    async with asyncio.timeout(WAIT_S):
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                return json.loads(message)


async def next_frames(ws: ClientConnection, count: int) -> list[bytes]:
    """The next ``count`` spectrum frames, skipping text messages."""
    frames: list[bytes] = []
    async with asyncio.timeout(WAIT_S):
        while len(frames) < count:
            message = await ws.recv()
            if isinstance(message, bytes):
                frames.append(message)
    return frames


async def close_code_seen(ws: ClientConnection) -> int | None:
    """Read until the server closes the connection; the close code it sent."""
    async with asyncio.timeout(WAIT_S):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


def scrape(port: int, token: str | None = None) -> str:
    """The server's /metrics text (with the token, if given)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples}


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    """One sample of :func:`samples` by name and labels."""
    return found[(name, tuple(sorted(labels.items())))]


def server_threads() -> set[threading.Thread]:
    """The SpectrumServer loop threads alive now."""
    return {t for t in threading.enumerate() if t.name.startswith("argos-server-")}


def client_stats(server: SpectrumServer, peer: str) -> dict[str, Any] | None:
    """The server's counters for the client at ``peer`` (None once it is gone)."""
    for snapshot in server.stats()["clients"]:
        if snapshot["peer"] == peer:
            return snapshot
    return None


def upgrade_request(port: int, path: str = "/") -> bytes:
    """A WebSocket upgrade request for ``path`` on 127.0.0.1 (a fresh key each time)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


class RawClient:
    """A WebSocket client on a bare socket that reads only when the test asks it to.

    Args:
        port: the server's port on 127.0.0.1.
        small_buffers: ask for a small receive window and segment size, so that the server's
            send buffers fill after a few hundred kB when this client stops reading (as they
            would over a slow link) instead of after several MB on loopback.
        path: the request path (a query may choose the encoding).
    """

    def __init__(self, port: int, small_buffers: bool = False, path: str = "/") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if small_buffers:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        self.sock.settimeout(WAIT_S)
        self.sock.connect(("127.0.0.1", port))
        self.peer = "%s:%d" % self.sock.getsockname()[:2]
        self.sock.sendall(upgrade_request(port, path))
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv()
        status, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        assert status.startswith(b"HTTP/1.1 101"), status

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the TCP connection")
        return data

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._recv()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """The next WebSocket frame from the server: (opcode, payload)."""
        first, second = self._read_exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exactly(8))
        return first & 0x0F, self._read_exactly(length)

    def send_frames(self, opcode: int, payload: bytes, count: int = 1) -> None:
        """Send ``count`` masked client frames of ``opcode`` (a ping, say) at once."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        frame = bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked
        self.sock.sendall(frame * count)

    def read_until_close(self) -> tuple[list[tuple[int, bytes]], int]:
        """Everything up to the server's close frame, and the close code in it."""
        frames = []
        while True:
            opcode, payload = self.read_frame()
            if opcode == OP_CLOSE:
                return frames, struct.unpack("!H", payload[:2])[0]
            frames.append((opcode, payload))

    def close(self) -> None:
        self.sock.close()
