"""GNU Radio sink that streams dB spectra to WebSocket clients."""

from __future__ import annotations

from typing import Any

import numpy as np
import pmt
from gnuradio import gr

from gr_argos.hub import DEFAULT_INGRESS_DEPTH, DEFAULT_MESSAGE_QUEUE_DEPTH, DEFAULT_QUEUE_DEPTH
from gr_argos.server import (
    ServerConfig,
    ServerError,
    SpectrumServer,
    StreamInfo,
    acquire_server,
    release_server,
)
from gr_argos.protocol import ENCODING_CODES, check_step_db
from gr_argos.status import StatusReporter
from gr_argos.stream import SpectrumStream
from gr_argos.zmq_transport import FramePublisher

TRANSPORTS = ("websocket", "zmq")

__all__ = ["websocket_sink"]

TAG_RX_FREQ = pmt.intern("rx_freq")
TAG_RX_RATE = pmt.intern("rx_rate")
TAG_RX_TIME = pmt.intern("rx_time")


class websocket_sink(gr.sync_block):
    """Stream float32 dB spectrum vectors to WebSocket clients.

    Each input vector (``vlen`` bins, FFT-shifted, lowest frequency first) becomes one binary
    frame of the gr-argos protocol, encoded once and queued for every client; a client that
    cannot keep up loses its oldest frames, counted and reported to it. ``work()`` only hands
    frames off: it never waits for the network.

    Frame metadata comes from the stream tags ``rx_freq`` and ``rx_rate`` (Hz) and
    ``rx_time`` ((uint64 s, double frac) as gr-osmosdr and UHD emit it), and falls back to
    ``center_freq`` and ``samp_rate`` until a tag arrives. PMT dicts arriving on the ``msg``
    port are broadcast at once as JSON messages of type ``msg_channel`` (a GPS fix, say).
    Every ``status_interval`` seconds the sink sends a ``status`` message: the stream's
    frequency, span, bins and measured frame rate, merged with the latest PMT dict from each
    source on the ``status`` port (a ``blocks.probe_rate`` there reports the measured sample
    rate as ``samp_rate_measured``).

    Args:
        vlen: bins per spectrum vector.
        center_freq: centre frequency in Hz until an ``rx_freq`` tag says otherwise.
        samp_rate: span of a spectrum in Hz (the sample rate) until an ``rx_rate`` tag.
        host: address to listen on; "0.0.0.0" exposes the server on every interface.
        port: TCP port; 0 picks a free one (the URL is logged). Sinks of one flowgraph that
            name the same host and port share one server, each with its own stream_id.
            The port is bound when the block is made, so a port in use fails there, with a
            ServerError that names it.
        stream_id: id of this stream in the frames (0..65535).
        stream_name: name of this stream in the ``hello`` message.
        fps: nominal frames per second, announced to clients.
        queue_depth: spectrum frames queued per client before the oldest is dropped.
        message_queue_depth: JSON messages queued per client before it is closed as too slow.
        ping_interval: seconds between WebSocket keepalive pings (0 = off).
        ping_timeout: seconds without a pong before a client counts as dead.
        msg_channel: JSON ``type`` of messages from the ``msg`` port ("gps", ...).
        status_interval: seconds between ``status`` messages (0 = none).
        transport: "websocket" serves clients from this process; "zmq" publishes the same
            frames and JSON messages on a ZeroMQ PUB socket for argos-gateway processes to
            serve (docs/zmq.md), and host, port and the per-client settings are unused.
        zmq_endpoint: with transport "zmq", where to bind ("tcp://127.0.0.1:5555",
            "tcp://0.0.0.0:5555", "ipc:///tmp/argos.sock"); bound when the block is made.
        encoding: frame encoding for clients that do not choose one: "float32" (exact),
            "int16" (within 0.005 dB) or "uint8" (within half a step of the frame's range);
            each is encoded once per frame, however many clients use it.
        allowed_origins: comma-separated browser origins allowed to connect, exact
            ``scheme://host[:port]``; empty allows any (others get HTTP 403).
        token: shared secret clients must present (``Authorization: Bearer`` header or a
            first ``auth`` message); empty: no authentication. Never logged.
        allow_query_token: also accept the token as ``?token=`` in the URL.
        max_clients: clients served at once (0 = no limit); more get HTTP 503.
        max_clients_per_ip: clients per address (0 = no limit); more get HTTP 429.
        handshake_timeout: seconds to complete the handshake and authenticate.
        max_messages_per_s: messages per second a client may send (0 = no limit); a
            client over it is closed with 1008.
        max_messages_burst: messages a client may send at once above that rate.
        permessage_deflate: negotiate permessage-deflate with clients that offer it
            (compatibility; per-client CPU and memory), never with clients that asked for
            compress-once frames (``?compress=1``). Off by default.
        tls_cert: path of the PEM certificate (chain) to serve TLS with: clients then connect
            to wss:// and https://. Empty (the default): plain ws:// and http://.
        tls_key: path of the PEM private key of ``tls_cert`` (unencrypted; chmod 600). A
            missing or unreadable file, or a key that does not match the certificate, fails
            when the block is made with a ServerError naming the file.
        step_db: with encoding "uint8", the step in dB for clients that do not choose one:
            0 (automatic, 256 levels over each frame's own range) or 0.01..20 dB, a fixed
            step (wider only for a frame whose range needs more than 256 levels) on
            levels aligned to its multiples, within half a step; a coarser step deflates
            better. Ignored for the other encodings.
        (See docs/operations.md.)

    """

    MSG_PORT = pmt.intern("msg")
    STATUS_PORT = pmt.intern("status")

    def __init__(
        self,
        vlen: int = 2048,
        center_freq: float = 0.0,
        samp_rate: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 8765,
        stream_id: int = 0,
        stream_name: str = "spectrum",
        fps: float = 30.0,
        queue_depth: int = DEFAULT_QUEUE_DEPTH,
        message_queue_depth: int = DEFAULT_MESSAGE_QUEUE_DEPTH,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        msg_channel: str = "gps",
        status_interval: float = 1.0,
        transport: str = "websocket",
        zmq_endpoint: str = "tcp://127.0.0.1:5555",
        encoding: str = "float32",
        allowed_origins: str = "",
        token: str = "",
        allow_query_token: bool = False,
        max_clients: int = 256,
        max_clients_per_ip: int = 32,
        handshake_timeout: float = 10.0,
        max_messages_per_s: float = 10.0,
        max_messages_burst: int = 20,
        permessage_deflate: bool = False,
        tls_cert: str = "",
        tls_key: str = "",
        step_db: float = 0.0,
    ) -> None:
        gr.sync_block.__init__(
            self, name="websocket_sink", in_sig=[(np.float32, int(vlen))], out_sig=None
        )
        if int(vlen) < 1:
            raise ValueError(f"vlen must be at least 1, got {vlen}")
        if not 0 <= int(stream_id) <= 0xFFFF:
            raise ValueError(f"stream_id must be in 0..65535, got {stream_id}")
        if encoding not in ENCODING_CODES:
            raise ValueError(f"encoding must be one of {', '.join(ENCODING_CODES)}, "
                             f"got {encoding!r}")
        check_step_db(step_db)  # a ValueError naming the range
        if float(status_interval) < 0:
            raise ValueError(f"status_interval must be >= 0 seconds, got {status_interval}")
        if not msg_channel or not str(msg_channel).isidentifier():
            raise ValueError(f"msg_channel must be a simple name like 'status' or 'gps', "
                             f"got {msg_channel!r}")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, "
                             f"got {transport!r}")
        self.vlen = int(vlen)
        self.transport = str(transport)
        self.zmq_endpoint = str(zmq_endpoint)
        self.msg_channel = str(msg_channel)
        self.status_interval = float(status_interval)
        self.config = ServerConfig(
            host=str(host),
            port=int(port),
            queue_depth=int(queue_depth),
            message_queue_depth=int(message_queue_depth),
            ping_interval=float(ping_interval),
            ping_timeout=float(ping_timeout),
            allowed_origins=str(allowed_origins),
            token=str(token),
            allow_query_token=bool(allow_query_token),
            max_clients=int(max_clients),
            max_clients_per_ip=int(max_clients_per_ip),
            handshake_timeout=float(handshake_timeout),
            max_messages_per_s=float(max_messages_per_s),
            max_messages_burst=int(max_messages_burst),
            permessage_deflate=bool(permessage_deflate),
            tls_cert=str(tls_cert),
            tls_key=str(tls_key),
        )
        self._info = StreamInfo(
            stream_id=int(stream_id),
            name=str(stream_name),
            bins=self.vlen,
            center_freq_hz=float(center_freq),
            span_hz=float(samp_rate),
            encoding=ENCODING_CODES[encoding],
            fps=float(fps),
            step_db=float(step_db) if encoding == "uint8" else 0.0,
        )
        self.server: SpectrumServer | FramePublisher | None = None
        self.stream: SpectrumStream | None = None
        self.status: StatusReporter | None = None
        self.message_port_register_in(self.MSG_PORT)
        self.set_msg_handler(self.MSG_PORT, self._handle_msg)
        self.message_port_register_in(self.STATUS_PORT)
        self.set_msg_handler(self.STATUS_PORT, self._handle_status)
        self._serve()

    # -- lifecycle -----------------------------------------------------------------------

    def _serve(self) -> None:
        server: SpectrumServer | FramePublisher
        server = (FramePublisher(self.zmq_endpoint) if self.transport == "zmq"
                  else acquire_server(self.config))
        try:
            server.add_stream(self._info)
        except ValueError:
            self._release(server)
            raise
        self.server = server
        if self.stream is None:  # kept across restarts so sequence numbers keep counting
            self.stream = SpectrumStream(server, self._info)
            self.status = StatusReporter(self.stream, self._publish, self.status_interval)
        else:
            self.stream.attach(server)
        if isinstance(server, FramePublisher):
            self.zmq_endpoint = server.endpoint  # a restart binds the same port, also for :0
            self.logger.info(f"publishing {self._info.name!r} (stream {self._info.stream_id}) "
                             f"over ZeroMQ on {server.endpoint}: serve it with "
                             f"argos-gateway --connect {server.endpoint}")
            return
        self.logger.info(f"serving {self._info.name!r} (stream {self._info.stream_id}) on "
                         f"{server.url} — health at {server.health_url}")

    def start(self) -> bool:
        """Serve again after a stop(); a failure is logged, never raised.

        The server is first started by the constructor, like gr-zeromq binds its sockets
        there: an exception from a Python block's start() would hang or crash the scheduler.
        """
        if self.server is None:
            try:
                self._serve()
            except (ServerError, ValueError) as exc:
                self.logger.error(f"not serving: {exc}")
                return True
        if self.status is not None:
            self.status.start()
        return True

    def stop(self) -> bool:
        """Close every client (code 1001) and stop the server if no other sink uses it."""
        if self.status is not None:
            self.status.stop()
        server, self.server = self.server, None
        if server is not None:
            server.remove_stream(self._info.stream_id)
            self._release(server)
        return True

    @staticmethod
    def _release(server: SpectrumServer | FramePublisher) -> None:
        if isinstance(server, FramePublisher):
            server.close()
        else:
            release_server(server)

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to, or the ZeroMQ endpoint (while running)."""
        if self.server is None:
            raise RuntimeError("the sink is not running")
        return self.server.url

    # -- data ----------------------------------------------------------------------------

    def work(self, input_items: list[np.ndarray], output_items: list[np.ndarray]) -> int:
        vectors = input_items[0]
        count = len(vectors)
        stream = self.stream
        if stream is None or self.server is None:
            return count
        first = self.nitems_read(0)
        tags = sorted(self.get_tags_in_window(0, 0, count), key=lambda tag: tag.offset)
        # Hand off at most what the hub's ingress holds; older vectors of a large backlog
        # would only be dropped there. Their sequence numbers still pass, so clients see it.
        keep_from = max(0, count - DEFAULT_INGRESS_DEPTH)
        tag_index = 0
        for index in range(count):
            while tag_index < len(tags) and tags[tag_index].offset <= first + index:
                self._apply_tag(stream, tags[tag_index])
                tag_index += 1
            if index < keep_from:
                stream.skip(1)
            else:
                stream.publish(vectors[index])
        return count

    def _apply_tag(self, stream: SpectrumStream, tag: Any) -> None:
        key, value = tag.key, tag.value
        try:
            if pmt.eq(key, TAG_RX_FREQ):
                stream.retune(center_freq_hz=pmt.to_double(value))
            elif pmt.eq(key, TAG_RX_RATE):
                stream.retune(span_hz=pmt.to_double(value))
            elif pmt.eq(key, TAG_RX_TIME):
                seconds = pmt.to_uint64(pmt.tuple_ref(value, 0))
                fraction = pmt.to_double(pmt.tuple_ref(value, 1))
                stream.set_capture_time(seconds * 1_000_000_000 + round(fraction * 1e9))
        except (RuntimeError, ValueError, TypeError) as exc:
            self.logger.warn(f"ignored malformed {pmt.symbol_to_string(key)} tag "
                             f"{pmt.write_string(value)}: {exc}")

    # -- messages ------------------------------------------------------------------------

    def set_source_status(self, fields: dict[str, Any]) -> None:
        """Describe the source in every periodic ``status`` message (kind, args, gains...).

        Thread-safe; the fields are merged with what arrives on the ``status`` port.
        """
        if self.status is not None:
            self.status.update_source(fields)

    def _handle_status(self, msg: Any) -> None:
        body = self._pmt_dict(msg, "status")
        if body is not None:
            self.set_source_status(body)

    def _pmt_dict(self, msg: Any, port: str) -> dict[str, Any] | None:
        """A PMT dict (or a PDU's metadata dict) as a Python dict with string keys, or None
        (logged) for anything else."""
        if pmt.is_pair(msg) and not pmt.is_dict(msg) and pmt.is_dict(pmt.car(msg)):
            msg = pmt.car(msg)  # a PDU, as blocks.probe_rate posts: (metadata . data)
        if not pmt.is_dict(msg):
            self.logger.warn(f"dropped a message on port '{port}': expected a PMT dict, got "
                             f"{pmt.write_string(msg)[:200]}")
            return None
        try:
            body = pmt.to_python(msg)
        except Exception as exc:  # pmt.to_python raises bare ValueError/TypeError variants
            self.logger.warn(f"dropped a message on port '{port}' that cannot be converted: "
                             f"{exc}")
            return None
        if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
            self.logger.warn(f"dropped a message on port '{port}': its keys must be symbols")
            return None
        return body

    def _handle_msg(self, msg: Any) -> None:
        body = self._pmt_dict(msg, "msg")
        if body is not None:
            self._publish(self.msg_channel, {"stream": self._info.stream_id, **body})

    def _publish(self, msg_type: str, body: dict[str, Any]) -> None:
        server = self.server
        if server is None:
            self.logger.warn(f"dropped a {msg_type} message: the sink is not running")
            return
        server.publish_message(msg_type, body)
