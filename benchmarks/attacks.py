# SPDX-License-Identifier: GPL-3.0-or-later
"""Attacks on a real ``argos-spectrum``, replayed one at a time while a user's view is measured.

    .venv/bin/python -m benchmarks.attacks                         # every attack and check, ~7 min
    .venv/bin/python -m benchmarks.attacks --only ping-flood --duration-s 10
    .venv/bin/python -m benchmarks.attacks --only checks
    .venv/bin/python -m benchmarks.attacks --app-args "--max-clients 64 --handshake-timeout-s 3"

For each attack a fresh ``argos-spectrum --source sim --port 0 --token T --allowed-origins
http://good.example`` starts with ``RLIMIT_NOFILE`` 1024 (as under ``ulimit -n 1024``), its
stderr (the log) in a file. An observer process connects a healthy authenticated client
(``Authorization: Bearer T``) that counts frames, and opens a new authenticated client every
``--probe-interval-s`` that times its ``hello``. After a quiet baseline the attack runs for
``--duration-s`` from this process, while a sampler reads the server's RSS, open fds and log
lines. Measured against the targets of issue 12 ("Hold under attack"), during the attack:

- the healthy client keeps at least 29 frames/s (the app runs at 30) in every 2 s window;
- every new authenticated client gets its ``hello`` within 1 s;
- the server's RSS grows by at most 20 MB;
- the server logs fewer than 100 lines/s.

Each attack is an ``async`` function of a :class:`Target` and a duration with its counts as
keyword arguments, so a test can run it with small counts against its own server. The checks
(``--only checks``) need no load: cross-origin upgrades without an allowlist, ``Host``
headers, HTTP methods, the TLS 1.2 ciphers, token masking in logs, the ``hello``.

Everything talks to 127.0.0.1 only (the attackers spread over the source addresses
127.0.0.2-127.0.0.10, all loopback); every attack is bounded in count and time; the app, the
observer and every socket are closed on the way out, Ctrl-C and errors included. Results: a
markdown table on stdout and ``$ARGOS_BENCH_CACHE/attacks.json`` (default
/tmp/gr-argos-bench/attacks.json); the app's logs in ``attacks-logs/`` beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import json
import os
import queue
import re
import resource
import secrets
import shlex
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from benchmarks.frames import cache_dir
from benchmarks.load_client import Counters
from benchmarks.run import stop_process
from benchmarks.soak import SoakClient, _die_with_parent, machine

_PY = sys.executable
_REPO = Path(__file__).resolve().parent.parent

# -- the server under test and the targets ---------------------------------------------------

TOKEN = "T"
GOOD_ORIGIN = "http://good.example"
EVIL_ORIGIN = "http://evil.example"
#: The app as issue 12 runs it; attacks and ``--app-args`` add flags.
APP_ARGS = ("--source", "sim", "--port", "0", "--token", TOKEN,
            "--allowed-origins", GOOD_ORIGIN)
#: The app's soft limit on open files, as ``ulimit -n 1024`` (a common default) sets it.
APP_NOFILE = 1024
#: Source addresses of the attackers (all loopback on Linux), so that the per-address limit
#: (``max_clients_per_ip``) is no defence; the observer uses 127.0.0.1.
SOURCE_IPS = tuple(f"127.0.0.{i}" for i in range(2, 11))

MIN_FPS = 29.0
MAX_CONNECT_S = 1.0
MAX_RSS_GROWTH_MB = 20.0
MAX_LOG_LINES_PER_S = 100.0

STARTUP_TIMEOUT_S = 120.0    # GNU Radio imports and the flowgraph on a loaded 2-core machine
BASELINE_S = 4.0             # quiet time before the attack: baseline fps, RSS, fds
SAMPLE_S = 0.5               # RSS, fds and log lines sampled this often
# The healthy client's frames are counted per 2 s: a frame early or late by a few ms moves
# between 1 s windows, which makes a steady 30 frames/s read 29 or 31.
FPS_WINDOW_S = 2.0
CONNECT_TIMEOUT_S = 3.0      # one attacker TCP connect
RESPONSE_TIMEOUT_S = 5.0     # one HTTP response head
PROBE_TIMEOUT_S = 5.0        # a new client's connect + hello; slower counts as failed
ATTACK_GRACE_S = 20.0        # an attack still running this long after its duration is cut
RETRY_S = 0.2                # an attacker refused waits this long before it tries again
CONNECTS_IN_FLIGHT = 64      # attacker connects pending at once


@dataclass(frozen=True)
class Target:
    """The server an attack is pointed at.

    Attributes:
        host: its address (an IPv4 loopback address here).
        port: its port.
        token: the token it was started with (attacks that need an authenticated client).
    """

    host: str
    port: int
    token: str = TOKEN

    @classmethod
    def from_url(cls, url: str, token: str = TOKEN) -> Target:
        match = re.match(r"wss?://([^:/]+):(\d+)", url)
        if match is None:
            raise ValueError(f"not a ws:// URL with a port: {url}")
        return cls(match.group(1), int(match.group(2)), token)

    @property
    def auth_header(self) -> tuple[str, str]:
        return ("Authorization", f"Bearer {self.token}")


def source_ip(index: int) -> str:
    """The source address of attacker number ``index``, round robin."""
    return SOURCE_IPS[index % len(SOURCE_IPS)]


# -- raw HTTP and WebSocket bytes ------------------------------------------------------------

OP_TEXT, OP_PING = 0x1, 0x9


def http_request(target: Target, path: str = "/", *, method: str = "GET", upgrade: bool = True,
                 headers: Sequence[tuple[str, str]] = (), host: str | None = None) -> bytes:
    """An HTTP/1.1 request, a WebSocket upgrade by default, with ``headers`` added as given
    (repeated names stay repeated)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'{target.host}:{target.port}'}"]
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                  "Sec-WebSocket-Version: 13"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame (masked with a zero key, so the payload is sent as is)."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


async def open_stream(target: Target, local_ip: str | None = None, *,
                      timeout_s: float = CONNECT_TIMEOUT_S, rcvbuf: int | None = None,
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the target from ``local_ip``, with a small receive buffer if asked.

    Raises:
        OSError, TimeoutError: the connect failed or took longer than ``timeout_s``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if local_ip:
            sock.bind((local_ip, 0))
        sock.setblocking(False)
        async with asyncio.timeout(timeout_s):
            await asyncio.get_running_loop().sock_connect(sock, (target.host, target.port))
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def read_status(reader: asyncio.StreamReader, timeout_s: float = RESPONSE_TIMEOUT_S) -> int:
    """The status code of the response head (0: the server closed before a whole head).

    Raises:
        TimeoutError: no whole head within ``timeout_s``.
    """
    try:
        async with asyncio.timeout(timeout_s):
            head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


async def read_until_closed(reader: asyncio.StreamReader, deadline: float,
                            stop_at: bytes | None = None) -> bool:
    """Read and discard until the server closes (True), ``stop_at`` shows up (True) or the
    loop's clock passes ``deadline`` (False)."""
    loop = asyncio.get_running_loop()
    seen = b""
    try:
        while (left := deadline - loop.time()) > 0:
            async with asyncio.timeout(left):
                data = await reader.read(65536)
            if not data:
                return True
            if stop_at is not None:
                seen = seen[-len(stop_at):] + data
                if stop_at in seen:
                    return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return False


async def request_outcome(target: Target, request: bytes, local_ip: str | None = None,
                          timeout_s: float = RESPONSE_TIMEOUT_S) -> str:
    """Send one request on a new connection; the response's status code as text, or what
    happened instead (``connect_failed``, ``timeout``, ``reset``)."""
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        writer.write(request)
        return str(await read_status(reader, timeout_s))

    return await _converse(target, local_ip, talk)


Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, str]]


async def _converse(target: Target, local_ip: str | None, talk: Talk) -> str:
    """``talk(reader, writer)`` on a new connection, closed after it; what it returns, or
    what happened instead (``connect_failed``, ``timeout``, ``reset``)."""
    try:
        reader, writer = await open_stream(target, local_ip)
    except (OSError, TimeoutError):
        return "connect_failed"
    try:
        return await talk(reader, writer)
    except TimeoutError:
        return "timeout"
    except ConnectionError:
        return "reset"
    finally:
        writer.transport.abort()


async def fetch(target: Target, request: bytes, timeout_s: float = RESPONSE_TIMEOUT_S) -> bytes:
    """Send one request on a new connection; everything the server sends until it closes
    (or ``timeout_s`` passes)."""
    reader, writer = await open_stream(target)
    data = b""
    try:
        writer.write(request)
        async with asyncio.timeout(timeout_s):
            while chunk := await reader.read(65536):
                data += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.transport.abort()
    return data


async def _swarm(count: int, duration_s: float,
                 worker: Callable[[int, float], Coroutine[Any, Any, None]]) -> Counter[str]:
    """Run ``worker(index, deadline)`` ``count`` times at once until ``deadline`` (the loop's
    clock, ``duration_s`` from now); cancel what is left ``ATTACK_GRACE_S`` later. Each
    worker closes its own sockets (also when cancelled). Returns the exceptions that ended
    workers, by type."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration_s
    tasks = [asyncio.create_task(worker(index, deadline)) for index in range(count)]
    try:
        await asyncio.wait(tasks, timeout=duration_s + ATTACK_GRACE_S)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    return Counter(f"worker_error_{type(outcome).__name__}" for outcome in outcomes
                   if isinstance(outcome, Exception))


# -- the attacks -----------------------------------------------------------------------------
# Each: ``await attack(target, duration_s, **counts)`` -> what the attacker saw (counts).

async def half_open_flood(target: Target, duration_s: float, sockets: int = 1500) -> dict[str, Any]:
    """``sockets`` TCP connections that never send a byte; each one the server closes (its
    handshake timeout) is opened again, until ``duration_s`` has passed."""
    return await _occupy(target, duration_s, sockets, request=None)


async def slot_squatting(target: Target, duration_s: float,
                         connections: int = 300) -> dict[str, Any]:
    """``connections`` WebSocket upgrades without a token that never authenticate: they hold
    the server's client slots until it closes them (its handshake timeout), then come back;
    a refused one retries after ``RETRY_S``."""
    return await _occupy(target, duration_s, connections, request=http_request(target))


async def _occupy(target: Target, duration_s: float, connections: int,
                  request: bytes | None) -> dict[str, Any]:
    """``connections`` sockets from every source address, each held until the server closes
    it and then opened again: silent ones (``request`` None), or ones that send ``request``
    and hold only a WebSocket upgrade (101)."""
    counts: Counter[str] = Counter()
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    loop = asyncio.get_running_loop()
    holding = 0

    async def occupy(index: int, deadline: float) -> None:
        nonlocal holding
        while deadline - loop.time() > 0:
            try:
                async with gate:
                    reader, writer = await open_stream(target, source_ip(index))
            except (OSError, TimeoutError) as exc:
                counts[f"connect_failed_{type(exc).__name__}"] += 1
                await asyncio.sleep(RETRY_S)
                continue
            counts["opened"] += 1
            try:
                if request is not None:
                    writer.write(request)
                    status = await read_status(reader)
                    counts[f"status_{status}"] += 1
                    if status != 101:
                        await asyncio.sleep(RETRY_S)
                        continue
                holding += 1
                counts["most_held"] = max(counts["most_held"], holding)
                try:
                    if await read_until_closed(reader, deadline):
                        counts["closed_by_server"] += 1
                finally:
                    holding -= 1
            except (OSError, TimeoutError) as exc:
                counts[f"failed_{type(exc).__name__}"] += 1
            finally:
                writer.transport.abort()

    counts.update(await _swarm(connections, duration_s, occupy))
    return dict(counts)


async def ping_flood(target: Target, duration_s: float, clients: int = 4, stalled: int = 1,
                     pings_per_write: int = 512) -> dict[str, Any]:
    """Authenticated clients that send WebSocket pings (125-byte payloads) as fast as they
    can, and connect again when the server drops them. The first ``stalled`` of them never
    read their socket (a 4 KiB receive buffer), so the server's pongs pile up; the others
    read and discard (answering no ping of the server's)."""
    counts: Counter[str] = Counter()
    burst = client_frame(OP_PING, b"p" * 125) * pings_per_write
    loop = asyncio.get_running_loop()

    async def flood(index: int, deadline: float) -> None:
        is_stalled = index < stalled
        while deadline - loop.time() > 0:
            try:
                reader, writer = await open_stream(target, source_ip(index),
                                                   rcvbuf=4096 if is_stalled else None)
            except (OSError, TimeoutError) as exc:
                counts[f"connect_failed_{type(exc).__name__}"] += 1
                await asyncio.sleep(RETRY_S)
                continue
            reading: asyncio.Task[bool] | None = None
            try:
                writer.write(http_request(target, headers=[target.auth_header]))
                status = await read_status(reader)
                counts[f"status_{status}"] += 1
                if status != 101:
                    await asyncio.sleep(RETRY_S)
                    continue
                if not is_stalled:
                    reading = asyncio.create_task(read_until_closed(reader, deadline))
                while (left := deadline - loop.time()) > 0 and not writer.is_closing():
                    writer.write(burst)
                    try:
                        async with asyncio.timeout(left):
                            await writer.drain()
                    except TimeoutError:
                        counts["writes_blocked_at_end"] += 1
                        break
                    counts["pings_sent"] += pings_per_write
                if writer.is_closing():
                    counts["closed_by_server"] += 1
            except TimeoutError:
                counts["handshake_timeout"] += 1
            except ConnectionError:
                counts["closed_by_server"] += 1
            finally:
                if reading is not None:
                    reading.cancel()
                writer.transport.abort()

    counts.update(await _swarm(clients, duration_s, flood))
    counts["pings_per_s"] = round(counts["pings_sent"] / duration_s)
    return dict(counts)


#: Requests that each make the server log (name -> headers added to a WebSocket upgrade): a
#: wrong token, a header given twice (the server cannot pick one), and an ``Origin`` whose
#: spaces and ``key=value`` text would read as fields of the log line.
LOGGED_REQUESTS: dict[str, tuple[tuple[str, str], ...]] = {
    "wrong_token": (("Authorization", "Bearer wrong-token"),),
    "duplicate_origin": (("Origin", GOOD_ORIGIN), ("Origin", GOOD_ORIGIN)),
    "duplicate_upgrade": (("Upgrade", "websocket"),),
    "duplicate_authorization": (("Authorization", f"Bearer {TOKEN}"),
                                ("Authorization", f"Bearer {TOKEN}")),
    "forged_origin": (("Origin", "http://evil.example event=auth_ok peer=10.1.2.3:4444 "
                                 "method=header"),),
}


async def log_flood(target: Target, duration_s: float, workers: int = 16,
                    requests: dict[str, tuple[tuple[str, str], ...]] | None = None,
                    ) -> dict[str, Any]:
    """``workers`` connections at a time, each sending the next of ``requests`` (default
    :data:`LOGGED_REQUESTS`) in turn, one per connection, as fast as the server answers."""
    chosen = requests or LOGGED_REQUESTS
    names = list(chosen)
    counts: Counter[str] = Counter()
    loop = asyncio.get_running_loop()

    async def send(index: int, deadline: float) -> None:
        turn = index
        while deadline - loop.time() > 0:
            name = names[turn % len(names)]
            turn += 1
            outcome = await request_outcome(target, http_request(target, headers=chosen[name]),
                                            source_ip(index))
            counts[f"{name}:{outcome}"] += 1
            counts["requests"] += 1

    counts.update(await _swarm(workers, duration_s, send))
    counts["requests_per_s"] = round(counts["requests"] / duration_s)
    return dict(counts)


async def auth_message_outcome(target: Target, token: str, local_ip: str | None = None) -> str:
    """Upgrade without a token and send it in a first ``auth`` message: ``refused`` when the
    server answers ``auth_failed``, ``hello`` when it accepts, else what happened."""
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        writer.write(http_request(target))
        status = await read_status(reader)
        if status != 101:
            return str(status)
        message = json.dumps({"type": "auth", "token": token}).encode()
        writer.write(client_frame(OP_TEXT, message))
        data = b""
        async with asyncio.timeout(RESPONSE_TIMEOUT_S):
            while b"auth_failed" not in data and b'"hello"' not in data:
                chunk = await reader.read(4096)
                if not chunk:
                    return "closed"
                data += chunk
        return "refused" if b"auth_failed" in data else "hello"

    return await _converse(target, local_ip, talk)


async def token_guessing(target: Target, duration_s: float, method: str = "header",
                         workers: int = 8) -> dict[str, Any]:
    """Wrong tokens as fast as the server answers, ``workers`` at a time, by ``method``:
    ``header`` (``Authorization: Bearer`` on the upgrade), ``message`` (a first ``auth``
    message) or ``metrics`` (``GET /metrics`` with a bearer token)."""
    counts: Counter[str] = Counter()
    loop = asyncio.get_running_loop()

    async def guess(index: int, deadline: float) -> None:
        number = 0
        while deadline - loop.time() > 0:
            number += 1
            token = f"guess-{index}-{number}"
            header = ("Authorization", f"Bearer {token}")
            ip = source_ip(index)
            if method == "message":
                outcome = await auth_message_outcome(target, token, ip)
            elif method == "metrics":
                outcome = await request_outcome(
                    target, http_request(target, "/metrics", upgrade=False, headers=[header]), ip)
            else:
                outcome = await request_outcome(target, http_request(target, headers=[header]),
                                                ip)
            counts[outcome] += 1
            counts["guesses"] += 1

    counts.update(await _swarm(workers, duration_s, guess))
    counts["guesses_per_s"] = round(counts["guesses"] / duration_s)
    return dict(counts)


def format_paths() -> tuple[str, ...]:
    """One connection URL per distinct frame format a client may ask for (40): float32 and
    int16, uint8 with the automatic step and every fixed step, each plain and deflated."""
    from gr_argos.protocol import CLIENT_STEPS_DB

    paths = []
    for compress in (0, 1):
        paths += [f"/?encoding=float32&compress={compress}",
                  f"/?encoding=int16&compress={compress}"]
        paths += [f"/?encoding=uint8&compress={compress}&step_db={step:g}"
                  for step in (0, *CLIENT_STEPS_DB)]
    return tuple(paths)


async def reading_clients(target: Target, duration_s: float, paths: Sequence[str],
                          offer_deflate: bool = False) -> dict[str, Any]:
    """One authenticated client per entry of ``paths`` (its connection URL), reading and
    discarding its frames (and answering pings) until ``duration_s`` has passed; offering
    permessage-deflate like a browser if asked."""
    loop = asyncio.get_running_loop()
    counters = Counters()
    counts: Counter[str] = Counter()
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    extension = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]

    holding = 0

    async def read(index: int, deadline: float) -> None:
        nonlocal holding
        request = http_request(target, paths[index],
                               headers=[target.auth_header, *(extension if offer_deflate else ())])
        while deadline - loop.time() > 0:
            ready: asyncio.Future[bool] = loop.create_future()
            lost: asyncio.Future[None] = loop.create_future()
            transport: asyncio.Transport | None = None
            try:
                async with gate, asyncio.timeout(CONNECT_TIMEOUT_S + RESPONSE_TIMEOUT_S):
                    transport, _ = await loop.create_connection(
                        partial(SoakClient, counters, request, ready, lost),
                        target.host, target.port, local_addr=(source_ip(index), 0))
                    upgraded = await ready
                if not upgraded:
                    counts["refused"] += 1
                    await asyncio.sleep(RETRY_S)
                    continue
                counts["upgraded"] += 1
                holding += 1
                counts["most_held"] = max(counts["most_held"], holding)
                try:
                    done, _ = await asyncio.wait([lost], timeout=max(0.0, deadline - loop.time()))
                finally:
                    holding -= 1
                counts["closed_by_server"] += len(done)
            except (OSError, TimeoutError) as exc:
                counts[f"failed_{type(exc).__name__}"] += 1
                await asyncio.sleep(RETRY_S)
            finally:
                if transport is not None:
                    transport.abort()

    counts.update(await _swarm(len(paths), duration_s, read))
    counts["frames_received"] = counters.frames
    return dict(counts)


async def variant_flood(target: Target, duration_s: float) -> dict[str, Any]:
    """40 clients, each asking for a different frame format in its URL."""
    return await reading_clients(target, duration_s, format_paths())


async def deflate_flood(target: Target, duration_s: float, clients: int = 216) -> dict[str, Any]:
    """``clients`` clients offering permessage-deflate (the server needs
    ``--permessage-deflate`` to accept it)."""
    return await reading_clients(target, duration_s, ("/",) * clients, offer_deflate=True)


@dataclass(frozen=True)
class Attack:
    """An attack as this script runs it: a name, what it does, its function, and the flags
    the app needs for it."""

    name: str
    summary: str
    run: Callable[[Target, float], Awaitable[dict[str, Any]]]
    app_args: tuple[str, ...] = ()


ATTACKS = (
    Attack("half-open", "1,500 idle TCP sockets, never an upgrade, reopened when closed",
           partial(half_open_flood, sockets=1500)),
    Attack("slot-squatting", "300 upgrades without a token from 127.0.0.2-10, never "
           "authenticating, back as soon as closed", partial(slot_squatting, connections=300)),
    Attack("ping-flood", "4 authenticated clients sending pings flat out, 1 never reading",
           partial(ping_flood, clients=4, stalled=1)),
    Attack("ping-flood-no-keepalive", "the same, app with --ping-interval-s 0",
           partial(ping_flood, clients=4, stalled=1), ("--ping-interval-s", "0")),
    Attack("log-flood", "16 at a time: wrong token, duplicated Origin/Upgrade/Authorization, "
           "an Origin forging log fields", log_flood),
    Attack("token-header", "wrong tokens in Authorization headers, 8 at a time",
           partial(token_guessing, method="header")),
    Attack("token-message", "wrong tokens in first auth messages, 8 at a time",
           partial(token_guessing, method="message")),
    Attack("token-metrics", "wrong bearer tokens on GET /metrics, 8 at a time",
           partial(token_guessing, method="metrics")),
    Attack("variant-flood", "40 clients, each a different frame format in its URL",
           variant_flood),
    Attack("deflate-flood", "216 clients offering permessage-deflate, app with "
           "--permessage-deflate", deflate_flood, ("--permessage-deflate",)),
)


# -- the observer: what a user sees ----------------------------------------------------------

class Observer:
    """A healthy authenticated client counting its frames, and a new authenticated client
    every ``probe_interval_s`` timing its ``hello`` (all on 127.0.0.1, times in ``time.time()``
    seconds so another process can line them up with its own).

    Args:
        url: the server's ws:// URL.
        token: its token (sent as ``Authorization: Bearer``).
        probe_interval_s: seconds between new clients.
    """

    def __init__(self, url: str, token: str, probe_interval_s: float = 1.0) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.probe_interval_s = probe_interval_s
        self.frame_times: list[float] = []
        self.missed: list[tuple[float, int]] = []  # (time, frames the server dropped)
        self.probes: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Observe until ``stop`` is set."""
        probes: set[asyncio.Task[None]] = set()

        async def probe_now_and_then() -> None:
            while not stop.is_set():
                task = asyncio.create_task(self._probe())
                probes.add(task)
                task.add_done_callback(probes.discard)
                try:
                    await asyncio.wait_for(stop.wait(), self.probe_interval_s)
                except TimeoutError:
                    pass

        tasks = [asyncio.create_task(self._healthy(stop)),
                 asyncio.create_task(probe_now_and_then())]
        await stop.wait()
        for task in (*tasks, *probes):
            task.cancel()
        await asyncio.gather(*tasks, *probes, return_exceptions=True)

    def _connect(self) -> Any:
        return connect(self.url, additional_headers=self.headers, compression=None,
                       open_timeout=None, max_size=None, close_timeout=1)

    async def _healthy(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            ws: ClientConnection | None = None
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S * 2):
                    ws = await self._connect()
                    await ws.recv()  # hello
            except Exception as exc:
                self.events.append({"t": time.time(), "event": "connect_failed",
                                    "error": _describe(exc)})
                if ws is not None:
                    ws.transport.abort()
                await asyncio.sleep(1.0)
                continue
            self.ready.set()
            try:
                async for message in ws:
                    if isinstance(message, bytes):
                        self.frame_times.append(time.time())
                        missed = int.from_bytes(message[24:28], "little")
                        if missed:
                            self.missed.append((time.time(), missed))
                self.events.append({"t": time.time(), "event": "closed",
                                    "code": ws.close_code})
            except Exception as exc:
                self.events.append({"t": time.time(), "event": "lost",
                                    "error": _describe(exc)})
            finally:
                ws.transport.abort()
            await asyncio.sleep(0.5)

    async def _probe(self) -> None:
        started, t0 = time.monotonic(), time.time()
        ws: ClientConnection | None = None
        result: dict[str, Any] = {"t": t0, "connect_s": None, "error": None}
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                ws = await self._connect()
                await ws.recv()  # hello
            result["connect_s"] = round(time.monotonic() - started, 4)
        except TimeoutError:
            result["error"] = "timeout"
        except Exception as exc:
            result["error"] = _describe(exc)
        finally:
            self.probes.append(result)
            if ws is not None:
                ws.transport.abort()

    def result(self) -> dict[str, Any]:
        return {"frame_times": self.frame_times, "missed": self.missed, "probes": self.probes,
                "events": self.events}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}"[:160]


async def _observe(url: str, token: str, probe_interval_s: float, max_s: float) -> None:
    """The observer process: JSON lines on stdout (``ready``, then the result when stdin
    closes or ``max_s`` has passed)."""
    observer = Observer(url, token, probe_interval_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    loop.call_later(max_s, stop.set)
    running = asyncio.create_task(observer.run(stop))
    ready = asyncio.create_task(observer.ready.wait())
    await asyncio.wait([ready, running], return_when=asyncio.FIRST_COMPLETED)
    print(json.dumps({"ready": observer.ready.is_set(), "events": observer.events}), flush=True)
    await running
    ready.cancel()
    print(json.dumps(observer.result()), flush=True)


# -- the app and its measurements ------------------------------------------------------------

def _limits_of_the_app() -> None:
    """In the app's process before exec: the fd limit, and death with this process."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (APP_NOFILE, hard))
    _die_with_parent()


class App:
    """``argos-spectrum`` under test: stdout and stderr (the log) in files, fds limited.

    Args:
        args: its flags.
        log_dir: where its output goes (``NAME.out``, ``NAME.log``).
        name: the file names' stem.
        checkout: the repository to run it from.
    """

    def __init__(self, args: Sequence[str], log_dir: Path, name: str,
                 checkout: Path = _REPO) -> None:
        self.command = [_PY, "-m", "gr_argos.apps.spectrum", *args]
        self.log_path = log_dir / f"{name}.log"
        self.out_path = log_dir / f"{name}.out"
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, cwd=checkout,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=log,
                                            preexec_fn=_limits_of_the_app)
        self._log_read = 0
        self._log_lines = 0
        self._log_lock = threading.Lock()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_url(self, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
        """The ws:// (or wss://) URL the app prints once it serves.

        Raises:
            RuntimeError: it exited first, or printed none within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(r"connect to (wss?://\S+)", self.out_path.read_text(errors="replace"))
            if match:
                return match.group(1)
            if not self.alive:
                break
            time.sleep(0.2)
        raise RuntimeError(f"argos-spectrum did not serve (rc {self.process.poll()}): "
                           f"{' '.join(self.command)}\n"
                           + self.log_path.read_text(errors="replace")[-2000:])

    def log_lines(self) -> int:
        """Lines the app has logged so far."""
        with self._log_lock, open(self.log_path, "rb") as log:
            log.seek(self._log_read)
            data = log.read()
            self._log_read += len(data)
            self._log_lines += data.count(b"\n")
            return self._log_lines

    def log_text(self, start: int = 0) -> str:
        """The log from byte ``start`` on."""
        with open(self.log_path, "rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def rss_kb(self) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def cpu_s(self) -> float | None:
        """CPU seconds the app has used (user + system)."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self) -> int | None:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def stop(self) -> int | None:
        """SIGINT (the app stops its flowgraph), SIGKILL if it hangs; its exit status."""
        return stop_process(self.process, signal.SIGINT)


class Sampler:
    """Reads the app's RSS, fds and log line count every ``SAMPLE_S`` in a thread."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.samples.append({"t": time.time(), "rss_kb": self.app.rss_kb(),
                                 "fds": self.app.fds(), "log_lines": self.app.log_lines(),
                                 "log_bytes": self.app.log_size(),
                                 "cpu_s": self.app.cpu_s(), "alive": self.app.alive})
            if self._stop.wait(SAMPLE_S):
                return

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


class ObserverProcess:
    """:class:`Observer` in its own process, so the attacker's CPU does not slow it."""

    def __init__(self, url: str, token: str, probe_interval_s: float, max_s: float) -> None:
        self.process = subprocess.Popen(
            [_PY, "-m", "benchmarks.attacks", "--role", "observer", "--url", url,
             "--token", token, "--probe-interval-s", str(probe_interval_s),
             "--max-s", str(max_s)],
            cwd=_REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=_die_with_parent)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"the observer said nothing within {timeout_s:.0f} s") from None
        if line is None:
            raise RuntimeError(f"the observer exited (rc {self.process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        answer = self._next(timeout_s)
        if not answer["ready"]:
            raise RuntimeError(f"the healthy client could not connect: {answer['events']}")

    def finish(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Stop observing; what it saw (empty if it did not answer)."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.close()
            return self._next(timeout_s)
        except (RuntimeError, OSError):
            return {}
        finally:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def scrape(target: Target) -> dict[str, float]:
    """The server's counters of refusals, auth failures, policy closes and clients (empty if
    /metrics does not answer)."""
    wanted = ("argos_auth_failures_total", "argos_connections_refused_total",
              "argos_connections_closed_by_policy_total", "argos_clients_total")
    request = urllib.request.Request(f"http://{target.host}:{target.port}/metrics",
                                     headers=dict([target.auth_header]))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith(wanted):
            found[name] = float(value)
    return found


# -- one attack, measured --------------------------------------------------------------------

def run_attack(attack: Attack, duration_s: float, extra_app_args: Sequence[str],
               probe_interval_s: float, log_dir: Path, checkout: Path) -> dict[str, Any]:
    """Start the app, observe it quietly, attack it, and judge what the user saw."""
    record: dict[str, Any] = {"attack": attack.name, "summary": attack.summary,
                              "duration_s": duration_s}
    with App([*APP_ARGS, *attack.app_args, *extra_app_args], log_dir, attack.name,
             checkout) as app:
        record["app_command"] = " ".join(shlex.quote(a) for a in app.command[1:])
        target = Target.from_url(app.wait_url())
        observer = ObserverProcess(app.wait_url(), TOKEN, probe_interval_s,
                                   max_s=BASELINE_S + duration_s + ATTACK_GRACE_S + 120)
        sampler = Sampler(app)
        seen: dict[str, Any] = {}
        try:
            observer.wait_ready()
            time.sleep(BASELINE_S)
            metrics_before = scrape(target)
            record["loadavg_before"] = os.getloadavg()
            cpu_before = _own_cpu_s()
            record["t_start"] = time.time()
            try:
                record["attacker"] = asyncio.run(_bounded(attack.run(target, duration_s),
                                                          duration_s + 2 * ATTACK_GRACE_S))
            except TimeoutError:
                record["attacker"] = {"error": "the attack did not end in time"}
            record["t_end"] = time.time()
            record["attacker_cpu_cores"] = round(
                (_own_cpu_s() - cpu_before) / (record["t_end"] - record["t_start"]), 2)
            record["alive_at_end"] = app.alive
            time.sleep(1.0)
            record["metrics_delta"] = _delta(metrics_before, scrape(target))
        finally:
            record["samples"] = sampler.stop()
            seen = observer.finish()
        record["exit_status"] = app.stop()
    record.update(judge(record, seen))
    return record


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _bounded(job: Awaitable[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    return await asyncio.wait_for(job, timeout_s)


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: value - before.get(name, 0.0) for name, value in after.items()
            if value != before.get(name, 0.0)}


def frames_per_s(frame_times: list[float], start: float, end: float) -> list[float]:
    """Frames per second received in each whole ``FPS_WINDOW_S`` from ``start`` to ``end``."""
    times = sorted(frame_times)
    edges = [start + k * FPS_WINDOW_S for k in range(int((end - start) / FPS_WINDOW_S) + 1)]
    return [(bisect.bisect_left(times, b) - bisect.bisect_left(times, a)) / FPS_WINDOW_S
            for a, b in zip(edges, edges[1:])]


def judge(record: dict[str, Any], seen: dict[str, Any]) -> dict[str, Any]:
    """What the user saw during the attack, against the targets."""
    t0, t1 = record.get("t_start"), record.get("t_end")
    if t0 is None or t1 is None or not seen:
        return {"verdict": {"completed": False}}
    samples = record["samples"]
    before = [s for s in samples if t0 - BASELINE_S <= s["t"] < t0 and s["rss_kb"]]
    during = [s for s in samples if t0 <= s["t"] <= t1]
    fps = frames_per_s(seen["frame_times"], t0, t1)
    arrivals = sorted(t for t in seen["frame_times"] if t0 <= t <= t1)
    gaps_s = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    baseline_fps = frames_per_s(seen["frame_times"], t0 - BASELINE_S, t0)
    probes = [p for p in seen["probes"] if t0 <= p["t"] <= t1]
    failed = Counter(p["error"] for p in probes if p["error"])
    times = [p["connect_s"] for p in probes if p["connect_s"] is not None]
    rss_base = statistics.median(s["rss_kb"] for s in before) if before else None
    rss_peak = max((s["rss_kb"] for s in during if s["rss_kb"]), default=None)
    rss_last = next((s["rss_kb"] for s in reversed(samples) if s["rss_kb"]), None)
    growth_mb = (rss_peak - rss_base) / 1024 if rss_base and rss_peak else None
    log_rate = log_kb_per_s = server_cores = None
    if len(during) >= 2:
        elapsed_s = max(during[-1]["t"] - during[0]["t"], 1e-9)
        log_rate = (during[-1]["log_lines"] - during[0]["log_lines"]) / elapsed_s
        log_kb_per_s = (during[-1]["log_bytes"] - during[0]["log_bytes"]) / 1024 / elapsed_s
        if during[0]["cpu_s"] is not None and during[-1]["cpu_s"] is not None:
            server_cores = round((during[-1]["cpu_s"] - during[0]["cpu_s"]) / elapsed_s, 2)
    alive = bool(record.get("alive_at_end"))
    summary = {
        "fps": fps, "fps_min": min(fps, default=0), "fps_median": statistics.median(fps)
        if fps else 0, "baseline_fps": baseline_fps,
        "longest_gap_ms": round(max(gaps_s) * 1000) if gaps_s else None,
        "missed_frames": sum(m for t, m in seen["missed"] if t0 <= t <= t1),
        "healthy_events": [e for e in seen["events"] if t0 - BASELINE_S <= e["t"] <= t1 + 2],
        "probes": len(probes), "probes_failed": dict(failed),
        "connect_max_s": max(times) if times else None,
        "connect_median_s": statistics.median(times) if times else None,
        "baseline_connect_max_s": max((p["connect_s"] for p in seen["probes"]
                                       if p["t"] < t0 and p["connect_s"] is not None),
                                      default=None),
        "rss_base_mb": rss_base / 1024 if rss_base else None,
        "rss_growth_mb": growth_mb,
        "rss_growth_after_mb": (rss_last - rss_base) / 1024 if rss_base and rss_last else None,
        "log_lines_per_s": log_rate,
        "log_kb_per_s": log_kb_per_s,
        "server_cpu_cores": server_cores,
        "fds_base": before[-1]["fds"] if before else None,
        "fds_max": max((s["fds"] for s in during if s["fds"] is not None), default=None),
    }
    summary["verdict"] = {
        "completed": True,
        "alive": alive,
        "fps": alive and bool(fps) and min(fps) >= MIN_FPS,
        "connect": alive and bool(probes) and not failed and max(times) <= MAX_CONNECT_S,
        "rss": alive and growth_mb is not None and growth_mb <= MAX_RSS_GROWTH_MB,
        "log": log_rate is not None and log_rate < MAX_LOG_LINES_PER_S,
    }
    return summary


# -- the checks (no load) --------------------------------------------------------------------

async def _websocket_first_message(url: str, *, headers: dict[str, str] | None = None,
                                   origin: str | None = None, first: str | None = None,
                                   ) -> str:
    """Connect (optionally sending ``first`` at once) and return what comes first: ``hello``,
    another message type, ``HTTP <status>`` or the error."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            async with connect(url, additional_headers=headers, compression=None,
                               origin=Origin(origin) if origin else None,
                               close_timeout=1) as ws:
                if first is not None:
                    await ws.send(first)
                message = await ws.recv()
                if isinstance(message, bytes):
                    return "binary frame"
                return str(json.loads(message).get("type"))
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        return _describe(exc)


def _status_and_body(response: bytes) -> tuple[int, int]:
    """A raw response's status and the length of what followed its head."""
    head, _, body = response.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), len(body)


async def check_cross_origin(url: str, token: str | None) -> dict[str, Any]:
    """Whether a page on another site (``Origin: http://evil.example``) gets the stream."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return {"origin": EVIL_ORIGIN,
            "first_message": await _websocket_first_message(url, headers=headers,
                                                            origin=EVIL_ORIGIN)}


async def check_host_header(target: Target) -> dict[str, Any]:
    """What the server answers when ``Host`` names another site (a DNS-rebinding page)."""
    answers = {}
    for host in ("evil.example", "attacker.example:8765"):
        for path, upgrade in (("/healthz", False), ("/", False), ("/", True)):
            headers = [target.auth_header] if upgrade else []
            response = await fetch(target, http_request(target, path, upgrade=upgrade,
                                                        headers=headers, host=host), 2.0)
            what = f"{'upgrade' if upgrade else 'GET'} {path}"
            answers[f"Host: {host}, {what}"] = _status_and_body(response)[0]
    return answers


async def check_methods(target: Target) -> dict[str, Any]:
    """Each HTTP method on /healthz: the status and the body bytes that came back."""
    answers = {}
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS"):
        response = await fetch(target, http_request(
            target, "/healthz", method=method, upgrade=False,
            headers=[("Content-Length", "0")]), 2.0)
        status, body_bytes = _status_and_body(response)
        answers[method] = {"status": status, "body_bytes": body_bytes}
    return answers


async def check_hello(url: str, token: str, pid: int) -> dict[str, Any]:
    """The keys of ``hello``, and whether it gives the server's process id."""
    async with asyncio.timeout(PROBE_TIMEOUT_S):
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                           compression=None, close_timeout=1) as ws:
            hello = json.loads(await ws.recv())
    return {"keys": sorted(hello), "pid": hello.get("pid"),
            "is_server_pid": hello.get("pid") == pid}


async def check_log_per_request(target: Target, app: App, repeats: int = 5) -> dict[str, Any]:
    """Lines logged per request of each kind of :data:`LOGGED_REQUESTS` (and a wrong token in
    an auth message or on /metrics), with the first lines as an example."""
    kinds: dict[str, Callable[[], Awaitable[str]]] = {
        name: partial(_fresh_request, target, headers)
        for name, headers in LOGGED_REQUESTS.items()}
    kinds["wrong_auth_message"] = partial(auth_message_outcome, target, "wrong-token")
    kinds["wrong_metrics_token"] = partial(request_outcome, target, http_request(
        target, "/metrics", upgrade=False, headers=[("Authorization", "Bearer wrong")]))
    answers = {}
    for name, send in kinds.items():
        lines_before, start = app.log_lines(), app.log_size()
        outcomes = Counter([await send() for _ in range(repeats)])
        await asyncio.sleep(0.5)
        logged = app.log_lines() - lines_before
        example = app.log_text(start).splitlines()[:3]
        answers[name] = {"outcomes": dict(outcomes), "lines_per_request": logged / repeats,
                         "example": [line[:300] for line in example]}
    return answers


async def _fresh_request(target: Target, headers: tuple[tuple[str, str], ...]) -> str:
    return await request_outcome(target, http_request(target, headers=headers))


def tls12_ciphers(target: Target) -> dict[str, Any]:
    """The TLS 1.2 cipher suites the server accepts (each offered alone), whether it speaks
    TLS 1.1, and what a default client negotiates."""
    every = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    every.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    candidates = [c for c in every.get_ciphers() if c["protocol"] != "TLSv1.3"]

    def handshake(ciphers: str | None, version: ssl.TLSVersion | None) -> tuple[str, str] | None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if version is not None:
            context.minimum_version = context.maximum_version = version
        try:
            if ciphers:
                context.set_ciphers(ciphers)
            with socket.create_connection((target.host, target.port), timeout=5) as raw:
                with context.wrap_socket(raw) as tls:
                    cipher = tls.cipher()
                    return (tls.version() or "", cipher[0] if cipher else "")
        except (ssl.SSLError, OSError):
            return None

    accepted = []
    with warnings.catch_warnings():  # offering TLS 1.1 is the point of one handshake
        warnings.simplefilter("ignore", DeprecationWarning)
        tls11 = handshake("ALL:@SECLEVEL=0", ssl.TLSVersion.TLSv1_1) is not None
    for cipher in candidates:
        if handshake(f"{cipher['name']}:@SECLEVEL=0", ssl.TLSVersion.TLSv1_2):
            forward_secret = cipher["kea"] in ("kx-ecdhe", "kx-dhe")
            accepted.append({"name": cipher["name"], "aead": cipher["aead"],
                             "forward_secrecy": forward_secret,
                             "weak": not (cipher["aead"] and forward_secret)})
    return {"tls12_accepted": accepted,
            "tls12_weak": [c["name"] for c in accepted if c["weak"]],
            "tls11_accepted": tls11,
            "default_client": handshake(None, None)}


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "argos.crt", directory / "argos.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "2",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return cert, key


#: Ways of giving the token that logs might show (name -> (URL suffix, first message));
#: ``{secret}`` is the token.
TOKEN_DISGUISES: dict[str, tuple[str, str | None]] = {
    "?token=": ("?token={secret}", None),
    "?tok%65n=": ("?tok%65n={secret}", None),
    "auth message": ("", '{{"type": "auth", "token": "{secret}"}}'),
    'auth message "\\u0074oken"': ("", '{{"type": "auth", "\\u0074oken": "{secret}"}}'),
}


async def check_token_masking(url: str, secret: str, log_since: Callable[[], Callable[[], str]],
                              ) -> dict[str, Any]:
    """For each of :data:`TOKEN_DISGUISES`: whether the server accepted the token and
    whether it appears in what was logged meanwhile. ``log_since()`` marks the log and
    returns a function that gives what was logged after the mark."""
    answers = {}
    for name, (suffix, first) in TOKEN_DISGUISES.items():
        logged_after = log_since()
        message = await _websocket_first_message(
            url + suffix.format(secret=secret),
            first=first.format(secret=secret) if first else None)
        await asyncio.sleep(0.3)
        leaked = [line for line in logged_after().splitlines() if secret in line]
        answers[name] = {"accepted": message == "hello", "first_message": message,
                         "token_in_log": bool(leaked),
                         "example": leaked[0][:300] if leaked else None}
    return answers


def masking_in_process(secret: str) -> dict[str, Any]:
    """:func:`check_token_masking` on a ``SpectrumServer`` in this process whose
    ``websockets`` loggers log at DEBUG (as in a flowgraph whose user turned logging up)."""
    import logging

    from gr_argos.server import ServerConfig, SpectrumServer

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep(logging.DEBUG)
    # The server's loggers only: the clients of the check log their own requests too.
    watched = [logging.getLogger(name) for name in ("websockets.server", "gr_argos")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    server = SpectrumServer(ServerConfig(port=0, token=secret, allow_query_token=True))
    try:
        server.start()

        def log_since() -> Callable[[], str]:
            mark = len(records)
            return lambda: "\n".join(records[mark:])

        return asyncio.run(check_token_masking(server.url, secret, log_since))
    finally:
        server.stop()
        for logger, level in zip(watched, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)


def run_checks(extra_app_args: Sequence[str], log_dir: Path, checkout: Path) -> dict[str, Any]:
    """Every check, each against the app started as it needs."""
    found: dict[str, Any] = {}
    defaults = ("--source", "sim", "--port", "0")
    with App([*defaults, *extra_app_args], log_dir, "check-defaults", checkout) as app:
        url = app.wait_url()
        found["cross_origin_default_app"] = asyncio.run(check_cross_origin(url, None))
    with App([*APP_ARGS, *extra_app_args], log_dir, "check-locked", checkout) as app:
        url = app.wait_url()
        target = Target.from_url(url)
        found["cross_origin_allowlist_app"] = asyncio.run(check_cross_origin(url, TOKEN))
        found["host_header"] = asyncio.run(check_host_header(target))
        found["methods"] = asyncio.run(check_methods(target))
        found["hello"] = asyncio.run(check_hello(url, TOKEN, app.pid))
        found["log_per_request"] = asyncio.run(check_log_per_request(target, app))
    with tempfile.TemporaryDirectory(prefix="argos-attacks-") as directory:
        cert, key = _self_signed(Path(directory))
        with App([*APP_ARGS, "--tls-cert", str(cert), "--tls-key", str(key), *extra_app_args],
                 log_dir, "check-tls", checkout) as app:
            found["tls"] = tls12_ciphers(Target.from_url(app.wait_url()))
    secret = "argos-" + secrets.token_hex(12)
    debug_args = ("--source", "sim", "--port", "0", "--token", secret, "--allow-query-token",
                  "--log-level", "debug")
    with App([*debug_args, *extra_app_args], log_dir, "check-debug-log", checkout) as app:
        url = app.wait_url()

        def log_since() -> Callable[[], str]:
            mark = app.log_size()
            return lambda: app.log_text(mark)

        found["token_masking_app_debug"] = asyncio.run(
            check_token_masking(url, secret, log_since))
    found["token_masking_websockets_debug"] = masking_in_process(secret)
    return found


# -- report ----------------------------------------------------------------------------------

def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mark(passed: bool | None) -> str:
    return "pass" if passed else "FAIL"


def table(records: list[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    rows = ["| attack | healthy fps min / median | longest gap ms | new client: max s "
            "(failed/probes) | RSS growth MB | log lines/s | fds base / max | alive | fps | "
            "connect | RSS | log |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---|"]
    for r in records:
        v = r.get("verdict", {})
        if not v.get("completed"):
            rows.append(f"| {r['attack']} | not completed: {r.get('error', '?')} |"
                        + " |" * 11)
            continue
        failed = sum(r["probes_failed"].values())
        why = ", ".join(f"{k} x{n}" for k, n in r["probes_failed"].items())
        rows.append(
            f"| {r['attack']} | {_num(r['fps_min'])} / {_num(r['fps_median'])} | "
            f"{r['longest_gap_ms']} | "
            f"{_num(r['connect_max_s'], 3)} ({failed}/{r['probes']}{': ' + why if why else ''})"
            f" | {_num(r['rss_growth_mb'])} | {_num(r['log_lines_per_s'])} | "
            f"{r['fds_base']} / {r['fds_max']} | {'yes' if v['alive'] else 'NO'} | "
            f"{_mark(v['fps'])} | {_mark(v['connect'])} | {_mark(v['rss'])} | "
            f"{_mark(v['log'])} |")
    return "\n".join(rows)


def attacker_lines(records: list[dict[str, Any]]) -> str:
    """What each attacker did and what the server counted, one line each."""
    lines = []
    for r in records:
        attacker = ", ".join(f"{k} {v}" for k, v in sorted(r.get("attacker", {}).items()))
        counted = ", ".join(f"{k} +{v:g}" for k, v in sorted(r.get("metrics_delta", {}).items()))
        lines.append(f"- {r['attack']}: {attacker or '-'}; server counted: {counted or 'nothing'}")
    return "\n".join(lines)


def checks_summary(found: dict[str, Any]) -> str:
    """The checks' findings, one line each."""
    logged = found["log_per_request"]
    tls = found["tls"]

    def leaks(cases: dict[str, Any]) -> str:
        return ", ".join(name for name, case in cases.items() if case["token_in_log"]) or "none"

    lines = [
        f"- {EVIL_ORIGIN} upgrading, server without allowed_origins (defaults): "
        f"{found['cross_origin_default_app']['first_message']}; with the allowlist: "
        f"{found['cross_origin_allowlist_app']['first_message']}",
        "- other Host headers: " + ", ".join(f"{k} -> {v}"
                                            for k, v in found["host_header"].items()),
        "- methods on /healthz: " + ", ".join(
            f"{m} {a['status']} ({a['body_bytes']} B body)" for m, a in found["methods"].items()),
        f"- hello keys: {', '.join(found['hello']['keys'])}; pid is the server's: "
        f"{found['hello']['is_server_pid']}",
        "- log lines per request: " + ", ".join(f"{k} {v['lines_per_request']:g}"
                                                for k, v in logged.items()),
        f"  forged origin logged as: {(logged['forged_origin']['example'] or ['-'])[0]}",
        f"- TLS 1.2 suites accepted: {len(tls['tls12_accepted'])}, of which without AEAD or "
        f"forward secrecy: {', '.join(tls['tls12_weak']) or 'none'}; TLS 1.1 accepted: "
        f"{tls['tls11_accepted']}; a default client gets {tls['default_client']}",
        "- token accepted as: " + ", ".join(
            name for name, case in found["token_masking_app_debug"].items() if case["accepted"]),
        f"- token in the app's log (--log-level debug) for: "
        f"{leaks(found['token_masking_app_debug'])}; with websockets.server at DEBUG: "
        f"{leaks(found['token_masking_websockets_debug'])}",
    ]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------

def selected(names: Sequence[str] | None) -> tuple[list[Attack], bool]:
    """The attacks ``--only`` names (a name also selects those that start with it and a
    dash), and whether the checks are wanted."""
    if not names:
        return list(ATTACKS), True
    known = {a.name for a in ATTACKS} | {"checks"}
    chosen = [a for a in ATTACKS if any(a.name == n or a.name.startswith(n + "-") for n in names)]
    unknown = [n for n in names if n != "checks"
               and not any(a.name == n or a.name.startswith(n + "-") for a in ATTACKS)]
    if unknown:
        raise SystemExit(f"attacks: unknown --only {', '.join(unknown)}; choose from "
                         f"{', '.join(sorted(known))}")
    return chosen, "checks" in names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this attack, or 'checks' (repeat for more); names: "
                             + ", ".join(a.name for a in ATTACKS))
    parser.add_argument("--duration-s", type=float, default=30.0, help="seconds per attack")
    parser.add_argument("--app-args", default="", help="extra argos-spectrum flags, e.g. "
                        "\"--max-clients 64\" (every attack and check)")
    parser.add_argument("--probe-interval-s", type=float, default=1.0,
                        help="seconds between new authenticated clients")
    parser.add_argument("--checkout", type=Path, default=_REPO,
                        help="run the app from this checkout (default: this one)")
    parser.add_argument("--out", type=Path, help="results JSON (default: cache dir)")
    parser.add_argument("--role", choices=("attack", "observer"), default="attack",
                        help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token", default=TOKEN, help=argparse.SUPPRESS)
    parser.add_argument("--max-s", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "observer":
        asyncio.run(_observe(args.url, args.token, args.probe_interval_s, args.max_s))
        return 0

    attacks, with_checks = selected(args.only)
    extra = shlex.split(args.app_args)
    out = args.out or cache_dir() / "attacks.json"
    log_dir = cache_dir() / "attacks-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))  # 1,500+ sockets
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C

    info: dict[str, Any] = {
        "command": " ".join([Path(_PY).name, "-m", "benchmarks.attacks",
                             *(shlex.quote(a) for a in sys.argv[1:])]),
        "app": " ".join(["argos-spectrum", *APP_ARGS, *extra]), "app_nofile": APP_NOFILE,
        "checkout": str(args.checkout), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(), "targets": {"min_fps": MIN_FPS, "max_connect_s": MAX_CONNECT_S,
                                          "max_rss_growth_mb": MAX_RSS_GROWTH_MB,
                                          "max_log_lines_per_s": MAX_LOG_LINES_PER_S},
        "attacks": [], "checks": None}
    status = 0
    try:
        for attack in attacks:
            print(f"[{time.strftime('%H:%M:%S')}] {attack.name}: {attack.summary} "
                  f"({args.duration_s:g} s)", flush=True)
            try:
                record = run_attack(attack, args.duration_s, extra, args.probe_interval_s,
                                    log_dir, args.checkout)
            except (RuntimeError, OSError) as exc:
                record = {"attack": attack.name, "summary": attack.summary, "error": str(exc)}
            info["attacks"].append(record)
            out.write_text(json.dumps(info, indent=1))
            print(table([record]).splitlines()[-1], flush=True)
        if with_checks:
            print(f"[{time.strftime('%H:%M:%S')}] checks", flush=True)
            info["checks"] = run_checks(extra, log_dir, args.checkout)
    except KeyboardInterrupt:
        info["interrupted"] = True
        status = 130
    out.write_text(json.dumps(info, indent=1))
    if info["attacks"]:
        print("\n" + table(info["attacks"]) + "\n\n" + attacker_lines(info["attacks"]))
    if info["checks"]:
        print("\nchecks:\n" + checks_summary(info["checks"]))
    print(f"\nresults: {out}; app logs: {log_dir}")
    return status


if __name__ == "__main__":
    sys.exit(main())
