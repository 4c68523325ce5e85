# SPDX-License-Identifier: GPL-3.0-or-later
"""The recorder of a real SpectrumServer: every frame and message published, on disk in the
wire format, rotated, kept within its retention, and a full disk or an unwritable directory
reported in status, the log and /metrics while the clients go on being served.

The full-disk and read-only tests mount a small tmpfs of their own (they need root, and are
skipped without it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gr_argos.protocol import decode_frame, encode_frame
from gr_argos.recording import KIND_FRAME, KIND_MESSAGE, read_recording, segments
from gr_argos.recording.files import index_path, read_sidecar, sidecar_path
from gr_argos.server import SpectrumServer

from helpers import small_tmpfs
from server_helpers import (
    WAIT_S,
    StartServer,
    client,
    next_frames,
    samples,
    scrape,
    spectrum_frame,
    value,
)

FRAME_BYTES = len(spectrum_frame(0))
WaitUntil = Any


def frames_recorded(path: Path) -> list[bytes]:
    return [record.body for record in read_recording(path) if record.kind == KIND_FRAME]


def test_every_frame_and_message_is_recorded_as_published(
        start_server: StartServer, tmp_path: Path) -> None:
    """50 frames and a gps message in between: the recording holds them byte for byte, in
    order, with their publish times; the sidecar counts them and the stream, and the index
    points at records."""
    record_dir = tmp_path / "rec"
    server = start_server(record_dir=str(record_dir))
    server.publish_message("gps", {"stream": 0, "lat": 52.2})
    for sequence in range(50):
        server.publish_frame(0, spectrum_frame(sequence))
    server.stop()

    records = list(read_recording(record_dir))
    assert [r.kind for r in records] == [KIND_MESSAGE] + [KIND_FRAME] * 50
    assert json.loads(records[0].body) == {"type": "gps", "stream": 0, "lat": 52.2}
    assert [r.body for r in records[1:]] == [spectrum_frame(s) for s in range(50)]
    assert all(a.time_ns <= b.time_ns for a, b in zip(records, records[1:]))
    (segment,) = segments(record_dir)
    sidecar = read_sidecar(segment)
    assert sidecar["complete"] is True and sidecar["session"] == server.session
    assert (sidecar["frames"], sidecar["messages"]) == (50, 1)
    assert sidecar["sequences"] == {"0": {"first": 0, "last": 49}}
    assert sidecar["gaps"] == [] and sidecar["dropped_frames"] == 0
    assert sidecar["start_ns"] == records[0].time_ns and sidecar["end_ns"] == records[-1].time_ns
    assert index_path(segment).stat().st_size >= 16


def test_frames_are_recorded_in_the_encoding_asked_for(
        start_server: StartServer, tmp_path: Path) -> None:
    """record_encoding uint8 with deflate: the frames on disk are uint8, deflated, and decode
    to the published values within half a step."""
    server = start_server(record_dir=str(tmp_path), record_encoding="uint8",
                          record_compress=True)
    for sequence in range(5):
        server.publish_frame(0, spectrum_frame(sequence))
    server.stop()
    recorded = [decode_frame(body) for body in frames_recorded(tmp_path)]
    assert [(f.sequence, f.encoding, f.flags & 1) for f in recorded] == [
        (s, 2, 1) for s in range(5)]
    original = decode_frame(spectrum_frame(4)).power_db
    step = 100.0 / 255
    assert abs(recorded[4].power_db - original).max() <= step / 2 + 1e-3
    assert sum(len(b) for b in frames_recorded(tmp_path)) < 5 * FRAME_BYTES / 3


def test_a_new_fft_size_starts_a_new_file_whose_sidecar_says_its_bins(
        start_server: StartServer, tmp_path: Path) -> None:
    """The stream goes from 2048 to 4096 bins (a client changed the FFT size): the frames
    of each size are in files of their own, each sidecar saying its frames' bins, and the
    recording reads back whole, in order."""
    server = start_server(record_dir=str(tmp_path))
    for sequence in range(5):
        server.publish_frame(0, spectrum_frame(sequence))
    server.update_stream(0, bins=4096)  # as a sink does when its FFT size changes
    for sequence in range(5, 10):
        server.publish_frame(0, encode_frame(
            np.full(4096, -90.0, dtype=np.float32), center_freq_hz=100e6, span_hz=2.048e6,
            timestamp_ns=sequence, sequence=sequence))
    server.stop()
    first, second = segments(tmp_path)
    assert [decode_frame(body).bin_count for body in frames_recorded(first)] == [2048] * 5
    assert [decode_frame(body).bin_count for body in frames_recorded(second)] == [4096] * 5
    assert read_sidecar(first)["streams"][0]["bins"] == 2048
    assert read_sidecar(first)["sequences"] == {"0": {"first": 0, "last": 4}}
    assert read_sidecar(second)["streams"][0]["bins"] == 4096
    assert [decode_frame(body).sequence for body in frames_recorded(tmp_path)] == list(
        range(10))


def test_files_rotate_by_size_and_the_oldest_go_past_the_retention(
        start_server: StartServer, tmp_path: Path) -> None:
    """Files of at most about 3 frames, at most about 20 frames in all: the newest files
    are kept (with their index and sidecar), and they read back as the newest frames in
    order."""
    server = start_server(record_dir=str(tmp_path), record_max_file_bytes=3 * FRAME_BYTES,
                          record_max_total_bytes=20 * FRAME_BYTES)
    for sequence in range(60):
        server.publish_frame(0, spectrum_frame(sequence))
    server.stop()
    kept = segments(tmp_path)
    assert len(kept) >= 5
    assert all(path.stat().st_size <= 3 * FRAME_BYTES + 100 for path in kept)
    total = sum(part.stat().st_size for path in kept
                for part in (path, index_path(path), sidecar_path(path)))
    assert total <= 20 * FRAME_BYTES + 4 * FRAME_BYTES  # the limit, give or take a file
    sequences = [decode_frame(body).sequence for body in frames_recorded(tmp_path)]
    assert sequences == list(range(60 - len(sequences), 60)) and len(sequences) >= 12
    assert all(read_sidecar(path)["complete"] for path in kept)


def test_a_disk_too_slow_for_the_stream_is_a_counted_gap(
        start_server: StartServer, tmp_path: Path) -> None:
    """A burst of 400 frames into a 64 kB buffer, re-encoded on the recorder's thread: the
    frames it could not take are dropped at once (the producer never waits), counted in
    the status and as gaps in the sidecar, and the recording plus the drops are every
    frame published."""
    server = start_server(record_dir=str(tmp_path), record_buffer_bytes=65536,
                          record_encoding="uint8", record_compress=True)
    for sequence in range(400):
        server.publish_frame(0, spectrum_frame(sequence))
    recorder = server.recorder
    assert recorder is not None
    dropped = recorder.status()["dropped_frames"]
    server.stop()
    recorded = frames_recorded(tmp_path)
    sidecars = [read_sidecar(path) for path in segments(tmp_path)]
    assert dropped > 0
    assert len(recorded) + dropped == 400
    assert sum(s["dropped_frames"] for s in sidecars) == dropped
    assert all(gap["reason"] == "disk too slow" for s in sidecars for gap in s["gaps"])


async def status_of(server: SpectrumServer) -> dict[str, Any]:
    """The server's own object in a status message a client gets."""
    async with client(server) as ws:
        server.publish_message("status", {"stream": 0})
        async with asyncio.timeout(WAIT_S):
            while True:
                message = await ws.recv()
                if isinstance(message, str) and json.loads(message)["type"] == "status":
                    return dict(json.loads(message)["server"])


async def test_a_full_disk_is_reported_and_the_clients_are_still_served(
        start_server: StartServer, tmp_path: Path, wait_until: WaitUntil,
        caplog: pytest.LogCaptureFixture) -> None:
    """A 256 kB file system fills up: the recorder stops with an error naming the disk
    full in status, the log and /metrics, counts what it drops, and a client connected all
    the while keeps receiving every frame."""
    caplog.set_level(logging.ERROR, "gr_argos.recording.recorder")
    with small_tmpfs(tmp_path / "small", "size=256k") as mount:
        server = start_server(record_dir=str(mount))
        recorder = server.recorder
        assert recorder is not None
        async with client(server) as ws:
            received = []
            for chunk in range(8):  # 660 kB, in chunks the hub's ingress holds
                for sequence in range(10 * chunk, 10 * chunk + 10):
                    server.publish_frame(0, spectrum_frame(sequence))
                received += [decode_frame(f).sequence for f in await next_frames(ws, 10)]
            await wait_until(lambda: recorder.error is not None, timeout=WAIT_S,
                             what="the recorder to find the disk full")
            for sequence in range(80, 90):
                server.publish_frame(0, spectrum_frame(sequence))
            received += [decode_frame(f).sequence for f in await next_frames(ws, 10)]
        await wait_until(lambda: recorder.status()["queued_bytes"] == 0, timeout=WAIT_S,
                         what="the recorder to go through its queue")
        status = (await status_of(server))["recorder"]
        found = samples(await asyncio.to_thread(scrape, server.port))
        server.stop()
        recorded = frames_recorded(mount)
    assert received == list(range(90))
    assert status["recording"] is False and "No space left on device" in status["error"]
    assert "free space or set record_max_total_bytes" in status["error"]
    assert status["dropped_frames"] > 0
    assert any("No space left" in r.getMessage() for r in caplog.records)
    assert value(found, "argos_recording") == 0
    assert value(found, "argos_recording_dropped_total", kind="frame") == status[
        "dropped_frames"]
    # What is on the disk is whole frames, in order.
    sequences = [decode_frame(body).sequence for body in recorded]
    assert sequences == list(range(len(sequences))) and len(sequences) > 0


@pytest.mark.parametrize("where", ["under a file", "read-only"])
async def test_an_unwritable_directory_is_a_clear_error_and_the_server_serves(
        start_server: StartServer, tmp_path: Path, where: str) -> None:
    """A record_dir below a regular file, or on a read-only file system: the server starts
    and serves frames; status says recording stopped, why, and what to do."""
    with contextlib.ExitStack() as stack:
        if where == "under a file":
            (tmp_path / "file").write_text("")
            record_dir = tmp_path / "file" / "rec"
            hint = "part of the path is a file"
        else:
            record_dir = stack.enter_context(small_tmpfs(tmp_path / "ro", "ro,size=64k"))
            hint = "read-only"
        server = start_server(record_dir=str(record_dir))
        async with client(server) as ws:
            server.publish_frame(0, spectrum_frame(0))
            (frame,) = await next_frames(ws, 1)
        status = (await status_of(server))["recorder"]
        server.stop()
    assert decode_frame(frame).sequence == 0
    assert status["recording"] is False and str(record_dir) in status["error"]
    assert hint in status["error"]


def test_export_writes_the_rtl_power_and_hackrf_sweep_layout(
        start_server: StartServer, tmp_path: Path) -> None:
    """argos-export: one CSV line per frame, which this project's hackrf_sweep parser reads
    back to the frame's levels (two decimals) and bins (each bin's centre where the frame
    puts it); --from-s and --to-s cut by publish time."""
    import subprocess
    import sys

    import numpy as np

    from gr_argos.sweep import parse_text_line
    from helpers import ENV

    server = start_server(record_dir=str(tmp_path / "rec"))
    for sequence in range(5):
        server.publish_frame(0, spectrum_frame(sequence))
    server.stop()
    out = tmp_path / "spectrum.csv"
    result = subprocess.run([sys.executable, "-m", "gr_argos.apps.export", str(tmp_path / "rec"),
                             "--output", str(out)], env=ENV, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "argos-export: 5 frames" in result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 5
    first = decode_frame(spectrum_frame(0))
    segment = parse_text_line(lines[0])
    assert lines[0].startswith("2023-11-14, 22:13:20, ")  # timestamp_ns 1.7e18, in UTC
    assert np.allclose(segment.power_db, first.power_db, atol=0.005)
    centres = segment.hz_low + (np.arange(2048) + 0.5) * segment.bin_width_hz
    assert np.allclose(centres, first.bin_freqs_hz(), atol=1.0)
    later = subprocess.run([sys.executable, "-m", "gr_argos.apps.export", str(tmp_path / "rec"),
                            "--from-s", "3600"], env=ENV, capture_output=True, text=True,
                           timeout=60)
    assert later.returncode == 0 and later.stdout == ""
