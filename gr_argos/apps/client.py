# SPDX-License-Identifier: GPL-3.0-or-later
"""argos-client: watch a gr-argos spectrum server from a terminal or a script.

    argos-client ws://127.0.0.1:8765/                      # one refreshing status line
    argos-client ws://127.0.0.1:8765/ --json --count 5     # five JSON frame summaries
    argos-client ws://127.0.0.1:8765/ --encoding uint8 --compress   # about 1/10 of the bytes
    argos-client ws://127.0.0.1:8765/ --encoding uint8 --compress --step-db 1   # fewer still
    argos-client ws://127.0.0.1:8765/ --center-freq-hz 101.6e6 --span-hz 200e3 --bins 1024
    argos-client wss://pi:8765/ --token-file ~/.config/argos/token --ssl-cafile ca.pem
    argos-client ws://127.0.0.1:8765/ --tune center_freq=433.92e6 --tune lna_gain=16
    argos-client ws://127.0.0.1:8765/ --record stop --record-kind iq

The status line shows the connection state, frames per second, bins, centre frequency,
frames lost so far and the age of the newest frame. On a terminal it refreshes in place;
otherwise one line is printed per second. With ``--json`` every frame becomes one JSON
object on stdout and the status line goes to stderr, only when that is a terminal.

A server with a ``token`` gets it from ``--token-file`` or the ``ARGOS_TOKEN`` environment
variable (never from a flag holding the secret itself, which ``ps`` would show to every
user). The token is sent in an ``Authorization: Bearer`` header and never printed.

Exit status: 0 when frames were received (``--count`` reached, ``--duration`` over, or
stdout closed by a reader such as ``head``), 1 when ``--duration`` passed without a
single frame, 2 for a bad URL, option or token file, 3 when the server refused the token
(or needs one), 4 when ``--tune`` or ``--record`` was refused, 130 after Ctrl-C (SIGINT) and 143 after
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, TextIO

import numpy as np

from gr_argos.client import (
    STATE_CONNECTING,
    ArgosClient,
    FrameEvent,
    MessageEvent,
    StateEvent,
    check_token,
    check_url,
)
from gr_argos.protocol import ENCODING_CODES, ViewRequest

__all__ = ["argument_parser", "frame_summary", "format_status", "main"]

EXIT_OK = 0
EXIT_NO_FRAMES = 1
EXIT_USAGE = 2
EXIT_AUTH_FAILED = 3
EXIT_REFUSED = 4  # --tune, --record: the server refused the lease, the change or the record
#: Seconds --tune and --record wait for the answer (unless --duration says otherwise).
TUNE_TIMEOUT_S = 10.0
#: The environment variable that may hold the server's token.
TOKEN_ENV = "ARGOS_TOKEN"
_EXIT_ON_SIGNAL = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}

ENCODINGS = list(ENCODING_CODES)
_TTY_REFRESH_S = 0.25
_PIPE_REFRESH_S = 1.0
_RATE_WINDOW_S = 1.0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def argument_parser() -> argparse.ArgumentParser:
    """The command-line parser of argos-client."""
    parser = argparse.ArgumentParser(
        prog="argos-client",
        description="Receive live spectrum frames from a gr-argos server and show how the "
                    "stream is doing: state, frames/s, bins, centre frequency, frames lost "
                    "and the age of the newest frame. Reconnects until stopped.",
        epilog=f"A server's token comes from --token-file or ${TOKEN_ENV}. Exit status: 0 "
               "frames received, 1 none within --duration, 2 bad URL, option or token file, "
               "3 token refused, 130 Ctrl-C, 143 SIGTERM.",
    )
    parser.add_argument("url", metavar="URL", help="server URL, e.g. ws://127.0.0.1:8765/")
    stop = parser.add_argument_group("when to stop (default: run until Ctrl-C)")
    stop.add_argument("--count", type=_positive_int, metavar="N",
                      help="exit after N frames")
    stop.add_argument("--duration", type=_positive_float, metavar="S",
                      help="exit after S seconds")
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true",
                        help="print one JSON summary per frame on stdout (sequence, missed, "
                             "gap, bins, center_freq_hz, span_hz, peak_bin, peak_db, age_ms)")
    output.add_argument("--detections", action="store_true",
                        help="print each detection message (a signal's start, updates and "
                             "end: docs/detections.md) on stdout, one JSON object per line; "
                             "after a reconnect, first those the server kept from while the "
                             "link was down")
    output.add_argument("--recent", action="store_true",
                        help="with --detections: first print the recent events the server "
                             "kept (up to 256 a stream), oldest first")
    frames = parser.add_argument_group("frame format (see docs/protocol.md)")
    frames.add_argument("--encoding", choices=ENCODINGS, metavar="NAME",
                        help="payload encoding to ask the server for: float32 (exact), int16 "
                             "(0.005 dB) or uint8 (half a step of the frame's range); "
                             "default: the stream's own")
    frames.add_argument("--compress", action="store_true",
                        help="ask for deflated payloads (compressed once by the server for "
                             "all clients that ask)")
    frames.add_argument("--step-db", type=float, default=0.0, metavar="DB",
                        help="with --encoding uint8: a fixed step of DB dB (0.01-20) instead "
                             "of each frame's range / 255; coarser deflates better, error "
                             "half a step (default: 0, automatic)")
    view = parser.add_argument_group("view: zoom, pan and rate (see docs/protocol.md set_view)")
    view.add_argument("--center-freq-hz", type=float, metavar="HZ",
                      help="centre of the range to receive (default: the stream's)")
    view.add_argument("--span-hz", type=float, metavar="HZ",
                      help="width of the range to receive (default: the stream's)")
    view.add_argument("--bins", type=_positive_int, metavar="N",
                      help="bins wanted across the range; the server sends at least as many "
                      "where the stream has them (default: the stream's resolution)")
    view.add_argument("--fps-divisor", type=_positive_int, default=1, metavar="N",
                      help="receive one frame in N (default: every frame)")
    control = parser.add_argument_group(
        "control of the radio (see docs/control.md): take the lease, change, give it back, "
        "print what was applied as JSON and exit (4: refused)")
    control.add_argument("--tune", action="append", type=_tune_pair, metavar="SETTING=VALUE",
                         help="a setting to change, by its name: center_freq=433.92e6, "
                         "lna_gain=16, amp=false ... (may be repeated)")
    control.add_argument("--name", default="argos-client", metavar="NAME",
                         help="the name other clients see for the lease's holder")
    control.add_argument("--take", action="store_true",
                         help="take the lease from whoever holds it (admins only)")
    record = parser.add_argument_group(
        "recording (see docs/recording.md): start or stop the server's recordings as an "
        "operator or admin, print their state as JSON and exit (4: refused)")
    record.add_argument("--record", choices=("start", "stop"),
                        help="start or stop recording")
    record.add_argument("--record-kind", choices=("spectrum", "iq"),
                        help="only this recording: spectrum (record_dir) or iq "
                             "(record_iq_dir); default: every one the server has")
    tls = parser.add_argument_group("TLS (wss:// URLs)")
    tls.add_argument("--ssl-cafile", "--cafile", dest="ssl_cafile", metavar="FILE.pem",
                     help="trust the CA certificate(s) in this PEM file (or a self-signed "
                          "server certificate) instead of the system's CAs")
    auth = parser.add_argument_group(
        "authentication (servers with a token)",
        f"The token comes from --token-file, else from the {TOKEN_ENV} environment variable; "
        "it is sent as an Authorization: Bearer header and never printed.")
    auth.add_argument("--token-file", metavar="FILE",
                      help="read the server's token from FILE, which holds it alone (a "
                           "final newline is fine); keep the file chmod 600")
    auth.add_argument("--retry-auth-failure", action="store_true",
                      help="keep retrying when the server refuses the token (e.g. while its "
                           "token is being changed); default: exit with status 3")
    connection = parser.add_argument_group("reconnecting")
    connection.add_argument("--backoff-base-s", "--backoff-base", type=_positive_float, default=0.5, metavar="S",
                            help="largest delay before the first retry, in s (default 0.5)")
    connection.add_argument("--backoff-cap-s", "--backoff-cap", type=_positive_float, default=10.0, metavar="S",
                            help="largest delay between retries, in s (default 10)")
    return parser


def frame_summary(event: FrameEvent) -> dict[str, Any]:
    """The ``--json`` line of one frame: where, how strong, how late, and what was lost.

    ``missed`` is the frame's own field (frames the server dropped for this client), ``gap``
    all frames lost before it, sequence jumps across reconnects included. ``peak_db`` and
    ``peak_bin`` are None when no bin holds a finite value.
    """
    frame = event.frame
    power = frame.power_db
    finite = np.isfinite(power)
    if finite.any():
        peak_bin: int | None = int(np.argmax(np.where(finite, power, -np.inf)))
        peak_db: float | None = float(power[peak_bin])
    else:
        peak_bin = peak_db = None
    return {
        "stream_id": frame.stream_id,
        "sequence": frame.sequence,
        "missed": frame.missed,
        "gap": event.gap,
        "bins": frame.bin_count,
        "center_freq_hz": frame.center_freq_hz,
        "span_hz": frame.span_hz,
        "timestamp_ns": frame.timestamp_ns,
        "peak_bin": peak_bin,
        "peak_db": peak_db,
        "age_ms": round(event.age_ms, 3),
    }


def format_status(
    state: str,
    frames_per_s: float,
    newest: FrameEvent | None,
    frames_lost: int,
    error: str | None = None,
) -> str:
    """One status line, e.g. ``open  29.9 frames/s  2048 bins  100.000 MHz  lost 0  age 12 ms``."""
    parts = [f"{state:<12}", f"{frames_per_s:5.1f} frames/s"]
    if newest is not None:
        parts += [
            f"{newest.frame.bin_count} bins",
            f"{newest.frame.center_freq_hz / 1e6:.3f} MHz",
        ]
    parts.append(f"lost {frames_lost}")
    if newest is not None:
        parts.append(f"age {newest.age_ms:.0f} ms")
    if error and state != "open":
        parts.append(f"({error})")
    return "  ".join(parts)


class _StatusLine:
    """Writes the status line: in place on a terminal, one line per second otherwise."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._tty = stream is not None and stream.isatty()
        self.refresh_s = _TTY_REFRESH_S if self._tty else _PIPE_REFRESH_S
        self._written = False

    def show(self, text: str) -> None:
        if self._stream is None:
            return
        if self._tty:
            self._stream.write("\r" + text + "\x1b[K")  # erase what a longer line left
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
        self._written = True

    def erase(self) -> None:
        """Clear a line drawn in place, so that a log message does not land inside it."""
        if self._tty and self._written and self._stream is not None:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def finish(self) -> None:
        """End the refreshing line so the shell prompt starts on a line of its own."""
        if self._tty and self._written and self._stream is not None:
            self._stream.write("\n")
            self._stream.flush()


class _LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records go to stderr, after erasing the status line; the next refresh redraws it."""

    def __init__(self, status_line: _StatusLine) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("argos-client: %(message)s"))
        self._status_line = status_line

    def emit(self, record: logging.LogRecord) -> None:
        self._status_line.erase()
        super().emit(record)


class _Watch:
    """What the status line needs: the newest frame, the state, the frame rate."""

    def __init__(self, client: ArgosClient) -> None:
        self.client = client
        self.state = STATE_CONNECTING
        self.newest: FrameEvent | None = None
        self.frames_per_s = 0.0
        self._rate_start_s = time.monotonic()
        self._rate_start_frames = 0

    def status(self) -> str:
        now_s = time.monotonic()
        if now_s - self._rate_start_s >= _RATE_WINDOW_S:
            frames = self.client.stats.frames
            self.frames_per_s = (frames - self._rate_start_frames) / (now_s - self._rate_start_s)
            self._rate_start_s, self._rate_start_frames = now_s, frames
        return format_status(self.state, self.frames_per_s, self.newest,
                             self.client.stats.frames_lost, self.client.last_error)


async def _refresh(status_line: _StatusLine, watch: _Watch) -> None:
    while True:
        status_line.show(watch.status())
        await asyncio.sleep(status_line.refresh_s)


def _read_token(token_file: str | None,
                environ: Mapping[str, str] = os.environ) -> tuple[str | None, str]:
    """The token to present and where it came from: ``token_file``'s text without the
    surrounding whitespace, else the ``ARGOS_TOKEN`` variable (if not empty), else none.

    Args:
        token_file: path of a file that holds the token, or None.
        environ: the environment to read ``ARGOS_TOKEN`` from.

    Returns:
        ``(token, source)``: source is ``"--token-file FILE"`` or ``"ARGOS_TOKEN"``;
        ``(None, "")`` when neither gives a token.

    Raises:
        ValueError: the file cannot be read or holds no usable token (the message never
            contains the token).
    """
    if token_file is not None:
        source = f"--token-file {token_file}"
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {token_file}: "
                             f"{exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"the token file {token_file} is not UTF-8 text") from exc
    elif environ.get(TOKEN_ENV):
        source, token = TOKEN_ENV, environ[TOKEN_ENV].strip()
    else:
        return None, ""
    try:
        check_token(token)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc
    return token, source


def _auth_hint(client: ArgosClient, token_source: str) -> str:
    """What to do after the server refused the token: where this one came from."""
    if token_source:
        return f"the server at {client.url} did not accept the token from {token_source}"
    return (f"the server at {client.url} needs a token: put it in a file (chmod 600) and "
            f"pass --token-file FILE, or set {TOKEN_ENV}")


async def _watch(client: ArgosClient, args: argparse.Namespace, token_source: str = "") -> int:
    """Receive until --count, --duration, a signal or a closed stdout; return the exit code."""
    loop = asyncio.get_running_loop()
    stopped_by: list[int] = []
    closing: list[asyncio.Task[None]] = []  # keep references: the loop holds tasks weakly

    def close_soon() -> None:
        closing.append(loop.create_task(client.close()))

    def on_signal(signum: int) -> None:
        stopped_by.append(signum)
        close_soon()

    for signum in _EXIT_ON_SIGNAL:
        # Not available off the main thread or on Windows: Ctrl-C then raises instead.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
    if args.duration is not None:
        loop.call_later(args.duration, close_soon)

    status_stream: TextIO | None = sys.stdout
    if args.json or args.detections:
        status_stream = sys.stderr if sys.stderr.isatty() else None
    status_line = _StatusLine(status_stream)
    logging.basicConfig(level=logging.WARNING, handlers=[_LogHandler(status_line)])
    watch = _Watch(client)
    printer = _DetectionPrinter(args.recent) if args.detections else None
    refresher = loop.create_task(_refresh(status_line, watch))
    try:
        async with client:
            async for event in client:
                if isinstance(event, StateEvent):
                    watch.state = event.state
                elif isinstance(event, MessageEvent) and printer is not None:
                    await printer.handle(client, event.message)
                elif isinstance(event, FrameEvent):
                    watch.newest = event
                    if args.json:
                        print(json.dumps(frame_summary(event)), flush=True)
                    if args.count is not None and client.stats.frames >= args.count:
                        await client.close()
    except BrokenPipeError:
        # The reader went away (``argos-client --json URL | head``): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        refresher.cancel()
        for signum in _EXIT_ON_SIGNAL:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    status_line.show(watch.status())
    status_line.finish()
    stats = client.stats
    print(f"argos-client: {stats.frames} frames, {stats.frames_lost} lost in {stats.gaps} "
          f"gaps, {stats.reconnects} reconnects, {stats.malformed} malformed",
          file=sys.stderr)
    if stopped_by:
        return _EXIT_ON_SIGNAL[signal.Signals(stopped_by[0])]
    if client.auth_failed:
        print(f"argos-client: {_auth_hint(client, token_source)}", file=sys.stderr)
        return EXIT_AUTH_FAILED
    if stats.frames == 0:
        reason = f" (last error: {client.last_error})" if client.last_error else ""
        print(f"argos-client: no frames received from {client.url}{reason}", file=sys.stderr)
        return EXIT_NO_FRAMES
    return EXIT_OK


def _tune_pair(text: str) -> tuple[str, float | bool]:
    """``SETTING=VALUE`` of --tune: a number, or true/false."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not SETTING=VALUE, e.g. center_freq=433.92e6")
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return name.strip(), lowered == "true"
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value must be a number, true or "
                                         "false") from None


async def _tune(client: ArgosClient, args: argparse.Namespace) -> int:
    """Take the lease, send the changes, print the ``tuned`` answer (or the refusal), give
    the lease back; return the exit code."""
    async def ask() -> None:
        await client.control("take" if args.take else "acquire", args.name)
        await client.tune(**dict(args.tune))

    async def done() -> None:
        with contextlib.suppress(ConnectionError):
            await client.control("release")

    return await _ask(client, args, ask, ("tuned", "changes"),
                      ("control_refused", "tune_refused"), "the change", done)


async def _record(client: ArgosClient, args: argparse.Namespace) -> int:
    """Ask the server to start or stop recording, print the ``recording`` answer's state
    (or the refusal); return the exit code."""
    async def ask() -> None:
        await client.record(args.record, args.record_kind)

    return await _ask(client, args, ask, ("recording", "recording"), ("record_refused",),
                      "--record")


async def _ask(client: ArgosClient, args: argparse.Namespace,
               ask: Callable[[], Awaitable[None]], answer: tuple[str, str],
               refusals: tuple[str, ...], what: str,
               done: Callable[[], Awaitable[None]] | None = None) -> int:
    """Connect, ``ask`` once the hello came, print the answer's field as JSON (the answer:
    a message of type ``answer[0]`` about this client) or the refusal (an error with one
    of the ``refusals`` codes), call ``done``, close; return the exit code."""
    me: int | None = None
    outcome = EXIT_NO_FRAMES
    try:
        async with asyncio.timeout(args.duration or TUNE_TIMEOUT_S):
            async with client:
                async for event in client:
                    if not isinstance(event, MessageEvent):
                        continue
                    message = event.message
                    if event.type == "hello":
                        me = message.get("control", {}).get("you", {}).get("client_id")
                        await ask()
                    elif event.type == answer[0] and message.get("client_id") == me:
                        print(json.dumps(message[answer[1]]), flush=True)
                        outcome = EXIT_OK
                    elif event.type == "error" and message.get("code") in refusals:
                        print(f"argos-client: {message.get('message')}", file=sys.stderr)
                        outcome = EXIT_REFUSED
                    if outcome != EXIT_NO_FRAMES:
                        if done is not None:
                            await done()
                        await client.close()
    except TimeoutError:
        print(f"argos-client: no answer to {what} within "
              f"{args.duration or TUNE_TIMEOUT_S:g} s", file=sys.stderr)
    if client.auth_failed:
        print(f"argos-client: {_auth_hint(client, '')}", file=sys.stderr)
        return EXIT_AUTH_FAILED
    return outcome


class _DetectionPrinter:
    """Prints detection events, each once: live ones as they come, and from the server's
    kept ones (the ``detections`` query, asked on each hello) those of the time the link was
    down, or with ``recent`` all of them at the first connection."""

    #: Events remembered as printed (a reconnect's reply may hold some again).
    REMEMBERED = 4096

    def __init__(self, recent: bool) -> None:
        self.recent = recent
        self.connections = 0
        self.latest_ns: int | None = None  # the newest time_ns seen
        self.baseline_only = False  # the pending reply only says where the history ends
        self._printed: set[tuple[Any, ...]] = set()
        self._order: deque[tuple[Any, ...]] = deque()

    async def handle(self, client: ArgosClient, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "hello":
            self.connections += 1
            await self._ask(client)
        elif kind == "detection":
            self._print(message)
        elif kind == "detections" and isinstance(message.get("events"), list):
            for event in message["events"]:
                if isinstance(event, dict):
                    if self.baseline_only:
                        self._seen(event)
                    else:
                        self._print({"type": "detection", **event})
            self.baseline_only = False

    async def _ask(self, client: ArgosClient) -> None:
        """Ask for the events this connection has to catch up on (a server too old to keep
        them answers with an error, which changes nothing)."""
        if self.connections == 1:
            self.baseline_only = not self.recent
            limit = None if self.recent else 1
            since = None
        else:
            limit, since = None, None if self.latest_ns is None else max(0, self.latest_ns - 1)
        with contextlib.suppress(ConnectionError):
            await client.request_detections(limit=limit, since_ns=since)

    def _seen(self, event: dict[str, Any]) -> bool:
        """Remember an event; whether it was new."""
        key = tuple(event.get(name) for name in ("stream", "id", "event", "time_ns"))
        if key in self._printed:
            return False
        self._printed.add(key)
        self._order.append(key)
        if len(self._order) > self.REMEMBERED:
            self._printed.discard(self._order.popleft())
        time_ns = event.get("time_ns")
        if isinstance(time_ns, int) and (self.latest_ns is None or time_ns > self.latest_ns):
            self.latest_ns = time_ns
        return True

    def _print(self, event: dict[str, Any]) -> None:
        if self._seen(event):
            print(json.dumps(event), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run argos-client with ``argv`` (default: the command line); return the exit status."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    try:
        check_url(args.url)
    except ValueError as exc:
        parser.exit(EXIT_USAGE, f"argos-client: error: {exc}\n")
    if args.backoff_cap_s < args.backoff_base_s:
        parser.error(f"--backoff-cap-s ({args.backoff_cap_s} s) must be at least "
                     f"--backoff-base-s ({args.backoff_base_s} s)")
    view = ViewRequest(None, args.center_freq_hz, args.span_hz, args.bins, args.fps_divisor)
    try:
        token, token_source = _read_token(args.token_file)
        client = ArgosClient(args.url, backoff_base_s=args.backoff_base_s,
                             backoff_cap_s=args.backoff_cap_s, encoding=args.encoding,
                             compress=args.compress, ssl_cafile=args.ssl_cafile,
                             step_db=args.step_db, token=token,
                             retry_auth_failure=args.retry_auth_failure,
                             view=None if view == ViewRequest() else view)
    except ValueError as exc:
        parser.exit(EXIT_USAGE, f"argos-client: error: {exc}\n")
    try:
        if args.tune:
            return asyncio.run(_tune(client, args))
        if args.record:
            return asyncio.run(_record(client, args))
        return asyncio.run(_watch(client, args, token_source))
    except KeyboardInterrupt:  # SIGINT before the handler was installed
        return _EXIT_ON_SIGNAL[signal.SIGINT]


if __name__ == "__main__":
    sys.exit(main())
