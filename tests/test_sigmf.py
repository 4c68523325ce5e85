# SPDX-License-Identifier: GPL-3.0-or-later
"""IQ recordings as SigMF: argos-spectrum's --record-iq-dir on the simulated band and on an
IQ file (gr-osmosdr's file source), a client retuning it and switching the recording off and
on, and the recorder itself on a disk too slow, too small or full.

Each recording is checked as a SigMF reader sees it: the meta file against the SigMF
package's own validator (sigmf, a test dependency), and the samples read back with numpy,
where the simulated band's strongest carrier must sit at its frequency in every capture
segment, whatever the tuning."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sigmf
from websockets.asyncio.client import ClientConnection, connect

from gr_argos.recording.sigmf import IqRecorder, IqRecordSettings, iq_recordings
from helpers import RECEIVE_TIMEOUT_S, running, small_tmpfs

APP = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum"]
URL_PATTERN = re.compile(r"(ws://127\.0\.0\.1:\d+/)")
SAMP_RATE = 2e6
BINS = 2048
BIN_HZ = SAMP_RATE / BINS
START_HZ = 100e6
NEW_HZ = START_HZ + 100 * BIN_HZ  # a retune by a whole number of bins
DEADLINE_S = 60.0


def meta_of(data: Path) -> dict[str, Any]:
    return dict(json.loads(data.with_suffix(".sigmf-meta").read_text()))


def validated(data: Path) -> dict[str, Any]:
    """A recording's meta, after the SigMF package has validated it and read its samples
    back as the meta says (cf32_le, one channel)."""
    handle = sigmf.sigmffile.fromfile(str(data.with_suffix(".sigmf-meta")))
    handle.validate()
    samples = handle.read_samples()
    assert samples.dtype == np.complex64 or samples.dtype == np.complex128
    assert len(samples) == data.stat().st_size // 8
    meta = meta_of(data)
    assert meta["global"]["core:datatype"] == "cf32_le"
    return meta


def strongest_hz(samples: np.ndarray, center_hz: float, rate: float) -> float:
    """The frequency of the strongest line in ``samples`` (averaged 2048-point spectra)."""
    usable = samples[: len(samples) // BINS * BINS].reshape(-1, BINS)
    power = (np.abs(np.fft.fftshift(np.fft.fft(usable * np.blackman(BINS), axis=1),
                                    axes=1)) ** 2).mean(axis=0)
    return center_hz + (int(np.argmax(power)) - BINS // 2) * rate / BINS


def captures_with_samples(data: Path) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Each capture segment of a recording, with its samples (read with numpy alone)."""
    samples = np.fromfile(data, dtype="<c8")
    captures = meta_of(data)["captures"]
    bounds = [c["core:sample_start"] for c in captures] + [len(samples)]
    return [(capture, samples[start:end])
            for capture, start, end in zip(captures, bounds, bounds[1:])]


async def next_message(ws: ClientConnection, msg_type: str,
                       check: Any = lambda m: True) -> dict[str, Any]:
    async with asyncio.timeout(RECEIVE_TIMEOUT_S):
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                decoded = json.loads(message)
                if decoded["type"] == msg_type and check(decoded):
                    return dict(decoded)


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {DEADLINE_S:g} s for {what}")
        time.sleep(0.1)


def recorded_seconds(directory: Path) -> float:
    return sum(f.stat().st_size for f in iq_recordings(directory)) / 8 / SAMP_RATE


def tone_file(path: Path, tone_bins: int) -> Path:
    """A raw complex64 file: a tone ``tone_bins`` bins above the centre, with noise."""
    samples = np.arange(BINS * 256)
    tone = np.exp(2j * np.pi * tone_bins / BINS * samples)
    noise = np.random.default_rng(5).standard_normal((samples.size, 2)) * 0.01
    (tone + noise[:, 0] + 1j * noise[:, 1]).astype(np.complex64).tofile(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("source", ["sim", "file"])
def test_argos_spectrum_records_its_iq_as_sigmf_through_a_retune_and_a_restart(
        tmp_path: Path, source: str) -> None:
    """argos-spectrum --record-iq-dir: a client retunes the band, then stops the IQ
    recording and starts it again. There are two recordings, valid SigMF (cf32_le, the
    rate, the hardware), the first with a capture segment per tuning; in every segment the
    band's known carrier is at its own frequency under the segment's core:frequency; every
    client was told of the stop and the start, and status said so."""
    from gr_argos.sim_band_source import STRONGEST_CARRIER

    if source == "sim":
        carrier_hz = START_HZ + STRONGEST_CARRIER[0] * SAMP_RATE
        flag = "sim"
    else:
        pytest.importorskip("osmosdr")
        carrier_hz = START_HZ + 300 * BIN_HZ
        flag = f"file={tone_file(tmp_path / 'tone.cf32', 300)}"
    record_dir = tmp_path / "iq"
    with running([*APP, "--port", "0", "--source", flag, "--samp-rate", str(SAMP_RATE),
                  "--center-freq", str(START_HZ), "--bins", str(BINS), "--no-detect",
                  "--record-iq-dir", str(record_dir), "--status-interval-s", "0.5"],
                 tmp_path, url_pattern=URL_PATTERN, name="argos-spectrum") as app:
        url = app.wait_for_url()
        wait_for(lambda: recorded_seconds(record_dir) > 0.5, "0.5 s of samples on disk")

        async def drive() -> dict[str, Any]:
            async with connect(url, open_timeout=RECEIVE_TIMEOUT_S) as ws, \
                    connect(url, open_timeout=RECEIVE_TIMEOUT_S) as other:
                seen: dict[str, Any] = {"hello": await next_message(ws, "hello")}
                await next_message(other, "hello")
                seen["status"] = await next_message(
                    ws, "status", lambda m: "iq_recorder" in m["server"])
                await ws.send(json.dumps({"type": "control", "action": "acquire"}))
                await ws.send(json.dumps({"type": "tune", "center_freq": NEW_HZ}))
                await next_message(ws, "tuned")
                before = recorded_seconds(record_dir)
                await asyncio.to_thread(wait_for, lambda: recorded_seconds(record_dir)
                                        > before + 1.0, "1 s more on disk")
                await ws.send(json.dumps({"type": "record", "action": "stop", "kind": "iq"}))
                seen["stopped"] = await next_message(other, "recording")
                seen["status_stopped"] = await next_message(
                    ws, "status", lambda m: not m["server"]["iq_recorder"]["started"])
                await ws.send(json.dumps({"type": "record", "action": "start"}))
                seen["started"] = await next_message(other, "recording")
                await asyncio.to_thread(wait_for, lambda: len(iq_recordings(record_dir)) == 2
                                        and recorded_seconds(record_dir) > before + 1.5,
                                        "a second recording")
                return seen

        seen = asyncio.run(drive())
    assert "recording the IQ samples as SigMF" in app.output()
    assert seen["hello"]["recording"]["iq"]["started"] is True
    assert seen["status"]["server"]["iq_recorder"]["recording"] is True
    assert seen["stopped"]["event"] == "stopped" and seen["stopped"]["kinds"] == ["iq"]
    assert seen["stopped"]["recording"]["iq"]["started"] is False
    assert seen["started"]["event"] == "started"
    assert seen["started"]["recording"]["iq"]["started"] is True
    assert "event=record action=stop" in app.output() and "outcome=accepted" in app.output()

    first, second = iq_recordings(record_dir)
    for data in (first, second):
        meta = validated(data)
        assert meta["global"]["core:sample_rate"] == SAMP_RATE
        assert meta["global"]["core:hw"]
    captures = captures_with_samples(first)
    assert [c["core:frequency"] for c, _ in captures] == [START_HZ, NEW_HZ]
    (later, _), = captures_with_samples(second)
    assert later["core:frequency"] == NEW_HZ
    times = [datetime.fromisoformat(c["core:datetime"].replace("Z", "+00:00"))
             for c, _ in [*captures, (later, None)]]
    assert times == sorted(times)
    for capture, samples in [*captures, *captures_with_samples(second)]:
        assert len(samples) >= BINS * 16
        found = strongest_hz(samples[BINS * 4:], capture["core:frequency"], SAMP_RATE)
        assert abs(found - carrier_hz) <= BIN_HZ, (capture, found, carrier_hz)


def block(count: int, start: int = 0) -> np.ndarray:
    return (np.arange(start, start + count) * (1 + 1j)).astype(np.complex64)


def recorder(directory: Path, **settings: Any) -> IqRecorder:
    return IqRecorder(IqRecordSettings(record_iq_dir=str(directory), **settings),
                      sample_rate_hz=1e6, center_freq_hz=433.92e6, hw="test", description="t")


def test_samples_are_written_as_handed_over_with_a_capture_per_tuning(tmp_path: Path) -> None:
    """Blocks of samples, a retune in between and a detection's annotation: the data file
    holds every sample in order, the meta file a capture at the retune and the annotation
    at the samples of its time, and SigMF's validator accepts it."""
    iq = recorder(tmp_path)
    iq.start()
    iq.samples(block(1000))
    started_ns = time.time_ns()
    iq.retune(434e6)
    iq.samples(block(500, 1000))
    iq.annotate(started_ns, started_ns + 100_000, 433.99e6, 434.01e6, "a signal", "peak -20 dB")
    iq.stop()
    (data,) = iq_recordings(tmp_path)
    assert np.array_equal(np.fromfile(data, dtype="<c8"), block(1500))
    meta = validated(data)
    assert [(c["core:sample_start"], c["core:frequency"], c["core:global_index"])
            for c in meta["captures"]] == [(0, 433.92e6, 0), (1000, 434e6, 1000)]
    (annotation,) = meta["annotations"]
    assert annotation["core:label"] == "a signal"
    assert annotation["core:freq_lower_edge"] == 433.99e6
    assert 900 <= annotation["core:sample_start"] <= 1500 and annotation["core:sample_count"] >= 1
    assert iq.status()["samples"] == 1500 and iq.status()["dropped_samples"] == 0


def test_files_rotate_by_size_the_oldest_go_and_a_new_rate_is_a_new_recording(
        tmp_path: Path) -> None:
    """record_iq_max_file_bytes 1 MiB: 3 MiB of samples make 3 recordings, and a new sample
    rate a fourth; record_iq_max_total_bytes (a little over 2 MiB) deletes the oldest."""
    iq = recorder(tmp_path, record_iq_max_file_bytes=2**20,
                  record_iq_max_total_bytes=2 * 2**20 + 16384)
    iq.start()
    for number in range(6):
        iq.samples(block(2**16, number * 2**16))  # 512 KiB each
    iq.set_sample_rate(2e6)
    iq.samples(block(1000, 6 * 2**16))
    iq.stop()
    found = iq_recordings(tmp_path)
    assert len(found) == 3 and iq.files == 4 and iq.files_deleted == 1
    rates = [validated(data)["global"]["core:sample_rate"] for data in found]
    assert rates == [1e6, 1e6, 2e6]
    assert [meta_of(data)["captures"][0]["core:global_index"] for data in found] == [
        2 * 2**16, 4 * 2**16, 6 * 2**16]
    assert np.array_equal(np.fromfile(found[0], dtype="<c8"), block(2 * 2**16, 2 * 2**16))


def test_samples_the_disk_is_too_slow_for_are_counted_and_marked(tmp_path: Path) -> None:
    """A block larger than record_iq_buffer_bytes (1 MiB) between two that fit: it is
    dropped and counted, and the next capture segment's core:global_index jumps by it."""
    iq = recorder(tmp_path, record_iq_buffer_bytes=2**20)
    iq.start()
    iq.samples(block(2**15))  # 256 KiB
    iq.samples(block(2**18, 2**15))  # 2 MiB: more than the whole buffer
    iq.samples(block(2**15, 2**15 + 2**18))
    iq.stop()
    (data,) = iq_recordings(tmp_path)
    assert iq.dropped_samples == 2**18
    assert np.array_equal(np.fromfile(data, dtype="<c8"),
                          np.concatenate([block(2**15), block(2**15, 2**15 + 2**18)]))
    meta = validated(data)
    assert [(c["core:sample_start"], c["core:global_index"]) for c in meta["captures"]] == [
        (0, 0), (2**15, 2**15 + 2**18)]
    assert "lost to the disk" in meta["global"]["core:description"]


def test_a_full_disk_is_a_clear_error_and_the_producer_never_waits(tmp_path: Path) -> None:
    """A 2 MiB file system: the recorder stops with an error that names the full disk and
    what to do, counts every sample it could not write, and the samples on disk are the
    first ones, in order."""
    with small_tmpfs(tmp_path / "small", "size=2m") as mount:
        iq = recorder(mount)
        iq.start()
        for number in range(24):  # 6 MiB
            iq.samples(block(2**15, number * 2**15))
            time.sleep(0.02)
        wait_for(lambda: iq.status()["queued_bytes"] == 0, "the writer to empty its queue")
        status = iq.status()
        iq.stop()
        (data,) = iq_recordings(mount)
        on_disk = np.fromfile(data, dtype="<c8")
    assert status["recording"] is False and "No space left on device" in status["error"]
    assert "record_iq_max_total_bytes" in status["error"]
    assert status["dropped_samples"] + status["samples"] == 24 * 2**15
    assert len(on_disk) > 0 and np.array_equal(on_disk, block(len(on_disk)))
