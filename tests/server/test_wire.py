# SPDX-License-Identifier: GPL-3.0-or-later
"""The boundary with websockets (gr_argos/server/wire.py): prebuilt frames, and the releases
it was tested with."""

from __future__ import annotations

import logging

import pytest
import websockets.version
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from gr_argos.protocol import decode_frame
from gr_argos.server import ServerConfig, ServerError, SpectrumServer, connection
from gr_argos.server.wire import (
    ALLOW_UNTESTED_ENV,
    TESTED_WEBSOCKETS,
    Writer,
    check_websockets,
    websocket_frame,
)
from server_helpers import WAIT_S, StartServer, next_frames, next_json, spectrum_frame


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
@pytest.mark.parametrize("opcode", [Opcode.BINARY, Opcode.TEXT])
def test_prebuilt_frames_match_what_websockets_would_write(size: int, opcode: Opcode) -> None:
    """The bytes the server writes for a frame or message are the WebSocket frame websockets
    itself would send."""
    payload = b"a\xc3\xa9" * (size // 3) + b"b" * (size % 3)
    expected = Frame(opcode, payload).serialize(mask=False, extensions=[])
    assert websocket_frame(payload, text=opcode is Opcode.TEXT) == expected


def test_the_installed_websockets_is_a_tested_release() -> None:
    """The release the project installs (pyproject.toml's range) passes the check."""
    assert check_websockets() is None
    low, high = TESTED_WEBSOCKETS
    assert low <= tuple(int(p) for p in websockets.version.version.split(".")[:2]) < high


@pytest.mark.parametrize("version", ["13.1", "15.0.1", "16.1.1", "18.0", "99.1.0",
                                     "not-a-version"])
def test_an_untested_release_is_refused_saying_which_work(
        version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An older or newer release is refused with the tested range and the pip command."""
    monkeypatch.delenv(ALLOW_UNTESTED_ENV, raising=False)
    with pytest.raises(ServerError) as caught:
        check_websockets(version)
    message = str(caught.value)
    assert f"websockets {version} is not a release gr-argos was tested with" in message
    assert "pip install 'websockets>=17.0,<18.0'" in message
    assert ALLOW_UNTESTED_ENV in message


def test_an_untested_release_may_run_when_asked_with_a_warning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ARGOS_ALLOW_UNTESTED_WEBSOCKETS=1 turns the refusal into a warning."""
    monkeypatch.setenv(ALLOW_UNTESTED_ENV, "1")
    warning = check_websockets("18.0")
    assert warning is not None and "running anyway" in warning


def test_a_server_does_not_start_on_an_untested_release(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """start() refuses before binding anything, so nothing half-works."""
    monkeypatch.delenv(ALLOW_UNTESTED_ENV, raising=False)
    monkeypatch.setattr(websockets.version, "version", "18.1")
    server = SpectrumServer(ServerConfig(port=0))
    with pytest.raises(ServerError, match="websockets 18.1 is not a release"):
        server.start()
    assert not server.running


async def test_a_failing_direct_write_falls_back_to_websockets_send(
        start_server: StartServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """If writing a prebuilt frame fails (a bug, or changed internals), that connection
    goes on through websockets' own send(): every frame still arrives, in order, and the
    log says so once."""
    def broken_writer(ws: object) -> Writer:
        def write(data: bytes, wire: bytes, text: bool) -> bool:
            raise AttributeError("'Connection' object has no attribute 'send_in_progress'")
        return write

    monkeypatch.setattr(connection, "frame_writer", broken_writer)
    server = start_server(queue_depth=32)  # all 20 fit: none is dropped while queued
    with caplog.at_level(logging.ERROR, logger="gr_argos.server.connection"):
        async with connect(server.url, open_timeout=WAIT_S) as ws:
            assert (await next_json(ws))["type"] == "hello"
            for sequence in range(20):
                server.publish_frame(0, spectrum_frame(sequence))
            frames = await next_frames(ws, 20)
    assert [decode_frame(f).sequence for f in frames] == list(range(20))
    assert caplog.text.count("event=direct_write_failed") == 1
