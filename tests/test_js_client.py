# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the Node tests of the JavaScript client (gr_argos/web/argos-client.js) in the suite.

The decoder and policy tests (``tests/js/*.test.mjs`` apart from ``client.test.mjs``) need
nothing but node. ``client.test.mjs`` drives the client against a real
:class:`~gr_argos.server.SpectrumServer` running in this process, plus a scripted server that
sends malformed messages and then falls silent; node asks for a server restart by printing
``ARGOS-CONTROL restart-server``. A second server, with a token, checks that the right token
is admitted and that a refused one ends the client after one attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from gr_argos.protocol import encode_frame, encode_message
from gr_argos.protocol import StreamInfo
from gr_argos.server import ServerConfig, SpectrumServer

JS_TESTS = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")
BINS = 16
FRAME_INTERVAL_S = 0.02
RESTART_PAUSE_S = 0.3  # frames go on being produced (and lost) while no server listens
NODE_TIMEOUT_S = 180.0  # a hang guard, not a speed requirement
CONTROL_PREFIX = "ARGOS-CONTROL "
TOKEN = "js-client-test-token-5d1c"
# Long, so that a refusal the Node test sees soon came from what the client sent first.
TOKEN_HANDSHAKE_TIMEOUT_S = 120.0

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (see docs/install.md)")


def node_command(*args: str) -> list[str]:
    """``node`` with the flag Node 20 needs for a global WebSocket (22+ has it anyway)."""
    assert NODE is not None
    probe = subprocess.run([NODE, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
                           check=False)
    flags = [] if probe.returncode == 0 else ["--experimental-websocket"]
    return [NODE, *flags, *args]


def spectrum(sequence: int) -> bytes:
    """A 16-bin peak-detector frame whose peak (-20 dB, else -100 dB) is at bin
    ``sequence % 16``, with a second trace, the average: -50 dB at bin ``(sequence + 8) % 16``,
    else -110 dB."""
    power = np.full(BINS, -100.0, dtype=np.float32)
    power[sequence % BINS] = -20.0
    average = np.full(BINS, -110.0, dtype=np.float32)
    average[(sequence + 8) % BINS] = -50.0
    return encode_frame(power, center_freq_hz=100e6, span_hz=8e6, timestamp_ns=time.time_ns(),
                        sequence=sequence, detector="peak", second_power_db=average,
                        second_detector="average")


def start_server(port: int = 0, **settings: object) -> SpectrumServer:
    server = SpectrumServer(ServerConfig(host="127.0.0.1", port=port, **settings))
    server.add_stream(StreamInfo(stream_id=0, name="spectrum", bins=BINS, center_freq_hz=100e6,
                                 span_hz=8e6, fps=1 / FRAME_INTERVAL_S, detector="peak",
                                 second_detector="average"))
    server.start()
    return server


class Publisher:
    """Publishes a frame every 20 ms to the current server, counting on while there is none
    (as a flowgraph keeps producing while its server restarts)."""

    def __init__(self, server: SpectrumServer) -> None:
        self.server: SpectrumServer | None = server
        self.sequence = 0

    async def run(self) -> None:
        while True:
            if self.server is not None:
                self.server.publish_frame(0, spectrum(self.sequence))
            self.sequence += 1
            await asyncio.sleep(FRAME_INTERVAL_S)

    async def restart_server(self) -> None:
        assert self.server is not None
        port = self.server.port
        stopping, self.server = self.server, None
        await asyncio.to_thread(stopping.stop)
        await asyncio.sleep(RESTART_PAUSE_S)
        self.server = await asyncio.to_thread(start_server, port)


@contextlib.asynccontextmanager
async def misbehaving_server() -> AsyncIterator[str]:
    """A server that sends a hello, a bad frame, bad JSON, an unknown type and one good
    frame, then never says anything again (it does not answer pings); yields its URL."""
    async def handler(ws: ServerConnection) -> None:
        await ws.send(encode_message("hello", {"server": "scripted", "protocol": 1,
                                               "session": "scripted", "streams": []}))
        await ws.send(b"XXXX" + bytes(60))
        await ws.send("{not json")
        await ws.send(encode_message("future_thing", {"x": 1}))
        await ws.send(spectrum(1))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


def test_decoder_and_policy_tests_pass_in_node(repo_root: Path) -> None:
    """node --test passes the vector, backoff/gap and fake-socket client tests."""
    files = sorted(str(p) for p in JS_TESTS.glob("*.test.mjs") if p.name != "client.test.mjs")
    assert len(files) >= 3, files
    result = subprocess.run(node_command("--test", *files), cwd=repo_root, capture_output=True,
                            text=True, timeout=NODE_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout, result.stdout


async def test_client_against_a_real_server_in_node(repo_root: Path) -> None:
    """client.test.mjs passes against a real server, including a restart it asks for, and
    against a server with a token, which sees one refused attempt per refused client."""
    server = await asyncio.to_thread(start_server)
    for number, event in ((1, "start"), (2, "start"), (3, "end")):  # for requestDetections
        server.publish_message("detection", {
            "stream": 0, "event": event, "id": number, "center_freq_hz": 433.92e6,
            "time_ns": 1_700_000_000_000_000_000 + number * 1_000_000, "watched": number == 3})
    token_server = await asyncio.to_thread(
        start_server, token=TOKEN, handshake_timeout_s=TOKEN_HANDSHAKE_TIMEOUT_S)
    publisher = Publisher(server)
    token_publisher = Publisher(token_server)
    publishing = [asyncio.create_task(p.run()) for p in (publisher, token_publisher)]
    output: list[str] = []
    restarts = 0
    try:
        async with misbehaving_server() as scripted_url:
            env = {**os.environ, "ARGOS_TEST_URL": server.url,
                   "ARGOS_TEST_SCRIPTED_URL": scripted_url,
                   "ARGOS_TEST_TOKEN_URL": token_server.url, "ARGOS_TEST_TOKEN": TOKEN}
            node = await asyncio.create_subprocess_exec(
                *node_command(str(JS_TESTS / "client.test.mjs")), cwd=repo_root, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            try:
                async with asyncio.timeout(NODE_TIMEOUT_S):
                    assert node.stdout is not None
                    async for raw in node.stdout:
                        line = raw.decode(errors="replace")
                        output.append(line)
                        if line.strip() == CONTROL_PREFIX + "restart-server":
                            await publisher.restart_server()
                            restarts += 1
                    status = await node.wait()
            except TimeoutError:
                pytest.fail(f"node still running after {NODE_TIMEOUT_S:.0f} s:\n{''.join(output)}")
            finally:
                if node.returncode is None:
                    node.kill()
                    await node.wait()
    finally:
        for task in publishing:
            task.cancel()
        await asyncio.gather(*publishing, return_exceptions=True)
        await asyncio.to_thread(token_server.stop)
        if publisher.server is not None:
            await asyncio.to_thread(publisher.server.stop)
    log = "".join(output)
    assert status == 0, f"node client test failed (exit {status}):\n{log}"
    assert restarts == 1, f"node asked for {restarts} restarts:\n{log}"
    assert "# fail 0" in log and "# pass 11" in log, log
    # The wrong token and the missing one: one attempt each, however long node waited.
    assert dict(token_server.counters.auth_failures) == {"message": 2}
