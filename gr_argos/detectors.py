# SPDX-License-Identifier: GPL-3.0-or-later
"""The every-sample spectrum's settings: the detector per frame period, the window, the
overlap of the FFTs and the average across frames, declared once for the
``spectrum_detector`` block, its GRC block and argos-spectrum (no GNU Radio import)."""

from __future__ import annotations

from dataclasses import dataclass

from gr_argos.settings import ConfigError, positive, same_as, setting, validate
from gr_argos.stream import STREAM, StreamSettings

__all__ = ["DETECTORS", "DetectorSettings", "MAX_FFT_BINS", "MAX_SAMPLES_PER_FRAME", "MIN_BINS",
           "OVERLAPS", "WINDOWS"]

#: Detector name -> how the FFTs of one frame period are reduced (None: one FFT per frame).
DETECTORS: dict[str, str | None] = {"peak": "max", "average": "mean", "sample": None}
#: The FFT windows (GNU Radio's window functions of these names).
WINDOWS = ("blackmanharris", "hann", "hamming", "flattop", "rectangular")
#: Allowed overlaps of consecutive FFTs: each needs 1 / (1 - overlap) FFT branches.
OVERLAPS = (0.0, 0.5, 0.75)
MIN_BINS = 16
#: The largest FFT size argos-spectrum offers clients (a frame of it is 256 KiB in float32).
MAX_FFT_BINS = 65536
#: Longest frame period in samples: its buffers take about 32 bytes per sample (512 MiB).
MAX_SAMPLES_PER_FRAME = 2**24


def _alpha(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1]; 1 turns averaging off"


@dataclass(frozen=True)
class DetectorSettings:
    """Settings of the every-sample spectrum (see each field's help).

    Raises:
        ConfigError: a value out of range, or ``bins`` and ``fps`` that do not fit
            ``samp_rate`` (the message names the settings and what would work).
    """

    samp_rate: float = setting(8e6, "sample rate in samples/s (= span of the spectrum in Hz)",
                               check=positive, aliases=("rate",), group="source")
    bins: int = same_as(StreamSettings, "bins")
    fps: float = same_as(StreamSettings, "fps")
    detector: str = setting("peak", "what each frame shows of its period's FFTs: peak (the "
                            "largest power per bin: no burst one FFT long is missed), average "
                            "(mean power), sample (one FFT per frame, as GNU Radio's "
                            "logpwrfft)", choices=tuple(DETECTORS), group=STREAM)
    second_detector: str = same_as(StreamSettings, "second_detector")
    window: str = setting("blackmanharris", "FFT window", choices=WINDOWS, group=STREAM)
    overlap: float = setting(0.0, "share of each FFT's samples the next one uses again: 0, "
                             "0.5 or 0.75 (a burst one FFT long then loses at most 0.31 dB "
                             "instead of 6 dB, for 2 or 4 times the FFT work)",
                             choices=OVERLAPS, group=STREAM)
    avg_alpha: float = setting(1.0, "weight of the newest frame in an average across frames "
                               "(1 = no averaging; smaller is smoother but dims a short "
                               "burst)", check=_alpha, group=STREAM)
    ref_scale: float = setting(2.0, "input amplitude that reads 0 dB (as logpwrfft's)",
                               check=positive, group=STREAM)

    def __post_init__(self) -> None:
        validate(self)
        if self.second_detector == self.detector:
            raise ConfigError(f"second_detector {self.second_detector!r} is the detector "
                              "itself: choose another (e.g. average with peak) or none")
        bins, fps, samp_rate = self.bins, self.fps, self.samp_rate
        if bins < MIN_BINS or bins & (bins - 1):
            raise ConfigError(f"bad value {bins} for bins: an FFT needs a power of two >= "
                              f"{MIN_BINS} (e.g. 1024, 2048, 4096)")
        if fps > samp_rate / bins:
            raise ConfigError(f"bad value {fps:g} for fps: at most samp_rate / bins = "
                              f"{samp_rate / bins:g} frames/s (one FFT per frame)")
        if samp_rate / fps > MAX_SAMPLES_PER_FRAME:
            raise ConfigError(f"bad value {fps:g} for fps: at least samp_rate / "
                              f"{MAX_SAMPLES_PER_FRAME} = {samp_rate / MAX_SAMPLES_PER_FRAME:g} "
                              "frames/s (a longer frame period needs more than 512 MiB of "
                              "buffers)")

    @property
    def every_sample(self) -> bool:
        """Whether every sample goes through an FFT (any detector but sample needs it)."""
        return any(DETECTORS[name] for name in (self.detector, self.second_detector) if name)

    @property
    def vectors_per_frame(self) -> int:
        """FFTs of ``bins`` samples back to back in one frame period."""
        return max(1, round(self.samp_rate / self.bins / self.fps))
