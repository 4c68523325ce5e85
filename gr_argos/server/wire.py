# SPDX-License-Identifier: GPL-3.0-or-later
"""The one place that writes beside ``websockets``: prebuilt frames straight to the transport.

gr-argos builds each spectrum frame's WebSocket framing once (:func:`websocket_frame`) and
writes the same bytes to every client that keeps up (:func:`frame_writer`), instead of
letting ``websockets`` frame the same payload again per client. That needs what the library
does not document: a connection's ``transport``, ``protocol`` (its sans-I/O state),
``paused`` flag and pending send (``send_in_progress``, called ``fragmented_send_waiter``
before 16.0), ``send_data()``, the queue of received messages (``recv_messages``, whose
pause and resume it wraps), the protocol's ``handshake_exc`` (cleared), and its
``handshake()``, ``process_event()``, ``connection_made()``, ``data_received()``,
``connection_lost()``, ``pause_writing()`` and ``resume_writing()``, subclassed
(:func:`connection_class`). Every use of those is in this module, and only the
``websockets`` releases in :data:`TESTED_WEBSOCKETS` are accepted (:func:`check_websockets`):
a newer one is refused at start-up with a message, rather than breaking frames silently.

Why not only documented APIs: ``ServerConnection.send()`` per client costs a task switch and
a framing per delivery; docs/performance.md ("The websockets boundary") has the measurement.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from typing import Any, Callable, Protocol

import websockets.version
from websockets.asyncio.server import Server, ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State

from gr_argos.server.client_messages import TokenBucket
from gr_argos.server.config import ServerError

__all__ = ["ConnectionHooks", "TESTED_WEBSOCKETS", "Writer", "abort", "check_websockets",
           "close_server", "compresses", "connection_class", "frame_writer",
           "websocket_frame"]

#: The ``websockets`` releases this module was tested with: from the first (inclusive) to
#: the second (exclusive), as (major, minor). pyproject.toml pins the same range. (14.x-16.x
#: fail tests/server: they answer no method but GET and leave closed connections in cycles.)
TESTED_WEBSOCKETS = ((17, 0), (18, 0))
#: Set to 1 to run with an untested ``websockets`` anyway (a warning instead of an error).
ALLOW_UNTESTED_ENV = "ARGOS_ALLOW_UNTESTED_WEBSOCKETS"

#: ``writer(data, wire, text)``: write ``wire`` (or ``data``, through the connection's
#: extensions) now and return True, or return False when the connection cannot take it now.
Writer = Callable[[bytes, bytes, bool], bool]

# A WebSocket frame header: FIN + opcode, then a 16-bit or 64-bit payload length.
_FRAME_HEADER_16 = struct.Struct("!BBH")
_FRAME_HEADER_64 = struct.Struct("!BBQ")


def _release(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return (0, 0)


_RELEASE = _release(websockets.version.version)
# What a connection calls the send it has in progress (a fragmented or a queued message).
_SEND_IN_PROGRESS = "send_in_progress" if _RELEASE >= (16, 0) else "fragmented_send_waiter"


def check_websockets(version: str | None = None) -> str | None:
    """Refuse a ``websockets`` release outside :data:`TESTED_WEBSOCKETS`.

    Args:
        version: the release to check (default: the one installed).

    Returns:
        None for a tested release, or a warning to log for an untested one when
        ``ARGOS_ALLOW_UNTESTED_WEBSOCKETS=1`` is set.

    Raises:
        ServerError: an untested release, saying which ones work and how to get one.
    """
    version = websockets.version.version if version is None else version
    release = _release(version)
    low, high = TESTED_WEBSOCKETS
    if low <= release < high:
        return None
    problem = (f"websockets {version} is not a release gr-argos was tested with "
               f"({low[0]}.{low[1]} up to, not including, {high[0]}.{high[1]}); the server "
               "writes frames through its internals (gr_argos/server/wire.py)")
    if os.environ.get(ALLOW_UNTESTED_ENV) == "1":
        return f"{problem}; running anyway because {ALLOW_UNTESTED_ENV}=1"
    raise ServerError(f"{problem}: install a tested one, e.g. pip install "
                      f"'websockets>={low[0]}.{low[1]},<{high[0]}.{high[1]}', or set "
                      f"{ALLOW_UNTESTED_ENV}=1 to try this one")


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


def frame_writer(ws: ServerConnection) -> Writer:
    """The direct path to one connection: write a frame or message now if it can.

    It declines (and the caller queues the item for the client's sender, which waits for the
    transport to drain) when the connection is not open, its transport is over its write
    limit (paused), or a send of the library's is in progress. A connection that negotiated
    permessage-deflate gets the item through its protocol, which compresses it; the others
    get the prebuilt WebSocket frame, written as is.
    """
    protocol, transport = ws.protocol, ws.transport

    def can_take() -> bool:
        return (protocol.state is State.OPEN and not ws.paused
                and getattr(ws, _SEND_IN_PROGRESS) is None and not transport.is_closing())

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


def close_server(server: Server, reason: str) -> None:
    """Stop listening and close every connection with 1001 (going away) and ``reason``
    (before websockets 16.0, which added the reason, with 1001 and no reason)."""
    if _RELEASE >= (16, 0):
        server.close(close_connections=True, code=1001, reason=reason)
    else:
        server.close(close_connections=True)


def compresses(ws: ServerConnection) -> bool:
    """Whether the connection negotiated an extension (permessage-deflate)."""
    return bool(ws.protocol.extensions)


def abort(ws: ServerConnection) -> None:
    """Drop a connection at once, without a closing handshake (a peer that stopped reading
    would never complete one)."""
    ws.transport.abort()


def _nothing() -> None:
    pass


#: Pings a client may send at once above ``max_pings_per_s``.
PING_BURST = 10


class ConnectionHooks(Protocol):
    """What :func:`connection_class`'s connections tell the server, and ask it."""

    handshake_timeout_s: float
    max_pings_per_s: float

    def handshake_started(self, ws: ServerConnection, ip: str) -> bool:
        """A TCP connection from ``ip`` arrived: may its handshake go on (else it is
        dropped at once)?"""

    def handshake_spoke(self, ws: ServerConnection) -> None:
        """A connection in its handshake received its first bytes."""

    def handshake_ended(self, ws: ServerConnection, ip: str) -> None:
        """The handshake of a connection ``handshake_started`` let in ended, either way."""

    def handshake_timed_out(self, ws: ServerConnection) -> None:
        """The open timeout ended a handshake."""

    def ping_flood(self, ws: ServerConnection) -> None:
        """A client pinged over ``max_pings_per_s``: it is being closed with 1008."""


def connection_class(hooks: ConnectionHooks) -> type[ServerConnection]:
    """``websockets``' connection, with five things it does not do by itself.

    - It asks the server whether a new TCP connection may start a handshake
      (``hooks.handshake_started``), before anything is read, and says when its first
      bytes come (``hooks.handshake_spoke``): a flood of connections that never finish
      theirs is dropped cheaply, within the server's limits, silent ones first.
    - It reports the handshakes that the open timeout ends (``hooks.handshake_timed_out``):
      ``websockets`` cancels them and drops the socket without a word.
    - It reads nothing from a client while its writes are paused (its socket is full):
      ``websockets`` answers every ping with a pong whatever the state of the socket, so a
      client that pings without reading would make the server buffer pongs without bound.
      While the client does not read, it is not read either, and TCP holds it back. (At
      most one read of pings, 256 KiB, is answered before the writes pause.)
    - It limits a client's pings to ``hooks.max_pings_per_s`` (a burst of
      :data:`PING_BURST`; 0 = no limit); a client over it is closed with 1008 and reported
      (``hooks.ping_flood``).
    - It is freed as soon as it is lost, without waiting for the cyclic garbage collector
      (under a flood of connections, memory that would otherwise pile up between
      collections).
    """

    class Connection(ServerConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pings = TokenBucket(hooks.max_pings_per_s, PING_BURST)
            self._reading_paused = False
            self._handshake_ip: str | None = None  # set while a handshake counts
            self._silent = True  # nothing received yet

        async def handshake(self, *args: Any, **kwargs: Any) -> None:
            started = time.monotonic()
            try:
                await super().handshake(*args, **kwargs)
            except asyncio.CancelledError:
                # The open timeout cancels it; a shutdown cancels it too, sooner.
                if time.monotonic() - started >= hooks.handshake_timeout_s * 0.99:
                    hooks.handshake_timed_out(self)
                raise
            finally:
                self._end_handshake()
                if self.protocol.state is not State.OPEN:
                    self.protocol.handshake_exc = None  # see _break_cycles()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            # websockets pauses reading while its queue of received messages is full; read
            # nothing either while the writes are paused.
            self.recv_messages.pause = self._update_reading
            self.recv_messages.resume = self._update_reading
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
            if hooks.handshake_started(self, ip):
                self._handshake_ip = ip
            else:
                self.transport.abort()

        def data_received(self, data: bytes) -> None:
            if self._silent:
                self._silent = False
                if self._handshake_ip is not None:
                    hooks.handshake_spoke(self)
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._end_handshake()  # a handshake cut short before it began
            super().connection_lost(exc)
            self._break_cycles()

        def _break_cycles(self) -> None:
            """Drop the references that make a finished connection a reference cycle, so
            that it goes (with its socket, request and buffers) as soon as its handler
            ends, not when the cyclic garbage collector runs: the queue's callbacks are
            this connection's own methods, and the protocol keeps the error of a failed
            handshake, whose traceback holds the protocol (the server never reads it)."""
            self.recv_messages.pause = self.recv_messages.resume = _nothing
            self.protocol.handshake_exc = None

        def _end_handshake(self) -> None:
            if self._handshake_ip is not None:
                hooks.handshake_ended(self, self._handshake_ip)
                self._handshake_ip = None

        def pause_writing(self) -> None:
            super().pause_writing()
            self._update_reading()

        def resume_writing(self) -> None:
            super().resume_writing()
            self._update_reading()

        def _update_reading(self) -> None:
            pause = self.paused or self.recv_messages.paused
            if pause != self._reading_paused:
                self._reading_paused = pause
                if pause:
                    self.transport.pause_reading()
                else:
                    self.transport.resume_reading()

        def process_event(self, event: Event) -> None:
            if isinstance(event, Frame) and event.opcode is Opcode.PING \
                    and not self._pings.take():
                if self.protocol.state is State.OPEN:
                    hooks.ping_flood(self)
                    self.protocol.fail(CloseCode.POLICY_VIOLATION, "too many pings")
                    self.send_data()
                return
            super().process_event(event)

    return Connection
