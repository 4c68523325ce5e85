# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for ``GET /metrics``: Prometheus text from a real server's own counters.

A real SpectrumServer on port 0, real clients; the text is parsed with prometheus_client's
own parser. Counts are compared with what the test did, never with timings.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import REPO_ROOT
from gr_argos.server.metrics import (
    SHEDDING_WINDOW_S,
    LatencyHistogram,
    ServerCollector,
    ServerCounters,
    metrics_registry,
    render,
)
from gr_argos.protocol import HEADER_SIZE
from server_helpers import (
    WAIT_S,
    StartServer,
    close_code_seen,
    next_frames,
    next_json,
    samples,
    scrape,
    spectrum_frame,
    value,
)

TOKEN = "metrics-test-token-5d1c"
# The hub's totals with nothing happened yet (what ServerCollector reads).
_EMPTY_TOTAL: dict[str, Any] = {
    "clients": 0, "clients_total": 0, "frames_in": 0, "frames_sent": 0, "messages_sent": 0,
    "bytes_sent": 0, "frames_dropped": 0, "ingress_dropped": 0, "messages_dropped": 0,
    "queue_depth": 0, "encodes": {}, "deflate": {"in_bytes": 0, "out_bytes": 0},
    "pyramid_levels": 0, "views": {}, "views_reset": 0, "frames_replayed": 0,
    "resume_ring": {"streams": {}}}


def test_latency_histogram_buckets_are_cumulative() -> None:
    """Observations land in the first bucket whose bound holds them; +Inf counts all."""
    histogram = LatencyHistogram((0.01, 0.1))
    for seconds in (0.005, 0.01, 0.05, 3.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.01", 2), ("0.1", 3), ("+Inf", 4)]
    assert histogram.total_s == pytest.approx(3.065)


def test_the_server_sheds_for_a_while_after_a_flood_refusal() -> None:
    """Refusals for a flood (fd_limit, the pending-handshake caps) make the server shedding
    for SHEDDING_WINDOW_S, in the status object and the argos_shedding gauge; other
    refusals are counted without it."""
    now = [100.0]
    counters = ServerCounters(clock=lambda: now[0])
    collector = ServerCollector(lambda: {"total": _EMPTY_TOTAL}, counters, lambda: None)
    counters.refuse("origin")
    assert counters.server_status() == {"refused": {"origin": 1}, "shedding": False}
    counters.refuse("fd_limit")
    now[0] += SHEDDING_WINDOW_S - 0.5
    assert counters.server_status() == {"refused": {"origin": 1, "fd_limit": 1},
                                        "shedding": True}
    assert value(samples(render(metrics_registry(collector)).decode()), "argos_shedding") == 1
    now[0] += 1.0
    assert counters.server_status()["shedding"] is False
    assert value(samples(render(metrics_registry(collector)).decode()), "argos_shedding") == 0


async def test_metrics_count_clients_frames_refusals_and_auth_failures(
        start_server: StartServer) -> None:
    """After two clients got five frames, one origin refusal and one wrong token, the
    scrape says exactly that, and the token appears nowhere in it."""
    server = start_server(token=TOKEN, allowed_origins="http://good.example")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(InvalidStatus):
        async with connect(server.url, open_timeout=WAIT_S, origin="http://evil.example"):
            pass
    with pytest.raises(InvalidStatus):
        async with connect(server.url, open_timeout=WAIT_S,
                           additional_headers={"Authorization": "Bearer nope"}):
            pass
    async with connect(server.url, open_timeout=WAIT_S, additional_headers=headers) as one, \
            connect(server.url, open_timeout=WAIT_S, additional_headers=headers) as two:
        await next_json(one)
        await next_json(two)
        for sequence in range(5):
            server.publish_frame(0, spectrum_frame(sequence))
        received = [await next_frames(ws, 5) for ws in (one, two)]
        text = await asyncio.to_thread(scrape, server.port, TOKEN)

    found = samples(text)
    assert value(found, "argos_clients_connected") == 2
    assert value(found, "argos_clients_total") == 2
    assert value(found, "argos_frames_in_total") == 5
    assert value(found, "argos_frames_sent_total") == 10
    assert value(found, "argos_bytes_sent_total") >= sum(len(f) for r in received for f in r)
    assert value(found, "argos_frames_dropped_total", reason="client_queue") == 0
    assert value(found, "argos_frames_dropped_total", reason="ingress") == 0
    assert value(found, "argos_queue_depth") == 0
    assert value(found, "argos_connections_refused_total", reason="origin") == 1
    assert value(found, "argos_connections_refused_total", reason="auth") == 1
    assert value(found, "argos_connections_refused_total", reason="max_clients") == 0
    assert value(found, "argos_auth_failures_total", method="header") == 1
    assert value(found, "argos_send_latency_seconds_count") == 10
    assert value(found, "argos_send_latency_seconds_bucket", le="+Inf") == 10
    assert TOKEN not in text and "nope" not in text


async def test_metrics_need_the_token_when_one_is_set(start_server: StartServer) -> None:
    """Without the Bearer token /metrics answers 401 (and with it, 200)."""
    server = start_server(token=TOKEN)
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(scrape, server.port)
    assert refused.value.code == 401
    assert TOKEN not in refused.value.read().decode()
    assert "argos_clients_connected" in await asyncio.to_thread(scrape, server.port, TOKEN)


async def test_each_server_has_its_own_registry(start_server: StartServer) -> None:
    """Two servers in one process report their own counts, not a shared total."""
    busy, idle = start_server(), start_server()
    for sequence in range(3):
        busy.publish_frame(0, spectrum_frame(sequence))
    async with connect(busy.url, open_timeout=WAIT_S) as ws:
        await next_json(ws)
        busy.publish_frame(0, spectrum_frame(3))
        await next_frames(ws, 1)
        busy_found = samples(await asyncio.to_thread(scrape, busy.port))
    idle_found = samples(await asyncio.to_thread(scrape, idle.port))
    assert value(busy_found, "argos_frames_in_total") == 4
    assert value(idle_found, "argos_frames_in_total") == 0
    assert value(idle_found, "argos_clients_total") == 0


async def test_drops_and_policy_closes_match_the_hub_counters(
        start_server: StartServer, wait_until: Any) -> None:
    """Frame drops by reason equal the hub's own totals, and a rate-limited client is
    counted among the connections closed by policy."""
    server = start_server(queue_depth=1, max_messages_per_s=1.0, max_messages_burst=1)
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        await next_json(ws)
        for sequence in range(200):
            server.publish_frame(0, spectrum_frame(sequence))
        for index in range(5):
            await ws.send(json.dumps({"type": "ping", "id": index}))
        assert await close_code_seen(ws) == 1008
    await wait_until(lambda: server.hub.client_count == 0, what="the client to leave")
    total = server.stats()["total"]
    found = samples(await asyncio.to_thread(scrape, server.port))
    assert value(found, "argos_frames_dropped_total", reason="client_queue") == \
        total["frames_dropped"]
    assert value(found, "argos_frames_dropped_total", reason="ingress") == \
        total["ingress_dropped"]
    assert value(found, "argos_frames_in_total") == 200
    assert value(found, "argos_connections_closed_by_policy_total", reason="rate_limit") == 1


async def test_event_loop_tasks_gauge_follows_the_connections(
        start_server: StartServer, wait_until: Any) -> None:
    """argos_event_loop_tasks counts the tasks on the server's loop: more while three
    clients are connected, back to the idle count once they have left."""
    server = start_server()
    idle = value(samples(await asyncio.to_thread(scrape, server.port)),
                 "argos_event_loop_tasks")
    assert idle >= 1  # at least the server's own
    async with connect(server.url, open_timeout=WAIT_S) as one, \
            connect(server.url, open_timeout=WAIT_S) as two, \
            connect(server.url, open_timeout=WAIT_S) as three:
        for ws in (one, two, three):
            await next_json(ws)
        busy = value(samples(await asyncio.to_thread(scrape, server.port)),
                     "argos_event_loop_tasks")
        assert busy >= idle + 3  # one handler task per connection, at least
    await wait_until(lambda: server.hub.client_count == 0, what="the clients to leave")

    async def tasks_now() -> float:
        return value(samples(await asyncio.to_thread(scrape, server.port)),
                     "argos_event_loop_tasks")

    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while (now := await tasks_now()) > idle and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert now <= idle


DASHBOARD = REPO_ROOT / "docs" / "grafana-dashboard.json"


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every target of every panel (rows' nested panels included); each
    target queries the data source chosen in the ``DS_PROMETHEUS`` variable."""
    exprs: list[str] = []
    pending = list(dashboard["panels"])
    while pending:
        panel = pending.pop()
        pending.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            exprs.append(target["expr"])
    return exprs


async def test_grafana_dashboard_uses_only_metrics_the_server_exposes(
        start_server: StartServer) -> None:
    """Every metric name in the PromQL of docs/grafana-dashboard.json is in the /metrics
    output of a real server that has served a frame (re-encoded, so the per-format encode
    series exists too), so the dashboard cannot drift from the metrics."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    exprs = dashboard_exprs(dashboard)
    used = {name for expr in exprs for name in re.findall(r"\bargos_[a-z0-9_]+", expr)}
    assert len(used) >= 10
    server = start_server()
    async with connect(server.url + "?encoding=uint8&compress=1", open_timeout=WAIT_S) as ws:
        await next_json(ws)
        server.publish_frame(0, spectrum_frame(0))
        await next_frames(ws, 1)
        exposed = {name for name, _ in samples(await asyncio.to_thread(scrape, server.port))}
    assert used <= exposed, f"not in /metrics: {sorted(used - exposed)}"


async def test_alert_rules_use_only_metrics_a_server_or_gateway_exposes(
        start_server: StartServer) -> None:
    """Every metric name in alerts/argos.rules.yml, with every label value its rules pick,
    is in the /metrics of a real server that served a frame and found a signal in a watched
    range, or of a real gateway (argos_publisher_silent), so the rules cannot drift."""
    from gr_argos.apps.gateway import Gateway
    from gr_argos.server import ServerConfig

    rules = (REPO_ROOT / "alerts" / "argos.rules.yml").read_text()
    exprs = "\n".join(line for line in rules.splitlines() if "argos_" in line
                      and not line.strip().startswith(("#", "summary:", "description:")))
    used = set(re.findall(r"\b(argos_[a-z0-9_]+)(\{[^}]*\})?", exprs))
    assert {name for name, _ in used} >= {"argos_frames_in_total", "argos_publisher_silent",
                                         "argos_detections_total"}
    server = start_server()
    server.publish_message("detection", {"stream": 0, "event": "start", "id": 1,
                                         "center_freq_hz": 433.92e6, "watched": True})
    async with connect(server.url, open_timeout=WAIT_S) as ws:
        await next_json(ws)
        server.publish_frame(0, spectrum_frame(0))
        await next_frames(ws, 1)
        exposed = samples(await asyncio.to_thread(scrape, server.port))
    gateway = Gateway(["tcp://127.0.0.1:9"], ServerConfig(port=0))
    gateway.server.start()
    try:
        exposed.update(samples(await asyncio.to_thread(scrape, gateway.server.port)))
    finally:
        await asyncio.to_thread(gateway.stop)
    for name, selector in used:
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', selector))
        assert any(found == name and wanted.items() <= dict(labels).items()
                   for found, labels in exposed), f"not in /metrics: {name}{selector}"


async def test_compression_ratio_reports_what_compress_once_saved(
        start_server: StartServer) -> None:
    """A compress=1 client's frames are deflated once; /metrics adds up the bytes in and
    out of deflate and their ratio, which the frames received confirm."""
    server = start_server()
    async with connect(server.url + "?encoding=uint8&compress=1", open_timeout=WAIT_S) as ws:
        await next_json(ws)  # hello
        await next_json(ws)  # encoding
        for sequence in range(3):
            server.publish_frame(0, spectrum_frame(sequence))
        received = await next_frames(ws, 3)
        found = samples(await asyncio.to_thread(scrape, server.port))

    in_bytes = value(found, "argos_deflate_bytes_total", stage="in")
    out_bytes = value(found, "argos_deflate_bytes_total", stage="out")
    assert in_bytes == 3 * (HEADER_SIZE + 2048)  # three uint8 frames of 2048 bins
    assert out_bytes == sum(len(frame) for frame in received)
    assert value(found, "argos_compression_ratio") == pytest.approx(out_bytes / in_bytes)
    assert value(found, "argos_compression_ratio") < 0.5  # a smooth ramp deflates well


async def test_views_and_pyramid_levels_are_exposed(start_server: StartServer) -> None:
    """Two clients on one view and one on another: /metrics says two views of stream 0 and
    counts the pyramid levels built for them once per frame, not per client."""
    server = start_server()
    query = "?center_freq_hz=100.5e6&span_hz=200e3&bins=50"
    async with connect(server.url + query, open_timeout=WAIT_S) as first, \
            connect(server.url + query, open_timeout=WAIT_S) as second, \
            connect(server.url + "?bins=256", open_timeout=WAIT_S) as third:
        replies = [[await next_json(ws) for _ in range(2)] for ws in (first, second, third)]
        assert [reply[1]["level"] for reply in replies] == [2, 2, 3]  # hello, then the view
        server.publish_frame(0, spectrum_frame(0))
        for ws in (first, second, third):
            await next_frames(ws, 1)
        found = samples(await asyncio.to_thread(scrape, server.port))
    assert value(found, "argos_views", stream="0") == 2
    assert value(found, "argos_pyramid_levels_total") == 3  # levels 1, 2 and 3 of one frame
    assert value(found, "argos_views_reset_total") == 0


async def test_detections_are_counted_by_stream_band_and_watched(
        start_server: StartServer) -> None:
    """Each detection start a sink publishes counts in argos_detections_total, by stream,
    10 MHz band and whether it is in a watched range; updates and ends do not count again."""
    server = start_server()
    for freq, event, watched in ((433.92e6, "start", True), (433.92e6, "update", True),
                                 (433.92e6, "end", True), (434.5e6, "start", False),
                                 (868.3e6, "start", False), (433.1e6, "start", True)):
        server.publish_message("detection", {"stream": 0, "event": event, "id": 1,
                                             "center_freq_hz": freq, "watched": watched})
    found = samples(await asyncio.to_thread(scrape, server.port))
    assert value(found, "argos_detections_total", stream="0", band_mhz="430",
                 watched="true") == 2
    assert value(found, "argos_detections_total", stream="0", band_mhz="430",
                 watched="false") == 1
    assert value(found, "argos_detections_total", stream="0", band_mhz="860",
                 watched="false") == 1
