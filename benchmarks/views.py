# SPDX-License-Identifier: GPL-3.0-or-later
"""Views at scale: many clients over a few distinct views of one big stream.

    .venv/bin/python -m benchmarks.views                  # 1000 clients, 65536 bins, ~3 min
    .venv/bin/python -m benchmarks.views --clients 100 --steady-s 5   # a quick look

Four measurements, on the 300 recorded frames of the simulated band (``benchmarks.frames``)
at 65,536 bins, 2 MHz wide:

1. **Bytes to a phone**: a 1,024-bin view of the whole band in uint8 + compress-once, as the
   server makes it (``PublishedFrame.in_format``), against the whole 2,048-bin frame of the
   same band in the same format: mean bytes per frame, WebSocket framing included.
2. **A narrow carrier at every level**: a one-bin carrier put at random bins of the frames;
   its level in each pyramid level's view (float32 and uint8) against full resolution.
3. **Distinct views, not clients**: ``--clients`` load clients (``load_client.py``: raw
   sockets, headers only) over 1, 10 and ``--views`` distinct 1,024-bin views (five zooms,
   ten centres; every third view at ``fps_divisor`` 2), the server in its own process
   publishing at 30 frames/s for ``--steady-s``: the deliveries against the frames each
   client's rate asks for, the server CPU per 1,000 deliveries and per frame, the variants
   encoded per frame (the server's own counters), and a line fitted to the CPU per frame
   against the number of views.
4. **set_view to the first frame**: ``--switchers`` clients (the ``websockets`` library, in
   this process) on the same server at 30 frames/s each switch views ``--switches`` times at
   random moments; the time from sending ``set_view`` to the first frame of the new view
   (its header's ``center_freq_hz`` and ``bin_count`` are the reply's), and an application
   ``ping`` round trip measured the same way; p50 and p99.

All sockets are on 127.0.0.1 and every phase is bounded in time. Results: a JSON file
(``--out``) and a summary on stdout; docs/performance.md "Views".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.frames import cache_dir, load_frames
from benchmarks.run import Proc, machine, phase

BINS = 65536
CENTER_HZ, SPAN_HZ = 100e6, 2e6  # the stream bench_server serves
FPS = 30.0
VIEW_BINS = 1024
ZOOMS_HZ = (1e6, 500e3, 250e3, 125e3, 62.5e3)
_BAND = struct.Struct("<Iqd")  # from byte 28: bin_count, timestamp_ns, center_freq_hz


def view_queries(count: int) -> list[str]:
    """``count`` URL queries of distinct views: five zooms, centres spread over the band;
    every third view at half the frame rate."""
    queries = []
    for i in range(count):
        span = ZOOMS_HZ[i % len(ZOOMS_HZ)]
        column, columns = i // len(ZOOMS_HZ), max(1, -(-count // len(ZOOMS_HZ)))
        low = CENTER_HZ - SPAN_HZ / 2 + span / 2
        center = low + (SPAN_HZ - span) * (column + 0.5) / columns
        queries.append(f"/?encoding=uint8&compress=1&center_freq_hz={center:.1f}"
                       f"&span_hz={span:.1f}&bins={VIEW_BINS}&fps_divisor={2 if i % 3 == 2 else 1}")
    return queries


def frame_bytes(data: bytes) -> int:
    """A binary message's bytes on the wire from the server (unmasked header)."""
    size = len(data)
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


def phone_bytes() -> dict[str, Any]:
    """Mean bytes per frame: a 1,024-bin view of the whole band vs the whole 2,048-bin frame,
    both uint8 + compress-once, made as the server makes them."""
    from collections import Counter

    from gr_argos.protocol import FrameFormat, ViewRequest, encode_frame
    from gr_argos.server.outgoing import PublishedFrame
    from gr_argos.server.views import StreamGeometry, resolve_view

    uint8_deflate = FrameFormat.parse("uint8", True)
    sizes: dict[str, list[int]] = {"view_1024_of_65536": [], "whole_2048": []}
    view = resolve_view(ViewRequest(bins=VIEW_BINS), StreamGeometry(BINS, CENTER_HZ, SPAN_HZ))
    for key, bins, slice_ in (("view_1024_of_65536", BINS, view.slice),
                              ("whole_2048", 2048, None)):
        for spectrum in load_frames(bins):
            frame = PublishedFrame(0, encode_frame(spectrum, center_freq_hz=CENTER_HZ,
                                                   span_hz=SPAN_HZ, timestamp_ns=0, sequence=0))
            sizes[key].append(frame_bytes(frame.in_format(uint8_deflate, Counter(), slice_)))
    means = {key: float(np.mean(values)) for key, values in sizes.items()}
    return {**means, "view_bins": None if view.slice is None else view.slice.width,
            "ratio": means["whole_2048"] / means["view_1024_of_65536"]}


def carrier_error(trials: int = 200, seed: int = 3) -> dict[str, Any]:
    """The largest difference, in dB, between a one-bin carrier's level at full resolution
    and in a view of each pyramid level, float32 and uint8."""
    from collections import Counter

    from gr_argos.protocol import FrameFormat, decode_frame, encode_frame
    from gr_argos.server.outgoing import PublishedFrame
    from gr_argos.server.views import ViewSlice

    frames = load_frames(BINS)
    rng = random.Random(seed)
    worst: dict[str, float] = {}
    for trial in range(trials):
        spectrum = frames[trial % len(frames)].copy()
        carrier = rng.randrange(BINS)
        spectrum[carrier] = float(np.max(spectrum)) + rng.uniform(1.0, 20.0)
        frame = PublishedFrame(0, encode_frame(spectrum, center_freq_hz=CENTER_HZ,
                                               span_hz=SPAN_HZ, timestamp_ns=0, sequence=0))
        for level in range(1, 11):
            width = min(BINS >> level, 1024)
            offset = max(0, min((carrier >> level) - width // 2, (BINS >> level) - width))
            for name in ("float32", "uint8"):
                data = frame.in_format(FrameFormat.parse(name), Counter(),
                                       ViewSlice(level, offset, width))
                error = abs(float(decode_frame(data).power_db.max()) - spectrum[carrier])
                key = f"{name} level {level}"
                worst[key] = max(worst.get(key, 0.0), error)
    return {"trials": trials, "max_error_db": worst,
            "worst_float32_db": max(v for k, v in worst.items() if k.startswith("float32")),
            "worst_uint8_db": max(v for k, v in worst.items() if k.startswith("uint8"))}


def expected_frames(published: int, query: str) -> int:
    """Frames a client of ``query`` asks for out of ``published`` (sequences 0, 1, ...)."""
    divisor = 2 if query.endswith("fps_divisor=2") else 1
    return -(-published // divisor)


def scale_run(server: Proc, port: int, clients: int, views: int, steady_s: float,
              procs: int) -> dict[str, Any]:
    """``clients`` load clients over ``views`` distinct views for ``steady_s`` at 30 fps."""
    queries = view_queries(views)
    assigned = [queries[i % views] for i in range(clients)]
    loaders = [Proc("-m", "benchmarks.load_client") for _ in range(procs)]
    try:
        asked = []
        for index, loader in enumerate(loaders):
            mine = assigned[index::procs]
            for query in sorted(set(mine)):
                loader.send(cmd="connect", port=port, path=query, n=mine.count(query))
            asked.append(len(set(mine)))
        connected = sum(loader.read()["connected"] for loader, count in zip(loaders, asked)
                        for _ in range(count))
        time.sleep(1.0)
        steady = phase(server, loaders, FPS, steady_s, True, settle_s=1.0)
    finally:
        for loader in loaders:
            loader.close()
    published, deliveries = steady["published"], steady["deliveries"]
    s0, s1 = steady["usage"]
    wall, cpu_s = steady["wall_s"], steady["server_cpu_s"]
    expected = sum(expected_frames(published, query) for query in assigned)
    encodes = {name: count - s0["server_stats"]["encodes"].get(name, 0)
               for name, count in s1["server_stats"]["encodes"].items()}
    return {
        "clients": clients, "connected": connected, "views": views,
        "views_in_server": s1["server_stats"]["views"], "published": published,
        "deliveries": deliveries, "expected": expected,
        "delivered_fraction": deliveries / expected if expected else 0.0,
        "frames_dropped": s1["server_stats"]["frames_dropped"]
        - s0["server_stats"]["frames_dropped"],
        "server_cpu_core": cpu_s / wall,
        "cpu_s_per_1000": cpu_s / deliveries * 1000 if deliveries else None,
        "cpu_ms_per_frame": cpu_s / published * 1000 if published else None,
        "variants_per_frame": {name: count / published for name, count in encodes.items()
                               if count},
        "pyramid_levels_per_frame": (s1["server_stats"]["pyramid_levels"]
                                     - s0["server_stats"]["pyramid_levels"]) / published,
        "p50_ms": steady["p50_ms"], "p99_ms": steady["p99_ms"],
        "client_cpu_core": steady["client_cpu_s"] / wall,
    }


async def switch_latency(port: int, switchers: int, switches: int) -> dict[str, Any]:
    """``switchers`` clients each switch views ``switches`` times; the time from set_view
    to the first frame of the new view, and ping round trips, in ms."""
    from websockets.asyncio.client import connect

    queries = view_queries(10)
    first_frame_ms: list[float] = []
    round_trip_ms: list[float] = []
    timeouts = 0

    async def one(seed: int) -> None:
        nonlocal timeouts
        rng = random.Random(seed)
        async with connect(f"ws://127.0.0.1:{port}/?encoding=uint8&compress=1",
                           compression=None, max_size=None, open_timeout=60) as ws:
            await ws.recv()  # hello
            for _ in range(switches):
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                try:
                    await switch(ws, rng, seed)
                except TimeoutError:
                    timeouts += 1
                    return

    async def switch(ws: Any, rng: random.Random, seed: int) -> None:
        fields = dict(part.split("=") for part in
                      rng.choice(queries).split("?")[1].split("&"))
        sent = time.monotonic()
        await ws.send(json.dumps({"type": "set_view", "fps_divisor": 1, **{
            key: float(fields[key]) for key in ("center_freq_hz", "span_hz")},
            "bins": VIEW_BINS}))
        reply: dict[str, Any] | None = None
        while True:
            message = await asyncio.wait_for(ws.recv(), 30)
            if isinstance(message, str):
                decoded = json.loads(message)
                if decoded["type"] == "view":
                    reply = decoded
                continue
            bins, _, center = _BAND.unpack_from(message, 28)
            if reply is not None and (bins, center) == (reply["bins"],
                                                        reply["center_freq_hz"]):
                first_frame_ms.append((time.monotonic() - sent) * 1000)
                break
        sent = time.monotonic()
        await ws.send(json.dumps({"type": "ping", "id": seed}))
        while not (isinstance(message := await asyncio.wait_for(ws.recv(), 30), str)
                   and json.loads(message)["type"] == "pong"):
            pass
        round_trip_ms.append((time.monotonic() - sent) * 1000)

    await asyncio.gather(*(one(seed) for seed in range(switchers)))

    def percentiles(values: list[float]) -> dict[str, float]:
        return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
                "max": max(values), "count": len(values)}

    return {"switchers": switchers, "timeouts": timeouts,
            "set_view_to_first_frame_ms": percentiles(first_frame_ms),
            "ping_round_trip_ms": percentiles(round_trip_ms), "frame_period_ms": 1000 / FPS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--steady-s", type=float, default=20.0)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--switchers", type=int, default=100)
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--out", type=Path, default=cache_dir() / "results-views.json")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"machine": machine(), "bins": BINS, "fps": FPS}
    results["phone_bytes"] = phone_bytes()
    print("bytes per frame:", json.dumps(results["phone_bytes"]), flush=True)
    results["carrier"] = carrier_error()
    print("carrier:", results["carrier"]["worst_float32_db"], "dB float32,",
          results["carrier"]["worst_uint8_db"], "dB uint8", flush=True)

    server = Proc("-m", "benchmarks.bench_server", "argos", "--bins", str(BINS),
                  "--max-views-per-stream", str(max(args.views, 32)))
    try:
        port = server.read()["port"]
        results["scale"] = []
        for views in sorted({1, min(10, args.views), args.views}):
            run = scale_run(server, port, args.clients, views, args.steady_s, args.client_procs)
            results["scale"].append(run)
            print(json.dumps({k: run[k] for k in ("views", "connected", "delivered_fraction",
                                                  "cpu_s_per_1000", "cpu_ms_per_frame",
                                                  "server_cpu_core", "p99_ms")}), flush=True)
            time.sleep(2.0)  # the load clients' connections close
        runs = results["scale"]
        slope, intercept = np.polyfit([r["views"] for r in runs],
                                      [r["cpu_ms_per_frame"] for r in runs], 1)
        results["cost_model"] = {"cpu_ms_per_frame_at_0_views": float(intercept),
                                 "cpu_ms_per_frame_per_view": float(slope),
                                 "cpu_per_delivery_ratio_most_vs_1_view":
                                     runs[-1]["cpu_s_per_1000"] / runs[0]["cpu_s_per_1000"]}
        print("cost model:", json.dumps(results["cost_model"]), flush=True)
        # The server publishes for longer than the switches take (each at most 0.6 s apart),
        # then answers; the switchers run meanwhile.
        server.send(cmd="run", fps=FPS, duration_s=args.switches * 0.6 + 20.0)
        try:
            results["switch"] = asyncio.run(switch_latency(port, args.switchers, args.switches))
        finally:
            server.read()
        print("switch:", json.dumps(results["switch"]), flush=True)
    finally:
        server.close()
    args.out.write_text(json.dumps(results, indent=1))
    print("results in", args.out)


if __name__ == "__main__":
    main()
