# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio sink that serves dB spectra to WebSocket clients and browsers."""

from __future__ import annotations

from typing import Any

import pmt

from gr_argos.server import ServerConfig, SpectrumServer, acquire_server, release_server
from gr_argos.server.control import Tuner
from gr_argos.server.recording_switch import Recording
from gr_argos.settings import init_signature
from gr_argos.spectrum_sink_base import Destination, SpectrumSinkBase, split_arguments
from gr_argos.stream import StreamSettings
from gr_argos.tuning import CommandPortTuner

__all__ = ["websocket_sink"]

_MOVED_TO_ZMQ_SINK = ("the ZeroMQ publisher is now a block of its own: replace this sink with "
                      "zmq_sink (GRC: 'ZeroMQ Spectrum Sink'), which takes zmq_endpoint")


class websocket_sink(SpectrumSinkBase):
    """Serve float32 dB spectrum vectors to WebSocket clients and browsers on one port.

    Each input vector (``bins`` values, FFT-shifted, lowest frequency first) becomes one
    binary frame of the gr-argos protocol, encoded once and handed to every client; a client
    that cannot keep up loses its oldest frames, counted and reported to it. ``work()`` only
    hands frames off: it never waits for the network.

    Frame metadata comes from the stream tags ``rx_freq`` and ``rx_rate`` (Hz) and
    ``rx_time`` ((uint64 s, double frac) as gr-osmosdr and UHD emit it), and falls back to
    ``center_freq`` and ``span`` until a tag arrives. PMT dicts arriving on the ``msg`` port
    are broadcast at once as JSON messages of type ``msg_channel`` (a GPS fix, say). Every
    ``status_interval_s`` seconds the sink sends a ``status`` message: the stream's frequency,
    span, bins and measured frame rate, merged with the latest PMT dict from each source on
    the ``status`` port (a ``blocks.probe_rate`` there reports the measured sample rate).

    Clients may control the radio (docs/control.md): a ``tune`` message from the client that
    holds the control lease goes out on the ``command`` message port as a PMT dict (``freq``,
    ``gain``, ``bandwidth``: connect it to the source's command port), or to the tuner an app
    sets with :meth:`set_tuner`; frames of samples taken after the change say the new
    frequency, and those whose samples span it are dropped and counted.

    The server starts when the block is made, so a port in use fails there with a
    :class:`~gr_argos.server.ServerError` naming it; sinks of one process naming the same
    host and port share one server, each with its own ``stream_id``.

    Keyword arguments: the stream's settings (:class:`~gr_argos.stream.StreamSettings`:
    ``bins``, ``center_freq``, ``span``, ``fps``, ...) and the server's
    (:class:`~gr_argos.server.ServerConfig`: ``host``, ``port``, ``token``, ...), each with
    its help in ``argos-spectrum --help`` and docs/app.md. ``help(websocket_sink)`` lists
    them with their defaults.

    Raises:
        TypeError: an argument that is not a setting of this block.
        ConfigError: a bad value, naming the setting.
        ServerError: the server cannot start (port in use, TLS file missing...).
    """

    def __init__(self, **settings: Any) -> None:
        # Flowgraphs made before zmq_sink existed pass transport (hidden in GRC now).
        if settings.pop("transport", "websocket") != "websocket" or "zmq_endpoint" in settings:
            raise TypeError(f"websocket_sink: {_MOVED_TO_ZMQ_SINK}")
        stream, self.config = split_arguments("websocket_sink", settings, ServerConfig)
        self._tuner: Tuner | None = None
        self._recordings: dict[str, Recording] = {}
        self._running = False  # between start() and stop() of the flowgraph
        SpectrumSinkBase.__init__(self, "websocket_sink", stream)

    def _make_block(self, name: str, stream: StreamSettings) -> None:
        SpectrumSinkBase._make_block(self, name, stream)
        self.message_port_register_out(CommandPortTuner.PORT)

    def _take_over(self, predecessor: SpectrumSinkBase) -> None:
        assert isinstance(predecessor, websocket_sink)
        self.config, self._tuner = predecessor.config, predecessor._tuner
        self._running = predecessor._running
        self._recordings = predecessor._recordings  # the server serves them on
        SpectrumSinkBase._take_over(self, predecessor)

    def set_tuner(self, tuner: Tuner | None) -> None:
        """What applies clients' ``tune`` changes to the radio (an app's own source, say),
        instead of the ``command`` port. None: only the command port, if connected. Clients
        may use it once the flowgraph runs (a change to a flowgraph still starting could
        leave it stopped)."""
        self._tuner = tuner
        if self._running:
            self._install_tuner()

    def add_recording(self, kind: str, recording: Recording) -> None:
        """A recording of the flowgraph's own (argos-spectrum's ``iq``) that the server
        reports in ``status`` and that clients may start and stop (``record``)."""
        self._recordings[kind] = recording
        if isinstance(self.destination, SpectrumServer):
            self.destination.add_recording(kind, recording)

    def start(self) -> bool:
        started = SpectrumSinkBase.start(self)
        self._running = True
        self._install_tuner()
        if isinstance(self.destination, SpectrumServer):
            for kind, recording in self._recordings.items():
                self.destination.add_recording(kind, recording)
        return started

    def stop(self) -> bool:
        if not self.reconfiguring_now:
            self._running = False
        return SpectrumSinkBase.stop(self)

    def _install_tuner(self) -> None:
        """Give the server this sink's tuner: the one set, else the command port when a
        block listens to it (known once the flowgraph starts)."""
        destination = self.destination
        if not isinstance(destination, SpectrumServer):
            return
        tuner = self._tuner
        if tuner is None and pmt.length(self.message_subscribers(CommandPortTuner.PORT)):
            tuner = CommandPortTuner(self)
        if tuner is not None:
            destination.set_tuner(tuner)

    def _open(self) -> Destination:
        return acquire_server(self.config)

    def _close(self, destination: Destination) -> None:
        assert isinstance(destination, SpectrumServer)
        release_server(destination)

    def _describe(self, destination: Destination) -> str:
        assert isinstance(destination, SpectrumServer)
        return (f"serving {self._info.name!r} (stream {self._info.stream_id}) on "
                f"{destination.url} — health at {destination.health_url}")


websocket_sink.__init__.__signature__ = init_signature(StreamSettings, ServerConfig)  # type: ignore[attr-defined]
