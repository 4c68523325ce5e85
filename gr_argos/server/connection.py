# SPDX-License-Identifier: GPL-3.0-or-later
"""One client's WebSocket connection: it authenticates, answers the client, and sends it what
the hub has for it.

The server makes a :class:`Connection` for each WebSocket it admitted and awaits
:meth:`Connection.serve`. The connection registers with the hub as the client's
:class:`~gr_argos.server.hub.Outlet`: the hub offers it each frame and message during its
fan-out (:meth:`Connection.write_now` writes it at once if the socket can take it), and
tells it when it had to queue some instead (:meth:`Connection.queued` starts a sender task
that drains the queue as the socket drains, then ends). Meanwhile :meth:`Connection.serve`
reads the client's JSON requests, each rate-limited and checked, and answers them through
the hub, so replies keep their place among the frames.

A client whose URL asks to resume after the frames it has (or for a backfill of the last
seconds) is first sent the frames it asks for from the hub's resume ring, marked replayed,
by a catch-up task that takes the sender's place (:mod:`gr_argos.server.resume`); the fan-out
passes it by until it has caught up with the newest frame, so no frame comes twice or out
of order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from gr_argos.protocol import (
    ENCODING_NAMES,
    VIEW_KEYS,
    FrameFormat,
    ProtocolError,
    ViewRequest,
    decode_message,
    encode_message,
)
from gr_argos.server.admission import Gate
from gr_argos.server.client_messages import (
    CLIENT_MESSAGE_TYPES,
    TokenBucket,
    error_code,
    validate_message,
)
from gr_argos.server.config import ServerConfig
from gr_argos.server.control import ADMIN, OPERATOR, VIEWER, Controller, Requester, TuneError
from gr_argos.server.recording_switch import RecordingSwitch
from gr_argos.server.detection_history import DETECTIONS_KEPT, DetectionHistory
from gr_argos.server.hub import BroadcastHub, ClientQueue
from gr_argos.server.logs import EventLog, quoted
from gr_argos.server.metrics import ServerCounters
from gr_argos.server.outgoing import PublishedFrame, nearest_format
from gr_argos.server.resume import (
    CatchUpPlan,
    Pacer,
    ResumeRing,
    parse_resume_query,
    plan_catch_up,
)
from gr_argos.server.views import StreamGeometry, View, choose_view
from gr_argos.server.wire import abort, frame_writer

__all__ = ["CLOSE_POLICY_VIOLATION", "CLOSE_UNSUPPORTED_DATA",
           "Connection", "MessageHandler", "close_or_abort", "peer_address", "peer_ip"]

log = logging.getLogger(__name__)

#: Changes a client may ask for at once above its max_tunes_per_s.
TUNE_BURST = 5
_RANK = {VIEWER: 0, OPERATOR: 1, ADMIN: 2}

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
# Time a client gets to take a close frame (and the error before it) before its connection
# is dropped: websockets waits without limit for a socket that a stalled client stopped reading.
CLOSE_GRACE_S = 3.0

#: Answers a client message of a type the server was given: the reply's body.
MessageHandler = Callable[[dict[str, Any]], dict[str, Any]]


class Connection:
    """A client's connection, from its first message to its disconnection.

    Args:
        ws: the upgraded ``websockets`` connection.
        config: the server's settings.
        hub: the hub the client receives frames and messages from.
        counters: the server's counters (policy closes, authentication failures).
        events: the server's rate-limited log of events.
        hello: makes the ``hello`` message's body, sent first.
        detections: the recent detection events, for the ``detections`` query.
        gate: the server's admission counts: a connection that authenticates with an
            ``auth`` message becomes a client there, if the client limits allow.
        authenticated: the token came with the upgrade request, or none is needed (else
            the client must send it in a first ``auth`` message, and :attr:`waiting` is
            true until it did).
        session: the server's session (``hello``'s), which a resume must name.
        pacer: spaces the frames of every client's catch-up.
        handlers: more message types the server answers (``replay`` for argos-replay): each
            returns the body of its reply, of the same type, or raises ProtocolError.
    """

    __slots__ = ("_ws", "_config", "_hub", "_counters", "_events", "_hello", "_detections",
                 "_gate", "waiting", "peer", "_ip", "_write", "_client", "_sending", "_sender",
                 "_closer", "role", "_controller", "_local", "_tunes", "_tuning", "_session",
                 "_pacer", "_handlers", "_recordings")

    def __init__(self, ws: ServerConnection, *, config: ServerConfig, hub: BroadcastHub,
                 counters: ServerCounters, events: EventLog,
                 hello: Callable[[], dict[str, Any]], detections: DetectionHistory,
                 gate: Gate, authenticated: bool, controller: Controller,
                 role: str | None = None, local: bool = False, session: str = "",
                 pacer: Pacer | None = None,
                 handlers: Mapping[str, MessageHandler] | None = None,
                 recordings: RecordingSwitch | None = None) -> None:
        self._ws = ws
        self._config = config
        self._hub = hub
        self._counters = counters
        self._events = events
        self._hello = hello
        self._detections = detections
        self._gate = gate
        self.waiting = not authenticated
        self.peer = peer_address(ws)
        self._ip = peer_ip(ws)
        self._write = frame_writer(ws)
        self._client: ClientQueue | None = None
        self._sending = False  # the sender has an item in flight: nothing may overtake it
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.role = role  # from the token it presented (None: none)
        self._controller = controller
        self._local = local
        self._tunes = TokenBucket(config.max_tunes_per_s, TUNE_BURST)
        self._tuning: set[asyncio.Task[None]] = set()
        self._session = session
        self._pacer = pacer or Pacer(config.resume_fps)
        self._handlers = handlers or {}
        self._recordings = recordings

    async def serve(self) -> None:
        """Authenticate if needed, then stream to the client and answer it until it leaves."""
        if self.waiting and not await self._authenticate():
            return
        client = self._client = self._hub.add_client(self.peer, self)
        self._ws.response = None  # the handshake's response is not needed again: ~1.5 KiB
        request = self._ws.request
        self._events.log(logging.INFO, "connect", "event=connect client=%d peer=%s origin=%s",
                         client.client_id, self.peer,
                         quoted(request.headers.get("Origin", "-")) if request else "-")
        self._hub.send_to(client, encode_message("hello", {
            **self._hello(), "control": self._controller.state(self._requester(client))}))
        query = parse_qs(urlsplit(request.path if request else "/").query)
        self._choose_format_from_url(client, query)
        # The catch-up first: a view chosen then must not send the current frame ahead of
        # the frames replayed before it (Hub.send_current_frame).
        self._resume_from_url(client, query)
        if any(key in query for key in VIEW_KEYS):
            self._set_view(client, {key: values[-1] for key, values in query.items()})
        reason = "closed by client"
        try:
            reason = await self._read(client)
        except ConnectionClosed as exc:
            reason = _close_text(exc)
        finally:
            self._controller.disconnected(client.client_id)
            for task in list(self._tuning):
                task.cancel()
            await self._stop_sending()
            if self._ws.close_code is not None and reason == "closed by client":
                reason = _close_text_codes(self._ws.close_code, self._ws.close_reason)
            totals = client.snapshot()
            self._hub.remove_client(client)
            self._events.log(
                logging.INFO, "disconnect",
                "event=disconnect client=%d peer=%s reason=%s frames_sent=%d "
                "frames_dropped=%d messages_sent=%d bytes_sent=%d connected_s=%.3f",
                client.client_id, self.peer, quoted(reason), totals["frames_sent"],
                totals["frames_dropped"], totals["messages_sent"], totals["bytes_sent"],
                totals["connected_s"],
            )

    # -- the hub's outlet ------------------------------------------------------------------

    def write_now(self, data: bytes, wire: bytes, text: bool) -> bool:
        """Write an item now if nothing of ours is in flight and the socket can take it."""
        if self._sending:
            return False
        try:
            return self._write(data, wire, text)
        except Exception:
            # A bug, or websockets internals that changed: this connection goes on through
            # the documented send() of its sender, and the log says why, once.
            log.exception("event=direct_write_failed peer=%s: sending through websockets' "
                          "send() from now on", self.peer)
            self._write = _decline
            return False

    def queued(self) -> None:
        """Start a sender for what the hub queued, unless one runs (an idle client has none)."""
        client = self._client
        if self._sender is not None or client is None or client.too_slow:
            return
        if client.frames or client.messages:
            self._sender = asyncio.create_task(self._send_queued(client))

    def too_slow(self) -> None:
        """Close a client whose message queue overflowed, with 1008."""
        client = self._client
        if client is None or self._closer is not None:
            return
        self._counters.closed_by_policy["too_slow"] += 1
        self._events.log(logging.WARNING, "too_slow",
                         "event=too_slow client=%d peer=%s messages_pending=%d: closing it "
                         "with 1008", client.client_id, self.peer, client.message_depth)
        self._closer = asyncio.ensure_future(close_or_abort(
            self._ws, CLOSE_POLICY_VIOLATION, "too slow: message queue overflow"))

    # -- sending ---------------------------------------------------------------------------

    async def _send_queued(self, client: ClientQueue) -> None:
        """Send the client's queue in order until it is empty, waiting for the transport to
        drain between items; then end (the hub writes directly again)."""
        try:
            while not client.too_slow and (item := client.pop()) is not None:
                self._sending = True
                try:
                    if not await self._send_one(client, item):
                        return
                finally:
                    self._sending = False
                self._hub.record_sent(client, item)
        except ConnectionClosed:
            pass  # serve() sees it too, and cleans up
        except Exception:  # a bug: keep serving everyone else, and say so
            log.exception("event=send_failed client=%d peer=%s", client.client_id, self.peer)
        finally:
            self._sender = None

    async def _send_one(self, client: ClientQueue, item: bytes | str) -> bool:
        """Send one item; False if the connection stalled and was aborted.

        A connection that takes nothing for the keepalive's time is aborted: websockets'
        own keepalive cannot tell, as its ping and close frames wait behind the full buffer.
        """
        cfg = self._config
        stall_s = (cfg.ping_interval_s + cfg.ping_timeout_s
                   if cfg.ping_interval_s and cfg.ping_timeout_s else None)
        try:
            async with asyncio.timeout(stall_s):
                await self._ws.send(item)
        except TimeoutError:
            self._abort_stalled(client, stall_s or 0.0)
            return False
        return True

    # -- resume and backfill ---------------------------------------------------------------

    def _resume_from_url(self, client: ClientQueue, query: dict[str, list[str]]) -> None:
        """Start the catch-up a URL asks for (``resume_from``/``resume_session`` or
        ``backfill_s``), or say why not: ``bad_message`` for a malformed request,
        ``resume_refused`` for one from another session or the future (the client is then
        served live, as without a request)."""
        try:
            request = parse_resume_query(query)
        except ProtocolError as exc:
            self._error(client, "bad_message", f"resume: {exc}")
            return
        if request is None:
            return
        ring = self._hub.ring
        streams = [s["id"] for s in self._hello()["streams"]]
        try:
            plan = plan_catch_up(request, ring, self._session, streams)
        except ProtocolError as exc:
            self._error(client, "resume_refused", str(exc))
            return
        reply: dict[str, Any] = {"streams": plan.describe(ring)}
        if request.backfill_s is not None:
            reply["backfill_s"] = request.backfill_s
        self._reply(client, "resume", reply)
        client.catching_up = True
        self._sender = asyncio.create_task(self._catch_up(client, ring, plan))

    async def _catch_up(self, client: ClientQueue, ring: ResumeRing, plan: CatchUpPlan) -> None:
        """Send the client the ring's frames after the plan's sequences, oldest first and
        marked replayed, at the pace of the server's pacer, then hand it to the fan-out.

        Messages for it keep their place: they are sent between the frames. Frames the ring
        lost before they were sent (the client reads slower than the stream) are counted in
        the ``missed`` field of the next frame sent.
        """
        after = dict(plan.after)
        started: set[int] = set()  # streams with a frame sent: a jump after is the ring's
        replayed = lost = 0
        self._sending = True  # the hub queues what it has for this client meanwhile
        try:
            while True:
                await self._pacer.wait()
                while client.messages and not client.too_slow:
                    item = client.pop()
                    assert item is not None
                    if not await self._send_one(client, item):
                        return
                    self._hub.record_sent(client, item)
                frame = self._next_to_replay(client, ring, after, plan)
                if frame is None:
                    break
                stream_id = frame.stream_id
                missed = 0
                if stream_id in started:
                    gone = min(ring.evicted_through(stream_id), frame.sequence - 1)
                    missed = max(0, gone - after[stream_id])
                started.add(stream_id)
                after[stream_id] = frame.sequence
                lost += missed
                data = client.replayed(frame, missed)
                if not await self._send_one(client, data):
                    return
                client.record_replayed(len(data))
                replayed += 1
            # Nothing newer in the ring: the fan-out sends this client the next frame.
            client.catching_up = False
            self._sending = False
            self._reply(client, "caught_up", {"replayed": replayed, "missed": lost})
        except ConnectionClosed:
            pass  # serve() sees it too, and cleans up
        except Exception:  # a bug: keep serving everyone else, and say so
            log.exception("event=catch_up_failed client=%d peer=%s", client.client_id,
                          self.peer)
        finally:
            client.catching_up = False
            self._sending = False
            self._sender = None
        self.queued()

    def _next_to_replay(self, client: ClientQueue, ring: ResumeRing, after: dict[int, int],
                        plan: CatchUpPlan) -> PublishedFrame | None:
        """The oldest frame of any stream the client is still to get from the ring."""
        best: PublishedFrame | None = None
        for stream_id in ring.stream_ids():
            frame = ring.next_after(stream_id, after.get(stream_id, -1))
            while frame is not None and (client.skips(frame) or (
                    stream_id not in plan.after and frame.published_at < plan.started_at)):
                after[stream_id] = frame.sequence  # not for this client's rate, or old
                frame = ring.next_after(stream_id, frame.sequence)
            if frame is not None and (best is None or frame.published_at < best.published_at):
                best = frame
        return best

    async def _stop_sending(self) -> None:
        sender, self._sender = self._sender, None
        if self._client is not None:
            self._client.outlet = None  # nothing more may start a sender
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    def _abort_stalled(self, client: ClientQueue, stall_s: float) -> None:
        self._counters.closed_by_policy["stalled"] += 1
        self._events.log(logging.WARNING, "stalled",
                         "event=stalled client=%d peer=%s: took no data for %g s "
                         "(ping_interval_s + ping_timeout_s); aborting the connection",
                         client.client_id, self.peer, stall_s)
        abort(self._ws)

    # -- reading and answering -------------------------------------------------------------

    async def _authenticate(self) -> bool:
        """Wait for a first ``auth`` message with the token; close with 1008 without one
        (and with 1013 if the token is right but the server is full of clients).

        Nothing is sent to the client before it succeeds (then ``hello`` follows).
        """
        timeout_s = self._config.auth_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                first = await self._ws.recv()
        except TimeoutError:
            method, problem = "timeout", f"no auth message within {timeout_s:g} s"
        except ConnectionClosed:
            return False
        else:
            try:
                message = decode_message(first)
            except ProtocolError:
                message = {"type": ""}
            method = "message"
            if message["type"] != "auth":  # no guess: refused, not counted toward a backoff
                problem = 'authentication needed: send {"type": "auth", "token": ...} first'
            elif (role := self._gate.role(self._ip, message.get("token"), self._config)):
                self.role = role
                return await self._admit_authenticated()
            else:
                problem = "authentication failed: wrong token"
        self._counters.auth_failures[method] += 1
        self._events.log(logging.WARNING, "auth_failed", "event=auth_failed peer=%s method=%s",
                         self.peer, method)
        await close_or_abort(self._ws, CLOSE_POLICY_VIOLATION, problem,
                             error_code="auth_failed")
        return False

    async def _admit_authenticated(self) -> bool:
        """The token was right: become a client, or be closed with 1013 when the server
        has no room for one more."""
        refusal = self._gate.promote(self._ip)
        if refusal is not None:
            self._counters.refuse(refusal.reason)
            await close_or_abort(self._ws, CLOSE_TRY_AGAIN_LATER, refusal.error,
                                 error_code=refusal.reason)
            return False
        self.waiting = False
        self._events.log(logging.INFO, "auth_ok", "event=auth_ok peer=%s method=message",
                         self.peer)
        return True

    async def _read(self, client: ClientQueue) -> str:
        """Answer the client's messages until it leaves or breaks a rule; return why it
        stopped (for the disconnect line)."""
        cfg = self._config
        bucket = TokenBucket(cfg.max_messages_per_s, cfg.max_messages_burst)
        async for message in self._ws:
            if not bucket.take():
                self._counters.closed_by_policy["rate_limit"] += 1
                self._events.log(logging.WARNING, "rate_limited",
                                 "event=rate_limited client=%d peer=%s max_messages_per_s=%g "
                                 "max_messages_burst=%d", client.client_id, self.peer,
                                 cfg.max_messages_per_s, cfg.max_messages_burst)
                await close_or_abort(
                    self._ws, CLOSE_POLICY_VIOLATION,
                    f"more than {cfg.max_messages_per_s:g} messages/s "
                    f"(burst {cfg.max_messages_burst})", error_code="rate_limited")
                return "message rate limit exceeded"
            if isinstance(message, bytes):
                await close_or_abort(self._ws, CLOSE_UNSUPPORTED_DATA,
                                     "binary messages are not accepted; send JSON text",
                                     error_code="binary_not_supported")
                return "sent a binary message"
            self._answer(client, message)
        return "closed by client"

    def _reply(self, client: ClientQueue, msg_type: str, body: dict[str, Any]) -> None:
        self._hub.send_to(client, encode_message(msg_type, body))

    def _error(self, client: ClientQueue, code: str, message: str) -> None:
        self._reply(client, "error", {"code": code, "message": message})

    def _answer(self, client: ClientQueue, text: str) -> None:
        """Reply to one inbound JSON message; errors go back to this client only."""
        try:
            message = decode_message(text)
        except ProtocolError as exc:
            self._error(client, error_code(text), str(exc))
            return
        msg_type = message["type"]
        problem = validate_message(message)
        if problem is not None:
            self._error(client, "bad_message", problem)
            return
        if msg_type == "auth":
            self._elevate(client, message["token"])
            return
        if msg_type == "control":
            problem = self._controller.control(self._requester(client), message["action"],
                                               message.get("name", ""))
            if problem is not None:
                self._error(client, "control_refused", f"control: {problem}")
            return
        if msg_type == "set_limits":
            problem = self._controller.set_limits(self._requester(client), message)
            if problem is not None:
                self._error(client, "control_refused", problem)
            return
        if msg_type == "tune":
            self._tune(client, {key: value for key, value in message.items() if key != "type"})
            return
        if msg_type == "record":
            self._record(client, message["action"], message.get("kind"))
            return
        if msg_type == "ping":
            try:
                self._reply(client, "pong", {"id": message.get("id"),
                                             "server_time_ns": time.time_ns()})
            except ProtocolError as exc:  # an id nested too deeply to echo
                self._error(client, "bad_message", f"ping: {exc}")
        elif msg_type == "stats":
            self._reply(client, "stats", {"client": client.snapshot(),
                                          "total": self._hub.stats()["total"]})
        elif msg_type == "set_encoding":
            self._set_format(client, message.get("encoding"), message.get("compress", False),
                             message.get("step_db", 0), message.get("second_trace", False))
        elif msg_type == "set_view":
            self._set_view(client, message)
        elif msg_type == "detections":
            self._send_detections(client, message)
        elif msg_type in self._handlers:
            try:
                self._reply(client, msg_type, self._handlers[msg_type](message))
            except ProtocolError as exc:
                self._error(client, "bad_message", str(exc))
        else:
            self._error(client, "unknown_type",
                        f"unknown message type {msg_type[:64]!r}; this server answers "
                        + ", ".join(repr(t) for t in (*CLIENT_MESSAGE_TYPES, *self._handlers)))

    def _send_detections(self, client: ClientQueue, message: dict[str, Any]) -> None:
        """Answer a ``detections`` query: the newest ``limit`` kept events (of ``stream``,
        decided after ``since_ns``, when given), oldest first, in one message."""
        limit = message.get("limit", DETECTIONS_KEPT)
        found = self._detections.recent(message.get("since_ns"), message.get("stream"))
        self._reply(client, "detections", {"events": found[-limit:],
                                           "truncated": len(found) > limit,
                                           "kept": self._detections.kept})

    def _choose_format_from_url(self, client: ClientQueue, query: dict[str, list[str]]) -> None:
        """Apply ``?encoding=...&compress=...&step_db=...&second_trace=...`` from the
        connection URL's query, if given."""
        if any(key in query for key in ("encoding", "compress", "step_db", "second_trace")):
            encoding = query.get("encoding", ["float32"])[-1]
            self._set_format(client, encoding, query.get("compress", ["0"])[-1],
                             query.get("step_db", ["0"])[-1],
                             query.get("second_trace", ["0"])[-1])

    def _set_format(self, client: ClientQueue, encoding: object, compress: object,
                    step_db: object = 0, second_trace: object = False) -> None:
        """Switch the client's frame format from its next frame on, and confirm it (or say
        what is accepted, keeping the format it had)."""
        try:
            frame_format = FrameFormat.parse(encoding, compress, step_db, second_trace)
        except ProtocolError as exc:
            self._error(client, "bad_message", f"set_encoding: {exc}")
            return
        in_use = self._hub.formats_in_use(besides=client)
        limit = self._config.max_formats
        snapped = bool(limit) and frame_format not in in_use and len(in_use) >= limit
        if snapped:
            frame_format = nearest_format(frame_format, in_use)
        client.frame_format = frame_format
        reply: dict[str, Any] = {
            "encoding": ENCODING_NAMES[frame_format.encoding],
            "compress": frame_format.compress,
            "step_db": frame_format.step_db,
            "second_trace": frame_format.second_trace,
        }
        if snapped:
            reply["snapped"] = True
            reply["message"] = (f"this server makes at most {limit} frame formats at once: "
                                "you get the nearest one in use")
        self._reply(client, "encoding", reply)

    def _requester(self, client: ClientQueue) -> Requester:
        return Requester(client.client_id, self.peer, self.role, self._local)

    def _elevate(self, client: ClientQueue, token: str) -> None:
        """An ``auth`` message after admission: a token with more rights (an operator's or
        an admin's) gives them; a wrong one counts toward the address's backoff."""
        role = self._gate.role(self._ip, token, self._config)
        if role is None:
            self._counters.auth_failures["message"] += 1
            self._events.log(logging.WARNING, "auth_failed",
                             "event=auth_failed peer=%s method=message", self.peer)
            self._error(client, "auth_failed", "authentication failed: wrong token (the "
                        "connection keeps the rights it had)")
            return
        if _RANK[role] > _RANK[self.role or VIEWER]:
            self.role = role
            self._events.log(logging.INFO, "auth_ok", "event=auth_ok peer=%s method=message "
                             "role=%s", self.peer, role)
        self._reply(client, "control", self._controller.state(self._requester(client)))

    def _tune(self, client: ClientQueue, fields: dict[str, Any]) -> None:
        """Apply a ``tune`` on a task of its own (the radio may take a while); the answer is
        a ``tuned`` message to everyone, or an error to this client."""
        if not self._tunes.take():
            self._error(client, "tune_refused", f"tune: more than "
                        f"{self._config.max_tunes_per_s:g} changes per second; wait a moment")
            self._counters.control_event("tune", "rate_limited")
            return
        requester = self._requester(client)
        try:
            changes = self._controller.check(requester, fields)
        except TuneError as exc:
            self._error(client, "tune_refused", str(exc))
            return

        async def apply() -> None:
            try:
                await self._controller.tune(requester, changes)
            except TuneError as exc:
                self._error(client, "tune_refused", str(exc))
            except Exception:  # a bug in a tuner: keep serving, and say so
                log.exception("event=tune_failed client=%d peer=%s", client.client_id,
                              self.peer)
                self._error(client, "tune_refused", "tune: the source failed to apply it; "
                            "see the server's log")

        task = asyncio.ensure_future(apply())
        self._tuning.add(task)
        task.add_done_callback(self._tuning.discard)

    def _record(self, client: ClientQueue, action: str, kind: str | None) -> None:
        """Start or stop recording on a thread (stopping writes what is queued); the answer
        is a ``recording`` message to everyone, or an error to this client."""
        switch = self._recordings
        if switch is None:
            self._error(client, "record_refused", "this server records nothing")
            return
        requester = self._requester(client)

        async def switch_it() -> None:
            problem = await asyncio.to_thread(switch.record, requester, action, kind)
            if problem is not None:
                self._error(client, "record_refused", f"record: {problem}")

        task = asyncio.ensure_future(switch_it())
        self._tuning.add(task)
        task.add_done_callback(self._tuning.discard)

    def _set_view(self, client: ClientQueue, fields: dict[str, Any]) -> None:
        """Switch the client's view of a stream from its next frame on, and say which view
        it gets (or what is wrong, keeping the view it had)."""
        try:
            request = ViewRequest.parse(fields)
            stream_id, stream = self._stream_geometry(request.stream_id)
            view, snapped = choose_view(request, stream,
                                        self._hub.views_in_use(stream_id, besides=client),
                                        self._config.max_views_per_stream)
        except ProtocolError as exc:
            self._error(client, "bad_message", f"set_view: {exc}")
            return
        cut_before = client.view_slice(stream_id)
        if view == View():
            client.views.pop(stream_id, None)  # the whole stream, every frame: as published
        else:
            client.views[stream_id] = view
        reply: dict[str, Any] = {"stream_id": stream_id, **stream.describe(view)}
        if snapped:
            reply["snapped"] = True
            reply["message"] = (f"this server makes at most {self._config.max_views_per_stream}"
                                " views of a stream at once: you get the nearest one in use")
        self._reply(client, "view", reply)
        if view.slice != cut_before:
            self._hub.send_current_frame(client, stream_id)

    def _stream_geometry(self, stream_id: int | None) -> tuple[int, StreamGeometry]:
        """A stream's id and geometry as ``hello`` describes it now (None: the first one).

        Raises:
            ProtocolError: no such stream, or it has no bins or span yet.
        """
        streams = self._hello()["streams"]
        found = [s for s in streams if stream_id is None or s["id"] == stream_id]
        if not found:
            raise ProtocolError(f"no stream {stream_id}: this server has "
                                + (", ".join(str(s["id"]) for s in streams) or "none"))
        described = found[0]
        if not (described["bins"] >= 1 and described["span_hz"] > 0):
            raise ProtocolError(f"stream {described['id']} has no bins or span yet")
        return described["id"], StreamGeometry(described["bins"], described["center_freq_hz"],
                                               described["span_hz"])


def _decline(data: bytes, wire: bytes, text: bool) -> bool:
    return False


async def close_or_abort(ws: ServerConnection, code: int, reason: str,
                         error_code: str | None = None) -> None:
    """Close with ``code`` (after an ``error`` message with ``error_code``, if given); drop
    the connection if the peer does not take them within the grace time (a client that
    stopped reading never would)."""
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            if error_code is not None:
                await ws.send(encode_message("error", {"code": error_code, "message": reason}))
            await ws.close(code, reason)
    except TimeoutError:
        abort(ws)
    except ConnectionClosed:
        pass


def peer_address(ws: ServerConnection) -> str:
    """The client's ``address:port``, for logs and stats."""
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def peer_ip(ws: ServerConnection) -> str:
    """The client's address, for the per-address limits."""
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
