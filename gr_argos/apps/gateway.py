# SPDX-License-Identifier: GPL-3.0-or-later
"""``argos-gateway``: serve WebSocket clients with the spectrum a ZeroMQ publisher sends.

    argos-gateway --connect tcp://127.0.0.1:5555
    argos-gateway --connect tcp://radio1:5555 --connect tcp://radio2:5556 --host 0.0.0.0
    argos-gateway --connect ipc:///tmp/argos.sock --port 8765 --workers 2
    argos-gateway --connect tcp://radio1:5555 --zmq-secret-key /etc/argos/keys/gw1.key_secret \
        --zmq-server-key /etc/argos/keys/publisher.key

The publisher is a zmq_sink (``argos-spectrum --transport zmq``,
flowgraphs/hackrf_spectrum_zmq.grc). The gateway IS a gr-argos server, the same as the sink's
own: same protocol, hub, viewer and ``/healthz``; streams in ``hello`` are the publisher's.
When nothing arrives from a ``--connect`` endpoint for ``--publisher-timeout-s`` seconds, clients
get a ``status`` message with ``"publisher": "silent"`` and that ``endpoint``, and
``"publisher": "ok"`` once it is back; they stay connected. With ``--workers N`` the first
process starts N-1 more on the same port and restarts any that dies. Between machines the
link runs over CURVE (``--zmq-secret-key``, ``--zmq-server-key``); plain ZeroMQ to another
machine needs ``--zmq-trusted-network``. See docs/zmq.md.

Exit codes: 0 stopped by SIGINT/SIGTERM; 1 the server could not start; 2 bad flags.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gr_argos.apps.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    LogSettings,
    connect_line,
    setup_logging,
    stop_event_on_signals,
)
from gr_argos.protocol import ENCODING_CODES, ProtocolError, decode_message
from gr_argos.server import ServerConfig, ServerError, SpectrumServer
from gr_argos.server.config import SERVER
from gr_argos.settings import (
    ConfigError,
    Setting,
    add_flags,
    at_least,
    declared,
    positive,
    resolve,
    setting,
)
from gr_argos.stream import StreamSettings
from gr_argos.zmq_curve import CLIENT_FAILURE_REASONS, REFUSAL_REASONS
from gr_argos.zmq_transport import (
    FrameSubscriber,
    SubscriberSettings,
    stream_info_from_descriptor,
)

__all__ = ["Gateway", "SETTINGS", "WorkerSupervisor", "argument_parser", "main"]

log = logging.getLogger("argos-gateway")

_POLL_S = 0.2


@dataclass(frozen=True)
class GatewaySettings:
    """The settings only argos-gateway has (its server's are :class:`ServerConfig`'s)."""

    publisher_timeout_s: float = setting(3.0, "seconds without a publisher heartbeat before "
                                         "clients are told it is silent", check=positive,
                                         aliases=("publisher_timeout",), group="publisher")
    workers: int = setting(1, "gateway processes sharing the port with SO_REUSEPORT (e.g. one "
                           "per core); above 1 implies --reuse-port", check=at_least(1),
                           group=SERVER)


#: The stream settings a gateway may set for its clients; when given, they replace the
#: publisher's for every stream it relays.
STREAM_OVERRIDES = ("encoding", "step_db")

#: Every setting of argos-gateway, in ``--help`` order.
SETTINGS: tuple[Setting, ...] = (
    *declared(ServerConfig, exclude=("write_limit",)),
    *declared(StreamSettings, only=STREAM_OVERRIDES),
    *declared(GatewaySettings),
    *declared(SubscriberSettings),
    *declared(LogSettings),
)
_SERVER_SETTINGS = tuple(s.name for s in declared(ServerConfig, exclude=("write_limit",)))
_WORKER_STOP_TIMEOUT_S = 15.0
# A worker that dies is restarted after 0.5 s, 1 s, 2 s, ... up to 30 s while it keeps dying
# within 10 s of its start, so one that cannot start does not spin.
_RESTART_BACKOFF_BASE_S = 0.5
_RESTART_BACKOFF_CAP_S = 30.0
_WORKER_STABLE_AFTER_S = 10.0


@dataclasses.dataclass
class _Publisher:
    """What the gateway knows about one ``--connect`` endpoint."""

    endpoint: str
    last_heard: float
    session: str | None = None
    silent: bool = False
    refused: dict[str, int] = dataclasses.field(default_factory=dict)  # by the publisher


class _PublisherMetrics(Collector):
    """``argos_publisher_silent{endpoint}`` on the gateway's ``/metrics``, read at scrape
    time from what the relay thread knows (a bool per publisher: no lock needed)."""

    def __init__(self, publishers: dict[str, _Publisher]) -> None:
        self._publishers = publishers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "argos_publisher_silent", "1 while nothing came from the ZeroMQ publisher at "
            "endpoint for publisher_timeout_s (clients were told it is silent), else 0",
            labels=["endpoint"])
        for publisher in self._publishers.values():
            family.add_metric([publisher.endpoint], int(publisher.silent))
        yield family


class Gateway:
    """A :class:`SpectrumServer` fed by a :class:`FrameSubscriber` on a relay thread.

    Args:
        endpoints: ZeroMQ publisher endpoints to connect to.
        config: the WebSocket server's settings.
        publisher_timeout_s: seconds without a heartbeat before clients are told the
            publisher is silent.
        stream_overrides: stream settings (:data:`STREAM_OVERRIDES`) replacing the
            publisher's.
        link: the CURVE settings of :class:`SubscriberSettings` (none: plain ZeroMQ).

    Raises:
        ValueError: a malformed endpoint.
        ConfigError: a CURVE setting or key file cannot be used, or plain ZeroMQ to another
            machine without ``zmq_trusted_network``.
    """

    def __init__(self, endpoints: Sequence[str], config: ServerConfig,
                 publisher_timeout_s: float = 3.0,
                 stream_overrides: dict[str, Any] | None = None,
                 link: dict[str, Any] | None = None) -> None:
        self.subscriber = FrameSubscriber(endpoints, **(link or {}))
        self.server = SpectrumServer(config)
        self.server.add_metrics(_LinkCollector(self))
        self._overrides = _descriptor_overrides(stream_overrides or {})
        self.publisher_timeout_s = publisher_timeout_s
        self.first_heartbeat = threading.Event()
        self._owners: dict[int, str] = {}  # stream id -> session of the publisher sending it
        self._publishers = {endpoint: _Publisher(endpoint, time.monotonic())
                            for endpoint in endpoints}
        self.server.add_metrics(_PublisherMetrics(self._publishers))
        self._stop = threading.Event()
        self._relay = threading.Thread(target=self._run, name="argos-gateway-relay",
                                       daemon=True)

    def start_relay(self) -> None:
        """Start receiving from the publishers (frames reach the server once it runs)."""
        for publisher in self._publishers.values():
            publisher.last_heard = time.monotonic()
        self._relay.start()

    def stop(self) -> None:
        self._stop.set()
        if self._relay.is_alive():
            self._relay.join()
        self.subscriber.close()
        self.server.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            received = self.subscriber.receive_from(_POLL_S)
            if received is not None:
                self._dispatch(*received)
            self._check_silence()

    def _dispatch(self, endpoint: str, event: tuple[Any, ...]) -> None:
        kind = event[0]
        # Anything from a publisher shows it is back: a restarted one sends frames before
        # its next heartbeat, and clients should hear it is back before those frames.
        self._alive(self._publishers[endpoint],
                    event[1]["session"] if kind in ("streams", "heartbeat") else None)
        if kind == "frame":
            self.server.publish_frame(event[1], event[2])
        elif kind == "message":
            try:
                message = decode_message(event[1])
            except ProtocolError as exc:
                log.warning("dropped a malformed message from the publisher: %s", exc)
                return
            self.server.publish_message(message.pop("type"), message)
        elif kind == "streams":
            self._set_streams(event[1])
        elif kind == "heartbeat":
            self._publishers[endpoint].refused = dict(event[1].get("refused") or {})
            self._heartbeat(event[1])

    def _alive(self, publisher: _Publisher, session: str | None) -> None:
        publisher.last_heard = time.monotonic()
        if session is not None and session != publisher.session:
            log.info("publisher %s: session %s", publisher.endpoint, session)
            publisher.session = session
            self._derive_session()
        if publisher.silent:
            publisher.silent = False
            log.info("publisher %s is back (session %s)", publisher.endpoint, publisher.session)
            self.server.publish_message("status", {
                "publisher": "ok", "endpoint": publisher.endpoint, "session": publisher.session,
            })

    def _derive_session(self) -> None:
        """Serve under a session made from the publishers' sessions: every gateway relaying
        the same publisher sessions (the workers of ``--workers``, gateways on other hosts
        behind one balancer) has the same one and relays the same sequence numbers, so a
        client that reconnects to any of them resumes (docs/recording.md); a publisher that
        restarts makes a new one, as a restarted server does."""
        sessions = sorted(p.session for p in self._publishers.values() if p.session)
        derived = hashlib.sha256("\n".join(sessions).encode()).hexdigest()[:16]
        if derived != self.server.session:
            self.server.set_session(derived)
            log.info("serving session %s (from publisher session%s %s)", derived,
                     "s" if len(sessions) > 1 else "", ", ".join(sessions))

    def _heartbeat(self, body: dict[str, Any]) -> None:
        self._set_streams(body)
        if body.get("frames_dropped"):
            log.debug("publisher %s dropped %s frame(s) so far", body["session"],
                      body["frames_dropped"])
        self.first_heartbeat.set()

    def _check_silence(self) -> None:
        """Tell clients about each publisher that went quiet for the timeout, once."""
        now = time.monotonic()
        for publisher in self._publishers.values():
            silent_s = now - publisher.last_heard
            if publisher.silent or silent_s <= self.publisher_timeout_s:
                continue
            publisher.silent = True
            log.warning("nothing from publisher %s for %.1f s", publisher.endpoint, silent_s)
            self.server.publish_message("status", {
                "publisher": "silent", "endpoint": publisher.endpoint,
                "session": publisher.session, "silent_s": round(silent_s, 3),
            })

    def _set_streams(self, body: dict[str, Any]) -> None:
        """Make the server announce what this publisher session publishes."""
        session = body["session"]
        listed: set[int] = set()
        for descriptor in body["streams"]:
            try:
                info = stream_info_from_descriptor({**descriptor, **self._overrides})
            except TypeError as exc:
                log.warning("ignored a malformed stream descriptor %s: %s",
                            json.dumps(descriptor)[:200], exc)
                continue
            listed.add(info.stream_id)
            self._owners[info.stream_id] = session
            if any(known.stream_id == info.stream_id for known in self.server.streams()):
                self.server.update_stream(info.stream_id, **{
                    f.name: getattr(info, f.name) for f in dataclasses.fields(info)
                    if f.name != "stream_id"})
            else:
                self.server.add_stream(info)  # only this thread adds: no race
        for stream_id, owner in list(self._owners.items()):
            if owner == session and stream_id not in listed:
                del self._owners[stream_id]
                self.server.remove_stream(stream_id)


class _LinkCollector:
    """The gateway's metric families about its ZeroMQ link: its failed handshakes with each
    publisher, and the peers each publisher says (in its heartbeat) it refused."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[CounterMetricFamily]:
        failures = CounterMetricFamily(
            "argos_zmq_handshake_failures", "this gateway's failed ZeroMQ handshakes with a "
            "publisher, by endpoint and reason", labels=["endpoint", "reason"])
        refused = CounterMetricFamily(
            "argos_zmq_publisher_refused", "peers a publisher refused (CURVE), as its last "
            "heartbeat says, by endpoint and reason", labels=["endpoint", "reason"])
        counts = dict(self._gateway.subscriber.handshake_failures)
        for endpoint, publisher in self._gateway._publishers.items():
            for reason in CLIENT_FAILURE_REASONS:
                failures.add_metric([endpoint, reason], counts.get((endpoint, reason), 0))
            by_reason = dict(publisher.refused)
            for reason in sorted(set(REFUSAL_REASONS) | set(by_reason)):
                refused.add_metric([endpoint, reason], by_reason.get(reason, 0))
        yield failures
        yield refused


def _descriptor_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The stream settings a gateway was given, as fields of a stream descriptor."""
    fields: dict[str, Any] = {}
    if "encoding" in overrides:
        fields["encoding"] = ENCODING_CODES[overrides["encoding"]]
    if "step_db" in overrides:
        fields["step_db"] = overrides["step_db"]
    return fields


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argos-gateway",
        description="Serve WebSocket clients and the browser viewer with the spectrum that a "
                    "gr-argos ZeroMQ publisher (a zmq_sink, or argos-spectrum --transport zmq) sends.",
        epilog="Every setting can also be given in a YAML file (--config) under the same name "
               "as for argos-spectrum (e.g. 'token: ...', kept out of `ps`); flags override the "
               "file. Exit codes: 0 stopped, 1 server failure, 2 bad flags or configuration. "
               "See docs/zmq.md.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE.yaml",
                        help="YAML file of settings (keys: the names below)")
    parser.add_argument("--connect", action="append", required=True, metavar="ENDPOINT",
                        help="publisher to connect to, tcp://HOST:PORT or ipc://PATH "
                             "(repeat for several)")
    add_flags(parser, SETTINGS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    try:
        given: set[str] = set()
        settings = resolve(args, SETTINGS, args.config, given)
        config = ServerConfig(**{**{name: settings[name] for name in _SERVER_SETTINGS},
                                 "reuse_port": settings["reuse_port"] or settings["workers"] > 1})
        gateway = Gateway(args.connect, config, settings["publisher_timeout_s"],
                          {name: settings[name] for name in STREAM_OVERRIDES if name in given},
                          {s.name: settings[s.name] for s in declared(SubscriberSettings)})
    except (ConfigError, ValueError) as exc:
        print(f"argos-gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings["log_level"])
    stop_requested = stop_event_on_signals()
    gateway.start_relay()
    # Serve once the publisher has described its streams, so the first hello lists them.
    if not gateway.first_heartbeat.wait(settings["publisher_timeout_s"]):
        log.warning("no heartbeat from %s yet; serving anyway", ", ".join(args.connect))
    try:
        gateway.server.start()
    except ServerError as exc:
        gateway.stop()
        print(f"argos-gateway: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    url = gateway.server.url
    workers = WorkerSupervisor(_worker_command(argv, gateway.server.port),
                               settings["workers"] - 1)
    workers.start()
    print(f"argos-gateway: relaying {', '.join(args.connect)} (process {os.getpid()}, instance "
          f"{gateway.server.instance}, session {gateway.server.session})", flush=True)
    print(connect_line("argos-gateway", url), flush=True)
    while not stop_requested.wait(_POLL_S):
        workers.check()
    workers.stop()
    gateway.stop()
    print("argos-gateway: stopped", flush=True)
    return EXIT_OK


def _worker_command(argv: Sequence[str] | None, port: int) -> list[str]:
    """The command of one more gateway with the same flags on the same (resolved) port."""
    flags = list(sys.argv[1:] if argv is None else argv)
    return [sys.executable, "-m", "gr_argos.apps.gateway", *flags,
            "--port", str(port), "--workers", "1", "--reuse-port"]  # later flags win


@dataclasses.dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    started_at: float
    quick_deaths: int = 0  # deaths in a row within _WORKER_STABLE_AFTER_S of a start
    restart_at: float | None = None  # set while it is dead and waiting for its restart


class WorkerSupervisor:
    """The extra gateway processes of ``--workers``: started, restarted when they die, stopped.

    The kernel spreads new connections over every process on the port (SO_REUSEPORT). A worker
    that exits by itself (killed, crashed) is restarted after a backoff that grows while it
    keeps dying soon after its start; the other processes keep serving meanwhile. Restarts
    are counted (:attr:`restarts`) and logged. Call :meth:`check` from the thread that called
    :meth:`start` (a worker gets SIGTERM when that thread ends, on Linux).

    Args:
        command: the command line of one worker.
        count: how many workers to run (0 for none).
    """

    def __init__(self, command: list[str], count: int) -> None:
        self.command = command
        self.count = count
        self.restarts = 0
        self._workers: list[_Worker] = []

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers running now."""
        return [w.process.pid for w in self._workers if w.process.poll() is None]

    def start(self) -> None:
        if self.count < 1:
            return
        self._workers = [_Worker(self._spawn(), time.monotonic()) for _ in range(self.count)]
        log.info("started %d more gateway process(es): pids %s", self.count,
                 ", ".join(str(w.process.pid) for w in self._workers))

    def check(self) -> None:
        """Schedule the restart of workers that died; restart those whose backoff is over."""
        now = time.monotonic()
        for worker in self._workers:
            status = worker.process.poll()
            if status is None:
                continue
            if worker.restart_at is None:
                ran_s = now - worker.started_at
                worker.quick_deaths = (worker.quick_deaths + 1
                                       if ran_s < _WORKER_STABLE_AFTER_S else 0)
                delay_s = min(_RESTART_BACKOFF_BASE_S * 2 ** worker.quick_deaths,
                              _RESTART_BACKOFF_CAP_S)
                worker.restart_at = now + delay_s
                log.warning("gateway worker %d exited (%s) after %.1f s; restarting it in "
                            "%.1f s", worker.process.pid, _describe_exit(status), ran_s,
                            delay_s)
            elif now >= worker.restart_at:
                dead_pid = worker.process.pid
                worker.process = self._spawn()
                worker.started_at = now
                worker.restart_at = None
                self.restarts += 1
                log.warning("restarted gateway worker %d as pid %d (%d restart(s) so far)",
                            dead_pid, worker.process.pid, self.restarts)

    def stop(self) -> None:
        """SIGTERM every worker and wait for it; SIGKILL one that does not stop."""
        for worker in self._workers:
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in self._workers:
            try:
                worker.process.wait(_WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("gateway worker %d did not stop; killing it", worker.process.pid)
                worker.process.kill()
                worker.process.wait()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent)


def _describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def _die_with_parent() -> None:
    """In a worker: get SIGTERM when the first gateway dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
