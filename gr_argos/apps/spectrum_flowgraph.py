# SPDX-License-Identifier: GPL-3.0-or-later
"""The flowgraph argos-spectrum runs: a source, the spectrum chain and a sink, from its settings.

Imports GNU Radio (the settings and the command line in :mod:`gr_argos.apps.spectrum` do not).
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Callable

from gnuradio import blocks, gr

from gr_argos.apps.sources import (
    SourceError,
    open_osmosdr,
    open_sigmf,
    open_sweep,
    source_status,
)
from gr_argos.detectors import DetectorSettings
from gr_argos.gpsd import parse_address
from gr_argos.gpsd_source import gpsd_source
from gr_argos.recording.sigmf import IqRecordSettings
from gr_argos.server.config import ServerConfig
from gr_argos.settings import declared
from gr_argos.sigmf_sink import sigmf_sink
from gr_argos.sim_band_source import sim_band_source
from gr_argos.spectrum_detector import spectrum_detector
from gr_argos.stream import StreamSettings
from gr_argos.tuning import ROTATOR_MAX_ITEMS, SourceTuner, SweepTuner
from gr_argos.websocket_sink import websocket_sink
from gr_argos.zmq_sink import zmq_sink
from gr_argos.zmq_transport import PublisherSettings

__all__ = ["SourceError", "SpectrumFlowgraph"]

_STREAM_NAMES = {s.name for s in declared(StreamSettings)}
_DETECTOR_NAMES = {s.name for s in declared(DetectorSettings)}
_SERVER_NAMES = {s.name for s in declared(ServerConfig)}
_PUBLISHER_NAMES = {s.name for s in declared(PublisherSettings)}
_IQ_NAMES = {s.name for s in declared(IqRecordSettings)}


class SpectrumFlowgraph(gr.top_block):
    """source -> every-sample spectrum (a detector per frame) -> sink; or hackrf_sweep ->
    sink.

    Args:
        settings: argos-spectrum's resolved settings (:data:`gr_argos.apps.spectrum.SETTINGS`).

    Raises:
        SourceError: the source cannot be opened.
        ServerError: the sink cannot serve (port in use, ...).
        ConfigError: a ZeroMQ key file cannot be used.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        gr.top_block.__init__(self, "argos-spectrum", catch_exceptions=True)
        self._sink_messages: list[tuple[Any, str, str]] = []  # (source, port, sink's port)
        self.tuner: SourceTuner | None = None
        self._changing = threading.Lock()  # a rebuild, or the flowgraph's stop
        self._stopping = False
        if settings["source"] == "sweep":
            self._build_sweep(settings)
        else:
            self._build_fft(settings)
        self._attach_gps(settings)

    def _build_fft(self, settings: dict[str, Any]) -> None:
        """source -> every-sample spectrum -> sink, with the sample rate measured."""
        self.settings = dict(settings)
        kind = settings["source"].partition("=")[0]
        device = None
        if kind == "sim":
            self.source = sim_band_source(samp_rate=settings["samp_rate"])
        elif kind == "sigmf":
            # Its rx_freq tags label the frames of each capture segment (the sink drops the
            # frame holding samples of two).
            self.source = open_sigmf(settings["source"])
        else:
            self.source = device = open_osmosdr(settings["source"], settings)
        self.fft = spectrum_detector(**{name: value for name, value in settings.items()
                                        if name in _DETECTOR_NAMES})
        # The frame rate is a whole number of FFTs per frame: say the one produced.
        self.sink = _make_sink(settings, span=settings["samp_rate"],
                               fps=self.fft.frame_rate)
        head = self.source
        self.rotator = None
        if kind in ("sim", "file"):
            # Clients tune a simulated band or a recording by shifting it (docs/control.md).
            self.rotator = _rotator(0.0)
            self.connect(self.source, self.rotator)
            head = self.rotator
        self.connect(head, self.fft, self.sink)
        if settings["second_detector"]:
            self.connect((self.fft, 1), (self.sink, 1))
        self.iq_sink = self._record_iq(settings, head) if settings["record_iq_dir"] else None
        # The sink's periodic status reports the rate the source really delivers.
        self.rate_probe = blocks.probe_rate(gr.sizeof_gr_complex, 1000.0, 0.15)
        self.connect(self.source, self.rate_probe)
        self._msg_connect_sink(self.rate_probe, "rate", "status")
        self.sink.set_source_status({**source_status(settings), **self.fft.status_fields()})
        if isinstance(self.sink, websocket_sink):
            self.tuner = SourceTuner(
                kind if kind in ("sim", "file", "sigmf", "hackrf") else "osmosdr",
                self.sink, settings, device=device, rotator=self.rotator,
                rebuild=self.rebuild_spectrum, iq_sink=self.iq_sink,
                frame_start_after=self.frame_start_after if self.rotator is not None else None)
            self.sink.set_tuner(self.tuner)

    def _record_iq(self, settings: dict[str, Any], head: Any) -> sigmf_sink:
        """The source's samples (as the spectrum gets them: shifted when a client tunes a
        simulated band or a file) to a SigMF recording, annotated with the detections."""
        kind, _, argument = settings["source"].partition("=")
        described = source_status(settings)
        hw = {"sim": "gr-argos simulated band (sim_band_source)",
              "file": f"IQ file {Path(argument).name} through gr-osmosdr's file source",
              "sigmf": f"SigMF recording {Path(argument).name} (gr-argos sigmf_source)",
              "hackrf": f"HackRF One ({described.get('args', '')})"}.get(
                  kind, f"osmosdr device ({described.get('args', '')})")
        iq = sigmf_sink(samp_rate=settings["samp_rate"], center_freq=settings["center_freq"],
                        hw=hw, description=f"argos-spectrum --source {kind}",
                        **{name: value for name, value in settings.items()
                           if name in _IQ_NAMES})
        self.connect(head, iq)
        self.sink.detection_listeners.append(_annotator(iq))
        if isinstance(self.sink, websocket_sink):
            self.sink.add_recording("iq", iq.switch)
        return iq

    def _msg_connect_sink(self, source: Any, port: str, sink_port: str) -> None:
        """A message connection to the sink, made again to a sink that takes its place."""
        self._sink_messages.append((source, port, sink_port))
        self.msg_connect(source, port, self.sink, sink_port)

    def frame_start_after(self, sample: int) -> int:
        """The first sample of the first frame that starts at or after ``sample`` (the
        rotator's samples and the spectrum's, both counted from the flowgraph's last
        start): frame j covers [j M - M/2, (j + 1) M - M/2) (see spectrum_detector)."""
        period = int(self.fft.bins) * int(self.fft.vectors_per_frame)
        frame = max(1, -(-(int(sample) + period // 2) // period))
        return frame * period - period // 2

    def stop(self) -> None:
        """Stop the flowgraph, after a client's change being made (no change starts after)."""
        with self._changing:
            self._stopping = True
            gr.top_block.stop(self)

    def rebuild_spectrum(self, changes: dict[str, Any]) -> dict[str, Any]:
        """A new spectrum chain for other detector settings (``samp_rate``, ``bins``,
        ``fps``, ``detector``, ``second_detector``, ``avg_alpha``, ``window``,
        ``overlap``), swapped in while the sink keeps serving and labels the new chain's
        frames. A new sample rate goes to the device first (or makes a new simulated band);
        a new FFT size or second trace needs a sink with other inputs, which takes over the
        stream and its clients. Returns what is in force (the device's rate, the frame rate
        the FFTs give).

        The flowgraph is stopped and started again, not lock()ed: GNU Radio 3.10 attaches
        a block added under lock() to its input without its history, so the chain's delays
        (half a period; the overlapping FFTs') would be lost, and it keeps the blocks'
        sample counts, where a frame's first sample is found. After a start every count is
        0 again, and a new rotator holds no change meant for the old counts.

        Raises:
            RuntimeError: argos-spectrum is stopping.
            ConfigError: a setting out of range.
        """
        with self._changing:
            if self._stopping:
                raise RuntimeError("argos-spectrum is stopping")
            return self._rebuild(changes)

    def _rebuild(self, changes: dict[str, Any]) -> dict[str, Any]:
        settings = {**self.settings, **changes}
        detector = spectrum_detector(**{name: value for name, value in settings.items()
                                        if name in _DETECTOR_NAMES})
        was_second, second = bool(self.settings["second_detector"]), bool(
            settings["second_detector"])
        sink = self.sink
        if (settings["bins"], settings["second_detector"]) != (
                self.settings["bins"], self.settings["second_detector"]):
            sink = self.sink.successor(bins=settings["bins"],
                                       second_detector=settings["second_detector"])
        # The replaced blocks stay referenced until their threads have ended: a Python
        # block (period_detector, a sink) freed while its thread runs crashes the process.
        retired = [self.fft, self.source, self.sink, self.rotator]
        with contextlib.ExitStack() as serving:
            serving.enter_context(self.sink.reconfiguring())
            if sink is not self.sink:
                serving.enter_context(sink.reconfiguring())
            gr.top_block.stop(self)
            gr.top_block.wait(self)
            try:
                self.disconnect(self.rotator or self.source, self.fft)
                self.disconnect(self.fft, self.sink)
                if was_second:
                    self.disconnect((self.fft, 1), (self.sink, 1))
                if "samp_rate" in changes:
                    settings["samp_rate"] = self._new_sample_rate(settings["samp_rate"])
                    if self.iq_sink is not None:  # before a sample at the new rate
                        self.iq_sink.set_sample_rate(settings["samp_rate"])
                if self.rotator is not None:
                    self._new_rotator(settings["samp_rate"])
                if sink is not self.sink:
                    self._replace_sink(sink)
                self.fft = detector
                self.connect(self.rotator or self.source, self.fft, self.sink)
                if second:
                    self.connect((self.fft, 1), (self.sink, 1))
            finally:
                gr.top_block.start(self)
        del retired  # their threads have ended: the new chain runs alone
        self.settings = settings
        self.sink.describe_inputs()
        self.sink.set_span(settings["samp_rate"])
        self.sink.set_fps(self.fft.frame_rate)
        self.sink.set_detector(settings["detector"])
        self.sink.set_source_status({**source_status(settings), **self.fft.status_fields()})
        applied = {name: settings[name] for name in changes}
        if "fps" in changes:
            applied["fps"] = self.fft.frame_rate
        return applied

    def _new_sample_rate(self, samp_rate: float) -> float:
        """Give the source a new rate (the flowgraph stopped); the rate it took."""
        if self.settings["source"] == "sim":
            old = self.source
            self.disconnect(old, self.rotator)
            self.disconnect(old, self.rate_probe)
            self.source = sim_band_source(samp_rate=samp_rate)
            self.connect(self.source, self.rotator)
            self.connect(self.source, self.rate_probe)
            return samp_rate
        return float(self.source.set_sample_rate(samp_rate))

    def _new_rotator(self, samp_rate: float) -> None:
        """A rotator in the old one's place (the flowgraph stopped), at the shift clients
        asked for last: changes the old one still held were for its old sample counts."""
        assert self.tuner is not None and self.rotator is not None
        self.tuner.rate_changed(samp_rate)
        rotator = _rotator(self.tuner.phase_inc())
        self.disconnect(self.source, self.rotator)
        self.connect(self.source, rotator)
        if self.iq_sink is not None:
            self.disconnect(self.rotator, self.iq_sink)
            self.connect(rotator, self.iq_sink)
            self.iq_sink.retuned(self.tuner.values()["center_freq"])
        self.rotator = self.tuner.rotator = rotator

    def _replace_sink(self, sink: Any) -> None:
        """Put ``sink`` (the sink's successor) in the sink's place, the flowgraph stopped:
        its message connections and the tuner go to it."""
        for source, port, sink_port in self._sink_messages:
            self.msg_disconnect(source, port, self.sink, sink_port)
            self.msg_connect(source, port, sink, sink_port)
        self.sink = sink
        if self.tuner is not None:
            self.tuner.sink = sink

    def _build_sweep(self, settings: dict[str, Any]) -> None:
        """hackrf_sweep source -> sink: one frame per sweep, no FFT here."""
        self.source = open_sweep(settings)
        self.sink = _make_sink(settings, center_freq=(settings["freq_min"]
                                                      + settings["freq_max"]) / 2,
                               span=settings["freq_max"] - settings["freq_min"],
                               stream_name="sweep",
                               # hackrf_sweep's bins are averages; it has no second trace.
                               detector="average", second_detector="")
        self.connect(self.source, self.sink)
        self._msg_connect_sink(self.source, "status", "status")
        if isinstance(self.sink, websocket_sink):
            self.sink.set_tuner(SweepTuner(self.source))

    def _attach_gps(self, settings: dict[str, Any]) -> None:
        """gpsd_source -> the sink's msg port, if --gps names a gpsd. gpsd not running is
        not fatal: the block logs it and keeps retrying."""
        if not settings["gps"]:
            return
        host, port = parse_address(settings["gps"])
        self.gps = gpsd_source(host=host, port=port)
        self._msg_connect_sink(self.gps, "gps", "msg")


def _rotator(phase_inc: float) -> Any:
    """The rotator that shifts a simulated band or a recording, tagging each change; its
    work calls are bounded so that a change scheduled ahead of it is read in time."""
    rotator = blocks.rotator_cc(phase_inc, True)
    rotator.set_max_noutput_items(ROTATOR_MAX_ITEMS)
    return rotator


def _annotator(iq: sigmf_sink) -> Callable[[dict[str, Any]], None]:
    """A detection listener that marks each signal in the IQ recording when it ends."""
    def annotate(event: dict[str, Any]) -> None:
        if event.get("event") != "end":
            return
        start_ns = int(event["start_ns"])
        iq.recorder.annotate(start_ns, start_ns + round(float(event["duration_s"]) * 1e9),
                             float(event["low_freq_hz"]), float(event["high_freq_hz"]),
                             f"signal at {float(event['center_freq_hz']) / 1e6:.6f} MHz",
                             f"gr-argos detection {event.get('id')}: peak "
                             f"{event.get('peak_db')} dB, SNR {event.get('snr_db')} dB")
    return annotate


def _make_sink(settings: dict[str, Any], **stream: Any) -> Any:
    """The sink for ``--transport``, with the app's stream settings and ``stream``'s."""
    arguments = {name: value for name, value in settings.items() if name in _STREAM_NAMES}
    arguments.update(stream, msg_channel="gps")
    if settings["transport"] == "zmq":
        return zmq_sink(**arguments, **{name: value for name, value in settings.items()
                                        if name in _PUBLISHER_NAMES})
    return websocket_sink(**arguments, **{name: value for name, value in settings.items()
                                          if name in _SERVER_NAMES})
