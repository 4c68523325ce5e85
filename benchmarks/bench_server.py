# SPDX-License-Identifier: GPL-3.0-or-later
"""One benchmark server in its own process, driven by JSON lines on stdin/stdout.

Kinds:
  argos   the real :class:`gr_argos.server.SpectrumServer`; a producer thread publishes
          float32 frames, clients pick their format in the URL query.
  json    the baseline most web consoles use: a plain ``websockets`` server with its default
          per-connection permessage-deflate, each frame one JSON text message
          ``{"t": ns, "seq": n, "bins": [floats]}`` sent with ``websockets.broadcast``
          (clients whose transport buffer is over 64 KiB are skipped, as websockets' own
          broadcast guide recommends, so memory stays bounded).
  tcp     the ceiling: the same frame bytes (4-byte length prefix) written with
          ``socket.sendall`` to every connection, no WebSocket framing.

Commands (one JSON object per line): ``{"cmd": "usage"}``, ``{"cmd": "run", "fps": 30,
"duration_s": 5}`` (fps 0 = as fast as possible), ``{"cmd": "quit"}``. Every answer is one
JSON line; the first line printed is ``{"port": P}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import struct
import sys
import threading
import time
from typing import Any

import numpy as np

from benchmarks.frames import load_frames

_TS_OFFSET = 32  # timestamp_ns in the gr-argos header
_SKIP_BUFFER_BYTES = 64 * 1024


def usage() -> dict[str, Any]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rss_kb = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "rss_kb": rss_kb}


def paced(fps: float, duration_s: float):
    """Yield frame indexes at ``fps`` (0: as fast as the caller goes) for ``duration_s``."""
    start = time.monotonic()
    end = start + duration_s
    i = 0
    while True:
        now = time.monotonic()
        if now >= end:
            return
        if fps > 0:
            due = start + i / fps
            if due > now:
                time.sleep(due - now)
        yield i
        i += 1


def documented_send_only() -> None:
    """Make every connection decline direct writes, so that every frame goes through the
    client's queue and ``websockets``' documented ``ServerConnection.send()``: what the
    server would cost without gr_argos.server.wire's prebuilt frames."""
    from gr_argos.server import connection

    def declining_writer(ws: Any) -> Any:
        return lambda data, wire, text: False

    connection.frame_writer = declining_writer  # type: ignore[assignment]


class ArgosBench:
    def __init__(self, frames: np.ndarray, encoded: list[bytes], max_views: int = 32) -> None:
        from gr_argos.protocol import StreamInfo
        from gr_argos.server import ServerConfig, SpectrumServer
        # The connection limits guard a field deployment; the benchmark opens up to 1000
        # connections from one address on purpose, so it lifts them.
        self.server = SpectrumServer(ServerConfig(host="127.0.0.1", port=0, max_clients=0,
                                                  max_clients_per_ip=0,
                                                  max_pending_handshakes=0,
                                                  max_pending_handshakes_per_ip=0,
                                                  max_views_per_stream=max_views))
        self.server.add_stream(StreamInfo(bins=frames.shape[1], center_freq_hz=100e6,
                                          span_hz=2e6, fps=30.0))
        self.server.start()
        self.port = self.server.port
        self.encoded = [bytearray(f) for f in encoded]

    def run(self, fps: float, duration_s: float) -> int:
        n = 0
        for i in paced(fps, duration_s):
            frame = self.encoded[i % len(self.encoded)]
            struct.pack_into("<Q", frame, 16, i)
            struct.pack_into("<q", frame, 32, time.time_ns())
            self.server.publish_frame(0, bytes(frame))
            n += 1
            if fps <= 0 and n % 8 == 0:
                time.sleep(0)  # let the loop thread have the GIL, as a GR thread would
        return n

    def close(self) -> None:
        self.server.stop()


class JsonBench:
    def __init__(self, frames: np.ndarray, window_bits: int, mem_level: int,
                 compression: bool) -> None:
        self.frames = [f.tolist() for f in frames]
        self.loop = asyncio.new_event_loop()
        self.clients: set[Any] = set()
        self.window_bits, self.mem_level, self.compression = window_bits, mem_level, compression
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(30)

    def _run(self, ready: threading.Event) -> None:
        from websockets.asyncio.server import serve
        from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

        async def handler(ws: Any) -> None:
            self.clients.add(ws)
            try:
                await ws.wait_closed()
            finally:
                self.clients.discard(ws)

        async def start() -> None:
            extensions = None
            if self.compression:
                extensions = [ServerPerMessageDeflateFactory(
                    server_max_window_bits=self.window_bits, client_max_window_bits=self.window_bits,
                    compress_settings={"memLevel": self.mem_level})]
            self.server = await serve(handler, "127.0.0.1", 0, compression=None,
                                      extensions=extensions, max_size=4096)
            self.port = self.server.sockets[0].getsockname()[1]

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(start())
        ready.set()
        self.loop.run_forever()

    async def _publish(self, fps: float, duration_s: float) -> int:
        from websockets.asyncio.server import broadcast
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < duration_s:
            if fps > 0:
                delay = start + n / fps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            text = json.dumps({"t": time.time_ns(), "seq": n,
                               "bins": self.frames[n % len(self.frames)]})
            ready = [c for c in self.clients
                     if c.transport.get_write_buffer_size() <= _SKIP_BUFFER_BYTES]
            broadcast(ready, text)
            n += 1
            if fps <= 0:
                await asyncio.sleep(0)
        return n

    def run(self, fps: float, duration_s: float) -> int:
        return asyncio.run_coroutine_threadsafe(self._publish(fps, duration_s),
                                                self.loop).result(duration_s + 600)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


class TcpBench:
    def __init__(self, encoded: list[bytes]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.encoded = [bytearray(struct.pack("<I", len(f)) + f) for f in encoded]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.socks.append(conn)

    def run(self, fps: float, duration_s: float) -> int:
        n = 0
        for i in paced(fps, duration_s):
            frame = self.encoded[i % len(self.encoded)]
            struct.pack_into("<Q", frame, 4 + 16, i)
            struct.pack_into("<q", frame, 4 + 32, time.time_ns())
            data = bytes(frame)
            for s in list(self.socks):
                s.sendall(data)
            n += 1
        return n

    def close(self) -> None:
        self.listener.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("argos", "json", "tcp"))
    parser.add_argument("--bins", type=int, default=2048)
    parser.add_argument("--tcp-format", default="uint8+deflate",
                        help="frame format the tcp ceiling sends (float32, uint8+deflate, ...)")
    parser.add_argument("--window-bits", type=int, default=12)
    parser.add_argument("--mem-level", type=int, default=5)
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--send", choices=("direct", "documented"), default="direct",
                        help="argos: documented = only websockets' send() (see "
                             "documented_send_only)")
    parser.add_argument("--max-views-per-stream", type=int, default=32,
                        help="argos: distinct views a stream may have (benchmarks.views)")
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    from gr_argos.protocol import ENCODING_FLOAT32, FrameFormat, encode_frame, reencode_frame
    frames = load_frames(args.bins)
    float32 = [encode_frame(f, center_freq_hz=100e6, span_hz=2e6, timestamp_ns=0, sequence=0,
                            encoding=ENCODING_FLOAT32) for f in frames]
    if args.kind == "argos":
        if args.send == "documented":
            documented_send_only()
        bench: Any = ArgosBench(frames, float32, args.max_views_per_stream)
    elif args.kind == "json":
        bench = JsonBench(frames, args.window_bits, args.mem_level, not args.no_compression)
    else:
        encoding, _, deflate = args.tcp_format.partition("+")
        fmt = FrameFormat.parse(encoding, deflate == "deflate")
        bench = TcpBench([reencode_frame(f, fmt) for f in float32])
    print(json.dumps({"port": bench.port}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "usage":
            answer = usage()
            if args.kind == "argos":
                answer["server_stats"] = bench.server.stats()["total"]
        elif cmd["cmd"] == "run":
            published = bench.run(cmd["fps"], cmd["duration_s"])
            answer = {"published": published}
        else:
            bench.close()
            print(json.dumps({"bye": True}), flush=True)
            return
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
