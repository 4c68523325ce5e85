# SPDX-License-Identifier: GPL-3.0-or-later
"""A lean load generator: many WebSocket (or raw TCP) connections in one asyncio process.

It speaks just enough RFC 6455 to count frames without decoding them: it reads the frame
header, takes the timestamp from the gr-argos header (offset 32) or from the start of the
JSON baseline's text (``{"t": ns, ...``), answers pings, and inflates permessage-deflate
(offered like a browser: ``permessage-deflate; client_max_window_bits``) only where the
server negotiated it, since the stream cannot be skipped. Driven by JSON lines on stdin:
``{"cmd": "connect", "port": P, "path": "/?encoding=uint8", "n": 100, "mode": "ws"}``,
``{"cmd": "reset", "latency": true}``, ``{"cmd": "stats"}``, ``{"cmd": "quit"}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import resource
import struct
import sys
import threading
import time
import zlib
from typing import Any

_TS = struct.Struct("<q")
_LEN = struct.Struct("<I")
_SAMPLE_MAX = 40000


class Counters:
    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.latency_ns: list[int] = []
        self.record_latency = False


class WsClient(asyncio.Protocol):
    def __init__(self, counters: Counters, request: bytes, mode: str,
                 ready: asyncio.Future[bool]) -> None:
        self.c = counters
        self.request = request
        self.mode = mode
        self.ready = ready
        self.buf = bytearray()
        self.handshaken = mode == "tcp"
        self.inflater: Any = None
        self.reset_inflater = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.mode == "tcp":
            self.ready.set_result(True)
        else:
            transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(False)

    def data_received(self, data: bytes) -> None:
        c = self.c
        c.bytes += len(data)
        buf = self.buf
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            del buf[:end + 4]
            c.bytes -= end + 4
            ok = head.startswith(b"http/1.1 101")
            if b"permessage-deflate" in head:
                self.inflater = zlib.decompressobj(-15)
                self.reset_inflater = b"server_no_context_takeover" in head
            self.handshaken = True
            self.ready.set_result(ok)
        if self.mode == "tcp":
            self._tcp(buf)
        else:
            self._ws(buf)

    def _tcp(self, buf: bytearray) -> None:
        c = self.c
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if n - pos - 4 < size:
                break
            c.frames += 1
            if c.record_latency:
                c.latency_ns.append(time.time_ns() - _TS.unpack_from(buf, pos + 4 + 32)[0])
            pos += 4 + size
        del buf[:pos]

    def _ws(self, buf: bytearray) -> None:
        c = self.c
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = struct.unpack_from(">Q", buf, pos + 2)[0]
                head = 10
            if n - pos - head < length:
                break
            start = pos + head
            opcode = b0 & 0x0F
            if opcode == 2:
                c.frames += 1
                if c.record_latency:
                    c.latency_ns.append(time.time_ns() - _TS.unpack_from(buf, start + 32)[0])
            elif opcode == 1:
                payload = buf[start:start + length]
                if b0 & 0x40:
                    payload = self.inflater.decompress(bytes(payload) + b"\x00\x00\xff\xff")
                    if self.reset_inflater:
                        self.inflater = zlib.decompressobj(-15)
                if payload[:5] == b'{"t":':
                    c.frames += 1
                    if c.record_latency:
                        ts = int(payload[5:payload.index(b",")])
                        c.latency_ns.append(time.time_ns() - ts)
            elif opcode == 9:  # ping: answer with a masked pong (zero mask)
                self.transport.write(bytes([0x8A, 0x80 | length]) + b"\0\0\0\0"
                                     + bytes(buf[start:start + length]))
            pos = start + length
        del buf[:pos]


def usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "wall_s": time.monotonic()}


def upgrade_request(port: int, path: str) -> bytes:
    """A WebSocket upgrade request offering permessage-deflate, as a browser does."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            "\r\n").encode()


async def connect_all(counters: Counters, clients: list[Any], port: int, path: str, n: int,
                      mode: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(64)
    failures = 0

    async def one() -> None:
        nonlocal failures
        request = upgrade_request(port, path)
        async with gate:
            ready: asyncio.Future[bool] = loop.create_future()
            try:
                transport, _ = await loop.create_connection(
                    lambda: WsClient(counters, request, mode, ready), "127.0.0.1", port)
                ok = await asyncio.wait_for(ready, 30)
            except (OSError, asyncio.TimeoutError):
                ok = False
            if ok:
                clients.append(transport)
            else:
                failures += 1

    await asyncio.gather(*(one() for _ in range(n)))
    return {"connected": n - failures, "failed": failures}


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    loop = asyncio.new_event_loop()
    counters = Counters()
    clients: list[Any] = []
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def in_loop(fn: Any) -> Any:
        async def call() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), loop).result(60)

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "connect":
            answer = asyncio.run_coroutine_threadsafe(connect_all(
                counters, clients, cmd["port"], cmd.get("path", "/"), cmd["n"],
                cmd.get("mode", "ws")), loop).result(300)
        elif cmd["cmd"] == "reset":
            def reset() -> dict[str, Any]:
                counters.frames = counters.bytes = 0
                counters.latency_ns = []
                counters.record_latency = bool(cmd.get("latency"))
                return usage()
            answer = in_loop(reset)
        elif cmd["cmd"] == "stats":
            def stats() -> dict[str, Any]:
                lat = counters.latency_ns
                if len(lat) > _SAMPLE_MAX:
                    lat = random.sample(lat, _SAMPLE_MAX)
                return {"frames": counters.frames, "bytes": counters.bytes,
                        "latency_us": [x // 1000 for x in lat],
                        "latency_count": len(counters.latency_ns), **usage()}
            answer = in_loop(stats)
        else:
            for transport in clients:
                transport.abort()
            print(json.dumps({"bye": True}), flush=True)
            return
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
