# SPDX-License-Identifier: GPL-3.0-or-later
"""Tuners: what applies the changes clients ask for (``tune``, docs/control.md) to a radio.

- :class:`CommandPortTuner`: a sink's ``command`` message port, for a GRC user's flowgraph.
  Each change goes out as a PMT dict in the convention of gr-osmosdr's and UHD's command
  ports (``freq``, ``gain``, ``bandwidth``), for the user to connect to their source.
- :class:`SourceTuner`: argos-spectrum's own source: a HackRF or another osmosdr device
  (through its setters, which return what the device really took), or a simulated band or
  a recording, which are shifted digitally (a rotator before the spectrum: what the "radio"
  sees moves as a retune would move it).

Either way the sink labels the frames of samples taken after the change, and drops the frames
whose samples span it (:meth:`~gr_argos.stream.SpectrumStream.retune_at`).
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any, Callable, Protocol

import pmt

from gr_argos.detectors import DETECTORS, MAX_FFT_BINS, MIN_BINS, OVERLAPS, WINDOWS
from gr_argos.server.control import Capability, TuneError
from gr_argos.stream import Shift

__all__ = ["COMMAND_KEYS", "CommandPortTuner", "SourceTuner", "SweepTuner"]

log = logging.getLogger(__name__)

#: The command port's PMT keys for each setting (gr-osmosdr's and UHD's convention).
COMMAND_KEYS = {"center_freq": "freq", "gain": "gain", "bandwidth": "bandwidth"}

#: How long after a change the source's samples may still be of the old tuning: a command
#: travels to the source's own thread first; a device's buffers hold samples taken before.
COMMAND_SETTLE_S = 0.05
HACKRF_SETTLE_S = 0.05
ROTATOR_CMD = pmt.intern("cmd")
#: How far ahead of the rotator a shift is scheduled, at least: the rotator reads a command
#: between two calls of its work, each of at most ROTATOR_MAX_ITEMS samples.
ROTATOR_MAX_ITEMS = 8192
SHIFT_MARGIN_SAMPLES = 4 * ROTATOR_MAX_ITEMS
#: How many times a shift the rotator dropped (read too late) is sent again, in all.
SHIFT_TRIES = 4
#: Settings applied by building the spectrum chain anew (argos-spectrum's own flowgraph).
REBUILT = ("samp_rate", "bins", "fps", "detector", "second_detector", "avg_alpha", "window",
           "overlap")
#: The FFT sizes a client may choose.
FFT_SIZES = tuple(1 << k for k in range(MIN_BINS.bit_length() - 1, MAX_FFT_BINS.bit_length()))


class RetunableSink(Protocol):
    """What a tuner needs of the sink: its stream's centre frequency, a way to relabel its
    frames, and (for the command port) to publish a message."""

    @property
    def center_freq(self) -> float: ...

    def retuned(self, center_freq: float, settle_s: float = 0.0,
                shift: Shift | None = None) -> None: ...

    def message_port_pub(self, port: Any, msg: Any) -> None: ...


class CommandPortTuner:
    """Sends each change as a command PMT dict on the sink's ``command`` port.

    What the source does with it is its own business (this tuner cannot know whether a
    device rounded a value): the answer gives the values sent.
    """

    PORT = pmt.intern("command")

    def __init__(self, sink: RetunableSink) -> None:
        self._sink = sink
        self._sent: dict[str, float] = {}
        self._lock = threading.Lock()

    def capabilities(self) -> dict[str, Capability]:
        return {"center_freq": Capability(float, 1.0, 1e12, unit=" Hz"),
                "gain": Capability(float, 0.0, 200.0, unit=" dB"),
                "bandwidth": Capability(float, 0.0, 1e12, unit=" Hz")}

    def values(self) -> dict[str, Any]:
        return {"center_freq": self._sink.center_freq, "gain": self._sent.get("gain"),
                "bandwidth": self._sent.get("bandwidth")}

    def apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            command = pmt.make_dict()
            for name, value in changes.items():
                command = pmt.dict_add(command, pmt.intern(COMMAND_KEYS[name]),
                                       pmt.from_double(float(value)))
            self._sink.message_port_pub(self.PORT, command)
            self._sent.update(changes)
            if "center_freq" in changes:
                self._sink.retuned(changes["center_freq"], COMMAND_SETTLE_S)
            return dict(changes)


class SourceTuner:
    """Applies changes to argos-spectrum's source.

    Args:
        kind: ``hackrf``, ``sim``, ``file``, ``sigmf`` (a SigMF recording, which plays at
            its recorded frequencies: nothing of the radio to change) or another osmosdr
            device (``osmosdr``).
        sink: the sink whose frames follow the changes.
        settings: the app's settings at start (centre frequency, sample rate, gains).
        device: the osmosdr source (not for ``sim``).
        rotator: the ``blocks.rotator_cc`` that shifts a simulated band or a recording.
        rebuild: makes the spectrum chain anew for the settings in :data:`REBUILT`.
        iq_sink: the :class:`~gr_argos.sigmf_sink.sigmf_sink` recording the samples (told
            of a retune: a device's when done; a rotator's before, for its tag).
        frame_start_after: with a rotator: the first sample of the first frame that starts
            at or after a sample of the rotator's (both counted from the flowgraph's start),
            where a shift takes effect so that no frame spans it.
    """

    def __init__(self, kind: str, sink: RetunableSink, settings: dict[str, Any],
                 device: Any = None, rotator: Any = None,
                 rebuild: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 iq_sink: Any = None,
                 frame_start_after: Callable[[int], int] | None = None) -> None:
        if rotator is not None and frame_start_after is None:
            raise ValueError("a rotator's shifts need frame_start_after")
        self.kind = kind
        self._iq_sink = iq_sink
        self.sink = sink  # its successor, after a change of FFT size or second trace
        self._device = device
        self.rotator = rotator  # a new one after a rebuild of the chain
        self._frame_start_after = frame_start_after
        self._applying = threading.Lock()  # one change at a time
        self._rebuild = rebuild
        self._samp_rate = float(settings["samp_rate"])
        self._origin_hz = float(settings["center_freq"])  # where a shifted source "is"
        self._values: dict[str, Any] = (
            {} if kind == "sigmf" else {"center_freq": float(settings["center_freq"])})
        if rebuild is not None:
            self._values.update({name: settings[name] for name in REBUILT
                                 if not (name == "samp_rate" and kind in ("file", "sigmf"))})
        if kind == "hackrf":
            self._values.update(lna_gain=settings["lna_gain"], vga_gain=settings["vga_gain"],
                                amp=bool(settings["amp"]),
                                bandwidth=float(settings["bandwidth"]))
        elif kind == "osmosdr":
            self._values.update(gain=float(device.get_gain(0)),
                                bandwidth=float(settings["bandwidth"]))
        self._lock = threading.Lock()

    def capabilities(self) -> dict[str, Capability]:
        found = self._device_capabilities()
        if self._rebuild is not None:
            found.update(bins=Capability(int, choices=FFT_SIZES),
                         fps=Capability(float, 1.0, 120.0, unit=" frames/s"),
                         detector=Capability(str, choices=tuple(DETECTORS)),
                         second_detector=Capability(str, choices=("", *DETECTORS)),
                         avg_alpha=Capability(float, 0.001, 1.0),
                         window=Capability(str, choices=WINDOWS),
                         overlap=Capability(float, choices=OVERLAPS))
            if self.kind == "hackrf":
                found["samp_rate"] = Capability(float, 2e6, 20e6, unit=" S/s")
            elif self.kind in ("sim", "osmosdr"):
                found["samp_rate"] = Capability(float, 250e3, 20e6, unit=" S/s")
        return found

    def _device_capabilities(self) -> dict[str, Capability]:
        if self.kind == "sigmf":
            return {}
        center = Capability(float, 1e6, 6e9, unit=" Hz")
        if self.kind == "hackrf":
            return {"center_freq": center,
                    "lna_gain": Capability(int, 0, 40, 8, unit=" dB"),
                    "vga_gain": Capability(int, 0, 62, 2, unit=" dB"),
                    "amp": Capability(bool),
                    "bandwidth": Capability(float, 1.75e6, 28e6, unit=" Hz")}
        if self.kind == "osmosdr":
            found = self._device.get_freq_range(0)
            gains = self._device.get_gain_range(0)
            return {"center_freq": Capability(float, found.start(), found.stop(), unit=" Hz"),
                    "gain": Capability(float, gains.start(), gains.stop(), gains.step(),
                                       unit=" dB"),
                    "bandwidth": Capability(float, 0.0, 1e9, unit=" Hz")}
        return {"center_freq": center}

    def values(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def phase_inc(self, center_freq: float | None = None) -> float:
        """The rotator's phase increment that puts the band at ``center_freq`` (default: the
        centre frequency now asked for), at the sample rate in force. The band moves the
        other way: a signal at f then sits at f - the new centre."""
        if center_freq is None:
            center_freq = float(self._values["center_freq"])
        return -2 * math.pi * (center_freq - self._origin_hz) / self._samp_rate

    def rate_changed(self, samp_rate: float) -> None:
        """The chain was rebuilt at another sample rate (a new rotator gets
        :meth:`phase_inc`)."""
        self._samp_rate = float(samp_rate)

    def apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._applying:
            return self._apply(changes)

    def _apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        rebuilt = {name: value for name, value in changes.items() if name in REBUILT}
        changes = {name: value for name, value in changes.items() if name not in REBUILT}
        applied: dict[str, Any] = {}
        if rebuilt:
            assert self._rebuild is not None  # capabilities() offered them
            try:
                applied.update(self._rebuild(rebuilt))
            except (ValueError, RuntimeError) as exc:  # ConfigError is a ValueError
                raise TuneError(f"tune: {exc}") from exc
            with self._lock:
                self._values.update(applied)
        try:
            with self._lock:
                for name, value in changes.items():
                    applied[name] = self._apply_one(name, value)
        except TuneError as exc:
            if applied:
                raise TuneError(f"{exc} (applied before it: "
                                + ", ".join(f"{name} {value}" for name, value in applied.items())
                                + ")") from exc
            raise
        finally:
            with self._lock:
                self._values.update(applied)
            if "center_freq" in applied and self.rotator is None:
                self.sink.retuned(applied["center_freq"], HACKRF_SETTLE_S)
                if self._iq_sink is not None:
                    self._iq_sink.retuned(applied["center_freq"])
        return applied

    def _shift(self, center_freq: float, tries: int = SHIFT_TRIES) -> float:
        """Move a simulated band or a recording to ``center_freq``: the rotator changes its
        increment at the first sample of the next frame it has not reached, which its tag
        marks. The sink and the IQ recording are told first, so that the tag finds them
        ready. GNU Radio's rotator drops a change whose sample it passed before reading the
        command (a thread starved long): the sink then finds that frame without the tag,
        and the change is sent again for a later frame (``tries`` times in all)."""
        rotator, frame_start_after = self.rotator, self._frame_start_after
        assert frame_start_after is not None  # checked with the rotator
        inc = self.phase_inc(center_freq)
        at = frame_start_after(rotator.nitems_written(0) + SHIFT_MARGIN_SAMPLES)

        def missed() -> None:
            if rotator is not self.rotator:
                return  # the chain was rebuilt meanwhile, at the shift asked for last
            log.warning("tune: the rotator read the shift to %.6f MHz too late%s",
                        center_freq / 1e6, "; sending it again" if tries > 1 else "")
            if tries > 1:
                self._shift(center_freq, tries - 1)

        self.sink.retuned(center_freq, shift=Shift(inc, at / self._samp_rate, missed))
        if self._iq_sink is not None:
            self._iq_sink.expect_retune(center_freq, inc)
        rotator.to_basic_block()._post(ROTATOR_CMD, pmt.dict_add(pmt.dict_add(
            pmt.make_dict(), pmt.intern("inc"), pmt.from_double(inc)),
            pmt.intern("offset"), pmt.from_uint64(at)))
        return float(center_freq)

    def _apply_one(self, name: str, value: Any) -> Any:
        device = self._device
        try:
            if name == "center_freq" and self.rotator is not None:
                return self._shift(float(value))
            if name == "center_freq":
                return float(device.set_center_freq(value, 0))
            if name == "lna_gain":
                return int(round(device.set_gain(value, "IF", 0)))
            if name == "vga_gain":
                return int(round(device.set_gain(value, "BB", 0)))
            if name == "amp":
                device.set_gain(14 if value else 0, "RF", 0)
                return bool(value)
            if name == "gain":
                return float(device.set_gain(value, 0))
            if name == "bandwidth":
                return float(device.set_bandwidth(value, 0))
        except RuntimeError as exc:
            raise TuneError(f"tune: the device refused {name} {value}: {exc}") from exc
        raise TuneError(f"tune: {name} cannot be changed on this source")


class SweepTuner:
    """Applies changes to argos-spectrum's ``--source sweep``: the swept range and the
    HackRF's gains, by restarting hackrf_sweep with them (its frames say each sweep's range,
    so the labels change with the first sweep of the new range)."""

    SETTINGS = ("freq_min", "freq_max", "lna_gain", "vga_gain", "amp")

    def __init__(self, source: Any) -> None:
        self._source = source
        self._lock = threading.Lock()

    def capabilities(self) -> dict[str, Capability]:
        return {"freq_min": Capability(float, 1e6, 6e9, unit=" Hz"),
                "freq_max": Capability(float, 1e6, 6e9, unit=" Hz"),
                "lna_gain": Capability(int, 0, 40, 8, unit=" dB"),
                "vga_gain": Capability(int, 0, 62, 2, unit=" dB"),
                "amp": Capability(bool)}

    def values(self) -> dict[str, Any]:
        settings = self._source.settings
        return {name: getattr(settings, name) for name in self.SETTINGS}

    def apply(self, changes: dict[str, Any]) -> dict[str, Any]:
        from gr_argos.settings import ConfigError

        with self._lock:
            try:
                settings = self._source.retune(**changes)
            except ConfigError as exc:
                raise TuneError(f"tune: {exc}") from exc
        return {name: getattr(settings, name) for name in changes}
