# SPDX-License-Identifier: GPL-3.0-or-later
"""The Python client: :class:`ArgosClient`, one async iterator of events, reconnecting."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gr_argos.client.backoff import Backoff
from gr_argos.client.events import (
    STATE_CLOSED,
    STATE_CONNECTING,
    STATE_OPEN,
    STATE_RECONNECTING,
    ClientStats,
    Event,
    FrameEvent,
    GapDetector,
    MessageEvent,
    State,
    StateEvent,
)
from gr_argos.client.options import (
    MaskingLogger,
    check_token,
    check_url,
    client_tls_context,
    with_backfill,
    with_format,
    with_resume,
    with_view,
)
from gr_argos.protocol import (
    PROTOCOL_VERSION,
    VIEW_KEYS,
    ProtocolError,
    ViewRequest,
    decode_frame,
    decode_message,
    encode_message,
)

__all__ = ["ArgosClient", "retry_after_s"]

logger = logging.getLogger("gr_argos.client")

_MAX_PINGS_IN_FLIGHT = 8
# Largest message accepted (websockets' default is 1 MiB, about 262,000 float32 bins; a
# wideband sweep can be longer). The limit only guards against a broken server.
_MAX_MESSAGE_BYTES = 64 * 2**20
# The logger websockets gives a client connection; at DEBUG it prints every request header.
_WEBSOCKETS_CLIENT_LOG = "websockets.client"


class ArgosClient:
    """Receive spectrum frames and messages from a gr-argos server, reconnecting forever.

    Use it as ``async with ArgosClient(url) as client: async for event in client: ...``.
    Events are :class:`StateEvent`, :class:`MessageEvent` (the ``hello`` too),
    :class:`GapEvent` and :class:`FrameEvent`. A message that does not decode is logged
    as a warning, counted in ``stats.malformed`` and skipped. Iteration ends after
    :meth:`close`, with a final ``"closed"`` state event.

    A server's refusal to admit the client (HTTP 403, 429, 503, a lost connection) is
    retried, but a refused token is final: after an HTTP 401 (wrong token) or an
    ``auth_failed`` error (no token, or none that arrived), the client logs an error, sets
    :attr:`auth_failed` and ends with a ``"closed"`` state event whose ``error`` says why,
    unless ``retry_auth_failure`` is set.

    Args:
        url: server URL, ``ws://HOST:PORT/`` or ``wss://...``.
        backoff_base_s: ceiling of the first reconnect delay, in seconds.
        backoff_cap_s: largest reconnect delay, in seconds.
        stable_after_s: seconds a connection must stay open to reset the backoff.
        heartbeat_interval_s: seconds between application-level ``ping`` messages, whose
            ``pong`` replies give ``stats.last_rtt_ms``; 0 turns them off. (Dead links
            are found by the WebSocket keepalive of the ``websockets`` library.)
        open_timeout_s: seconds allowed for the opening handshake of one attempt.
        rng: random source for the backoff jitter (for repeatable tests).
        encoding: payload encoding to ask for, ``"float32"``, ``"int16"`` or ``"uint8"``
            (None: each stream's own); frames are decoded back to float32 dB either way.
        compress: ask for deflated payloads.
        step_db: with ``encoding="uint8"``, a fixed step in dB (0.01..20) instead of the
            automatic one (0, the default): a coarser step deflates better, each value is
            within half a step. All three go in the URL query
            (``?encoding=uint8&compress=1&step_db=1``), so they apply from the first frame
            and after every reconnect; the server confirms with an ``encoding`` message.
        second_trace: also receive the second trace of streams that offer one
            (``second_detector`` in ``hello``): ``frame.second_power_db``, e.g. the
            average under the peak. In the URL query too.
        view: a range, resolution and frame rate divisor of a stream to get instead of
            the whole stream, every frame (docs/protocol.md ``set_view``); in the URL query
            too, and changed with :meth:`set_view`. The server confirms with a ``view``
            message and its frames say their range; ``missed`` and gaps count frames of
            the chosen rate only.
        ssl_cafile: with a ``wss://`` URL, a PEM file of the CA certificate(s) (or the
            self-signed server certificate) to trust instead of the system's CAs. None:
            the system's trusted CAs. The server's certificate and host name are always
            verified.
        token: the server's ``token``, sent as an ``Authorization: Bearer`` header on
            every connection (never in the URL; the websockets library's DEBUG lines show
            it masked). None: no token. Over plain ws:// it crosses the network in clear
            text: use wss:// beyond a trusted network.
        retry_auth_failure: keep retrying, with the usual backoff, after the server
            refused the token (e.g. while the server's token is being changed) instead of
            giving up.
        resume: on a reconnect to the same server, ask for the frames missed while the
            link was down (``resume_session`` and ``resume_from`` in the URL, the session
            of the last ``hello`` and the last sequence of each stream): the server sends
            those it still holds, marked ``frame.replayed``, before the live ones. Frames
            it no longer holds are reported as a gap, as without resume.
        backfill_s: on the first connection, ask for the last ``backfill_s`` seconds of
            every stream the server holds (0: none), marked ``frame.replayed``.

    Raises:
        ValueError: if ``url`` is not a ws:// or wss:// URL, a duration is invalid, the
            encoding is unknown, ``step_db`` is out of range or given without
            ``encoding="uint8"``, ``ssl_cafile`` is given with a ws:// URL or cannot be
            loaded, or ``token`` is not one a server can hold (see :func:`check_token`).
    """

    def __init__(
        self,
        url: str,
        *,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 10.0,
        stable_after_s: float = 5.0,
        heartbeat_interval_s: float = 5.0,
        open_timeout_s: float = 10.0,
        rng: random.Random | None = None,
        encoding: str | None = None,
        compress: bool = False,
        ssl_cafile: str | None = None,
        step_db: float = 0.0,
        token: str | None = None,
        retry_auth_failure: bool = False,
        second_trace: bool = False,
        view: ViewRequest | None = None,
        resume: bool = True,
        backfill_s: float = 0.0,
    ) -> None:
        check_url(url)
        self._ssl = client_tls_context(url, ssl_cafile)
        if token is not None:
            check_token(token)
        self._token = token
        self._retry_auth_failure = retry_auth_failure
        url = with_view(with_format(url, encoding, compress, step_db, second_trace), view)
        url = with_backfill(url, backfill_s)
        self._resume = resume
        if heartbeat_interval_s < 0:
            raise ValueError(f"heartbeat_interval_s must be >= 0 s, got {heartbeat_interval_s}")
        if open_timeout_s <= 0:
            raise ValueError(f"open_timeout_s must be > 0 s, got {open_timeout_s}")
        self.url = url
        self.stats = ClientStats()
        self.hello: dict[str, Any] | None = None
        self.last_error: str | None = None
        #: True once the client stopped because the server refused its token.
        self.auth_failed = False
        self._auth_error: str | None = None  # an auth_failed error on this connection
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, stable_after_s, rng=rng)
        self._heartbeat_interval_s = heartbeat_interval_s
        self._open_timeout_s = open_timeout_s
        self._gaps = GapDetector()
        self._state: State = STATE_CONNECTING
        self._closing = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._events: AsyncGenerator[Event, None] | None = None
        self._ping_count = 0
        self._pings_in_flight: dict[str, float] = {}  # id -> monotonic send time, s

    @property
    def state(self) -> State:
        """The current connection state."""
        return self._state

    async def __aenter__(self) -> ArgosClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
        if self._events is not None:
            await self._events.aclose()

    def __aiter__(self) -> AsyncIterator[Event]:
        if self._events is None:
            self._events = self._run()
        return self._events

    async def close(self) -> None:
        """Stop: close the connection (code 1000) and end the iteration."""
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def send_message(self, msg_type: str, body: dict[str, Any] | None = None) -> None:
        """Send a JSON message to the server, e.g. ``send_message("stats")``.

        Raises:
            ConnectionError: if no connection is open.
            ProtocolError: if ``body`` cannot be sent as JSON.
        """
        ws = self._ws
        if ws is None or self._state != STATE_OPEN:
            raise ConnectionError(f"not connected to {self.url} (state {self._state})")
        try:
            await ws.send(encode_message(msg_type, body))
        except ConnectionClosed as exc:
            raise ConnectionError(f"connection to {self.url} closed: {exc}") from exc

    async def set_view(self, view: ViewRequest) -> None:
        """Ask for ``view`` now (a ``set_view`` message), and after every reconnect (the URL).

        The server answers with a ``view`` message (a ``MessageEvent``): the view it sends,
        maybe ``"snapped"`` to one in use, or an ``error`` if the view lies outside the
        stream. ``ViewRequest()`` goes back to the whole stream, every frame.

        Raises:
            ValueError: the view has a value the server would refuse (naming it).
            ConnectionError: no connection is open (the view applies from the next one).
        """
        self.url = with_view(self.url, view)
        body = {key: value for key in VIEW_KEYS if (value := getattr(view, key)) is not None}
        await self.send_message("set_view", body)

    async def control(self, action: str, name: str = "") -> None:
        """Ask for the radio's control lease (``acquire``), give it back (``release``), or,
        as an admin, ``take`` it from another client (docs/control.md). ``name`` is what the
        other clients see. Everyone gets a ``control`` message (a ``MessageEvent``) when it
        changes hands; a refusal comes back as an ``error`` with code ``control_refused``.

        Raises:
            ConnectionError: no connection is open.
        """
        await self.send_message("control", {"action": action, **({"name": name} if name else {})})

    async def tune(self, **changes: float | bool) -> None:
        """Change the radio's settings, by their names (``center_freq=433.92e6``,
        ``lna_gain=16``...), as the holder of the control lease. Everyone gets a ``tuned``
        message with what was applied; a refusal comes back as an ``error`` with code
        ``tune_refused`` saying why (nothing was applied then).

        Raises:
            ConnectionError: no connection is open.
        """
        await self.send_message("tune", dict(changes))

    async def record(self, action: str, kind: str | None = None) -> None:
        """Start (``"start"``) or stop (``"stop"``) the server's recordings, or one of them
        (``kind``: ``"spectrum"`` or ``"iq"``), as an operator or admin (docs/protocol.md).
        Everyone gets a ``recording`` message with the new state; a refusal comes back as
        an ``error`` with code ``record_refused`` saying why.

        Raises:
            ConnectionError: no connection is open.
        """
        await self.send_message("record", {"action": action, **({"kind": kind} if kind else {})})

    async def request_detections(self, limit: int | None = None, since_ns: int | None = None,
                                 stream: int | None = None) -> None:
        """Ask for the recent detection events the server kept (a ``detections`` message).

        The server answers with a ``detections`` message (a ``MessageEvent``): ``events``,
        oldest first, each a ``detection`` message's body; ``truncated`` when ``limit`` left
        older ones out. See docs/protocol.md.

        Args:
            limit: at most this many, the newest (1 to the server's ``kept``, 256).
            since_ns: only events decided after this time (their ``time_ns``), e.g. the
                last one seen before a reconnect.
            stream: only this stream's.

        Raises:
            ConnectionError: no connection is open.
        """
        body = {key: value for key, value in (("limit", limit), ("since_ns", since_ns),
                                              ("stream", stream)) if value is not None}
        await self.send_message("detections", body)

    async def _run(self) -> AsyncGenerator[Event, None]:
        """The event stream: connect, read until the link drops, back off, repeat."""
        yield StateEvent(STATE_CONNECTING)
        ever_opened = False
        gave_up: str | None = None  # why the client stopped on its own
        try:
            while not self._closing.is_set():
                try:
                    ws = await self._open_unless_closed()
                except Exception as exc:  # every failure but a refused token is retried
                    self.stats.failed_attempts += 1
                    self.last_error = _describe(exc)
                    level = logging.INFO
                    if _is_token_refusal(exc):
                        self.last_error = self._auth_failure(
                            f"HTTP 401: {_refusal_error(exc) or 'wrong token'}",
                            token_arrived=True)
                        if not self._retry_auth_failure:
                            gave_up = self._give_up(self.last_error)
                            break
                        level = logging.WARNING
                    # A refusal's Retry-After (503/429) is the least we wait.
                    delay_s = max(self._backoff.next_delay_s(), retry_after_s(exc))
                    logger.log(level, "cannot connect to %s: %s; retrying in %.2f s",
                               self.url, self.last_error, delay_s)
                    if await self._sleep_unless_closed(delay_s):
                        continue
                    break
                if ws is None:
                    break
                if ever_opened:
                    self.stats.reconnects += 1
                ever_opened = True
                self._ws = ws
                self.last_error = None
                self._auth_error = None
                opened_at_s = time.monotonic()
                self._state = STATE_OPEN
                yield StateEvent(STATE_OPEN)
                heartbeat = self._start_heartbeat(ws)
                try:
                    while (events := await self._receive(ws)) is not None:
                        for event in events:
                            yield event
                finally:
                    if heartbeat is not None:
                        heartbeat.cancel()
                    self._ws = None
                    await ws.close()
                self._backoff.connection_closed(time.monotonic() - opened_at_s)
                if self._closing.is_set():
                    break
                self.last_error = _close_reason(ws)
                if self._auth_error is not None:
                    self.last_error = self._auth_failure(self._auth_error, token_arrived=False)
                    if not self._retry_auth_failure:
                        gave_up = self._give_up(self.last_error)
                        break
                logger.warning("connection to %s lost: %s", self.url, self.last_error)
                self._state = STATE_RECONNECTING
                yield StateEvent(STATE_RECONNECTING, self.last_error)
                if not await self._sleep_unless_closed(self._backoff.next_delay_s()):
                    break
        finally:
            self._closing.set()
            self._state = STATE_CLOSED
        yield StateEvent(STATE_CLOSED, gave_up)

    def _auth_failure(self, problem: str, *, token_arrived: bool) -> str:
        """The error text of a failed authentication: what the server said, what to do.

        Args:
            problem: the server's refusal, e.g. ``"HTTP 401: wrong token"``.
            token_arrived: True for a token the server refused (HTTP 401), False when it
                got none (an ``auth_failed`` error).
        """
        if token_arrived:
            return (f"authentication failed: the server refused the token ({problem}); "
                    "give this client the server's token")
        if self._token is None:
            return (f"authentication failed: the server needs a token ({problem}); "
                    "give this client the server's token")
        return (f"authentication failed: the server got no token ({problem}): something "
                "between this client and the server drops the Authorization header")

    def _give_up(self, reason: str) -> str:
        """Stop for good after a failed authentication: log ``reason`` and return it."""
        self.auth_failed = True
        logger.error("%s: %s; not retrying", self.url, reason)
        return reason

    async def _open_unless_closed(self) -> ClientConnection | None:
        """Open one connection; None if :meth:`close` came first.

        Raises:
            Exception: whatever the attempt failed with (OSError, InvalidHandshake,
                TimeoutError, ...).
        """
        # No permessage-deflate: its state is per connection, so the server would deflate
        # every frame again for each client. dB spectra do compress (docs/performance.md:
        # 2048 bins, float32 8260 -> 6898 B, uint8 2116 -> 1669 B, less still with step_db):
        # compress=True gets those bytes from frames deflated once for all who ask.
        credentials: dict[str, Any] = {}
        if self._token is not None:
            credentials = {
                "additional_headers": {"Authorization": f"Bearer {self._token}"},
                "logger": MaskingLogger(_WEBSOCKETS_CLIENT_LOG, self._token),
            }
        opening = asyncio.ensure_future(
            connect(self._connect_url(), open_timeout=self._open_timeout_s, compression=None,
                    max_size=_MAX_MESSAGE_BYTES, ssl=self._ssl, **credentials))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({opening, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not opening.done():
                opening.cancel()
                await asyncio.gather(opening, return_exceptions=True)
        if not self._closing.is_set():
            return opening.result()
        if not opening.cancelled() and opening.exception() is None:
            await opening.result().close()
        return None

    def _connect_url(self) -> str:
        """The URL of the next attempt: :attr:`url`, asking to resume after the frames
        received so far when there are some (and ``resume`` is on)."""
        after = self._gaps.last_sequences()
        if not (self._resume and self._gaps.session and after):
            return self.url
        return with_resume(self.url, self._gaps.session, after)

    async def _receive(self, ws: ClientConnection) -> list[Event] | None:
        """The events of the next message (none if it was skipped); None once closed."""
        try:
            data = await ws.recv()
        except ConnectionClosed:
            return None
        if self._closing.is_set():
            return None  # recv() still hands out what was buffered; the user wants no more
        if isinstance(data, bytes):
            self.stats.bytes_received += len(data)
            return self._on_frame(data)
        self.stats.bytes_received += len(data.encode())
        return self._on_text(data)

    def _on_frame(self, data: bytes) -> list[Event]:
        received_ns = time.time_ns()
        try:
            frame = decode_frame(data)
        except ProtocolError as exc:
            return self._skip("frame", exc)
        self.stats.frames += 1
        self.stats.frames_replayed += frame.replayed
        events: list[Event] = []
        gap = self._gaps.observe(frame)
        if gap is not None:
            self.stats.gaps += 1
            self.stats.frames_lost += gap.lost
            events.append(gap)
        age_ms = (received_ns - frame.timestamp_ns) / 1e6
        events.append(FrameEvent(frame, gap.lost if gap else 0, received_ns, age_ms, len(data)))
        return events

    def _on_text(self, text: str) -> list[Event]:
        try:
            message = decode_message(text)
        except ProtocolError as exc:
            return self._skip("message", exc)
        self.stats.messages += 1
        if message["type"] == "hello":
            self._on_hello(message)
        elif message["type"] == "error" and message.get("code") == "auth_failed":
            # The server closes the connection next; then the client gives up.
            self._auth_error = f"auth_failed: {message.get('message', '')}"
        elif message["type"] == "error" and message.get("code") == "resume_refused":
            # Served live from now on: what was missed shows as a gap, as without resume.
            logger.info("%s: no resume: %s", self.url, message.get("message", ""))
        elif message["type"] == "view":
            stream_id, fps_divisor = message.get("stream_id"), message.get("fps_divisor")
            if isinstance(stream_id, int) and isinstance(fps_divisor, int):
                self._gaps.set_fps_divisor(stream_id, fps_divisor)
        elif message["type"] == "pong":
            sent_s = self._pings_in_flight.pop(str(message.get("id")), None)
            if sent_s is not None:
                self.stats.last_rtt_ms = (time.monotonic() - sent_s) * 1e3
        return [MessageEvent(message)]

    def _skip(self, what: str, exc: ProtocolError) -> list[Event]:
        """Count and log a message that did not decode; it yields no event."""
        self.stats.malformed += 1
        logger.warning("skipped a malformed %s from %s: %s", what, self.url, exc)
        return []

    def _on_hello(self, hello: dict[str, Any]) -> None:
        self.hello = hello
        if hello.get("protocol") != PROTOCOL_VERSION:
            logger.warning("%s speaks protocol %r; this client speaks %d",
                           self.url, hello.get("protocol"), PROTOCOL_VERSION)
        session = hello.get("session")
        self._gaps.new_session(None if session is None else str(session))

    def _start_heartbeat(self, ws: ClientConnection) -> asyncio.Task[None] | None:
        if self._heartbeat_interval_s <= 0:
            return None
        return asyncio.get_running_loop().create_task(self._send_heartbeats(ws))

    async def _send_heartbeats(self, ws: ClientConnection) -> None:
        """Send ``{"type": "ping", "id": "heartbeat-N"}`` every heartbeat interval."""
        while True:
            await asyncio.sleep(self._heartbeat_interval_s)
            self._ping_count += 1
            ping_id = f"heartbeat-{self._ping_count}"
            if len(self._pings_in_flight) >= _MAX_PINGS_IN_FLIGHT:
                # A server that never answers must not make this grow.
                del self._pings_in_flight[next(iter(self._pings_in_flight))]
            self._pings_in_flight[ping_id] = time.monotonic()
            try:
                await ws.send(encode_message("ping", {"id": ping_id}))
            except ConnectionClosed:
                return

    async def _sleep_unless_closed(self, delay_s: float) -> bool:
        """Wait ``delay_s`` seconds; return False if :meth:`close` was called meanwhile."""
        try:
            await asyncio.wait_for(self._closing.wait(), delay_s)
        except TimeoutError:
            return True
        return False


def _describe(exc: BaseException) -> str:
    """A one-line description of a connection error, with the ``error`` of a refusal's
    JSON body (e.g. ``server rejected WebSocket connection: HTTP 401 (wrong token)``)."""
    if isinstance(exc, TimeoutError):
        return "timed out opening the connection"
    text = str(exc) or type(exc).__name__
    error = _refusal_error(exc)
    return f"{text} ({error})" if error else text


def _refusal_error(exc: BaseException) -> str | None:
    """The ``error`` of a refused upgrade's JSON body (see docs/protocol.md), or None."""
    if not isinstance(exc, InvalidStatus):
        return None
    try:
        error = json.loads(exc.response.body or b"{}").get("error")
    except (ValueError, AttributeError):  # not JSON, or not an object: not our server
        return None
    return error if isinstance(error, str) and error else None


def _is_token_refusal(exc: BaseException) -> bool:
    """Whether a failed connection attempt was the server refusing the token (HTTP 401)."""
    return isinstance(exc, InvalidStatus) and exc.response.status_code == 401


def _close_reason(ws: ClientConnection) -> str:
    """Why a connection closed, e.g. ``"closed by server: 1001 server shutting down"``."""
    received = ws.protocol.close_rcvd
    if received is None:
        return "connection lost without a close frame from the server"
    text = f"closed by server: {received.code}"
    return f"{text} {received.reason}" if received.reason else text


def retry_after_s(exc: BaseException) -> float:
    """The seconds a server that refused the connection asked us to wait (its
    ``Retry-After`` header, an integer number of seconds), or 0."""
    if not isinstance(exc, InvalidStatus):
        return 0.0
    try:
        return max(0.0, float(exc.response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0
