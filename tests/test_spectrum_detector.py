# SPDX-License-Identifier: GPL-3.0-or-later
"""spectrum_detector in real GNU Radio flowgraphs, against numpy and against fft.logpwrfft.

Every flowgraph here is finite (a vector source of a few hundred milliseconds of signal into
a vector sink) and runs to completion; no test measures time. A frame period is M = bins *
vectors_per_frame samples, and frame j covers samples [j M - M/2, (j + 1) M - M/2): the FFTs
run half a period late (frame 0 holds M/2 samples), so a finite stream of K whole periods
gives K frames.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from helpers import ENV, REPO_ROOT

gr = pytest.importorskip("gnuradio.gr")
blocks = pytest.importorskip("gnuradio.blocks")
pmt = pytest.importorskip("pmt")
from gnuradio.fft import logpwrfft  # noqa: E402
from gnuradio.fft import window as fft_window  # noqa: E402

from gr_argos.detectors import DETECTORS, OVERLAPS, WINDOWS  # noqa: E402
from gr_argos.period_detector import reduce_periods  # noqa: E402
from gr_argos.spectrum_detector import spectrum_detector  # noqa: E402

pytestmark = pytest.mark.slow

SAMP_RATE = 1.024e6
BINS = 256
FPS = 100.0  # 40 FFTs per frame at these settings
VECTORS_PER_FRAME = 40
M = BINS * VECTORS_PER_FRAME


def run(block: Any, samples: np.ndarray, tags: list[Any] | None = None,
        bins: int = BINS) -> tuple[np.ndarray, list[Any]]:
    """Push ``samples`` (complex64) through ``block``; return (frames of ``bins``, tags)."""
    top = gr.top_block("spectrum_detector test", catch_exceptions=False)
    source = blocks.vector_source_c(samples.astype(np.complex64), False, 1, tags or [])
    sink = blocks.vector_sink_f(bins)
    top.connect(source, block, sink)
    top.run()
    frames = np.array(sink.data(), dtype=np.float32).reshape(-1, bins)
    return frames, sorted(sink.tags(), key=lambda tag: tag.offset)


def tone(amplitude: float, bin_offset: int, n: int, bins: int = BINS) -> np.ndarray:
    """A complex tone on the centre of FFT bin ``bin_offset`` (relative to DC)."""
    return amplitude * np.exp(2j * np.pi * bin_offset / bins * np.arange(n))


def noise(n: int, sigma: float, seed: int = 1) -> np.ndarray:
    """Complex white Gaussian noise of total power sigma^2."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * sigma / math.sqrt(2)


def reference(samples: np.ndarray, detector: str, overlap: float = 0.0,
              bins: int = BINS, vectors_per_frame: int = VECTORS_PER_FRAME,
              ref_scale: float = 2.0) -> np.ndarray:
    """The frames the block must output, computed with numpy (float64 FFTs), the first
    frame starting half a period before the first sample."""
    taps = np.array(fft_window.blackmanharris(bins))
    branches = 1 if detector == "sample" else round(1 / (1 - overlap))
    hop = bins // branches
    powers = []
    for branch in range(branches):
        late = np.concatenate([np.zeros(bins * vectors_per_frame // 2 + branch * hop),
                               samples])
        count = late.size // bins
        vectors = late[:count * bins].reshape(count, bins)
        spectra = np.fft.fftshift(np.fft.fft(vectors * taps, axis=1), axes=1)
        powers.append(np.abs(spectra) ** 2)
    periods = min(power.shape[0] for power in powers) // vectors_per_frame
    per_period = [power[:periods * vectors_per_frame].reshape(periods, vectors_per_frame, bins)
                  for power in powers]
    if detector == "sample":
        reduced = per_period[0][:, -1, :]
    elif detector == "peak":
        reduced = np.max([period.max(axis=1) for period in per_period], axis=0)
    else:
        reduced = np.mean([period.mean(axis=1) for period in per_period], axis=0)
    scale = (-20 * math.log10(bins) - 10 * math.log10(np.sum(taps ** 2) / bins)
             - 20 * math.log10(ref_scale / 2))
    return 10 * np.log10(reduced) + scale


def make_tag(offset: int, key: str, value: Any) -> Any:
    tag = gr.tag_t()
    tag.offset = offset
    tag.key = pmt.intern(key)
    tag.value = pmt.to_pmt(value)
    return tag


# -- what comes out ---------------------------------------------------------------------------

@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
@pytest.mark.parametrize("detector", list(DETECTORS))
def test_frames_are_the_detector_over_every_fft_of_the_period(detector: str,
                                                              overlap: float) -> None:
    """On noise plus two tones, each frame equals numpy's windowed FFTs of the period,
    reduced by the detector (max, mean, or the last FFT), within 0.01 dB."""
    n = 6 * M
    samples = noise(n, 0.01) + tone(0.3, 40, n) + tone(0.02, -77, n)
    frames, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector=detector, overlap=overlap),
                    samples)

    expected = reference(samples, detector, overlap)
    assert frames.shape == (6, BINS)
    np.testing.assert_allclose(frames, expected[:6], atol=0.01)


@pytest.mark.parametrize(("detector", "second_detector", "overlap"), [
    ("peak", "average", 0.0), ("peak", "average", 0.5), ("average", "peak", 0.0),
    ("sample", "peak", 0.0), ("peak", "sample", 0.5)])
def test_a_second_output_is_the_other_detector_over_the_same_periods(
        detector: str, second_detector: str, overlap: float) -> None:
    """With second_detector the block has two outputs, frame for frame: each equals numpy's
    reduction of the same FFTs by its own detector (sample: the last FFT of the period)."""
    n = 6 * M
    samples = noise(n, 0.01) + tone(0.3, 40, n)
    samples[2 * M + 100:2 * M + 100 + BINS] += tone(0.5, -90, BINS)  # one FFT long
    block = spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector=detector,
                              second_detector=second_detector, overlap=overlap)
    top = gr.top_block("two traces", catch_exceptions=False)
    first, second = blocks.vector_sink_f(BINS), blocks.vector_sink_f(BINS)
    top.connect(blocks.vector_source_c(samples.astype(np.complex64)), block)
    top.connect((block, 0), first)
    top.connect((block, 1), second)
    top.run()
    traces = [np.array(sink.data(), dtype=np.float32).reshape(-1, BINS)
              for sink in (first, second)]

    assert [trace.shape for trace in traces] == [(6, BINS), (6, BINS)]
    np.testing.assert_allclose(traces[0], reference(samples, detector, overlap)[:6],
                               atol=0.01)
    # "sample" beside an every-sample detector is the period's last FFT of the first branch.
    np.testing.assert_allclose(traces[1], reference(samples, second_detector, 0.0 if
                                                    second_detector == "sample" else
                                                    overlap)[:6], atol=0.01)
    assert block.status_fields()["second_detector"] == second_detector
    assert block.fft_sample_fraction == 1.0


def test_a_second_detector_equal_to_the_first_is_refused() -> None:
    with pytest.raises(ValueError, match="second_detector 'peak' is the detector itself"):
        spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="peak",
                          second_detector="peak")


@pytest.mark.parametrize("detector", list(DETECTORS))
def test_a_steady_tone_reads_the_level_and_bin_of_logpwrfft(detector: str) -> None:
    """A steady tone lands in its bin (FFT-shifted: lowest frequency first) at the level
    fft.logpwrfft_c shows for it with the same ref_scale, within 0.05 dB."""
    n = 5 * M
    samples = tone(0.5, 57, n) + noise(n, 0.001)
    frames, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector=detector, ref_scale=2.0), samples)
    old, _ = run(logpwrfft.logpwrfft_c(SAMP_RATE, BINS, 2.0, FPS, 1.0, False, shift=True),
                 samples)

    assert int(np.argmax(frames[-1])) == BINS // 2 + 57
    assert abs(frames[-1].max() - old[-1].max()) < 0.05


def test_ref_scale_moves_every_level_by_its_ratio_in_db() -> None:
    """Doubling ref_scale lowers every bin by 20*log10(2) dB, as in logpwrfft."""
    samples = tone(0.5, 10, 3 * M) + noise(3 * M, 0.01)
    base, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="average", ref_scale=2.0), samples)
    scaled, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="average", ref_scale=4.0), samples)
    np.testing.assert_allclose(base - scaled, 20 * math.log10(2), atol=1e-3)


def burst_at(start: int, length: int, n: int, bin_offset: int = 90) -> np.ndarray:
    """Noise with a tone burst of ``length`` samples from ``start``."""
    samples = noise(n, 0.001).astype(np.complex128)
    samples[start:start + length] += tone(0.3, bin_offset, length)
    return samples


def test_peak_shows_a_burst_that_sample_misses() -> None:
    """A burst of two FFT lengths inside frame 2 (not in its last FFT) shows at the
    steady tone's level in frame 2 with peak, and not at all with sample."""
    start = 2 * M + 5 * BINS + 100
    samples = burst_at(start, 2 * BINS, 5 * M)
    steady, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="peak"), tone(0.3, 90, 3 * M))
    peak, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="peak"), samples)
    sample, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="sample"), samples)

    burst_bin, level = BINS // 2 + 90, steady[-1].max()
    assert int(np.argmax(peak[2])) == burst_bin
    assert abs(peak[2][burst_bin] - level) < 1.0
    assert peak[1][burst_bin] < level - 40 and peak[3][burst_bin] < level - 40
    assert sample[2][burst_bin] < level - 40


def test_a_one_fft_burst_across_two_ffts_keeps_its_level_with_overlap() -> None:
    """A burst one FFT long, straddling two FFTs half and half, reads 6 dB low without
    overlap (each FFT sees half of it) and within 0.5 dB with 50 % overlap."""
    start = 2 * M + 10 * BINS + BINS // 2
    samples = burst_at(start, BINS, 5 * M)
    steady, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="peak"), tone(0.3, 90, 3 * M))
    plain, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="peak"), samples)
    overlapped, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="peak", overlap=0.5), samples)

    burst_bin, level = BINS // 2 + 90, steady[-1].max()
    assert abs(plain[2][burst_bin] - (level - 6.02)) < 0.2
    assert abs(overlapped[2][burst_bin] - level) < 0.5


def test_average_of_white_noise_is_flat_at_the_noise_power_per_bin() -> None:
    """White noise of power s^2 averages to 10*log10(s^2 / bins) dB in every bin (logpwrfft's
    scaling), and bins scatter by no more than averaging K FFTs allows (4.34/sqrt(K) dB).
    Frame 0 holds half a period of samples, so it is left out."""
    sigma = 0.1
    frames, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="average"),
                    noise(6 * M, sigma, seed=7))
    expected_db = 10 * math.log10(sigma ** 2 / BINS)
    # Adjacent Blackman-Harris bins are correlated; the mean still has the full spread
    # budget of K independent looks per bin.
    spread_db = 10 / math.log(10) / math.sqrt(VECTORS_PER_FRAME)
    for frame in frames[1:]:
        assert abs(frame.mean() - expected_db) < 0.3
        assert frame.std() < 1.5 * spread_db
        assert np.all(np.abs(frame - expected_db) < 6 * spread_db)


def test_avg_alpha_averages_power_across_frames() -> None:
    """With avg_alpha, frame k is alpha * new + (1 - alpha) * previous, in power."""
    samples = noise(6 * M, 0.1, seed=3)
    plain, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="peak"), samples)
    smooth, _ = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS, detector="peak", avg_alpha=0.25), samples)

    power = 10 ** (plain / 10)
    expected = np.empty_like(power)
    expected[0] = 0.25 * power[0]
    for k in range(1, len(power)):
        expected[k] = 0.25 * power[k] + 0.75 * expected[k - 1]
    np.testing.assert_allclose(smooth, 10 * np.log10(expected), atol=0.01)


def test_reduce_periods_over_branches_is_max_or_mean_of_all_vectors() -> None:
    """The numpy core: max or mean over every vector of every branch, per period."""
    rng = np.random.default_rng(0)
    branches = [rng.random((3, 5 * 8), dtype=np.float32) for _ in range(2)]
    every = np.concatenate([branch.reshape(3, 5, 8) for branch in branches], axis=1)
    out = np.empty((3, 8), dtype=np.float32)

    reduce_periods(branches, "max", out)
    np.testing.assert_array_equal(out, every.max(axis=1))
    reduce_periods(branches, "mean", out)
    np.testing.assert_allclose(out, every.mean(axis=1), rtol=1e-6)


# -- tags -------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlap", [0.0, 0.5])
@pytest.mark.parametrize("detector", list(DETECTORS))
def test_tags_land_on_the_frame_of_the_period_they_fall_in(detector: str,
                                                           overlap: float) -> None:
    """A tag at sample s reaches frame floor(s / M + 1/2), the one holding sample s, with
    its key and value, at frame edges too (the first and last sample of a frame); each
    frame j says its period: from sample max(0, j M - M/2), ready at sample (j + 1) M."""
    offsets = [0, 1, M // 2 - 1, M // 2, M - 1, M, 2 * M + M // 2 - 1, 2 * M + M // 2,
               5 * M + M // 2 - 1]
    tags = [make_tag(0, "rx_freq", 433.92e6), make_tag(0, "rx_rate", SAMP_RATE),
            make_tag(0, "rx_time", (1_700_000_000, 0.25))]
    tags += [make_tag(offset, "marker", offset) for offset in offsets]
    frames, out_tags = run(spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS,
                                             detector=detector, overlap=overlap),
                           noise(6 * M, 0.01), tags)

    every = [(tag.offset, pmt.symbol_to_string(tag.key), pmt.to_python(tag.value))
             for tag in out_tags]
    periods = [(offset, value) for offset, key, value in every if key == "period_time"]
    assert len(frames) == 6 and periods == [
        (j, (max(0, j * M - M // 2) / SAMP_RATE, (j + 1) * M / SAMP_RATE)) for j in range(6)]
    seen = [tag for tag in every if tag[1] != "period_time"]
    assert seen[:3] == [(0, "rx_freq", 433.92e6), (0, "rx_rate", SAMP_RATE),
                        (0, "rx_time", (1_700_000_000, 0.25))]
    markers = [(offset, value) for offset, key, value in seen if key == "marker"]
    assert markers == [((offset + M // 2) // M, offset) for offset in offsets]


def test_frames_reach_clients_stamped_with_the_start_of_their_period(
        no_server_thread_left: None) -> None:
    """Through a websocket_sink to a real client, with rx_time on the first sample: frame j
    is stamped with that time plus its period's start, max(0, j M - M/2) samples later."""
    from websockets.sync.client import connect

    from gr_argos.protocol import decode_frame
    from gr_argos.websocket_sink import websocket_sink

    rx_time = gr.tag_t()
    rx_time.offset, rx_time.key = 0, pmt.intern("rx_time")
    rx_time.value = pmt.make_tuple(pmt.from_uint64(1_700_000_000), pmt.from_double(0.25))
    top = gr.top_block("period timestamps", catch_exceptions=False)
    source = blocks.vector_source_c(noise(6 * M, 0.01).astype(np.complex64), False, 1,
                                    [rx_time])
    sink = websocket_sink(bins=BINS, center_freq=100e6, span=SAMP_RATE, port=0,
                          queue_depth=64, status_interval_s=0)
    detector = spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS)  # kept alive
    top.connect(source, detector, sink)
    try:
        with connect(sink.url, open_timeout=30) as ws:
            ws.recv(timeout=30)  # hello
            top.start()
            frames = [decode_frame(ws.recv(timeout=30)) for _ in range(6)]
    finally:
        top.stop()
        top.wait()
        sink.stop()
    first_ns = 1_700_000_000_250_000_000
    assert [f.timestamp_ns for f in frames] == [
        first_ns + round(max(0, j * M - M // 2) / SAMP_RATE * 1e9) for j in range(6)]


# -- parameters and status --------------------------------------------------------------------

@pytest.mark.parametrize(("arguments", "message"), [
    ({"samp_rate": 0}, "bad value 0 for samp_rate: must be greater than 0"),
    ({"bins": 1000}, "bad value 1000 for bins: an FFT needs a power of two >= 16"),
    ({"bins": 8}, "bad value 8 for bins: an FFT needs a power of two >= 16"),
    ({"fps": 0}, "bad value 0 for fps: must be greater than 0"),
    ({"fps": 501}, "bad value 501 for fps: at most samp_rate / bins = 500"),
    ({"samp_rate": 20e6, "fps": 1}, "bad value 1 for fps: at least samp_rate / 16777216 = "
                                    "1.19209"),
    ({"detector": "max"}, "bad value 'max' for detector: expected one of peak, average, "
                          "sample"),
    ({"window": "kaiser"}, "bad value 'kaiser' for window: expected one of blackmanharris"),
    ({"overlap": 0.3}, "bad value 0.3 for overlap: expected one of 0.0, 0.5, 0.75"),
    ({"avg_alpha": 0}, "bad value 0 for avg_alpha: must be in (0, 1]"),
    ({"avg_alpha": 1.5}, "bad value 1.5 for avg_alpha: must be in (0, 1]"),
    ({"ref_scale": -1}, "bad value -1 for ref_scale: must be greater than 0"),
])
def test_bad_parameters_are_refused_with_what_is_allowed(arguments: dict[str, Any],
                                                         message: str) -> None:
    """Each unusable parameter raises ValueError naming it and the allowed range."""
    with pytest.raises(ValueError, match=re.escape(message)):
        spectrum_detector(**{"samp_rate": 1.024e6, "bins": 2048, **arguments})


def test_set_avg_alpha_refuses_values_outside_zero_one() -> None:
    """The running setter checks its value as the constructor does, and keeps a good one."""
    block = spectrum_detector(samp_rate=SAMP_RATE, bins=BINS, fps=FPS)
    with pytest.raises(ValueError, match="avg_alpha"):
        block.set_avg_alpha(0)
    block.set_avg_alpha(0.5)
    assert block.avg_alpha == 0.5


@pytest.mark.parametrize(("detector", "overlap", "fraction", "ffts"), [
    ("peak", 0.0, 1.0, 130),
    ("average", 0.5, 1.0, 260),
    ("sample", 0.0, 1 / 130, 1),
])
def test_status_fields_say_what_share_of_the_samples_reached_an_fft(
        detector: str, overlap: float, fraction: float, ffts: int) -> None:
    """At 8 MS/s, 2048 bins and 30 fps a frame period is 130 FFTs: peak and average see
    every sample, sample about 0.8 % of them."""
    block = spectrum_detector(samp_rate=8e6, bins=2048, fps=30, detector=detector,
                              overlap=overlap)
    assert block.status_fields() == {
        "detector": detector, "window": "blackmanharris", "overlap": overlap,
        "fft_per_frame": ffts, "fft_sample_fraction": pytest.approx(fraction),
    }
    assert block.frame_rate == pytest.approx(8e6 / 2048 / 130)


# -- GRC --------------------------------------------------------------------------------------

GRC_FILE = REPO_ROOT / "grc" / "gr_argos_spectrum_detector.block.yml"


def test_grc_choices_are_the_blocks() -> None:
    """The GRC choices are exactly the block's detectors, windows and overlaps (names and
    defaults are held to the block's settings in tests/test_flowgraphs.py)."""
    definition = yaml.safe_load(GRC_FILE.read_text())
    parameters = {parameter["id"]: parameter for parameter in definition["parameters"]}
    assert parameters["detector"]["options"] == list(DETECTORS)
    assert parameters["window"]["options"] == list(WINDOWS)
    assert [float(option) for option in parameters["overlap"]["options"]] == list(OVERLAPS)
    assert definition["id"] == "gr_argos_spectrum_detector"
    assert definition["file_format"] == 1


SMALL_FLOWGRAPH = """
options:
  parameters: {id: detector_demo, generate_options: no_gui, run_options: run,
               output_language: python, title: spectrum_detector demo}
  states: {coordinate: [8, 8], rotation: 0, state: enabled}
blocks:
- name: samp_rate
  id: variable
  parameters: {value: '1.024e6'}
  states: {coordinate: [200, 8], rotation: 0, state: enabled}
- name: tone
  id: analog_sig_source_x
  parameters: {type: complex, samp_rate: samp_rate, waveform: analog.GR_COS_WAVE,
               freq: '40000', amp: '0.5', offset: '0', phase: '0'}
  states: {coordinate: [8, 100], rotation: 0, state: enabled}
- name: head
  id: blocks_head
  parameters: {type: complex, num_items: '204800', vlen: '1'}
  states: {coordinate: [200, 100], rotation: 0, state: enabled}
- name: detector
  id: gr_argos_spectrum_detector
  parameters: {samp_rate: samp_rate, bins: '256', fps: '100', detector: peak,
               window: blackmanharris, overlap: '0.5', avg_alpha: '1.0', ref_scale: '2.0'}
  states: {coordinate: [400, 100], rotation: 0, state: enabled}
- name: sink
  id: blocks_null_sink
  parameters: {type: float, vlen: '256', num_inputs: '1', bus_structure_sink: '[[0,],]'}
  states: {coordinate: [600, 100], rotation: 0, state: enabled}
connections:
- [tone, '0', head, '0']
- [head, '0', detector, '0']
- [detector, '0', sink, '0']
metadata: {file_format: 1}
"""


def test_a_flowgraph_using_the_block_compiles_with_grcc_and_runs(tmp_path: Path) -> None:
    """grcc turns a flowgraph with the block into a script that runs to completion."""
    grcc = shutil.which("grcc")
    if grcc is None:
        pytest.skip("grcc (GNU Radio Companion) is not installed")
    flowgraph = tmp_path / "detector_demo.grc"
    flowgraph.write_text(SMALL_FLOWGRAPH)
    env = {**os.environ, "GRC_BLOCKS_PATH": str(REPO_ROOT / "grc")}
    result = subprocess.run([grcc, "-o", str(tmp_path), str(flowgraph)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    script = tmp_path / "detector_demo.py"
    assert "gr_argos.spectrum_detector(" in script.read_text()

    ran = subprocess.run([sys.executable, str(script)], env=ENV, cwd=tmp_path,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
