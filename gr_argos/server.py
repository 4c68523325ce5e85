"""The WebSocket server: one port for the stream, health and the browser.

:class:`SpectrumServer` runs a ``websockets`` server on its own asyncio event loop in a
daemon thread, so a GNU Radio block (or any program) can start it, publish encoded frames
from its own thread, and stop it. It is a thin adapter around :class:`~gr_argos.hub.BroadcastHub`:
each connection gets a hub queue, a sender task that drains it, and a reader that answers the
client's small JSON requests.

HTTP on the same port: ``GET /healthz`` (JSON), ``GET /metrics`` (Prometheus text format;
behind the token when one is set), ``GET /`` (the browser page when present).

Before a WebSocket upgrade the server checks the ``Origin`` allowlist (403), the connection
limits (503 total, 429 per IP, with ``Retry-After``) and a token in an ``Authorization:
Bearer`` header (401); a client without one authenticates with a first ``auth`` message.
Each inbound message is rate-limited and checked against its type's fields
(:mod:`gr_argos.security`). Connections, disconnections, refusals and security events are
logged as ``event=... key=value`` lines, never with the token.

Each client chooses its frame format (``set_encoding``, or ``?encoding=uint8&compress=1`` in
the URL); the hub encodes each variant once per frame for all clients that chose it.
permessage-deflate is off by default: its state is per connection, so its cost grows with
the clients. ``permessage_deflate=True`` offers it, for compatibility, to clients that did
not ask for compress-once frames (``compress=1`` in the URL).
"""

from __future__ import annotations

import asyncio
import errno
import http
import ipaddress
import json
import logging
import os
import re
import secrets
import ssl
import struct
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.protocol import State

from gr_argos import __version__
from gr_argos.metrics import (
    CONTENT_TYPE_LATEST,
    LatencyHistogram,
    ServerCollector,
    metrics_registry,
    render,
)
from gr_argos.security import (
    CLIENT_MESSAGE_TYPES,
    TokenBucket,
    bearer_token,
    origin_allowed,
    parse_origins,
    token_matches,
    validate_message,
)
from gr_argos.hub import (
    DEFAULT_MESSAGE_QUEUE_DEPTH,
    DEFAULT_QUEUE_DEPTH,
    BroadcastHub,
    ClientQueue,
    Writer,
)
from gr_argos.protocol import (
    ENCODING_CODES,
    ENCODING_NAMES,
    ENCODING_FLOAT32,
    ENCODING_UINT8,
    FrameFormat,
    MAX_CLIENT_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    decode_message,
    encode_message,
)

__all__ = [
    "ServerConfig",
    "ServerError",
    "SpectrumServer",
    "StreamInfo",
    "acquire_server",
    "http_url",
    "release_server",
    "websocket_frame",
]

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
# On stop, time a client gets to answer the close frame before its connection is dropped.
# websockets waits without limit for a socket that a stalled client stopped reading.
_CLOSE_GRACE_S = 3.0
_WEB_PACKAGE = "gr_argos.web"
# Seconds a refused client is asked to wait before it tries again (Retry-After).
_RETRY_AFTER_S = 5
_EVERY_INTERFACE = ("", "0.0.0.0", "::")
# A WebSocket frame header: FIN + opcode, then a 16-bit or 64-bit payload length.
_FRAME_HEADER_16 = struct.Struct("!BBH")
_FRAME_HEADER_64 = struct.Struct("!BBQ")
# What may carry a token in the websockets library's DEBUG lines: the request line
# (?token=...), the Authorization header and an auth message's JSON.
_SECRETS = re.compile(r'(?i)(token=)[^&\s]*|(authorization:\s*).*|("token"\s*:\s*")[^"]*')


class _RedactSecrets(logging.Filter):
    """Keep tokens out of the websockets library's DEBUG lines, which print every request
    line, header and frame."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRETS.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***",
                                message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_websockets_log = logging.getLogger("websockets.server")
if not any(isinstance(f, _RedactSecrets) for f in _websockets_log.filters):
    _websockets_log.addFilter(_RedactSecrets())


class ServerError(RuntimeError):
    """The server could not start; the message says why and what to do."""


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one server. Names match the sink's GRC parameters and the app's flags.

    Attributes:
        host: address to listen on ("127.0.0.1" keeps it on this machine; "0.0.0.0" exposes it).
        port: TCP port; 0 picks a free one (read it back from :attr:`SpectrumServer.port`).
        queue_depth: spectrum frames queued per client before the oldest is dropped.
        message_queue_depth: JSON messages queued per client before it is closed as too slow.
        ping_interval: seconds between WebSocket pings (0 disables keepalive).
        ping_timeout: seconds to wait for a pong before the connection counts as dead.
            With keepalive on, a connection that takes no bytes for ``ping_interval +
            ping_timeout`` while the server has some for it counts as dead too: it is
            aborted (a ping cannot get through a full socket).
        write_limit: bytes the transport may buffer per client before a send waits.
        reuse_port: set SO_REUSEPORT, so several processes (gateways) can share the port.
        allowed_origins: browser origins allowed to connect (exact ``scheme://host[:port]``;
            a list or a comma-separated string); empty allows any. Others get HTTP 403.
        token: shared secret a client must present (``Authorization: Bearer`` header or a
            first ``auth`` message); empty: no authentication. Never logged or shown.
        allow_query_token: also accept the token as ``?token=`` in the URL (it may end up in
            proxy logs and browser history: only when a client cannot do otherwise).
        max_clients: connections served at once (0 = no limit); more get HTTP 503.
        max_clients_per_ip: connections per client address (0 = no limit); more get 429.
        handshake_timeout: seconds a client has to complete the handshake and, when a token
            is set, to authenticate.
        max_messages_per_s: inbound messages per second allowed per client (0 = no limit);
            a client over it is closed with 1008.
        max_messages_burst: inbound messages a client may send at once above that rate.
        permessage_deflate: negotiate permessage-deflate with clients that offer it (a
            compatibility option, memory-lean settings), except those that asked for
            compress-once frames with ``compress=1`` in the URL.
        tls_cert: path of the PEM certificate (chain) to serve TLS with (wss:// and
            https://); empty: plain ws:// and http://. Needs ``tls_key``.
        tls_key: path of the PEM private key of ``tls_cert`` (unencrypted).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    queue_depth: int = DEFAULT_QUEUE_DEPTH
    message_queue_depth: int = DEFAULT_MESSAGE_QUEUE_DEPTH
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    write_limit: int = 32 * 1024
    reuse_port: bool = False
    allowed_origins: tuple[str, ...] | str = ()
    token: str = field(default="", repr=False)
    allow_query_token: bool = False
    max_clients: int = 256
    max_clients_per_ip: int = 32
    handshake_timeout: float = 10.0
    max_messages_per_s: float = 10.0
    max_messages_burst: int = 20
    permessage_deflate: bool = False
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS (wss://, https://)."""
        return bool(self.tls_cert or self.tls_key)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_origins", parse_origins(self.allowed_origins))
        if self.max_clients < 0 or self.max_clients_per_ip < 0:
            raise ValueError("max_clients and max_clients_per_ip must be >= 0 (0 = no limit)")
        if not self.handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be > 0 seconds, "
                             f"got {self.handshake_timeout}")
        if self.max_messages_per_s < 0 or self.max_messages_burst < 1:
            raise ValueError("max_messages_per_s must be >= 0 (0 = no limit) and "
                             "max_messages_burst at least 1")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.queue_depth < 1:
            raise ValueError(f"queue_depth must be at least 1, got {self.queue_depth}")
        if self.message_queue_depth < 1:
            raise ValueError(
                f"message_queue_depth must be at least 1, got {self.message_queue_depth}"
            )
        if self.ping_interval < 0 or self.ping_timeout < 0:
            raise ValueError("ping_interval and ping_timeout must be >= 0 seconds")


@dataclass
class StreamInfo:
    """What a client is told about a stream in the ``hello`` message.

    ``encoding`` (a code, float32 by default) is the format, uncompressed, the stream's
    frames go out in to clients that did not choose one; ``step_db`` is its fixed uint8
    step in dB (0: automatic; see :class:`~gr_argos.protocol.FrameFormat`).
    """

    stream_id: int = 0
    name: str = "spectrum"
    bins: int = 2048
    center_freq_hz: float = 0.0
    span_hz: float = 0.0
    encoding: int = ENCODING_FLOAT32
    fps: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    step_db: float = 0.0

    @property
    def frame_format(self) -> FrameFormat:
        """The format clients that chose none get this stream's frames in."""
        return FrameFormat(self.encoding, step_db=self.step_db)

    def describe(self) -> dict[str, Any]:
        """The stream as ``hello`` announces it (a uint8 stream with its ``step_db`` too)."""
        described: dict[str, Any] = {
            "id": self.stream_id,
            "name": self.name,
            "bins": self.bins,
            "center_freq_hz": self.center_freq_hz,
            "span_hz": self.span_hz,
            "encoding": ENCODING_NAMES.get(self.encoding, str(self.encoding)),
            "fps": self.fps,
        }
        if self.encoding == ENCODING_UINT8:
            described["step_db"] = self.frame_format.step_db
        return {**described, **self.extra}


class SpectrumServer:
    """A gr-argos WebSocket server running on its own event loop thread.

    ``publish_frame`` and ``publish_message`` may be called from any thread, before, while and
    after the server runs: they never block and never raise.
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.send_latency = LatencyHistogram()
        self.hub = self._new_hub()
        self.session = secrets.token_hex(8)
        self._streams: dict[int, StreamInfo] = {}
        self._streams_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._connections: dict[int, ServerConnection] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._port: int | None = None
        self._started_at = time.monotonic()
        # Security and latency counters (touched on the loop), read by /metrics.
        self.refused: Counter[str] = Counter()
        self.auth_failures: Counter[str] = Counter()
        self.closed_by_policy: Counter[str] = Counter()
        self._registry = metrics_registry(ServerCollector(
            lambda: self.hub.stats(), self.refused, self.auth_failures,
            self.closed_by_policy, self.send_latency))
        self._clients_per_ip: Counter[str] = Counter()
        self._authorized: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._ssl: ssl.SSLContext | None = None

    def _new_hub(self) -> BroadcastHub:
        return BroadcastHub(self.config.queue_depth, self.config.message_queue_depth,
                            wrap=websocket_frame, observe_latency=self.send_latency.observe)

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
        host = self.config.host
        if host in ("", "0.0.0.0", "::"):
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
                missing, unreadable or does not match, or the server did not come up.
        """
        if self.running:
            return
        self._ssl = tls_context(self.config) if self.config.tls else None
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

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self.session = secrets.token_hex(8)  # new per start: clients see the restart
        self.hub = self._new_hub()
        for info in self.streams():
            self.hub.set_stream_format(info.stream_id, info.frame_format)
        self.hub.attach(loop, on_too_slow=self._close_too_slow)
        cfg = self.config
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            max_size=MAX_CLIENT_MESSAGE_BYTES,
            ping_interval=cfg.ping_interval or None,
            ping_timeout=cfg.ping_timeout or None,
            open_timeout=cfg.handshake_timeout,
            write_limit=cfg.write_limit,
            compression=None,
            extensions=[_permessage_deflate()] if cfg.permessage_deflate else None,
            server_header=f"gr-argos/{__version__}",
            reuse_port=cfg.reuse_port,
            ssl=self._ssl,
            create_connection=self._connection_class(),
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("gr-argos serving %s (health %s)", self.url, self.health_url)
        if cfg.host in _EVERY_INTERFACE and not cfg.token:
            log.warning("event=insecure_bind host=%s port=%d: listening on every interface "
                        "without a token; set token (and allowed_origins) or bind 127.0.0.1",
                        cfg.host or "*", self._port)
        elif cfg.token and not cfg.tls and not _is_loopback(cfg.host):
            log.warning("event=token_without_tls host=%s port=%d: clients send the token in "
                        "clear text over plain ws://; set tls_cert and tls_key (or put a TLS "
                        "reverse proxy in front)", cfg.host or "*", self._port)

    async def _shutdown(self) -> None:
        self.hub.close()
        if self._server is not None:
            self._server.close(close_connections=True, code=CLOSE_GOING_AWAY,
                               reason="server shutting down")
            try:
                async with asyncio.timeout(_CLOSE_GRACE_S):
                    await self._server.wait_closed()
            except TimeoutError:
                for ws in list(self._connections.values()):
                    ws.transport.abort()
                await self._server.wait_closed()
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.stop)

    # -- producers (any thread) ----------------------------------------------------------

    def publish_frame(self, stream_id: int, frame: bytes) -> None:
        """Send an encoded spectrum frame to every client. Thread-safe, never blocks or raises."""
        self.hub.publish_frame(stream_id, frame)

    def publish_message(self, msg_type: str, body: dict[str, Any] | None = None) -> None:
        """Send a JSON message to every client; it is never dropped to make room for frames.

        Thread-safe and never raises: a body that cannot be encoded is logged and dropped.
        """
        try:
            text = encode_message(msg_type, body)
        except ProtocolError as exc:
            log.warning("dropped a %s message: %s", msg_type, exc)
            return
        self.hub.publish_message(text)

    def stats(self) -> dict[str, Any]:
        """Per-client and total counters (thread-safe; empty totals when stopped)."""
        loop = self._loop
        if loop is None or not self.running:
            return self.hub.stats()
        if _in_loop(loop):
            return self.hub.stats()
        future = asyncio.run_coroutine_threadsafe(_call(self.hub.stats), loop)
        return future.result(_STOP_TIMEOUT_S)

    # -- connections ---------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        return {
            "server": "gr-argos",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "session": self.session,
            "pid": os.getpid(),  # which process of several on one port (--workers)
            "streams": [s.describe() for s in self.streams()],
            "encodings": list(ENCODING_CODES),
            "queue_depth": self.config.queue_depth,
        }

    async def _handle(self, ws: ServerConnection) -> None:
        peer, ip = _peer(ws), _peer_ip(ws)
        self._clients_per_ip[ip] += 1  # counted from the upgrade on, for the limits
        try:
            if self.config.token and ws not in self._authorized:
                if not await self._authenticate(ws, peer):
                    return
            await self._serve_client(ws, peer)
        finally:
            self._clients_per_ip[ip] -= 1
            if self._clients_per_ip[ip] <= 0:
                del self._clients_per_ip[ip]

    async def _authenticate(self, ws: ServerConnection, peer: str) -> bool:
        """Wait for a first ``auth`` message with the token; close with 1008 without one.

        Nothing is sent to the client before it succeeds (then ``hello`` follows).
        """
        timeout_s = self.config.handshake_timeout
        try:
            async with asyncio.timeout(timeout_s):
                first = await ws.recv()
        except TimeoutError:
            method, problem = "timeout", f"no auth message within {timeout_s:g} s"
        except ConnectionClosed:
            return False
        else:
            try:
                message = decode_message(first)
            except ProtocolError:
                message = {"type": ""}
            if message["type"] == "auth" and token_matches(message.get("token"),
                                                           self.config.token):
                log.info("event=auth_ok peer=%s method=message", peer)
                return True
            method = "message"
            problem = 'authentication failed: send {"type": "auth", "token": ...} first'
        self.auth_failures[method] += 1
        log.warning("event=auth_failed peer=%s method=%s", peer, method)
        await _close_or_abort(ws, CLOSE_POLICY_VIOLATION, problem, error_code="auth_failed")
        return False

    async def _serve_client(self, ws: ServerConnection, peer: str) -> None:
        """Register an admitted client, stream to it and answer it until it leaves."""
        cfg = self.config
        client = self.hub.add_client(peer)
        self._connections[client.client_id] = ws
        client.writer = _frame_writer(ws)
        client.on_pending = self._start_sender
        ws.response = None  # the handshake's response is not needed again: ~1.5 KiB
        log.info("event=connect client=%d peer=%s origin=%s", client.client_id, peer,
                 ws.request.headers.get("Origin", "-") if ws.request else "-")
        self.hub.send_to(client, encode_message("hello", self.hello()))
        self._choose_format_from_url(client, ws.request.path if ws.request else "/")
        bucket = TokenBucket(cfg.max_messages_per_s, cfg.max_messages_burst)
        reason = "closed by client"
        try:
            async for message in ws:
                if not bucket.take():
                    reason = "message rate limit exceeded"
                    self.closed_by_policy["rate_limit"] += 1
                    log.warning("event=rate_limited client=%d peer=%s max_messages_per_s=%g "
                                "max_messages_burst=%d", client.client_id, peer,
                                cfg.max_messages_per_s, cfg.max_messages_burst)
                    await _close_or_abort(
                        ws, CLOSE_POLICY_VIOLATION,
                        f"more than {cfg.max_messages_per_s:g} messages/s "
                        f"(burst {cfg.max_messages_burst})", error_code="rate_limited")
                    break
                if isinstance(message, bytes):
                    reason = "sent a binary message"
                    await _close_or_abort(ws, CLOSE_UNSUPPORTED_DATA,
                                          "binary messages are not accepted; send JSON text",
                                          error_code="binary_not_supported")
                    break
                self._answer(client, message)
        except ConnectionClosed as exc:
            reason = _close_text(exc)
        finally:
            client.on_pending = None
            if client.sender is not None:
                client.sender.cancel()
                await asyncio.gather(client.sender, return_exceptions=True)
            if ws.close_code is not None and reason == "closed by client":
                reason = _close_text_codes(ws.close_code, ws.close_reason)
            totals = client.snapshot()
            self.hub.remove_client(client)
            self._connections.pop(client.client_id, None)
            log.info(
                "event=disconnect client=%d peer=%s reason=%r frames_sent=%d "
                "frames_dropped=%d messages_sent=%d bytes_sent=%d connected_s=%.3f",
                client.client_id, peer, reason, totals["frames_sent"],
                totals["frames_dropped"], totals["messages_sent"], totals["bytes_sent"],
                totals["connected_s"],
            )

    def _connection_class(self) -> type[ServerConnection]:
        """websockets' connection, counting the handshakes that ``handshake_timeout`` ends.

        websockets cancels a handshake that takes longer than ``open_timeout`` and drops the
        socket without a word; this makes it a refusal like the others (``refused`` with
        reason ``handshake_timeout``, in /metrics), logged at INFO (a slow-loris attack
        would make one line per socket).
        """
        server = self

        class Connection(ServerConnection):
            async def handshake(self, *args: Any, **kwargs: Any) -> None:
                started = time.monotonic()
                try:
                    await super().handshake(*args, **kwargs)
                except asyncio.CancelledError:
                    # The open timeout cancels it; a shutdown cancels it too, sooner.
                    if time.monotonic() - started >= server.config.handshake_timeout * 0.99:
                        server.refused["handshake_timeout"] += 1
                        log.info("event=handshake_timeout peer=%s handshake_timeout=%g",
                                 _peer(self), server.config.handshake_timeout)
                    raise

        return Connection

    def _start_sender(self, client: ClientQueue) -> None:
        """Start sending what the hub queued for a client (it is behind, or a message is
        waiting for a frame in flight), unless a sender already runs for it."""
        if client.sender is not None or client.too_slow:
            return
        ws = self._connections.get(client.client_id)
        if ws is not None and (client.frames or client.messages):
            client.sender = asyncio.create_task(self._send_queued(ws, client))

    async def _send_queued(self, ws: ServerConnection, client: ClientQueue) -> None:
        """Send a client's queue in order until it is empty, waiting for the transport to
        drain between items; then end (the hub writes directly again).

        A connection that takes nothing for the keepalive's time is aborted: websockets'
        own keepalive cannot tell, as its ping and close frames wait behind the full buffer.
        """
        cfg = self.config
        stall_s = (cfg.ping_interval + cfg.ping_timeout
                   if cfg.ping_interval and cfg.ping_timeout else None)
        try:
            while not client.too_slow and (item := client.pop()) is not None:
                client.sending = True
                try:
                    async with asyncio.timeout(stall_s):
                        await ws.send(item)
                except TimeoutError:
                    self._abort_stalled(ws, client, stall_s or 0.0)
                    return
                finally:
                    client.sending = False
                self.hub.record_sent(client, item)
        except ConnectionClosed:
            pass  # the connection handler sees it too, and cleans up
        except Exception:  # a bug: keep serving everyone else, and say so
            log.exception("event=send_failed client=%d peer=%s", client.client_id, client.peer)
        finally:
            client.sender = None

    def _abort_stalled(self, ws: ServerConnection, client: ClientQueue, stall_s: float) -> None:
        self.closed_by_policy["stalled"] += 1
        log.warning("event=stalled client=%d peer=%s: took no data for %g s "
                    "(ping_interval + ping_timeout); aborting the connection",
                    client.client_id, client.peer, stall_s)
        ws.transport.abort()

    def _close_too_slow(self, client: ClientQueue) -> None:
        """Close a client whose message queue overflowed (the hub calls this once)."""
        ws = self._connections.get(client.client_id)
        if ws is None:
            return
        self.closed_by_policy["too_slow"] += 1
        log.warning("event=too_slow client=%d peer=%s messages_pending=%d: closing it with 1008",
                    client.client_id, client.peer, client.message_depth)
        task = asyncio.ensure_future(_close_or_abort(
            ws, CLOSE_POLICY_VIOLATION, "too slow: message queue overflow"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _answer(self, client: ClientQueue, text: str) -> None:
        """Reply to one inbound JSON message; errors go back to that client only."""
        try:
            message = decode_message(text)
        except ProtocolError as exc:
            self.hub.send_to(client, encode_message(
                "error", {"code": _error_code(text), "message": str(exc)}))
            return
        msg_type = message["type"]
        problem = validate_message(message)
        if problem is not None:
            self.hub.send_to(client, encode_message(
                "error", {"code": "bad_message", "message": problem}))
            return
        if msg_type == "auth":
            return  # already admitted (header, query or an earlier auth message)
        if msg_type == "ping":
            try:
                reply = encode_message(
                    "pong", {"id": message.get("id"), "server_time_ns": time.time_ns()})
            except ProtocolError as exc:  # an id nested too deeply to echo
                reply = encode_message("error", {"code": "bad_message",
                                                 "message": f"ping: {exc}"})
            self.hub.send_to(client, reply)
        elif msg_type == "stats":
            stats = self.hub.stats()
            self.hub.send_to(client, encode_message(
                "stats", {"client": client.snapshot(), "total": stats["total"]}))
        elif msg_type == "set_encoding":
            self._set_format(client, message.get("encoding"), message.get("compress", False),
                             message.get("step_db", 0))
        else:
            self.hub.send_to(client, encode_message("error", {
                "code": "unknown_type",
                "message": f"unknown message type {msg_type[:64]!r}; this server answers "
                           + ", ".join(repr(t) for t in CLIENT_MESSAGE_TYPES),
            }))

    def _choose_format_from_url(self, client: ClientQueue, path: str) -> None:
        """Apply ``?encoding=...&compress=...&step_db=...`` from the connection URL, if given."""
        query = parse_qs(urlsplit(path).query)
        if "encoding" in query or "compress" in query or "step_db" in query:
            encoding = query.get("encoding", ["float32"])[-1]
            self._set_format(client, encoding, query.get("compress", ["0"])[-1],
                             query.get("step_db", ["0"])[-1])

    def _set_format(self, client: ClientQueue, encoding: object, compress: object,
                    step_db: object = 0) -> None:
        """Switch a client's frame format from its next frame on, and confirm it (or say
        what is accepted, keeping the format it had)."""
        try:
            frame_format = FrameFormat.parse(encoding, compress, step_db)
        except ProtocolError as exc:
            self.hub.send_to(client, encode_message(
                "error", {"code": "bad_message", "message": f"set_encoding: {exc}"}))
            return
        client.frame_format = frame_format
        self.hub.send_to(client, encode_message("encoding", {
            "encoding": ENCODING_NAMES[frame_format.encoding],
            "compress": frame_format.compress,
            "step_db": frame_format.step_db,
        }))

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if path in ("/", "/ws"):
                if (self.config.permessage_deflate and _asks_compress_once(request.path)
                        and "Sec-WebSocket-Extensions" in request.headers):
                    # Its frames are already deflated once for all: don't compress twice.
                    # websockets negotiates extensions from this same request object after
                    # process_request returns, so without the header it negotiates none.
                    del request.headers["Sec-WebSocket-Extensions"]
                return self._admit(ws, request)
            return ws.respond(http.HTTPStatus.NOT_FOUND,
                              f"no WebSocket endpoint at {path}; connect to / instead\n")
        if path == "/metrics":
            if self.config.token and not token_matches(
                    bearer_token(request.headers.get("Authorization")), self.config.token):
                return _json_response(http.HTTPStatus.UNAUTHORIZED, {
                    "error": "/metrics needs the token: send Authorization: Bearer <token>"})
            return _response(http.HTTPStatus.OK, CONTENT_TYPE_LATEST, render(self._registry))
        if path == "/healthz":
            body = json.dumps({
                "status": "ok",
                "server": "gr-argos",
                "version": __version__,
                "clients": self.hub.client_count,
                "uptime_s": round(time.monotonic() - self._started_at, 3),
                "streams": [s.describe() for s in self.streams()],
            })
            return _response(http.HTTPStatus.OK, "application/json", body.encode())
        static = _static_file(path)
        if static is not None:
            return _response(http.HTTPStatus.OK, *static)
        return ws.respond(http.HTTPStatus.NOT_FOUND, f"not found: {path}\n")


    def _admit(self, ws: ServerConnection, request: Request) -> Response | None:
        """None to let a WebSocket upgrade go on, or the HTTP refusal (counted and logged):
        403 for an origin not allowed, 503 / 429 over the connection limits (with
        Retry-After), 401 for a wrong token in the header (or the URL, when allowed)."""
        cfg, peer = self.config, _peer(ws)
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, cfg.allowed_origins):
            return self._refuse(peer, "origin", http.HTTPStatus.FORBIDDEN,
                                f"origin {origin} is not allowed on this server",
                                origin=origin)
        if cfg.max_clients and sum(self._clients_per_ip.values()) >= cfg.max_clients:
            return self._refuse(peer, "max_clients", http.HTTPStatus.SERVICE_UNAVAILABLE,
                                f"server full: {cfg.max_clients} clients connected",
                                retry_after_s=_RETRY_AFTER_S)
        if cfg.max_clients_per_ip and (
                self._clients_per_ip[_peer_ip(ws)] >= cfg.max_clients_per_ip):
            return self._refuse(peer, "max_clients_per_ip", http.HTTPStatus.TOO_MANY_REQUESTS,
                                f"too many connections from your address "
                                f"(at most {cfg.max_clients_per_ip})",
                                retry_after_s=_RETRY_AFTER_S)
        if cfg.token:
            given, method = bearer_token(request.headers.get("Authorization")), "header"
            if given is None and cfg.allow_query_token:
                given = parse_qs(urlsplit(request.path).query).get("token", [None])[-1]
                method = "query"
            if given is not None:
                if not token_matches(given, cfg.token):
                    self.auth_failures[method] += 1
                    return self._refuse(peer, "auth", http.HTTPStatus.UNAUTHORIZED,
                                        "wrong token", method=method)
                self._authorized.add(ws)
                log.info("event=auth_ok peer=%s method=%s", peer, method)
        return None

    def _refuse(self, peer: str, reason: str, status: http.HTTPStatus, error: str,
                retry_after_s: int | None = None, **details: object) -> Response:
        """Count, log and build the JSON refusal of a WebSocket upgrade."""
        self.refused[reason] += 1
        log.warning("event=refused reason=%s peer=%s status=%d%s", reason, peer, status.value,
                    "".join(f" {key}={value}" for key, value in details.items()))
        body: dict[str, Any] = {"error": error}
        if retry_after_s is not None:
            body["retry_after_s"] = retry_after_s
        return _json_response(status, body, retry_after_s)


_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ts": "text/plain; charset=utf-8",
}

_FALLBACK_INDEX = (
    "<!doctype html><meta charset=utf-8><title>gr-argos</title>"
    "<p>gr-argos is serving live spectrum on this port over WebSocket. "
    "Connect with <code>argos-client ws://HOST:PORT/</code>.</p>"
).encode()


def websocket_frame(payload: bytes, text: bool = False) -> bytes:
    """``payload`` as one unmasked WebSocket frame (RFC 6455 5.2), as a server sends it:
    binary, or text (``payload`` is then UTF-8).

    A server's frames are not masked, so these bytes are the same for every client without
    an extension: the hub builds them once per frame and format, and once per message.
    """
    first = 0x81 if text else 0x82  # FIN + opcode
    size = len(payload)
    if size < 126:
        header = bytes((first, size))
    elif size < 1 << 16:
        header = _FRAME_HEADER_16.pack(first, 126, size)
    else:
        header = _FRAME_HEADER_64.pack(first, 127, size)
    return header + payload


def _frame_writer(ws: ServerConnection) -> Writer:
    """The hub's direct path to one connection: write a frame or message now if it can.

    It declines (and the hub queues the item for the client's sender, which waits for the
    transport to drain) when the connection is not open, its transport is over its write
    limit (paused), or a send is in progress. A connection that negotiated
    permessage-deflate gets the item through its protocol, which compresses it; the others
    get the prebuilt WebSocket frame, written as is.
    """
    protocol, transport = ws.protocol, ws.transport

    def can_take() -> bool:
        return (protocol.state is State.OPEN and not ws.paused
                and ws.send_in_progress is None and not transport.is_closing())

    if protocol.extensions:
        def write_through_extensions(data: bytes, wire: bytes, text: bool) -> bool:
            if not can_take():
                return False
            if text:
                protocol.send_text(data)
            else:
                protocol.send_binary(data)
            ws.send_data()
            return True
        return write_through_extensions

    def write_prebuilt(data: bytes, wire: bytes, text: bool) -> bool:
        if not can_take():
            return False
        transport.write(wire)
        return True
    return write_prebuilt


def _static_file(path: str) -> tuple[str, bytes] | None:
    """The packaged browser file for ``path`` (``/`` is index.html), if there is one."""
    name = "index.html" if path == "/" else path.lstrip("/")
    if "/" in name or name.startswith(".") or not name:
        return None
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in _CONTENT_TYPES:
        return None
    try:
        data = resources.files(_WEB_PACKAGE).joinpath(name).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError, IsADirectoryError, NotADirectoryError):
        if name == "index.html":
            return _CONTENT_TYPES[".html"], _FALLBACK_INDEX
        return None
    return _CONTENT_TYPES[suffix], data


def _response(status: http.HTTPStatus, content_type: str, body: bytes) -> Response:
    headers = Headers([
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
        ("Server", f"gr-argos/{__version__}"),
    ])
    return Response(status.value, status.phrase, headers, body)


def _json_response(status: http.HTTPStatus, body: dict[str, Any],
                   retry_after_s: int | None = None) -> Response:
    response = _response(status, "application/json", json.dumps(body).encode())
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


async def _close_or_abort(
    ws: ServerConnection, code: int, reason: str, error_code: str | None = None
) -> None:
    """Close with ``code`` (after an ``error`` message with ``error_code``, if given); drop
    the connection if the peer does not take them within the grace time (a client that
    stopped reading never would)."""
    try:
        async with asyncio.timeout(_CLOSE_GRACE_S):
            if error_code is not None:
                await ws.send(encode_message("error", {"code": error_code, "message": reason}))
            await ws.close(code, reason)
    except TimeoutError:
        ws.transport.abort()
    except ConnectionClosed:
        pass


def _permessage_deflate() -> ServerPerMessageDeflateFactory:
    """permessage-deflate with websockets' default, memory-lean settings (window 2**12,
    memLevel 5). docs/performance.md, "permessage-deflate tuning": at N = 100 they cost the
    same CPU per delivery as (10, 4) (0.799 vs 0.790 s per 1000) with 48 / 64 KiB per
    connection idle / active, while zlib's (15, 8) takes twice the CPU and 269 KiB."""
    return ServerPerMessageDeflateFactory(server_max_window_bits=12,
                                          compress_settings={"memLevel": 5})


def _asks_compress_once(path: str) -> bool:
    """Whether the connection URL asks for compress-once frames (``compress=1``/``true``)."""
    values = parse_qs(urlsplit(path).query).get("compress")
    return bool(values) and values[-1].lower() in ("1", "true")


def _error_code(text: str) -> str:
    """The error code for a message decode_message refused (see docs/protocol.md)."""
    try:
        json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return "bad_json"
    return "bad_message"


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _peer_ip(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


def _close_text(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "connection lost"
    return _close_text_codes(frame.code, frame.reason)


def _close_text_codes(code: int | None, reason: str | None) -> str:
    return f"code {code}" + (f" ({reason})" if reason else "")


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _call(function: Any) -> Any:
    return function()


def http_url(url: str) -> str:
    """The HTTP URL of the same place as a WebSocket URL (``ws://`` -> ``http://``,
    ``wss://`` -> ``https://``)."""
    if url.startswith("wss://"):
        return "https://" + url[len("wss://"):]
    if url.startswith("ws://"):
        return "http://" + url[len("ws://"):]
    return url


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _no_password() -> bytes:
    raise ServerError("key is encrypted")


def tls_context(config: ServerConfig) -> ssl.SSLContext:
    """The server's TLS context (TLS 1.2 or newer) from ``tls_cert`` and ``tls_key``.

    Raises:
        ServerError: a setting is empty, a file is missing or unreadable, is not PEM, the
            key is encrypted, or the key does not match the certificate. The message names
            the file.
    """
    if not config.tls_cert or not config.tls_key:
        missing = "tls_key" if config.tls_cert else "tls_cert"
        raise ServerError(f"TLS needs both tls_cert and tls_key: {missing} is empty "
                          f"(--{missing.replace('_', '-')})")
    for setting, path, marker in (("tls_cert", config.tls_cert, b"-----BEGIN CERTIFICATE"),
                                  ("tls_key", config.tls_key, b"PRIVATE KEY-----")):
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise ServerError(f"cannot read {setting} file {path}: "
                              f"{exc.strerror or exc}") from exc
        if marker not in data:
            what = "certificate" if setting == "tls_cert" else "private key"
            raise ServerError(f"{setting} file {path} holds no PEM {what}")
    if os.stat(config.tls_key).st_mode & 0o004:
        log.warning("event=tls_key_readable path=%s: the TLS private key is readable by every "
                    "user of this machine; chmod 600 it", config.tls_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key, password=_no_password)
    except ServerError:
        raise ServerError(f"tls_key file {config.tls_key} is encrypted: give the server an "
                          "unencrypted key (readable only by its user)") from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ServerError(f"tls_key file {config.tls_key} does not match the certificate "
                              f"in tls_cert file {config.tls_cert}") from exc
        raise ServerError(f"cannot load TLS certificate {config.tls_cert} with key "
                          f"{config.tls_key}: {exc}") from exc
    return context


def _explain_start_failure(exc: BaseException, config: ServerConfig) -> ServerError:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return ServerError(
            f"port {config.port} on {config.host} is already in use: stop the program using it "
            "or choose another port (--port)"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return ServerError(
            f"cannot listen on {config.host}: not an address of this machine (--host)"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EACCES:
        return ServerError(
            f"no permission to listen on port {config.port}: use a port above 1023 (--port)"
        )
    return ServerError(f"server on {config.host}:{config.port} failed to start: {exc}")



# -- servers shared by the sinks of one process ------------------------------------------

_shared_lock = threading.Lock()
_shared: dict[tuple[str, int], tuple[SpectrumServer, int]] = {}


def acquire_server(config: ServerConfig) -> SpectrumServer:
    """A running server for ``config``, shared by every sink that asks for the same host:port.

    Several sinks in one flowgraph (a spectrum and a sweep, say) can so serve their streams on
    one port. Port 0 always gets a server of its own. Release it with :func:`release_server`.

    Raises:
        ServerError: the server could not start.
    """
    key = (config.host, config.port)
    with _shared_lock:
        if config.port != 0 and key in _shared:
            server, users = _shared[key]
            if server.config != config:
                log.warning("sinks sharing %s:%d have different settings; the first one's "
                            "apply: %s", config.host, config.port, server.config)
            _shared[key] = (server, users + 1)
            return server
        server = SpectrumServer(config)
        server.start()
        _shared[(config.host, server.port)] = (server, 1)
        return server


def release_server(server: SpectrumServer) -> None:
    """Give back a server from :func:`acquire_server`; the last user stops it."""
    with _shared_lock:
        for key, (shared, users) in list(_shared.items()):
            if shared is server:
                if users > 1:
                    _shared[key] = (shared, users - 1)
                    return
                del _shared[key]
                break
    server.stop()
