# SPDX-License-Identifier: GPL-3.0-or-later
"""The sources argos-spectrum can stream from, opened from its settings with errors that say
what to do: a HackRF or any osmosdr device, a raw IQ recording (through gr-osmosdr's file
source, the same code path as a device), or hackrf_sweep. GNU Radio is imported only when a
source is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["SourceError", "open_osmosdr", "open_sweep", "osmosdr_args", "source_status"]


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
    if kind != "sim":
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
