"""``argos-gateway``: serve WebSocket clients with the spectrum a ZeroMQ publisher sends.

    argos-gateway --connect tcp://127.0.0.1:5555
    argos-gateway --connect tcp://radio1:5555 --connect tcp://radio2:5556 --host 0.0.0.0
    argos-gateway --connect ipc:///tmp/argos.sock --port 8765 --workers 2

The publisher is a websocket_sink with transport "zmq" (``argos-spectrum --transport zmq``,
flowgraphs/hackrf_spectrum_zmq.grc). The gateway IS a gr-argos server, the same as the sink's
own: same protocol, hub, viewer and ``/healthz``; streams in ``hello`` are the publisher's.
When no heartbeat arrives for ``--publisher-timeout`` seconds, clients get a ``status`` message
with ``"publisher": "silent"``, and ``"publisher": "ok"`` once it is back; they stay connected.
See docs/zmq.md.

Exit codes: 0 stopped by SIGINT/SIGTERM; 1 the server could not start; 2 bad flags.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Sequence

from gr_argos.apps.common import connect_line, setup_logging, stop_event_on_signals
from gr_argos.apps.spectrum import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, SETTINGS as SPECTRUM_SETTINGS
from gr_argos.config import ConfigError, Setting, add_settings, resolve_settings
from gr_argos.protocol import ProtocolError, decode_message
from gr_argos.server import ServerConfig, ServerError, SpectrumServer
from gr_argos.zmq_transport import FrameSubscriber, stream_info_from_descriptor

__all__ = ["Gateway", "SETTINGS", "argument_parser", "main"]

log = logging.getLogger("argos-gateway")

_SERVER_SETTINGS = ("host", "port", "queue_depth", "message_queue_depth", "ping_interval",
                    "ping_timeout", "log_level")
_POLL_S = 0.2

SETTINGS: tuple[Setting, ...] = (
    *(s for s in SPECTRUM_SETTINGS if s.name in _SERVER_SETTINGS),
    Setting("publisher_timeout", float, 3.0,
            "seconds without a publisher heartbeat before clients are told it is silent",
            check=lambda v: None if v > 0 else "must be greater than 0", group="publisher"),
    Setting("workers", int, 1,
            "gateway processes sharing the port with SO_REUSEPORT (e.g. one per core)",
            check=lambda v: None if v >= 1 else "must be at least 1", group="server"),
    Setting("reuse_port", bool, False,
            "set SO_REUSEPORT so other processes can serve the same port (implied by "
            "--workers above 1)", group="server"),
)
_WORKER_STOP_TIMEOUT_S = 15.0


class Gateway:
    """A :class:`SpectrumServer` fed by a :class:`FrameSubscriber` on a relay thread.

    Args:
        endpoints: ZeroMQ publisher endpoints to connect to.
        config: the WebSocket server's settings.
        publisher_timeout_s: seconds without a heartbeat before clients are told the
            publisher is silent.
    """

    def __init__(self, endpoints: Sequence[str], config: ServerConfig,
                 publisher_timeout_s: float = 3.0) -> None:
        self.server = SpectrumServer(config)
        self.subscriber = FrameSubscriber(endpoints)
        self.publisher_timeout_s = publisher_timeout_s
        self.first_heartbeat = threading.Event()
        self._owners: dict[int, str] = {}  # stream id -> session of the publisher sending it
        self._last_heard = time.monotonic()
        self._session: str | None = None
        self._silent = False
        self._stop = threading.Event()
        self._relay = threading.Thread(target=self._run, name="argos-gateway-relay",
                                       daemon=True)

    def start_relay(self) -> None:
        """Start receiving from the publishers (frames reach the server once it runs)."""
        self._last_heard = time.monotonic()
        self._relay.start()

    def stop(self) -> None:
        self._stop.set()
        if self._relay.is_alive():
            self._relay.join()
        self.subscriber.close()
        self.server.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            event = self.subscriber.receive(_POLL_S)
            if event is not None:
                self._dispatch(event)
            self._check_silence()

    def _dispatch(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        # Anything from a publisher shows it is back: a restarted one sends frames before
        # its next heartbeat, and clients should hear it is back before those frames.
        self._alive(event[1]["session"] if kind in ("streams", "heartbeat") else None)
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
            self._heartbeat(event[1])

    def _alive(self, session: str | None) -> None:
        self._last_heard = time.monotonic()
        if session is not None and session != self._session:
            log.info("publisher session %s", session)
            self._session = session
        if self._silent:
            self._silent = False
            log.info("publisher is back (session %s)", self._session)
            self.server.publish_message("status", {"publisher": "ok", "session": self._session})

    def _heartbeat(self, body: dict[str, Any]) -> None:
        self._set_streams(body)
        if body.get("frames_dropped"):
            log.debug("publisher %s dropped %s frame(s) so far", body["session"],
                      body["frames_dropped"])
        self.first_heartbeat.set()

    def _check_silence(self) -> None:
        silent_s = time.monotonic() - self._last_heard
        if not self._silent and silent_s > self.publisher_timeout_s:
            self._silent = True
            log.warning("no publisher heartbeat for %.1f s from %s", silent_s,
                        ", ".join(self.subscriber.endpoints))
            self.server.publish_message("status", {
                "publisher": "silent", "session": self._session, "silent_s": round(silent_s, 3),
            })

    def _set_streams(self, body: dict[str, Any]) -> None:
        """Make the server announce what this publisher session publishes."""
        session = body["session"]
        listed: set[int] = set()
        for descriptor in body["streams"]:
            try:
                info = stream_info_from_descriptor(descriptor)
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


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argos-gateway",
        description="Serve WebSocket clients and the browser viewer with the spectrum that a "
                    "gr-argos ZeroMQ publisher (a websocket_sink with transport zmq) sends.",
        epilog="Exit codes: 0 stopped, 1 server failure, 2 bad flags. See docs/zmq.md.",
    )
    parser.add_argument("--connect", action="append", required=True, metavar="ENDPOINT",
                        help="publisher to connect to, tcp://HOST:PORT or ipc://PATH "
                             "(repeat for several)")
    add_settings(parser, SETTINGS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    try:
        settings = resolve_settings(args, SETTINGS, None)
        config = ServerConfig(**{name: settings[name] for name in _SERVER_SETTINGS
                                 if name != "log_level"},
                              reuse_port=settings["reuse_port"] or settings["workers"] > 1)
        gateway = Gateway(args.connect, config, settings["publisher_timeout"])
    except (ConfigError, ValueError) as exc:
        print(f"argos-gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings["log_level"])
    stop_requested = stop_event_on_signals()
    gateway.start_relay()
    # Serve once the publisher has described its streams, so the first hello lists them.
    if not gateway.first_heartbeat.wait(settings["publisher_timeout"]):
        log.warning("no heartbeat from %s yet; serving anyway", ", ".join(args.connect))
    try:
        gateway.server.start()
    except ServerError as exc:
        gateway.stop()
        print(f"argos-gateway: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    url = gateway.server.url
    workers = _start_workers(argv, gateway.server.port, settings["workers"] - 1)
    print(f"argos-gateway: relaying {', '.join(args.connect)}", flush=True)
    print(connect_line("argos-gateway", url), flush=True)
    while not stop_requested.wait(_POLL_S):
        pass
    _stop_workers(workers)
    gateway.stop()
    print("argos-gateway: stopped", flush=True)
    return EXIT_OK


def _start_workers(argv: Sequence[str] | None, port: int,
                   count: int) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` more gateways with the same flags on the same (resolved) port; the
    kernel spreads new connections over every process (SO_REUSEPORT)."""
    if count < 1:
        return []
    flags = list(sys.argv[1:] if argv is None else argv)
    command = [sys.executable, "-m", "gr_argos.apps.gateway", *flags,
               "--port", str(port), "--workers", "1", "--reuse-port"]  # later flags win
    workers = [subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent) for _ in range(count)]
    log.info("started %d more gateway process(es) on port %d: pids %s", count, port,
             ", ".join(str(w.pid) for w in workers))
    return workers


def _die_with_parent() -> None:
    """In a worker: get SIGTERM when the first gateway dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(_WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("gateway worker %d did not stop; killing it", worker.pid)
            worker.kill()
            worker.wait()


if __name__ == "__main__":
    sys.exit(main())
