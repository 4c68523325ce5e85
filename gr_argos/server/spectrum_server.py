# SPDX-License-Identifier: GPL-3.0-or-later
"""The WebSocket server: one port for the stream, health, metrics and the browser.

:class:`SpectrumServer` runs a ``websockets`` server on its own asyncio event loop in a daemon
thread, so a GNU Radio block (or any program) can start it, publish encoded frames from its
own thread, and stop it. It owns the streams it announces, the hub that fans frames out, and
the gate in front of the WebSocket upgrade; it listens on
:mod:`~gr_argos.server.listener` sockets, each admitted client is a
:class:`~gr_argos.server.connection.Connection`, and plain HTTP requests go to
:class:`~gr_argos.server.routes.Routes`.
"""

from __future__ import annotations

import asyncio
import errno
import http
import ipaddress
import json
import logging
import resource
import secrets
import ssl
import threading
import time
import weakref
from dataclasses import replace
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import parse_qs, urlsplit

from prometheus_client.registry import Collector
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response

from gr_argos import __version__
from gr_argos.protocol import (
    ENCODING_CODES,
    MAX_CLIENT_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    StreamInfo,
    encode_message,
)
from gr_argos.recording.recorder import Recorder
from gr_argos.server.admission import (
    RETRY_AFTER_S,
    SINGLE_HEADERS,
    Gate,
    Refusal,
    UpgradeRequest,
    admit,
    bearer_token,
    host_refusal,
)
from gr_argos.server.config import ServerConfig, ServerError
from gr_argos.server.control import VIEWER, Controller, Tuner, is_local
from gr_argos.server.connection import (
    CLOSE_GRACE_S,
    Connection,
    MessageHandler,
    peer_address,
    peer_ip,
)
from gr_argos.server.detection_history import DetectionHistory
from gr_argos.server.recording_switch import Recording, RecordingSwitch
from gr_argos.server.hub import BroadcastHub
from gr_argos.server.resume import Pacer, ResumeRing
from gr_argos.server.listener import FdReserve, listening_sockets
from gr_argos.server.metrics import (
    CONTENT_TYPE_LATEST,
    ServerCollector,
    ServerCounters,
    metrics_registry,
    render,
)
from gr_argos.server.logs import EventLog, install_log_filters, quoted
from gr_argos.server.routes import (
    SERVER_HEADER,
    Routes,
    json_response,
    method_not_allowed,
    request_method,
    response,
    text_response,
)
from gr_argos.server.tls import tls_context
from gr_argos.server.wire import (
    abort,
    check_websockets,
    close_server,
    compresses,
    connection_class,
    websocket_frame,
)

__all__ = ["SpectrumServer", "http_url"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_EVERY_INTERFACE = ("", "0.0.0.0", "::")
# Request headers a reverse proxy adds: the client is not on this machine, whatever its
# address says.
_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
#: Control events (who took control, what was changed): every one, never rate-limited.
audit_log = logging.getLogger("gr_argos.audit")


def _audit(line: str) -> None:
    audit_log.info(line)
_WEBSOCKET_PATHS = ("/", "/ws")

T = TypeVar("T")


class SpectrumServer:
    """A gr-argos WebSocket server running on its own event loop thread.

    ``publish_frame`` and ``publish_message`` may be called from any thread, before, while and
    after the server runs: they never block and never raise.

    Args:
        config: the server's settings (defaults: :class:`ServerConfig`'s).
        handlers: more client message types it answers, each with the body of its reply of
            the same type (or a ProtocolError, answered as ``bad_message``); argos-replay's
            ``replay``.
    """

    def __init__(self, config: ServerConfig | None = None,
                 handlers: Mapping[str, MessageHandler] | None = None) -> None:
        self.config = config or ServerConfig()
        self._handlers = dict(handlers or {})
        self.counters = ServerCounters()
        self.hub = self._new_hub()
        self.detections = DetectionHistory()
        self.session = secrets.token_hex(8)
        self._given_session: str | None = None
        self.instance = secrets.token_hex(4)  # this process, whatever session it serves
        self._streams: dict[int, StreamInfo] = {}
        self._streams_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[Server] = []  # one per listening socket
        self._reserve = FdReserve(0)  # taken when the server starts
        self._sockets: set[ServerConnection] = set()  # upgraded, until their handler ends
        self.gate = Gate(self.config)
        # A connect and a disconnect line per client in normal use; a flood is cut short.
        self.events = EventLog(log, bursts={"connect": 50, "disconnect": 50})
        self._hooks = _ConnectionHooks(self)
        self._deflate_clients = 0  # connections with permessage-deflate now
        # Upgrades that brought a token in their request (no auth message needed): its role.
        self._authenticated: weakref.WeakKeyDictionary[ServerConnection, str] = (
            weakref.WeakKeyDictionary())
        # Upgrades whose request came through a proxy (a forwarding header): never local.
        self._forwarded: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self.controller = Controller(self.config, self.publish_message, _audit,
                                     self.counters.control_event)
        #: The recordings clients may start and stop (``record``), by kind.
        self.recordings = RecordingSwitch(self.controller, self.publish_message, _audit,
                                          self.counters.control_event)
        self._port: int | None = None
        self._started_at = time.monotonic()
        self._registry = metrics_registry(ServerCollector(
            lambda: self.hub.stats(), self.counters,
            recorder=lambda: None if self.recorder is None else self.recorder.status()))
        self._routes = Routes({"/healthz": self._healthz, "/metrics": self._metrics})
        self._ssl: ssl.SSLContext | None = None
        self._pacer = Pacer(self.config.resume_fps)
        #: Records every frame and message published while the server runs (record_dir).
        self.recorder: Recorder | None = None

    def _new_hub(self) -> BroadcastHub:
        return BroadcastHub(self.config.queue_depth, self.config.message_queue_depth,
                            wrap=websocket_frame,
                            observe_latency=self.counters.send_latency.observe,
                            ring=ResumeRing(self.config.resume_buffer_bytes))

    # -- streams -------------------------------------------------------------------------

    def add_stream(self, info: StreamInfo) -> None:
        """Announce a stream to clients (in ``hello``).

        Raises:
            ValueError: another stream already has this id.
        """
        with self._streams_lock:
            if info.stream_id in self._streams:
                raise ValueError(
                    f"stream id {info.stream_id} is already used on this server "
                    f"by stream {self._streams[info.stream_id].name!r}: give each sink its own "
                    "stream_id"
                )
            self._streams[info.stream_id] = info
            self.hub.set_stream_format(info.stream_id, info.frame_format)

    def remove_stream(self, stream_id: int) -> None:
        with self._streams_lock:
            self._streams.pop(stream_id, None)
            self.hub.set_stream_format(stream_id, None)

    def update_stream(self, stream_id: int, **changes: Any) -> None:
        """Change a stream's descriptor (e.g. after a retune); thread-safe."""
        with self._streams_lock:
            if stream_id in self._streams:
                info = replace(self._streams[stream_id], **changes)
                self._streams[stream_id] = info
                self.hub.set_stream_format(stream_id, info.frame_format)

    def streams(self) -> list[StreamInfo]:
        with self._streams_lock:
            return list(self._streams.values())

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port actually listened on (resolves port 0)."""
        if self._port is None:
            raise ServerError("server is not running")
        return self._port

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to (``wss://`` with TLS)."""
        host = self.config.host
        if host in _EVERY_INTERFACE:
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{'wss' if self.config.tls else 'ws'}://{host}:{self.port}/"

    @property
    def health_url(self) -> str:
        """The ``/healthz`` URL (``https://`` with TLS)."""
        return http_url(self.url) + "healthz"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start listening; return once the port is bound.

        Raises:
            ServerError: the port is in use, the address is not valid here, a TLS file is
                missing, unreadable or does not match, the installed ``websockets`` is not
                a tested release, or the server did not come up.
        """
        if self.running:
            return
        warning = check_websockets()
        if warning:
            log.warning("event=untested_websockets %s", warning)
        cfg = self.config
        install_log_filters(cfg.token, *cfg.operator_tokens, *cfg.admin_tokens)
        _raise_open_files_limit(self.config)
        self._ssl = tls_context(self.config) if self.config.tls else None
        if self.config.record_dir:
            self.recorder = Recorder(self.config, self.hello)
            self.recorder.start()
            self.recordings.recordings["spectrum"] = self.recorder
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name=f"argos-server-{self.config.port}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_S):
            raise ServerError(f"server on {self.config.host}:{self.config.port} did not start "
                              f"within {_START_TIMEOUT_S:.0f} s")
        if failure:
            self._thread.join(_STOP_TIMEOUT_S)
            self._thread = None
            self._stop_recorder()
            raise _explain_start_failure(failure[0], self.config) from failure[0]

    def stop(self) -> None:
        """Close every client with code 1001 and stop the loop thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            future.result(_STOP_TIMEOUT_S)
        except Exception as exc:  # the loop died or shutdown hung: stop it regardless
            log.warning("server shutdown did not complete cleanly: %s", exc)
        thread.join(_STOP_TIMEOUT_S)
        self._thread = None
        self._stop_recorder()

    def _stop_recorder(self) -> None:
        recorder, self.recorder = self.recorder, None
        self.recordings.recordings.pop("spectrum", None)
        if recorder is not None:
            recorder.stop()

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # report any start failure to start()
            failure.append(exc)
            ready.set()
            loop.close()
            self._loop = None
            return
        ready.set()
        self._tick_control(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None
            self._port = None

    def _tick_control(self, loop: asyncio.AbstractEventLoop) -> None:
        """End an idle control lease (and tell everyone) within a second of its time."""
        self.controller.tick()
        loop.call_later(1.0, self._tick_control, loop)

    async def _open(self) -> None:
        # New per start, so that clients see the restart, unless one was given.
        self.session = self._given_session or secrets.token_hex(8)
        self.hub = self._new_hub()
        for info in self.streams():
            self.hub.set_stream_format(info.stream_id, info.frame_format)
        self.hub.attach(asyncio.get_running_loop())
        cfg = self.config
        self._reserve = FdReserve()
        answer = None if self._ssl else _out_of_fds_answer()
        sockets = listening_sockets(cfg.host, cfg.port, reuse_port=cfg.reuse_port,
                                    reserve=self._reserve, answer=answer,
                                    refused=self._refused_out_of_fds)
        try:
            for sock in sockets:
                self._servers.append(await serve(
                    self._handle,
                    sock=sock,
                    process_request=self._process_request,
                    max_size=MAX_CLIENT_MESSAGE_BYTES,
                    ping_interval=cfg.ping_interval_s or None,
                    ping_timeout=cfg.ping_timeout_s or None,
                    open_timeout=cfg.handshake_timeout_s,
                    write_limit=cfg.write_limit,
                    compression=None,
                    extensions=[_permessage_deflate()] if cfg.permessage_deflate else None,
                    server_header=SERVER_HEADER,
                    ssl=self._ssl,
                    create_connection=connection_class(self._hooks),
                    backlog=_ACCEPTS_PER_PASS,
                ))
        except BaseException:
            for sock in sockets:
                sock.close()
            self._reserve.close()
            raise
        for sock in sockets:
            # asyncio listened with its backlog, which is also how many connections it
            # accepts in one pass of the loop (each holding a descriptor until the next);
            # a deeper queue in the kernel, without larger passes: listen again.
            sock.listen(_LISTEN_BACKLOG)
        self._port = sockets[0].getsockname()[1]
        log.info("gr-argos serving %s (health %s)", self.url, self.health_url)
        if cfg.host in _EVERY_INTERFACE and not cfg.token:
            log.warning("event=insecure_bind host=%s port=%d: listening on every interface "
                        "without a token; set token (and allowed_origins) or bind 127.0.0.1",
                        cfg.host or "*", self._port)
        elif cfg.token and not cfg.tls and not _is_loopback(cfg.host):
            log.warning("event=token_without_tls host=%s port=%d: clients send the token in "
                        "clear text over plain ws://; set tls_cert and tls_key (or put a TLS "
                        "reverse proxy in front)", cfg.host or "*", self._port)
        if cfg.control_without_token == "anyone" and not cfg.role_tokens \
                and not _is_loopback(cfg.host):
            log.warning("event=open_control host=%s port=%d: every client that reaches this "
                        "server may retune the radio (control_without_token: anyone); set "
                        "operator_tokens", cfg.host or "*", self._port)

    async def _shutdown(self) -> None:
        self.hub.close()
        self.events.flush()
        servers, self._servers = self._servers, []
        for server in servers:
            close_server(server, "server shutting down")
        try:
            async with asyncio.timeout(CLOSE_GRACE_S):
                for server in servers:
                    await server.wait_closed()
        except TimeoutError:
            for ws in list(self._sockets):
                abort(ws)
            for server in servers:
                await server.wait_closed()
        self._reserve.close()
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.stop)

    # -- producers (any thread) ----------------------------------------------------------

    def publish_frame(self, stream_id: int, frame: bytes) -> None:
        """Send an encoded spectrum frame to every client (and the recorder, first).
        Thread-safe, never blocks or raises."""
        recorder = self.recorder
        if recorder is not None:
            recorder.frame(frame)
        self.hub.publish_frame(stream_id, frame)

    def publish_message(self, msg_type: str, body: dict[str, Any] | None = None) -> None:
        """Send a JSON message to every client; it is never dropped to make room for frames.

        Thread-safe and never raises: a body that cannot be encoded is logged and dropped.
        A ``status`` message gets the server's own ``server`` object: its refusals by reason
        and whether it is shedding connections now. A ``detection`` is counted (``/metrics``)
        and kept for the ``detections`` query.
        """
        recorder = self.recorder
        if msg_type == "status":
            server = self.counters.server_status()
            for kind, recording in list(self.recordings.recordings.items()):
                server["recorder" if kind == "spectrum" else f"{kind}_recorder"] = \
                    recording.status()
            body = {**(body or {}), "server": server,
                    "control": {"holder": self.controller.lease.describe()}}
        try:
            text = encode_message(msg_type, body)
        except ProtocolError as exc:
            log.warning("dropped a %s message: %s", msg_type, exc)
            return
        if msg_type == "detection" and body:
            self.counters.detected(body)
            self.detections.add(body)  # encodes: a detections reply will too
        if recorder is not None:
            recorder.message(text)
        self.hub.publish_message(text)

    def add_recording(self, kind: str, recording: Recording | None) -> None:
        """A recording clients may start and stop besides the server's own (argos-spectrum's
        ``iq``), reported in ``status`` as ``server.<kind>_recorder``; None removes it.
        Any thread."""
        if recording is None:
            self.recordings.recordings.pop(kind, None)
        else:
            self.recordings.recordings[kind] = recording

    def set_tuner(self, tuner: Tuner | None) -> None:
        """What applies clients' ``tune`` changes to the radio (None: nothing can be
        tuned from clients). Any thread; takes effect for the next change."""
        self.controller.tuner = tuner

    def set_session(self, session: str) -> None:
        """Serve under ``session`` from now on, and after a restart too (a gateway's, made
        from its publishers'). Clients connected already keep the one of their hello; one
        that resumes with it is refused as after a restart. Any thread."""
        self._given_session = self.session = session

    def add_metrics(self, collector: Collector) -> None:
        """Serve ``collector``'s metric families on ``/metrics`` too (a gateway's counts of
        its ZeroMQ link, say); it is called at each scrape, on the server's loop."""
        self._registry.register(collector)

    def stats(self) -> dict[str, Any]:
        """Per-client and total counters (thread-safe; empty totals when stopped)."""
        return self._on_loop(self.hub.stats)

    def _on_loop(self, function: Callable[[], T]) -> T:
        """``function()`` run on the server's loop (here if the loop is not running)."""
        loop = self._loop
        if loop is None or not self.running or _in_loop(loop):
            return function()
        return asyncio.run_coroutine_threadsafe(_call(function), loop).result(_STOP_TIMEOUT_S)

    # -- connections ---------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        """The body of the ``hello`` message each client gets first."""
        return {
            "server": "gr-argos",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "session": self.session,
            "instance": self.instance,
            "streams": [s.describe() for s in self.streams()],
            "encodings": list(ENCODING_CODES),
            "queue_depth": self.config.queue_depth,
            "recording": self.recordings.state(),
        }

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Answer plain HTTP; let an admitted WebSocket upgrade go on (None).

        A request whose critical headers come twice, or that names a Host this server is not
        known by, is refused first (400, 421), whatever it asks for.
        """
        ip = peer_ip(ws)
        for name in SINGLE_HEADERS:
            if len(request.headers.get_all(name)) > 1:
                return self._refuse(peer_address(ws), Refusal(
                    "bad_request", http.HTTPStatus.BAD_REQUEST,
                    f"the request has more than one {name} header"))
        host = request.headers.get("Host")
        refusal = host_refusal(host, self.config)
        if refusal is not None:
            return self._refuse(peer_address(ws), refusal)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return self._routes.respond(request, ip)
        if request_method(request) != "GET":
            return method_not_allowed(request_method(request))
        path = request.path.split("?", 1)[0]
        if path not in _WEBSOCKET_PATHS:
            return text_response(http.HTTPStatus.NOT_FOUND,
                                 f"no WebSocket endpoint at {path}; connect to / instead\n")
        if self.config.permessage_deflate and "Sec-WebSocket-Extensions" in request.headers and (
                _asks_compress_once(request.path)
                or 0 < self.config.max_deflate_clients <= self._deflate_clients):
            # Compress-once frames are already deflated for all: don't compress twice; and
            # permessage-deflate costs per client: past max_deflate_clients, none.
            # websockets negotiates extensions from this same request object after
            # process_request returns, so without the header it negotiates none.
            del request.headers["Sec-WebSocket-Extensions"]
        decision = admit(
            UpgradeRequest(path=request.path, host=host, origin=request.headers.get("Origin"),
                           authorization=request.headers.get("Authorization"), peer_ip=ip),
            self.config, self.gate)
        if isinstance(decision, Refusal):
            if decision.reason == "auth":
                self.gate.failed(ip)
            return self._refuse(peer_address(ws), decision)
        if any(name in request.headers for name in _FORWARDING_HEADERS):
            self._forwarded.add(ws)
        if decision.authenticated_by is not None:
            self.gate.succeeded(ip)
            self._authenticated[ws] = decision.role or VIEWER
            self.events.log(logging.INFO, "auth_ok", "event=auth_ok peer=%s method=%s",
                            peer_address(ws), decision.authenticated_by)
        return None

    def _refuse(self, peer: str, refusal: Refusal) -> Response:
        """Count and log (at a bounded rate) a refused request, and answer it."""
        if refusal.reason == "auth":
            self.counters.auth_failures[refusal.details["method"]] += 1
        self._count_refusal(refusal.reason, peer, str(refusal.status.value),
                            "".join(f" {key}={quoted(value)}"
                                    for key, value in refusal.details.items()))
        return json_response(refusal.status, refusal.body(), refusal.retry_after_s)

    def _count_refusal(self, reason: str, peer: str, status: str, more: str = "") -> None:
        """Count a connection refused for ``reason`` and log it at a bounded rate."""
        self.counters.refuse(reason)
        self.events.log(logging.WARNING, "refused", "event=refused reason=%s peer=%s status=%s%s",
                        reason, peer, status, more)

    def _refused_out_of_fds(self, peer: str) -> None:
        """A listening socket refused a connection: the process is out of file descriptors."""
        self._count_refusal("fd_limit", peer, "none" if self._ssl else "503",
                            ": out of file descriptors, accepted with the reserve and closed")

    async def _handle(self, ws: ServerConnection) -> None:
        ip = peer_ip(ws)
        waiting = bool(self.config.token) and ws not in self._authenticated
        self.gate.enter(ip, waiting)  # counted from the upgrade on, for the limits
        self._sockets.add(ws)
        deflating = compresses(ws)
        self._deflate_clients += deflating
        connection = Connection(ws, config=self.config, hub=self.hub, counters=self.counters,
                                events=self.events, hello=self.hello,
                                detections=self.detections, gate=self.gate,
                                authenticated=not waiting, role=self._authenticated.get(ws),
                                controller=self.controller,
                                local=is_local(ip, ws in self._forwarded),
                                session=self.session, pacer=self._pacer,
                                handlers=self._handlers, recordings=self.recordings)
        try:
            await connection.serve()
        finally:
            self._sockets.discard(ws)
            self._authenticated.pop(ws, None)
            self.gate.leave(ip, connection.waiting)
            self._deflate_clients -= deflating

    # -- HTTP routes ---------------------------------------------------------------------

    def _healthz(self, request: Request, address: str) -> Response:
        body = {
            "status": "ok",
            "server": "gr-argos",
            "version": __version__,
            "clients": self.hub.client_count,
            "uptime_s": round(time.monotonic() - self._started_at, 3),
            "streams": [s.describe() for s in self.streams()],
        }
        return response(http.HTTPStatus.OK, "application/json", json.dumps(body).encode())

    def _metrics(self, request: Request, address: str) -> Response:
        """The metrics; behind the token when one is set, with the same backoff for wrong
        tokens as the WebSocket upgrade."""
        if self.config.token:
            given = bearer_token(request.headers.get("Authorization"))
            refusal = self.gate.backoff_refusal(address)
            if refusal is None and (given is None or not self.gate.authenticate(
                    address, given, self.config.token)):
                refusal = Refusal("auth", http.HTTPStatus.UNAUTHORIZED, "/metrics needs the "
                                  "token: send Authorization: Bearer <token>",
                                  details={"method": "metrics"})
            if refusal is not None:
                return self._refuse(address, refusal)
        return response(http.HTTPStatus.OK, CONTENT_TYPE_LATEST, render(self._registry))


class _ConnectionHooks:
    """What a server's connections report around their handshake (see
    :class:`~gr_argos.server.wire.ConnectionHooks`): counted by the gate, in the metrics,
    and in the log at a bounded rate."""

    def __init__(self, server: SpectrumServer) -> None:
        self._server = server
        self.handshake_timeout_s = server.config.handshake_timeout_s
        self.max_pings_per_s = server.config.max_pings_per_s

    def handshake_started(self, ws: ServerConnection, ip: str) -> bool:
        server = self._server
        allowed, evicted = server.gate.handshake_started(ws, ip)
        if evicted is not None:
            assert isinstance(evicted, ServerConnection)
            server.gate.handshake_ended(evicted)
            self._dropped("max_pending_handshakes", peer_address(evicted),
                          "a pending handshake, dropped for a new connection")
            abort(evicted)
        if not allowed:
            self._dropped("max_pending_handshakes_per_ip", ip, "dropped before its handshake")
        return allowed

    def _dropped(self, reason: str, peer: str, what: str) -> None:
        self._server._count_refusal(reason, peer, "none", f": {what}")

    def handshake_spoke(self, ws: ServerConnection) -> None:
        self._server.gate.handshake_spoke(ws)

    def handshake_ended(self, ws: ServerConnection, ip: str) -> None:
        self._server.gate.handshake_ended(ws)

    def handshake_timed_out(self, ws: ServerConnection) -> None:
        server = self._server
        server.counters.refuse("handshake_timeout")
        server.events.log(logging.INFO, "handshake_timeout",
                          "event=handshake_timeout peer=%s handshake_timeout_s=%g",
                          peer_address(ws), self.handshake_timeout_s)

    def ping_flood(self, ws: ServerConnection) -> None:
        server = self._server
        server.counters.closed_by_policy["ping_rate"] += 1
        server.events.log(logging.WARNING, "ping_rate",
                          "event=ping_rate peer=%s max_pings_per_s=%g: closing it with 1008",
                          peer_address(ws), self.max_pings_per_s)


# Connections the kernel holds for the server to accept: a burst of connects (a flood, or
# every viewer reconnecting at once) that overflows it makes clients wait for a SYN retry
# (1 s, then 3 s...). The kernel caps it at net.core.somaxconn.
_LISTEN_BACKLOG = 1024
# asyncio accepts at most its backlog argument in one pass of the loop (100 by default): a
# flood of connects then takes long turns from the frames' fan-out, while the kernel's queue
# (above) holds the rest. 40 kept the healthy client at 29-30 frames/s and new clients under
# 0.5 s through the half-open flood; 16 starved the new clients (1.08 s), 100 the frames
# (docs/security.md).
_ACCEPTS_PER_PASS = 40


def _out_of_fds_answer() -> bytes:
    """What a connection accepted with the reserve of file descriptors gets: 503, try again
    in :data:`RETRY_AFTER_S`."""
    refusal = Refusal("fd_limit", http.HTTPStatus.SERVICE_UNAVAILABLE,
                      "server busy: too many connections, try again later",
                      retry_after_s=RETRY_AFTER_S)
    answer = json_response(refusal.status, refusal.body(), refusal.retry_after_s)
    answer.headers["Connection"] = "close"
    return answer.serialize()


# File descriptors kept free beyond the connections the limits allow: for the listening
# sockets, GNU Radio, logs, and to accept, answer and close a connection over a limit.
_FD_RESERVE = 64


def _raise_open_files_limit(config: ServerConfig) -> None:
    """Raise this process's soft limit of open files to its hard limit, and warn when even
    that cannot hold every connection the settings allow (the server would then run out of
    file descriptors under a flood, instead of refusing it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # a sandbox may refuse: keep the soft limit
            log.debug("cannot raise the open files limit: %s", exc)
    limits = (config.max_clients, config.max_unauthenticated, config.max_pending_handshakes)
    if 0 in limits:
        return
    needed = sum(limits) + _FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("event=fd_limit open_files=%d needed=%d: max_clients + "
                    "max_unauthenticated + max_pending_handshakes + %d exceed the open files "
                    "limit; lower them or raise the limit (ulimit -n)", soft, needed,
                    _FD_RESERVE)


def http_url(url: str) -> str:
    """The HTTP URL of the same place as a WebSocket URL (``ws://`` -> ``http://``,
    ``wss://`` -> ``https://``)."""
    if url.startswith("wss://"):
        return "https://" + url[len("wss://"):]
    if url.startswith("ws://"):
        return "http://" + url[len("ws://"):]
    return url


def _permessage_deflate() -> ServerPerMessageDeflateFactory:
    """permessage-deflate with websockets' default, memory-lean settings (window 2**12,
    memLevel 5): docs/performance.md, "permessage-deflate tuning", compares them."""
    return ServerPerMessageDeflateFactory(server_max_window_bits=12,
                                          compress_settings={"memLevel": 5})


def _asks_compress_once(path: str) -> bool:
    """Whether the connection URL asks for compress-once frames (``compress=1``/``true``)."""
    values = parse_qs(urlsplit(path).query).get("compress", [])
    return bool(values) and values[-1].lower() in ("1", "true")


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _call(function: Callable[[], T]) -> T:
    return function()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _explain_start_failure(exc: BaseException, config: ServerConfig) -> ServerError:
    if isinstance(exc, ServerError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return ServerError(
            f"port {config.port} on {config.host} is already in use: stop the program using it "
            "or choose another port (setting port)"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return ServerError(
            f"cannot listen on {config.host}: not an address of this machine (setting host)"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return ServerError(
            f"no permission to listen on port {config.port}: use a port above 1023 (setting "
            "port)"
        )
    return ServerError(f"server on {config.host}:{config.port} failed to start: {exc}")
