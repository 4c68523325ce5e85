# SPDX-License-Identifier: GPL-3.0-or-later
"""Prometheus metrics of one server, read from its counters when scraped.

The hot path keeps plain integer counters (the hub's, and the server's
:class:`ServerCounters`), and :class:`ServerCollector` turns them into metric families only
when ``/metrics`` is fetched.
Each server has its own :class:`~prometheus_client.CollectorRegistry` (several servers may
live in one process), never the global one. See docs/operations.md for every metric.
"""

from __future__ import annotations

import asyncio
import threading
import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "LatencyHistogram", "SHEDDING_REASONS", "SHEDDING_WINDOW_S",
           "ServerCollector", "ServerCounters", "metrics_registry", "render"]

#: Upper bounds (seconds) of the send latency buckets: 1 ms .. 10 s.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                     10.0)

#: Why a connection was refused before the upgrade (label ``reason``).
REFUSAL_REASONS = ("host", "origin", "bad_request", "max_clients", "max_clients_per_ip",
                   "max_unauthenticated", "auth", "auth_backoff", "handshake_timeout",
                   "max_pending_handshakes", "max_pending_handshakes_per_ip", "fd_limit")
#: Refusals that mean the server is shedding load: connections dropped or refused before
#: their handshake, because too many are in one or the process is out of file descriptors.
SHEDDING_REASONS = frozenset({"fd_limit", "max_pending_handshakes",
                              "max_pending_handshakes_per_ip"})
#: A server is said to be shedding for this long after its last such refusal.
SHEDDING_WINDOW_S = 10.0
#: How an authentication failed (label ``method``).
AUTH_METHODS = ("header", "query", "message", "timeout", "metrics")


class LatencyHistogram:
    """Bucket counts of a latency, observed on the event loop only (no lock needed)."""

    __slots__ = ("bounds", "counts", "total_s", "observed")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total_s = 0.0
        self.observed = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total_s += seconds
        self.observed += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs as Prometheus histograms expose them."""
        buckets, running = [], 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts):
            running += count
            buckets.append((bound, running))
        return buckets


@dataclass
class ServerCounters:
    """What a server counts besides the hub (touched on its event loop only).

    Attributes:
        refused: connections refused before the WebSocket upgrade, by reason.
        auth_failures: failed authentications, by method.
        closed_by_policy: connections the server closed for a policy, by reason
            (``rate_limit``, ``too_slow``, ``stalled``).
        send_latency: publish -> transport write latency of spectrum frames.
        clock: monotonic seconds, for :attr:`shedding` (a test may pass its own).
    """

    refused: Counter[str] = field(default_factory=Counter)
    auth_failures: Counter[str] = field(default_factory=Counter)
    closed_by_policy: Counter[str] = field(default_factory=Counter)
    send_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    clock: Callable[[], float] = time.monotonic
    detections: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    control_events: Counter[tuple[str, str]] = field(default_factory=Counter)
    _last_shed_s: float | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def detected(self, body: dict[str, Any]) -> None:
        """Count a signal that started (a ``detection`` message with ``event`` ``start``),
        by stream, 10 MHz band (labelled by its lower edge in MHz) and whether it is in a
        watched range. Any thread."""
        freq = body.get("center_freq_hz")
        if body.get("event") != "start" or not isinstance(freq, (int, float)):
            return
        key = (str(body.get("stream", "")), str(int(freq // 10e6) * 10),
               "true" if body.get("watched") is True else "false")
        with self._lock:
            self.detections[key] += 1

    def refuse(self, reason: str) -> None:
        """Count a connection refused for ``reason`` (and note when it was shedding)."""
        self.refused[reason] += 1
        if reason in SHEDDING_REASONS:
            self._last_shed_s = self.clock()

    @property
    def shedding(self) -> bool:
        """Whether a connection was refused for a reason of :data:`SHEDDING_REASONS` in the
        last :data:`SHEDDING_WINDOW_S`."""
        last = self._last_shed_s
        return last is not None and self.clock() - last < SHEDDING_WINDOW_S

    def detection_counts(self) -> list[tuple[tuple[str, str, str], int]]:
        """The counts of :meth:`detected`, by (stream, band), sorted: a copy."""
        with self._lock:
            return sorted(self.detections.items())

    def control_event(self, action: str, outcome: str) -> None:
        """Count a control event (``acquire``, ``take``, ``release``, ``tune``) by outcome
        (``accepted``, ``applied``, ``refused``, ``expired``, ``disconnected``)."""
        self.control_events[action, outcome] += 1

    def server_status(self) -> dict[str, Any]:
        """The ``server`` object of ``status`` messages: refusals so far by reason, and
        whether the server is shedding. Safe to call from any thread (a copy of the counts
        is taken at once, under the GIL)."""
        return {"refused": dict(self.refused), "shedding": self.shedding}


class ServerCollector(Collector):
    """Metric families of one server, built from its live counters at scrape time.

    Args:
        hub_stats: returns the hub's ``stats()`` (called on the server's loop).
        counters: the server's own counters.
        loop_tasks: returns the number of asyncio tasks on the server's loop, or None when
            unknown (default: the loop running the scrape, as ``/metrics`` is served there).
        recorder: returns the recorder's ``status()``, or None when the server records
            nothing.
    """

    def __init__(self, hub_stats: Callable[[], dict[str, Any]], counters: ServerCounters,
                 loop_tasks: Callable[[], int | None] | None = None,
                 recorder: Callable[[], dict[str, Any] | None] = lambda: None) -> None:
        self._recorder = recorder
        self._hub_stats = hub_stats
        self._counters = counters
        self._loop_tasks = loop_tasks or running_loop_tasks

    def collect(self) -> Iterator[Any]:
        total = self._hub_stats()["total"]
        yield GaugeMetricFamily("argos_clients_connected", "WebSocket clients connected now",
                                value=total["clients"])
        yield CounterMetricFamily("argos_clients", "WebSocket clients accepted since start",
                                  value=total["clients_total"])
        yield CounterMetricFamily("argos_frames_in", "spectrum frames published by producers",
                                  value=total["frames_in"])
        yield CounterMetricFamily("argos_frames_sent", "spectrum frames written to clients",
                                  value=total["frames_sent"])
        yield CounterMetricFamily("argos_messages_sent", "JSON messages written to clients",
                                  value=total["messages_sent"])
        yield CounterMetricFamily("argos_bytes_sent",
                                  "bytes of frames and messages written to clients",
                                  value=total["bytes_sent"])
        drops = CounterMetricFamily("argos_frames_dropped",
                                    "spectrum frames dropped, by where they were dropped",
                                    labels=["reason"])
        drops.add_metric(["client_queue"], total["frames_dropped"])
        drops.add_metric(["ingress"], total["ingress_dropped"])
        yield drops
        yield CounterMetricFamily("argos_messages_dropped",
                                  "JSON messages dropped for clients closed as too slow",
                                  value=total["messages_dropped"])
        yield GaugeMetricFamily("argos_queue_depth",
                                "spectrum frames waiting in all client queues now",
                                value=total["queue_depth"])
        encodes = CounterMetricFamily("argos_frame_encodes",
                                      "frame variants encoded, by format", labels=["format"])
        for name, count in sorted(total["encodes"].items()):
            encodes.add_metric([name], count)
        yield encodes
        yield CounterMetricFamily("argos_pyramid_levels",
                                  "pyramid levels built from frames for clients' views",
                                  value=total["pyramid_levels"])
        views = GaugeMetricFamily("argos_views", "distinct views (slices) of a stream "
                                  "clients get now", labels=["stream"])
        for stream_id, count in total["views"].items():
            views.add_metric([stream_id], count)
        yield views
        yield CounterMetricFamily("argos_views_reset", "clients' views resolved again for "
                                  "a new bin count of their stream (the same band)",
                                  value=total["views_reset"])
        deflate = total["deflate"]
        deflated = CounterMetricFamily(
            "argos_deflate_bytes", "frame bytes compressed once for compress=1 clients "
            "(stage=in) and the bytes deflate made of them (stage=out)", labels=["stage"])
        deflated.add_metric(["in"], deflate["in_bytes"])
        deflated.add_metric(["out"], deflate["out_bytes"])
        yield deflated
        if deflate["in_bytes"]:
            yield GaugeMetricFamily(
                "argos_compression_ratio", "compress-once bytes out / bytes in since start "
                "(lower is better; 1 when frames do not shrink)",
                value=deflate["out_bytes"] / deflate["in_bytes"])
        ring = total["resume_ring"]
        ring_bytes = GaugeMetricFamily("argos_resume_ring_bytes", "bytes of recent frames "
                                       "(with their variants) kept for resume and backfill, "
                                       "by stream", labels=["stream"])
        ring_frames = GaugeMetricFamily("argos_resume_ring_frames", "recent frames kept for "
                                        "resume and backfill, by stream", labels=["stream"])
        for stream_id, held in ring["streams"].items():
            ring_bytes.add_metric([stream_id], held["bytes"])
            ring_frames.add_metric([stream_id], held["frames"])
        yield ring_bytes
        yield ring_frames
        yield CounterMetricFamily("argos_frames_replayed", "spectrum frames sent again from "
                                  "the resume ring (resumes and backfills)",
                                  value=total["frames_replayed"])
        yield from _recorder_metrics(self._recorder())
        counters = self._counters
        yield _labelled("argos_connections_refused", "connections refused before the "
                        "WebSocket upgrade, by reason", "reason", REFUSAL_REASONS,
                        counters.refused)
        yield GaugeMetricFamily("argos_shedding", "1 while the server sheds connections "
                                f"(one refused for {', '.join(sorted(SHEDDING_REASONS))} in "
                                f"the last {SHEDDING_WINDOW_S:g} s), else 0",
                                value=int(counters.shedding))
        yield _labelled("argos_auth_failures", "failed client authentications, by method",
                        "method", AUTH_METHODS, counters.auth_failures)
        yield _labelled("argos_connections_closed_by_policy", "connections the server closed "
                        "for a policy (code 1008), by reason", "reason",
                        ("rate_limit", "ping_rate", "too_slow", "stalled"),
                        counters.closed_by_policy)
        found = CounterMetricFamily("argos_detections", "signals found (detection starts), by "
                                    "stream, 10 MHz band (its lower edge in MHz) and whether "
                                    "in a watched range (detect_ranges)",
                                    labels=["stream", "band_mhz", "watched"])
        for (stream, band, watched), count in counters.detection_counts():
            found.add_metric([stream, band, watched], count)
        yield found
        control = CounterMetricFamily("argos_control_events", "control of the radio by "
                                      "clients: lease actions and tunes, by outcome",
                                      labels=["action", "outcome"])
        for (action, outcome), count in sorted(counters.control_events.items()):
            control.add_metric([action, outcome], count)
        yield control
        latency = counters.send_latency
        yield HistogramMetricFamily(
            "argos_send_latency_seconds",
            "time from a frame's publish to its write to a client's transport",
            buckets=latency.cumulative(), sum_value=latency.total_s)
        tasks = self._loop_tasks()
        if tasks is not None:
            yield GaugeMetricFamily("argos_event_loop_tasks",
                                    "asyncio tasks on the server's event loop now",
                                    value=tasks)


def _recorder_metrics(status: dict[str, Any] | None) -> Iterator[Any]:
    """The recorder's metrics (none when the server records nothing)."""
    if status is None:
        return
    yield GaugeMetricFamily("argos_recording", "1 while the recorder writes, 0 after a write "
                            "error (see the status message's server.recorder.error) or while "
                            "a client has stopped it (argos_recording_started 0)",
                            value=int(status["recording"]))
    yield GaugeMetricFamily("argos_recording_started", "1 while the recorder is switched on "
                            "(0: a client stopped it with a record message)",
                            value=int(status["started"]))
    yield CounterMetricFamily("argos_recorded_bytes", "bytes written to recordings",
                              value=status["bytes"])
    recorded = CounterMetricFamily("argos_recorded", "frames and messages recorded",
                                   labels=["kind"])
    recorded.add_metric(["frame"], status["frames"])
    recorded.add_metric(["message"], status["messages"])
    yield recorded
    dropped = CounterMetricFamily("argos_recording_dropped", "frames and messages the "
                                  "recorder dropped (disk too slow, write errors)",
                                  labels=["kind"])
    dropped.add_metric(["frame"], status["dropped_frames"])
    dropped.add_metric(["message"], status["dropped_messages"])
    yield dropped
    yield GaugeMetricFamily("argos_recorder_queued_bytes", "bytes of frames and messages "
                            "waiting for the disk (at most record_buffer_bytes)",
                            value=status["queued_bytes"])


def running_loop_tasks() -> int | None:
    """Tasks not yet done on the running event loop (None outside of one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return len(asyncio.all_tasks())


def _labelled(name: str, documentation: str, label: str, known: tuple[str, ...],
              counts: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value in sorted(set(known) | set(counts)):
        family.add_metric([value], counts[value])
    return family


def metrics_registry(collector: ServerCollector) -> CollectorRegistry:
    """A registry of its own holding ``collector`` (never the process-wide one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(registry)
