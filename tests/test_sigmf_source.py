# SPDX-License-Identifier: GPL-3.0-or-later
"""SigMF recordings played back: the sigmf_source block in a real flowgraph, and
argos-spectrum --source sigmf=PATH with a real client.

The recordings are real: written by the project's own sigmf_sink in a GNU Radio flowgraph
(through a retune, so with two capture segments), or by hand the way other tools write them
(hackrf_transfer's ci8, rtl_sdr's cu8, ci16_le). What is checked is what a user sees: the
samples and their rx_freq / rx_rate tags, and the frames' labels and the signal's bin.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pmt
import pytest
from gnuradio import blocks, gr
from websockets.sync.client import connect

from gr_argos.apps.sources import SourceError, take_recording_settings
from gr_argos.protocol import decode_frame
from gr_argos.recording.sigmf_reader import Capture, SigmfError, read_sigmf
from gr_argos.settings import ConfigError
from gr_argos.sigmf_sink import sigmf_sink
from gr_argos.sigmf_source import sigmf_source
from helpers import ENV, RECEIVE_TIMEOUT_S, STARTUP_TIMEOUT_S, expected_bin, running

APP = [sys.executable, "-u", "-m", "gr_argos.apps.spectrum"]
URL_LINE = re.compile(r"argos-spectrum: connect to (ws://127\.0\.0\.1:\d+/)")
SAMP_RATE = 2e6
BINS = 2048
FIRST_HZ, SECOND_HZ = 100e6, 100.5e6
# Samples of the first recording argos-spectrum makes when it plays one (past a loop).
RECORDED_AGAIN = 5_000_000
# A tone in each capture segment, in bins from the centre: telling the two apart in a frame.
FIRST_TONE, SECOND_TONE = 300, -200


def write_recording(base: Path, datatype: str, data: bytes,
                    captures: list[dict[str, Any]], **global_fields: Any) -> Path:
    """A SigMF recording written by hand, as another tool would; its meta file."""
    base.with_suffix(".sigmf-data").write_bytes(data)
    meta = base.with_suffix(".sigmf-meta")
    meta.write_text(json.dumps({
        "global": {"core:datatype": datatype, "core:sample_rate": SAMP_RATE,
                   "core:version": "1.2.0", **global_fields},
        "captures": captures, "annotations": []}))
    return meta


def played(path: Path, count: int) -> tuple[np.ndarray, list[tuple[int, str, float]]]:
    """The first ``count`` samples sigmf_source gives (unthrottled) and their tags."""
    top = gr.top_block()
    source = sigmf_source(path=str(path), repeat=True, throttle=False)
    head = blocks.head(gr.sizeof_gr_complex, count)
    sink = blocks.vector_sink_c()
    top.connect(source, head, sink)
    top.run()
    tags = [(tag.offset, pmt.symbol_to_string(tag.key), pmt.to_double(tag.value))
            for tag in sink.tags()]
    return np.array(sink.data(), dtype=np.complex64), sorted(tags)


# -- the block -------------------------------------------------------------------------------

# 100 samples of each datatype: I = k / 128 of full scale, Q = -I (k = 0..99), raw.
RAMP = np.arange(100)
DATATYPES = {
    "cf32_le": np.stack([RAMP / 128, -RAMP / 128], axis=1).astype("<f4").tobytes(),
    "ci16_le": np.stack([RAMP * 256, -RAMP * 256], axis=1).astype("<i2").tobytes(),
    "ci8": np.stack([RAMP, -RAMP], axis=1).astype("i1").tobytes(),
    "cu8": np.stack([128 + RAMP, 128 - RAMP], axis=1).astype("u1").tobytes(),
}


@pytest.mark.parametrize("datatype", DATATYPES)
def test_the_block_plays_each_datatype_at_full_scale_one_tagged_in_every_loop(
        tmp_path: Path, datatype: str) -> None:
    """cf32_le, ci16_le, ci8 and cu8 play as the same complex samples (full scale 1.0), in a
    loop; rx_rate and rx_freq tag the first sample, and rx_freq each capture segment whose
    frequency differs from the sample before it, in every loop."""
    meta = write_recording(tmp_path / "rec", datatype, DATATYPES[datatype], [
        {"core:sample_start": 0, "core:frequency": FIRST_HZ},
        {"core:sample_start": 40, "core:frequency": SECOND_HZ}])
    samples, tags = played(meta, 250)

    expected = np.tile((RAMP - 1j * RAMP) / 128, 3)[:250]
    np.testing.assert_allclose(samples, expected, atol=1e-6)
    assert tags == [(0, "rx_freq", FIRST_HZ), (0, "rx_rate", SAMP_RATE),
                    (40, "rx_freq", SECOND_HZ), (100, "rx_freq", FIRST_HZ),
                    (140, "rx_freq", SECOND_HZ), (200, "rx_freq", FIRST_HZ),
                    (240, "rx_freq", SECOND_HZ)]


def test_a_recording_at_one_frequency_is_tagged_once(tmp_path: Path) -> None:
    """One capture segment: rx_freq and rx_rate on the first sample only, not on every loop
    (nothing was retuned)."""
    meta = write_recording(tmp_path / "rec", "ci8", DATATYPES["ci8"], [
        {"core:sample_start": 0, "core:frequency": FIRST_HZ}])
    _, tags = played(meta, 250)
    assert tags == [(0, "rx_freq", FIRST_HZ), (0, "rx_rate", SAMP_RATE)]


def test_the_block_without_repeat_plays_the_recording_once_then_ends(tmp_path: Path) -> None:
    """repeat False: the flowgraph ends by itself after every sample, once."""
    meta = write_recording(tmp_path / "rec", "cf32_le", DATATYPES["cf32_le"], [])
    top = gr.top_block()
    source = sigmf_source(path=str(meta.with_suffix(".sigmf-data")), repeat=False,
                          throttle=True)
    sink = blocks.vector_sink_c()
    top.connect(source, sink)
    top.run()
    assert len(sink.data()) == 100
    assert source.center_freq is None  # no core:frequency: no rx_freq tag either
    assert [pmt.symbol_to_string(tag.key) for tag in sink.tags()] == ["rx_rate"]


# -- reading the meta file -------------------------------------------------------------------

def test_a_recording_is_named_by_either_file_or_the_base_name(tmp_path: Path) -> None:
    """The meta file, the data file and the base name all name one recording; capture
    segments come in sample order, a segment without core:frequency keeps the one before,
    and segments past the data (a recording cut short) are left out."""
    meta = write_recording(tmp_path / "rec", "ci8", DATATYPES["ci8"], [
        {"core:sample_start": 60},
        {"core:sample_start": 0, "core:frequency": FIRST_HZ},
        {"core:sample_start": 30, "core:frequency": SECOND_HZ},
        {"core:sample_start": 100, "core:frequency": 1e9}])
    for name in (meta, meta.with_suffix(".sigmf-data"), meta.with_suffix("")):
        recording = read_sigmf(name)
        assert (recording.datatype, recording.samp_rate, recording.samples) == (
            "ci8", SAMP_RATE, 100)
        assert recording.captures == (Capture(0, FIRST_HZ), Capture(30, SECOND_HZ))
        assert recording.center_freq == FIRST_HZ


@pytest.mark.parametrize(("global_fields", "data", "expected"), [
    ({"core:datatype": "rf32_le"}, b"\0" * 8, "core:datatype 'rf32_le' cannot be played; "
     "supported: cf32_le, ci16_le, ci8, cu8"),
    ({"core:num_channels": 2}, b"\0" * 8, "only recordings of one channel"),
    ({"core:sample_rate": None}, b"\0" * 8, "core:sample_rate must be a number"),
    ({"core:sample_rate": -1}, b"\0" * 8, "core:sample_rate must be a positive number"),
    ({}, b"", "holds no samples"),
], ids=["datatype", "channels", "no-rate", "negative-rate", "empty"])
def test_a_recording_that_cannot_be_played_is_refused_saying_why(
        tmp_path: Path, global_fields: dict[str, Any], data: bytes, expected: str) -> None:
    """An unknown datatype, two channels, a bad sample rate or no samples: SigmfError."""
    meta = write_recording(tmp_path / "rec", "cf32_le", data, [], **global_fields)
    with pytest.raises(SigmfError, match=expected.replace("(", r"\(")):
        read_sigmf(meta)


def test_missing_or_garbled_files_are_refused_saying_what_to_do(tmp_path: Path) -> None:
    """No path, no meta file, a meta file that is not SigMF, no data file, an archive: each
    named."""
    with pytest.raises(SigmfError, match="no SigMF recording named"):
        read_sigmf("")
    with pytest.raises(SigmfError, match="SigMF meta file not found: .*absent.sigmf-meta"):
        read_sigmf(tmp_path / "absent.sigmf-data")
    (tmp_path / "garbled.sigmf-meta").write_text("{\"global\": ")
    with pytest.raises(SigmfError, match="garbled.sigmf-meta is not a SigMF meta file"):
        read_sigmf(tmp_path / "garbled")
    (tmp_path / "list.sigmf-meta").write_text("[]")
    with pytest.raises(SigmfError, match="it has no \"global\" object"):
        read_sigmf(tmp_path / "list")
    meta = write_recording(tmp_path / "alone", "cf32_le", b"\0" * 8, [])
    meta.with_suffix(".sigmf-data").unlink()
    with pytest.raises(SigmfError, match="SigMF data file not found: .*alone.sigmf-data"):
        read_sigmf(meta)
    with pytest.raises(SigmfError, match="SigMF archive: unpack it"):
        read_sigmf(tmp_path / "capture.sigmf")


def test_the_recording_sets_the_rate_and_frequency_a_flag_may_only_repeat(
        tmp_path: Path) -> None:
    """argos-spectrum takes the sample rate and centre frequency from the recording; a flag
    or config key giving the same is fine, another value is refused naming both."""
    meta = write_recording(tmp_path / "rec", "ci8", DATATYPES["ci8"], [
        {"core:sample_start": 0, "core:frequency": FIRST_HZ}])
    settings = {"source": f"sigmf={meta}", "samp_rate": 8e6, "center_freq": 433.92e6}
    take_recording_settings(settings, given=set())
    assert (settings["samp_rate"], settings["center_freq"]) == (SAMP_RATE, FIRST_HZ)
    take_recording_settings(settings, given={"samp_rate", "center_freq"})
    settings["samp_rate"] = 8e6
    with pytest.raises(ConfigError, match=r"--samp-rate 8e\+06 disagrees with the recording, "
                       r"which says 2e\+06 \(core:sample_rate in .*rec.sigmf-meta\)"):
        take_recording_settings(settings, given={"samp_rate"})
    with pytest.raises(SourceError, match="SigMF meta file not found"):
        take_recording_settings({"source": "sigmf=nothing-here"}, given=set())


# -- argos-spectrum --source sigmf=PATH ------------------------------------------------------

def record_through_a_retune(directory: Path) -> Path:
    """A recording by the project's sigmf_sink of 1.2 s at FIRST_HZ, then (an rx_freq tag,
    as a radio's retune) 1.2 s at SECOND_HZ, each with its own tone; its meta file."""
    half = int(SAMP_RATE * 1.2)
    t = np.arange(2 * half)
    tones = np.where(t < half, np.exp(2j * np.pi * FIRST_TONE / BINS * t),
                     np.exp(2j * np.pi * SECOND_TONE / BINS * t))
    noise = np.random.default_rng(1).standard_normal((2 * half, 2)) @ [0.01, 0.01j]
    samples = (0.5 * tones + noise).astype(np.complex64)
    retune = gr.tag_t()
    retune.offset, retune.key, retune.value = half, pmt.intern("rx_freq"), pmt.from_double(
        SECOND_HZ)
    top = gr.top_block()
    source = blocks.vector_source_c(samples, False, 1, [retune])
    recorder = sigmf_sink(samp_rate=SAMP_RATE, center_freq=FIRST_HZ,
                          record_iq_dir=str(directory))
    top.connect(source, recorder)
    top.run()
    (meta,) = directory.glob("*.sigmf-meta")
    return meta


@pytest.mark.slow
def test_argos_spectrum_plays_a_recording_at_its_rate_and_each_segments_frequency(
        tmp_path: Path) -> None:
    """argos-spectrum --source PATH.sigmf-meta (a recording made through a retune): the
    stream has the recorded rate and first frequency; every frame says the frequency of the
    segment its samples are from and shows that segment's tone at its bin and no trace of
    the other's (a frame spanning the change is dropped, counted in frames_retuning), both
    segments come round, in a loop; clients are not offered to tune it. Recorded again
    (--record-iq-dir), the samples are the same, with the same capture segments."""
    meta = record_through_a_retune(tmp_path / "iq")
    assert [c["core:frequency"] for c in json.loads(meta.read_text())["captures"]] == [
        FIRST_HZ, SECOND_HZ]
    frames, statuses = [], []
    again = tmp_path / "again"
    with running([*APP, "--port", "0", "--source", str(meta), "--fps", "10", "--no-detect",
                  "--status-interval-s", "0.5", "--record-iq-dir", str(again),
                  "--record-iq-max-file-bytes", str(RECORDED_AGAIN * 8)], tmp_path,
                 name="argos-spectrum",
                 url_pattern=URL_LINE) as app:
        with connect(app.wait_for_url(), open_timeout=RECEIVE_TIMEOUT_S) as websocket:
            hello = json.loads(websocket.recv(timeout=RECEIVE_TIMEOUT_S))
            # Two loops of 2.4 s at 10 frames/s: every change of segment, both ways, twice.
            while len(frames) < 50:
                message = websocket.recv(timeout=RECEIVE_TIMEOUT_S)
                if isinstance(message, bytes):
                    frames.append(decode_frame(message))
                elif json.loads(message)["type"] == "status":
                    statuses.append(json.loads(message))
    (stream,) = hello["streams"]
    assert (stream["center_freq_hz"], stream["span_hz"]) == (FIRST_HZ, SAMP_RATE)
    assert f"streaming sigmf={meta} at 100 MHz, 2 MS/s" in app.output()
    # A recording plays at its own frequencies: clients may change the spectrum, not tune.
    assert "center_freq" not in hello["control"]["settings"]
    assert "fps" in hello["control"]["settings"]
    tones = {FIRST_HZ: FIRST_TONE, SECOND_HZ: SECOND_TONE}
    labels = []
    for frame in frames:
        assert frame.span_hz == SAMP_RATE
        assert frame.center_freq_hz in tones, frame.center_freq_hz
        own, other = (expected_bin(tone / BINS, BINS) for tone in (
            tones[frame.center_freq_hz], tones[sum(tones) - frame.center_freq_hz]))
        assert int(np.argmax(frame.power_db)) == own, (frame.sequence, frame.center_freq_hz)
        # The other segment's tone (30 dB over the noise where it plays) is not in it.
        assert frame.power_db[other] < np.median(frame.power_db) + 10, frame.sequence
        labels.append(frame.center_freq_hz)
    changes = sum(1 for a, b in zip(labels, labels[1:]) if a != b)
    assert changes >= 3, labels
    assert statuses[-1]["frames_retuning"] >= 1
    assert statuses[-1]["source"] == "sigmf"

    first = sorted(again.glob("*.sigmf-data"))[0]
    assert first.stat().st_size >= RECORDED_AGAIN * 8  # rotated past it
    captures = json.loads(first.with_suffix(".sigmf-meta").read_text())["captures"]
    half = int(SAMP_RATE * 1.2)
    assert [(c["core:sample_start"], c["core:frequency"]) for c in captures] == [
        (0, FIRST_HZ), (half, SECOND_HZ), (2 * half, FIRST_HZ)]
    original = np.fromfile(meta.with_suffix(".sigmf-data"), dtype="<c8")
    assert np.array_equal(np.fromfile(first, dtype="<c8")[: 2 * half], original)


@pytest.mark.parametrize(("args", "status", "expected"), [
    (["--source", "sigmf=/nonexistent/rec"], 1,
     "SigMF meta file not found: /nonexistent/rec.sigmf-meta"),
    (["--source", "{dir}/bad.sigmf-meta"], 1, "core:datatype 'ri16_le' cannot be played"),
    (["--source", "sigmf={dir}/good", "--samp-rate", "8e6"], 2,
     "--samp-rate 8e+06 disagrees with the recording"),
    (["--source", "sigmf="], 2, "--source sigmf= needs a value"),
], ids=["missing", "datatype", "conflicting-rate", "empty"])
def test_argos_spectrum_refuses_a_recording_it_cannot_play(
        tmp_path: Path, args: list[str], status: int, expected: str) -> None:
    """A missing recording or one of another datatype exits 1, a flag contradicting the
    recording exits 2, each with one line saying why."""
    write_recording(tmp_path / "bad", "ri16_le", b"\0" * 8, [])
    write_recording(tmp_path / "good", "cf32_le", b"\0" * 8, [])
    result = subprocess.run([*APP, *(arg.format(dir=tmp_path) for arg in args)], cwd=tmp_path,
                            env=ENV, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=STARTUP_TIMEOUT_S)
    assert result.returncode == status, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("argos-spectrum:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_a_change_that_rebuilds_the_chain_keeps_a_recordings_frequencies_true(
        tmp_path: Path) -> None:
    """A client changes the frame rate while argos-spectrum plays a recording made through a
    retune (the chain is built anew and the flowgraph started again): the recording goes on
    where it was, and every frame after says the frequency of the segment its samples are
    from (not the first segment's, as if the recording started again)."""
    meta = record_through_a_retune(tmp_path / "iq")
    tones = {FIRST_HZ: FIRST_TONE, SECOND_HZ: SECOND_TONE}
    frames = []
    with running([*APP, "--port", "0", "--source", str(meta), "--fps", "10", "--no-detect",
                  "--max-tunes-per-s", "0"], tmp_path, name="argos-spectrum",
                 url_pattern=URL_LINE) as app:
        with connect(app.wait_for_url(), open_timeout=RECEIVE_TIMEOUT_S) as websocket:
            def next_frame() -> Any:
                while not isinstance(message := websocket.recv(timeout=RECEIVE_TIMEOUT_S),
                                     bytes):
                    pass
                return decode_frame(message)

            while next_frame().center_freq_hz != SECOND_HZ:  # into the second segment
                pass
            websocket.send(json.dumps({"type": "control", "action": "acquire"}))
            websocket.send(json.dumps({"type": "tune", "fps": 8}))
            while len(frames) < 30:
                frames.append(next_frame())
    assert {frame.center_freq_hz for frame in frames} == {FIRST_HZ, SECOND_HZ}
    for frame in frames:
        own, other = (expected_bin(tone / BINS, BINS) for tone in (
            tones[frame.center_freq_hz], tones[sum(tones) - frame.center_freq_hz]))
        assert int(np.argmax(frame.power_db)) == own, (frame.sequence, frame.center_freq_hz)
        assert frame.power_db[other] < np.median(frame.power_db) + 10, frame.sequence
