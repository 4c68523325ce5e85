# SPDX-License-Identifier: GPL-3.0-or-later
"""Spectrum frames and JSON messages over ZeroMQ PUB/SUB, for gateways on other cores or hosts.

:class:`FramePublisher` looks like a :class:`~gr_argos.server.SpectrumServer` to the code that
feeds one (``publish_frame``, ``publish_message``, ``add_stream``, ``update_stream``,
``remove_stream``), so the sink's :class:`~gr_argos.stream.SpectrumStream` and
:class:`~gr_argos.status.StatusReporter` publish through it unchanged. It never blocks: a send
that would wait is dropped and counted, and the counters go out in the next heartbeat.
:class:`FrameSubscriber` connects to one or more publishers and hands back what arrives.

Wire format (docs/zmq.md): multipart messages ``[topic, body]``

    topic              body
    b"frame/<id>"      one encoded gr-argos spectrum frame of stream <id> (docs/protocol.md)
    b"msg"             one JSON message, UTF-8, exactly as WebSocket clients get it
    b"stream"          JSON {"session", "streams": [descriptor, ...]} after any stream change
    b"hb"              JSON heartbeat: session, interval, descriptors and drop counters

Between machines the link runs over CURVE (encrypted, and open only to the gateways whose
keys the publisher was given: :mod:`gr_argos.zmq_curve`); plain ZeroMQ only on ``ipc://``,
loopback or a network declared trusted.

No GNU Radio import.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import zmq
from zmq.utils.monitor import recv_monitor_message

from gr_argos.protocol import ProtocolError, StreamInfo, encode_message
from gr_argos.server.config import ServerError
from gr_argos.server.logs import EventLog
from gr_argos.settings import ConfigError, same_as, setting, validate
from gr_argos.zmq_curve import (
    AllowedKeys,
    CurveServer,
    HANDSHAKE_EVENTS,
    PUBLIC_KEY_SUFFIX,
    SECRET_KEY_SUFFIX,
    check_plain,
    handshake_failure,
    load_key_pair,
    load_public_key,
    secure_client,
)

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_SNDHWM",
    "FramePublisher",
    "FrameSubscriber",
    "PublisherError",
    "PublisherSettings",
    "RETRY_REFUSED_S",
    "SubscriberSettings",
    "TOPIC_FRAME",
    "TOPIC_HEARTBEAT",
    "TOPIC_MESSAGE",
    "TOPIC_STREAMS",
    "gateway_command",
    "stream_info_from_descriptor",
]

log = logging.getLogger(__name__)

TOPIC_FRAME = b"frame/"  # followed by the decimal stream id
TOPIC_MESSAGE = b"msg"
TOPIC_STREAMS = b"stream"
TOPIC_HEARTBEAT = b"hb"

DEFAULT_SNDHWM = 16
DEFAULT_HEARTBEAT_INTERVAL_S = 1.0
# A restarted publisher may find its port still held for a moment by the socket it closed.
_REBIND_RETRY_S = 2.0


class PublisherError(ServerError):
    """The publisher could not bind its endpoint; the message says why and what to do."""


_ZMQ_GROUP = "ZeroMQ (docs/zmq.md)"


@dataclass(frozen=True)
class PublisherSettings:
    """Settings of a ZeroMQ publisher (the ZeroMQ sink, ``argos-spectrum --transport zmq``).

    Raises:
        ConfigError: only half of the CURVE settings, or plain ZeroMQ on an endpoint other
            machines can reach without ``zmq_trusted_network``.
    """

    zmq_endpoint: str = setting("tcp://127.0.0.1:5555", "ZeroMQ endpoint to publish on "
                                "(tcp://HOST:PORT, ipc://PATH; port 0 = any free port)",
                                group=_ZMQ_GROUP)
    zmq_secret_key: str = setting("", "this end's CURVE key pair, a NAME.key_secret file from "
                                  "argos-keys (the publisher's own, or the gateway's own); "
                                  "empty = plain ZeroMQ", group=_ZMQ_GROUP)
    zmq_allowed_keys: str = setting("", "directory of the public keys (NAME.key files) of the "
                                    "gateways allowed to subscribe; needed with "
                                    "zmq_secret_key", group=_ZMQ_GROUP)
    zmq_trusted_network: bool = setting(False, "allow plain ZeroMQ (no encryption, no "
                                        "authentication) on a tcp:// endpoint other machines "
                                        "can reach: only on a network you trust",
                                        group=_ZMQ_GROUP)

    def __post_init__(self) -> None:
        validate(self)
        _both_or_neither(self, "zmq_allowed_keys", "CURVE on the publisher needs its key pair "
                         "(zmq_secret_key) and the directory of the gateways' public keys "
                         "(zmq_allowed_keys)")
        if not self.zmq_secret_key:
            check_plain(self.zmq_endpoint, self.zmq_trusted_network, "publisher")


@dataclass(frozen=True)
class SubscriberSettings:
    """Settings of a ZeroMQ subscriber (argos-gateway); the endpoints are its ``--connect``.

    Raises:
        ConfigError: only half of the CURVE settings.
    """

    zmq_secret_key: str = same_as(PublisherSettings, "zmq_secret_key")
    zmq_server_key: str = setting("", "the publisher's public key, its NAME.key file; needed "
                                  "with zmq_secret_key", group=_ZMQ_GROUP)
    zmq_trusted_network: bool = same_as(PublisherSettings, "zmq_trusted_network")

    def __post_init__(self) -> None:
        validate(self)
        _both_or_neither(self, "zmq_server_key", "CURVE on a gateway needs its key pair "
                         "(zmq_secret_key) and the publisher's public key (zmq_server_key)")


def _both_or_neither(settings: PublisherSettings | SubscriberSettings, partner: str,
                     why: str) -> None:
    """Raise ConfigError if only one of ``zmq_secret_key`` and ``partner`` is set."""
    values = {"zmq_secret_key": settings.zmq_secret_key, partner: getattr(settings, partner)}
    given = [name for name, value in values.items() if value]
    if len(given) == 1:
        (missing,) = set(values) - set(given)
        raise ConfigError(f"{given[0]} is set but {missing} is empty: {why}")


def gateway_command(endpoint: str, zmq_secret_key: str = "") -> str:
    """The argos-gateway command that serves a publisher bound to ``endpoint``: a wildcard
    address becomes ``THIS-HOST`` (a gateway connects to a name or an address), and a CURVE
    publisher's gateway needs its own key pair and this publisher's public key."""
    host_port = endpoint.partition("://")[2]
    for wildcard in ("0.0.0.0:", "*:", "[::]:"):
        if host_port.startswith(wildcard):
            endpoint = f"tcp://THIS-HOST:{host_port[len(wildcard):]}"
    command = f"argos-gateway --connect {endpoint}"
    if zmq_secret_key:
        public = zmq_secret_key.removesuffix(SECRET_KEY_SUFFIX) + PUBLIC_KEY_SUFFIX
        command += f" --zmq-secret-key GATEWAY{SECRET_KEY_SUFFIX} --zmq-server-key {public}"
    return command


def stream_info_from_descriptor(descriptor: dict[str, Any]) -> StreamInfo:
    """The :class:`StreamInfo` of a descriptor from a ``stream`` or ``hb`` message.

    Fields this version does not know (from a newer publisher) are ignored.
    """
    known = {f.name for f in dataclasses.fields(StreamInfo)}
    return StreamInfo(**{k: v for k, v in descriptor.items() if k in known})


class FramePublisher:
    """Publishes encoded frames and JSON messages on a bound ZeroMQ PUB socket.

    Thread-safe; ``publish_*`` never block and never raise. With ``XPUB_NODROP`` set, a send
    to a subscriber whose queue (``sndhwm`` messages) is full fails at once instead of being
    dropped silently, so every drop is counted (``frames_dropped``, ``messages_dropped``).

    With ``zmq_secret_key`` and ``zmq_allowed_keys`` the socket is a CURVE server
    (:class:`~gr_argos.zmq_curve.CurveServer`): the link is encrypted and only the gateways
    whose public keys are in that directory get anything; the others are refused, counted by
    reason in :meth:`stats` (and so in every heartbeat) and logged at a bounded rate. Each
    publisher has a ZeroMQ context of its own (a context has one ZAP handler).

    Args:
        endpoint: where to bind, e.g. "tcp://127.0.0.1:5555", "tcp://0.0.0.0:5555" or
            "ipc:///tmp/argos.sock"; port 0 picks a free port (read :attr:`endpoint`).
        sndhwm: messages queued per subscriber before sends are dropped.
        heartbeat_interval_s: seconds between heartbeats (> 0).
        zmq_secret_key, zmq_allowed_keys, zmq_trusted_network: as
            :class:`PublisherSettings`.

    Raises:
        PublisherError: the endpoint is malformed or in use.
        ConfigError: a CURVE setting or key file cannot be used, or plain ZeroMQ on an
            endpoint other machines can reach (the message names the setting).
    """

    def __init__(
        self,
        endpoint: str,
        sndhwm: int = DEFAULT_SNDHWM,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        *,
        zmq_secret_key: str = "",
        zmq_allowed_keys: str = "",
        zmq_trusted_network: bool = False,
    ) -> None:
        if sndhwm < 1:
            raise ValueError(f"sndhwm must be at least 1, got {sndhwm}")
        if not heartbeat_interval_s > 0:
            raise ValueError(f"heartbeat_interval_s must be > 0, got {heartbeat_interval_s}")
        PublisherSettings(endpoint, zmq_secret_key, zmq_allowed_keys, zmq_trusted_network)
        curve_keys = (load_key_pair(zmq_secret_key, "zmq_secret_key"),
                      AllowedKeys(zmq_allowed_keys)) if zmq_secret_key else None
        self.session = secrets.token_hex(8)
        self.heartbeat_interval_s = float(heartbeat_interval_s)
        self.frames_sent = 0
        self.frames_dropped = 0
        self.messages_dropped = 0
        self._streams: dict[int, StreamInfo] = {}
        self._lock = threading.Lock()  # a ZeroMQ socket is not thread-safe
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._context.setsockopt(zmq.LINGER, 0)  # term() never waits for unsent messages
        self._socket: zmq.Socket[bytes] = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, int(sndhwm))
        self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.curve = None if curve_keys is None else CurveServer(self._context, *curve_keys)
        try:
            if self.curve is not None:
                self.curve.secure(self._socket)
            _bind(self._socket, endpoint)
        except PublisherError:
            self._release()
            raise
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        if self.curve is not None:
            self.curve.bound(self.endpoint)
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="argos-zmq-heartbeat",
                                           daemon=True)
        self._heartbeat.start()
        log.info("publishing on %s (session %s, %s)", self.endpoint, self.session,
                 "plain ZeroMQ" if self.curve is None else
                 f"CURVE, public key {self.curve.keys.public.decode()}, "
                 f"{len(self.curve.allowed)} gateway key(s) allowed")

    @property
    def url(self) -> str:
        """The endpoint subscribers connect to (as :attr:`SpectrumServer.url` for a server)."""
        return self.endpoint

    # -- streams -------------------------------------------------------------------------

    def add_stream(self, info: StreamInfo) -> None:
        """Announce a stream to gateways.

        Raises:
            ValueError: another stream already has this id.
        """
        with self._lock:
            if info.stream_id in self._streams:
                raise ValueError(f"stream id {info.stream_id} is already published here by "
                                 f"stream {self._streams[info.stream_id].name!r}: give each "
                                 "sink its own stream_id")
            self._streams[info.stream_id] = info
        self._send_streams()

    def remove_stream(self, stream_id: int) -> None:
        with self._lock:
            self._streams.pop(stream_id, None)
        self._send_streams()

    def update_stream(self, stream_id: int, **changes: Any) -> None:
        """Change a stream's descriptor (a retune, say) and tell gateways at once."""
        with self._lock:
            if stream_id not in self._streams:
                return
            self._streams[stream_id] = dataclasses.replace(self._streams[stream_id], **changes)
        self._send_streams()

    def descriptors(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dataclasses.asdict(info) for info in self._streams.values()]

    # -- producers (any thread) ----------------------------------------------------------

    def publish_frame(self, stream_id: int, frame: bytes) -> None:
        """Publish one encoded frame on topic ``frame/<stream_id>``; drop and count it if any
        subscriber's queue is full."""
        self._send([TOPIC_FRAME + str(int(stream_id)).encode(), frame], is_frame=True)

    def publish_message(self, msg_type: str, body: dict[str, Any] | None = None) -> None:
        """Publish one JSON message (as WebSocket clients get it) on topic ``msg``."""
        try:
            text = encode_message(msg_type, body)
        except ProtocolError as exc:
            log.warning("dropped a %s message: %s", msg_type, exc)
            return
        self._send([TOPIC_MESSAGE, text.encode()])

    def stats(self) -> dict[str, Any]:
        """Counters since the publisher was made: frames sent and dropped, messages dropped,
        and the peers refused by reason (``refused``; empty without CURVE)."""
        return {
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "messages_dropped": self.messages_dropped,
            "refused": {} if self.curve is None else self.curve.refused(),
        }

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeat, unbind, and stop the CURVE threads. Idempotent; later
        publishes are dropped."""
        self._stop.set()
        if self._heartbeat.is_alive() and threading.current_thread() is not self._heartbeat:
            self._heartbeat.join()
        self._release()

    def _release(self) -> None:
        with self._lock:
            if not self._socket.closed:
                self._socket.close()
        if self.curve is not None:
            self.curve.close()
        if not self._context.closed:
            self._context.term()

    def _send_streams(self) -> None:
        body = {"session": self.session, "streams": self.descriptors()}
        self._send([TOPIC_STREAMS, json.dumps(body).encode()])

    def heartbeat(self) -> dict[str, Any]:
        """The body of the next heartbeat."""
        return {
            "session": self.session,
            "interval_s": self.heartbeat_interval_s,
            "time_ns": time.time_ns(),
            "streams": self.descriptors(),
            **self.stats(),
        }

    def _beat(self) -> None:
        while True:
            # A dropped heartbeat is counted and reported by the next one that gets out.
            self._send([TOPIC_HEARTBEAT, json.dumps(self.heartbeat()).encode()])
            if self._stop.wait(self.heartbeat_interval_s):
                return

    def _send(self, parts: list[bytes], is_frame: bool = False) -> None:
        """Send without waiting; count it as dropped if it would have waited (or the
        publisher is closed)."""
        with self._lock:
            sent = False
            if not self._socket.closed:
                try:
                    self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                    sent = True
                except zmq.Again:
                    pass
                except zmq.ZMQError as exc:
                    log.warning("dropped a ZeroMQ message: %s", exc)
            if is_frame:
                if sent:
                    self.frames_sent += 1
                else:
                    self.frames_dropped += 1
            elif not sent:
                self.messages_dropped += 1


def _bind(socket: zmq.Socket[bytes], endpoint: str) -> None:
    deadline = time.monotonic() + _REBIND_RETRY_S
    while True:
        try:
            socket.bind(endpoint)
            return
        except zmq.ZMQError as exc:
            if exc.errno == errno.EADDRINUSE and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            if exc.errno == errno.EADDRINUSE:
                raise PublisherError(f"ZeroMQ endpoint {endpoint} is already in use: stop the "
                                     "program using it or choose another zmq_endpoint") from exc
            raise PublisherError(f"cannot bind ZeroMQ endpoint {endpoint!r}: {exc} (expected "
                                 "e.g. tcp://127.0.0.1:5555 or ipc:///tmp/argos.sock)") from exc


class FrameSubscriber:
    """Receives what one or more :class:`FramePublisher` s send.

    :meth:`receive` returns one of:

    - ``("frame", stream_id, frame_bytes)``
    - ``("message", json_text)`` — a JSON message to pass on to clients
    - ``("streams", {"session", "streams": [descriptor, ...]})``
    - ``("heartbeat", {"session", "interval_s", "streams", "frames_dropped", ...})``

    or None when nothing arrived in time; :meth:`receive_from` also says which endpoint sent
    it. Malformed or unknown messages are logged and skipped. ZeroMQ reconnects on its own
    when a publisher restarts.

    With ``zmq_secret_key`` and ``zmq_server_key`` every socket is a CURVE client. A failed
    handshake with a publisher (its key refused, the wrong server key, plain on one side) is
    counted in :attr:`handshake_failures` and logged at a bounded rate; after a refusal
    ZeroMQ would not try again, so the subscriber connects anew every
    :data:`RETRY_REFUSED_S` seconds (a key added to the publisher's allowed keys then
    takes effect without a restart here).

    Args:
        endpoints: publisher endpoints to connect to ("tcp://HOST:PORT", "ipc://PATH").
        rcvhwm: messages queued per endpoint before ZeroMQ drops new ones (the sequence
            shows it).
        zmq_secret_key, zmq_server_key, zmq_trusted_network: as :class:`SubscriberSettings`.

    Raises:
        ValueError: no endpoint, or one that is malformed.
        ConfigError: a CURVE setting or key file cannot be used, or plain ZeroMQ to an
            endpoint on another machine without ``zmq_trusted_network``.
    """

    def __init__(self, endpoints: Sequence[str], rcvhwm: int = 1000, *,
                 zmq_secret_key: str = "", zmq_server_key: str = "",
                 zmq_trusted_network: bool = False) -> None:
        if not endpoints:
            raise ValueError("give at least one publisher endpoint to connect to")
        SubscriberSettings(zmq_secret_key, zmq_server_key, zmq_trusted_network)
        if not zmq_secret_key:
            for endpoint in endpoints:
                check_plain(endpoint, zmq_trusted_network, "gateway")
            curve = None
        else:
            curve = (load_key_pair(zmq_secret_key, "zmq_secret_key"),
                     load_public_key(zmq_server_key, "zmq_server_key"))
        #: Failed handshakes with each publisher, by (endpoint, reason of
        #: :data:`~gr_argos.zmq_curve.CLIENT_FAILURE_REASONS`).
        self.handshake_failures: Counter[tuple[str, str]] = Counter()
        self._events = EventLog(log)
        # One socket per endpoint: a SUB socket does not say which peer sent a message, and
        # the gateway reports each publisher's silence on its own.
        self._sockets: dict[zmq.Socket[bytes], str] = {}
        self._monitors: dict[zmq.Socket[bytes], zmq.Socket[bytes]] = {}  # monitor -> socket
        self._retry_at: dict[zmq.Socket[bytes], float] = {}
        self._poller = zmq.Poller()
        self._ready: list[zmq.Socket[bytes]] = []  # polled readable, not yet read: served in turn
        for endpoint in endpoints:
            socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
            socket.setsockopt(zmq.RCVHWM, int(rcvhwm))
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.SUBSCRIBE, b"")
            if curve is not None:
                secure_client(socket, *curve)
            monitor = socket.get_monitor_socket(HANDSHAKE_EVENTS)
            monitor.setsockopt(zmq.LINGER, 0)
            self._sockets[socket] = endpoint
            self._monitors[monitor] = socket
            try:
                socket.connect(endpoint)
            except zmq.ZMQError as exc:
                self.close()
                raise ValueError(f"cannot connect to {endpoint!r}: {exc} (expected e.g. "
                                 "tcp://HOST:5555 or ipc:///tmp/argos.sock)") from exc
            self._poller.register(socket, zmq.POLLIN)
            self._poller.register(monitor, zmq.POLLIN)
        self.endpoints = list(endpoints)

    def receive(self, timeout_s: float) -> tuple[Any, ...] | None:
        """The next message (see the class doc), or None after ``timeout_s`` seconds."""
        received = self.receive_from(timeout_s)
        return None if received is None else received[1]

    def receive_from(self, timeout_s: float) -> tuple[str, tuple[Any, ...]] | None:
        """``(endpoint, message)`` for the next message, or None after ``timeout_s`` s.

        Endpoints with messages waiting are served one message each in turn, so a busy
        publisher cannot starve a quiet one.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if not self._ready:
                self._retry_refused()
                remaining = deadline - time.monotonic()
                if remaining < 0:
                    return None
                self._ready = [socket for socket, _ in
                               self._poller.poll(max(0, int(remaining * 1000)))]
                if not self._ready:
                    return None
            socket = self._ready.pop(0)
            if socket in self._monitors:
                self._handshake_event(socket)
                continue
            try:
                parts = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            event = _parse(parts)
            if event is not None:
                return self._sockets[socket], event

    def _handshake_event(self, monitor: zmq.Socket[bytes]) -> None:
        """Count and log a failed handshake; after a refusal, plan a new connection."""
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.Again:
            return
        reason = handshake_failure(event)
        if reason is None:
            return
        socket = self._monitors[monitor]
        endpoint = self._sockets[socket]
        self.handshake_failures[endpoint, reason] += 1
        self._events.log(logging.WARNING, "zmq_handshake_failed",
                         "event=zmq_handshake_failed reason=%s endpoint=%s: %s", reason,
                         endpoint, _FAILURE_HELP[reason])
        if reason in ("key_refused", "mechanism_mismatch", "protocol"):
            # ZeroMQ gives up on a connection refused this way: try again later ourselves.
            self._retry_at.setdefault(socket, time.monotonic() + RETRY_REFUSED_S)

    def _retry_refused(self) -> None:
        now = time.monotonic()
        for socket, due in list(self._retry_at.items()):
            if due > now:
                continue
            del self._retry_at[socket]
            endpoint = self._sockets[socket]
            try:
                socket.disconnect(endpoint)
            except zmq.ZMQError:
                pass  # already gone
            socket.connect(endpoint)

    def close(self) -> None:
        for monitor in self._monitors:
            monitor.close()
        for socket in self._sockets:
            socket.close()


#: Seconds before a subscriber whose handshake a publisher refused connects again.
RETRY_REFUSED_S = 5.0

_FAILURE_HELP = {
    "key_refused": "the publisher refused this gateway's CURVE key: copy its public key "
                   "(the NAME.key beside zmq_secret_key) into the publisher's "
                   "zmq_allowed_keys directory",
    "mechanism_mismatch": "one side uses CURVE and the other plain ZeroMQ: give both "
                          "ends keys (zmq_secret_key), or neither",
    "closed": "the publisher closed the connection during the handshake: is zmq_server_key "
              "the publisher's public key, and does the publisher expect CURVE (this "
              "gateway needs zmq_secret_key and zmq_server_key then)?",
    "protocol": "the publisher broke the ZeroMQ handshake protocol",
}


def _parse(parts: list[bytes]) -> tuple[Any, ...] | None:
    if len(parts) != 2:
        log.warning("skipped a ZeroMQ message of %d parts (expected topic and body)", len(parts))
        return None
    topic, body = parts
    try:
        if topic.startswith(TOPIC_FRAME):
            return ("frame", int(topic[len(TOPIC_FRAME):]), body)
        if topic == TOPIC_MESSAGE:
            return ("message", body.decode())
        if topic == TOPIC_STREAMS:
            return ("streams", _json_object(body))
        if topic == TOPIC_HEARTBEAT:
            return ("heartbeat", _json_object(body))
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("skipped a malformed %r message: %s", topic[:32], exc)
        return None
    log.debug("skipped a message on unknown topic %r", topic[:32])
    return None


def _json_object(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict) or not isinstance(value.get("session"), str) \
            or not isinstance(value.get("streams"), list):
        raise ValueError("expected a JSON object with 'session' and 'streams'")
    return value
