# SPDX-License-Identifier: GPL-3.0-or-later
"""The sources argos-spectrum can stream from, opened from its settings with errors that say
what to do: a HackRF or any osmosdr device, a raw IQ recording (through gr-osmosdr's file
source, the same code path as a device), a SigMF recording (the sigmf_source block), or
hackrf_sweep. GNU Radio is imported only when a source is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gr_argos.recording.sigmf_reader import SigmfError, SigmfRecording, read_sigmf
from gr_argos.settings import ConfigError

__all__ = ["SIGMF_SUFFIXES", "SourceError", "open_osmosdr", "open_sigmf", "open_sweep",
           "osmosdr_args", "source_status", "take_recording_settings"]

#: A ``--source`` ending in one of these is a SigMF recording (``sigmf=`` may be left out).
SIGMF_SUFFIXES = (".sigmf-meta", ".sigmf-data", ".sigmf")


class SourceError(RuntimeError):
    """The chosen source cannot be opened; the message says what to do."""


def osmosdr_args(source: str, samp_rate: float) -> str:
    """The gr-osmosdr device string for a ``--source`` value (not ``sim``)."""
    kind, _, value = source.partition("=")
    if kind == "hackrf":
        return f"hackrf={value or '0'}"
    if kind == "file":
        return f"file={_osmosdr_escape(value)},rate={samp_rate:g},repeat=true,throttle=true"
    return value


def _osmosdr_escape(path: str) -> str:
    """Escape a path for a gr-osmosdr device string, so spaces, commas and quotes survive.

    gr-osmosdr splits the string twice, each time with backslash escapes and ' quotes: first
    into devices at spaces, then each device into parameters at commas.
    """
    params_level = path.replace("\\", "\\\\").replace(",", "\\,").replace("'", "\\'")
    return params_level.replace("\\", "\\\\").replace(" ", "\\ ").replace("'", "\\'")


def open_osmosdr(source: str, settings: dict[str, Any]) -> Any:
    """The osmosdr source for ``--source``, tuned from the settings.

    Raises:
        SourceError: no such file or device.
    """
    import osmosdr

    kind, _, value = source.partition("=")
    if kind == "file" and not Path(value).is_file():
        raise SourceError(f"IQ file not found: {value} (expected raw complex64 samples)")
    args = osmosdr_args(source, settings["samp_rate"])
    try:
        device = osmosdr.source(args)
    except RuntimeError as exc:
        if kind == "hackrf":
            raise SourceError(
                f"no HackRF found ({args}): attach one, check `hackrf_info`, "
                f"or use --source sim ({exc})") from exc
        raise SourceError(f"cannot open osmosdr device {args!r}: {exc}") from exc
    device.set_sample_rate(settings["samp_rate"])
    device.set_center_freq(settings["center_freq"], 0)
    if kind == "hackrf":
        device.set_gain(14 if settings["amp"] else 0, "RF", 0)
        device.set_gain(settings["lna_gain"], "IF", 0)
        device.set_gain(settings["vga_gain"], "BB", 0)
    if settings["bandwidth"]:
        device.set_bandwidth(settings["bandwidth"], 0)
    return device


def take_recording_settings(settings: dict[str, Any], given: set[str]) -> None:
    """For ``--source sigmf=PATH``: the sample rate and centre frequency from the
    recording's meta file, into ``settings`` (a meta file without ``core:frequency`` leaves
    ``center_freq`` as set). Does nothing for other sources.

    Args:
        settings: the resolved settings, changed in place.
        given: the settings a flag or the config file set.

    Raises:
        SourceError: the recording cannot be played (missing, not SigMF, a datatype not
            played).
        ConfigError: ``samp_rate`` or ``center_freq`` was given with another value than the
            recording's.
    """
    kind, _, path = settings["source"].partition("=")
    if kind != "sigmf":
        return
    recording = _read_recording(path)
    for name, value, field in (("samp_rate", recording.samp_rate, "core:sample_rate"),
                               ("center_freq", recording.center_freq,
                                "the first capture's core:frequency")):
        if value is None:
            continue
        if name in given and settings[name] != value:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag} {settings[name]:g} disagrees with the recording, which says "
                f"{value:g} ({field} in {recording.meta_path}): leave {flag} (and "
                f"{name} in the config file) out, a recording plays as it was recorded")
        settings[name] = value


def _read_recording(path: str) -> SigmfRecording:
    try:
        return read_sigmf(path)
    except SigmfError as exc:
        raise SourceError(str(exc)) from None


def open_sigmf(source: str) -> Any:
    """The :class:`~gr_argos.sigmf_source.sigmf_source` for ``--source sigmf=PATH``, in a
    loop and paced at the recorded rate.

    Raises:
        SourceError: the recording cannot be played.
    """
    from gr_argos.sigmf_source import sigmf_source

    try:
        return sigmf_source(path=source.partition("=")[2], repeat=True, throttle=True)
    except SigmfError as exc:
        raise SourceError(str(exc)) from None


def open_sweep(settings: dict[str, Any]) -> Any:
    """The hackrf_sweep source for ``--source sweep``.

    Raises:
        SourceError: hackrf_sweep is missing or a setting is out of its range.
    """
    from gr_argos.hackrf_sweep_source import hackrf_sweep_source

    try:
        return hackrf_sweep_source(
            freq_min=settings["freq_min"],
            freq_max=settings["freq_max"],
            bin_width=settings["bin_width"],
            bins=settings["bins"],
            lna_gain=settings["lna_gain"],
            vga_gain=settings["vga_gain"],
            amp=settings["amp"],
            sweep_executable=settings["sweep_executable"],
        )
    except (FileNotFoundError, ValueError) as exc:  # ConfigError is a ValueError
        raise SourceError(f"{exc}; or use --source sim") from exc


def source_status(settings: dict[str, Any]) -> dict[str, Any]:
    """What the periodic ``status`` message says about the source (no secrets in ``args``)."""
    kind = settings["source"].partition("=")[0]
    status: dict[str, Any] = {
        "source": kind,
        "samp_rate": settings["samp_rate"],
    }
    if kind == "sigmf":
        status["path"] = settings["source"].partition("=")[2]
    elif kind != "sim":
        args = osmosdr_args(settings["source"], settings["samp_rate"])
        status["args"] = _SECRET_ARG.sub(r"\1=***", args)
    if kind == "hackrf":
        status.update(lna_gain=settings["lna_gain"], vga_gain=settings["vga_gain"],
                      amp=settings["amp"])
    if settings["bandwidth"]:
        status["bandwidth"] = settings["bandwidth"]
    return status


# Device-string parameters that may carry credentials (e.g. a remote SDR's password).
_SECRET_ARG = re.compile(r"\b(pass(?:word)?|key|token|secret|auth)=[^,\s]*", re.IGNORECASE)
