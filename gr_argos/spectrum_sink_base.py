# SPDX-License-Identifier: GPL-3.0-or-later
"""What the spectrum sinks share, whatever carries their frames: the input, the stream tags,
``work()``, and the ``msg`` and ``status`` message ports.

:class:`SpectrumSinkBase` turns each float32 dB vector into one numbered, stamped frame of a
:class:`~gr_argos.stream.SpectrumStream` and hands it to a destination: a WebSocket server
(:class:`~gr_argos.websocket_sink.websocket_sink`) or a ZeroMQ publisher
(:class:`~gr_argos.zmq_sink.zmq_sink`), which a subclass opens and closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Iterator, Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt
import pmt
from gnuradio import gr

from gr_argos.detection_log import DetectionLog
from gr_argos.protocol import StreamInfo
from gr_argos.server.hub import DEFAULT_INGRESS_DEPTH
from gr_argos.settings import from_arguments, rename_arguments
from gr_argos.status import StatusReporter
from gr_argos.stream import (
    FrameDestination, FrameRateGuard, Shift, SpectrumStream, StreamSettings)
from gr_argos.tags import PERIOD_TIME, ROT_PHASE_INC, RX_FREQ, RX_RATE, RX_TIME

__all__ = ["Destination", "SpectrumSinkBase", "split_arguments"]



class Destination(FrameDestination, Protocol):
    """What a sink hands its stream to: a server or a publisher."""

    @property
    def url(self) -> str: ...

    def publish_message(self, msg_type: str, body: dict[str, Any] | None = None) -> None: ...

    def add_stream(self, info: StreamInfo) -> None: ...

    def remove_stream(self, stream_id: int) -> None: ...


T = TypeVar("T")


def split_arguments(owner: str, arguments: dict[str, Any],
                    transport: type[T]) -> tuple[StreamSettings, T]:
    """A sink's keyword arguments as the stream's settings and its transport's.

    The sinks' former names ``vlen`` and ``samp_rate`` (the frames' span) are accepted with
    a warning.
    """
    arguments = rename_arguments(owner, arguments, {"vlen": "bins", "samp_rate": "span"})
    stream, settings = from_arguments(owner, arguments, StreamSettings, transport)
    return stream, settings


class SpectrumSinkBase(gr.sync_block):
    """Streams float32 dB spectrum vectors of ``bins`` values, FFT-shifted.

    With a ``second_detector`` the block has a second input: the second trace of the same
    frame periods (e.g. the average under a peak trace), item for item beside the first.

    Subclasses open their destination in :meth:`_open` (when the block is made, so a port in
    use fails there) and release it in :meth:`_close`.

    Args:
        name: the block's GNU Radio name.
        stream: the stream's settings.
    """

    MSG_PORT = pmt.intern("msg")
    STATUS_PORT = pmt.intern("status")

    def __init__(self, name: str, stream: StreamSettings) -> None:
        self._make_block(name, stream)
        self._info = stream.info()
        self._last_fix: tuple[dict[str, Any], float] | None = None
        self.detection_log: DetectionLog | None = None
        #: Called with each detection event too (argos-spectrum annotates its IQ recording).
        self.detection_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.destination: Destination | None = None
        self.stream: SpectrumStream | None = None
        self.status: StatusReporter | None = None
        self._serve()

    def _make_block(self, name: str, stream: StreamSettings) -> None:
        """The GNU Radio block: ``bins`` floats an item on one input (two with a
        ``second_detector``), and the message ports."""
        inputs = 2 if stream.second_detector else 1
        gr.sync_block.__init__(self, name=name, in_sig=[(np.float32, stream.bins)] * inputs,
                               out_sig=None)
        self._block_name = name
        self.settings = stream
        self._guard = FrameRateGuard(stream.fps, stream.max_fps)
        self._reconfiguring = False
        #: The flowgraph stopped this block (it stopped, or ended on its own), not a
        #: reconfiguration: what an app polls instead of waiting in ``top_block.wait()``
        #: (which returns when a reconfiguration stops the flowgraph, and in GNU Radio 3.10
        #: crashes against an ``unlock()``).
        self.stopped = False
        self.message_port_register_in(self.MSG_PORT)
        self.set_msg_handler(self.MSG_PORT, self._handle_msg)
        self.message_port_register_in(self.STATUS_PORT)
        self.set_msg_handler(self.STATUS_PORT, self._handle_status)

    def successor(self, *, bins: int, second_detector: str) -> Self:
        """A block like this one with other inputs (``bins`` per vector, a second input or
        none), which serves this one's stream: the same server or publisher, clients,
        sequence numbers, status and detection; its frames say their new size.

        An input's size is fixed when a block is made, so a new FFT size needs a new sink.
        Put the successor in this block's place while both are :meth:`reconfiguring`
        (the flowgraph stopped for the change, or between ``lock()`` and ``unlock()``),
        connecting its message ports as this one's were; this one serves until then. Once
        the successor runs, :meth:`describe_inputs` makes the stream's descriptor say its
        inputs.

        Raises:
            ConfigError: a bad value, naming the setting.
        """
        block = type(self).__new__(type(self))
        block._make_block(self._block_name, dataclasses.replace(
            self.settings, bins=bins, second_detector=second_detector))  # checks them
        block._take_over(self)
        return block

    def _take_over(self, predecessor: SpectrumSinkBase) -> None:
        """Serve ``predecessor``'s stream (see :meth:`successor`)."""
        self._info = predecessor._info
        self._last_fix = predecessor._last_fix
        self.detection_log = predecessor.detection_log
        self.detection_listeners = predecessor.detection_listeners  # an IQ recording's notes
        self.destination = predecessor.destination
        self.stream = predecessor.stream
        self.status = predecessor.status
        if self.stream is not None and self.stream.on_detection is not None:
            self.stream.on_detection = self._publish_detection
        if self.status is not None:
            self.status.publish = self._publish

    # -- what a subclass provides -------------------------------------------------------------

    def _open(self) -> Destination:
        """Open the destination (``publish_frame``, ``publish_message``, ``add_stream``,
        ``update_stream``, ``remove_stream``, ``url``) and log where clients find it."""
        raise NotImplementedError

    def _close(self, destination: Destination) -> None:
        raise NotImplementedError

    def _describe(self, destination: Destination) -> str:
        """The log line that says where the stream is served."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------

    def _serve(self) -> None:
        destination = self._open()
        try:
            destination.add_stream(self._info)
        except ValueError:
            self._close(destination)
            raise
        self.destination = destination
        if self.stream is None:  # kept across restarts so sequence numbers keep counting
            self.stream = SpectrumStream(destination, self._info)
            if self.settings.detect:
                self.stream.detect(self.settings.detection(), self._publish_detection)
            self.status = StatusReporter(self.stream, self._publish,
                                         self.settings.status_interval_s)
            if self.settings.detect and self.settings.detect_log:
                self.detection_log = DetectionLog(self.settings.detect_log,
                                                  self.status.update_source)
        else:
            self.stream.attach(destination)
        self.logger.info(self._describe(destination))

    def start(self) -> bool:
        """Serve again after a stop(); a failure is logged, never raised.

        The destination is first opened by the constructor, like gr-zeromq binds its sockets
        there: an exception from a Python block's start() would hang or crash the scheduler.
        """
        if self.reconfiguring_now:
            return True  # never stopped (see reconfiguring)
        self.stopped = False
        if self.destination is None:
            try:
                self._serve()
            except (RuntimeError, ValueError) as exc:
                self.logger.error(f"not serving: {exc}")
                return True
        if self.status is not None:
            self.status.start()
        if self.detection_log is not None:
            self.detection_log.start()
        return True

    @property
    def reconfiguring_now(self) -> bool:
        """Whether the flowgraph is being reconfigured (:meth:`reconfiguring`)."""
        return self._reconfiguring

    @contextlib.contextmanager
    def reconfiguring(self) -> Iterator[None]:
        """Keep serving while the flowgraph is reconfigured (stopped and started again, or
        ``lock()`` ... ``unlock()``): GNU Radio stops and starts every block then, and the clients must not see a server
        going away. The producer upstream is a new one: frame times anchor again."""
        self._reconfiguring = True
        try:
            yield
        finally:
            self._reconfiguring = False
            if self.stream is not None:
                self.stream.new_producer()

    def describe_inputs(self) -> None:
        """Make the stream's descriptor (``hello``, ``status``) say this block's inputs:
        a :meth:`successor`'s, once it runs."""
        info, settings = self._info, self.settings
        if (info.bins, info.second_detector) == (settings.bins, settings.second_detector):
            return
        info.bins, info.second_detector = settings.bins, settings.second_detector
        if self.destination is not None:
            self.destination.update_stream(info.stream_id, bins=info.bins,
                                           second_detector=info.second_detector)

    def stop(self) -> bool:
        """Stop serving: a server closes every client (code 1001) unless another sink uses it
        (or the flowgraph is being reconfigured: :meth:`reconfiguring`)."""
        if self.reconfiguring_now:
            return True
        self.stopped = True
        if self.status is not None:
            self.status.stop()
        if self.detection_log is not None:
            self.detection_log.stop()
        destination, self.destination = self.destination, None
        if destination is not None:
            destination.remove_stream(self._info.stream_id)
            self._close(destination)
        return True

    @property
    def url(self) -> str:
        """Where clients (or gateways) connect, while the block serves."""
        if self.destination is None:
            raise RuntimeError("the sink is not running")
        return self.destination.url

    # -- data --------------------------------------------------------------------------------

    def work(self, input_items: list[npt.NDArray[Any]], output_items: list[npt.NDArray[Any]]) -> int:
        vectors = input_items[0]
        second = input_items[1] if len(input_items) > 1 else None
        count = len(vectors)
        stream = self.stream
        if stream is None or self.destination is None:
            return count
        first = self.nitems_read(0)
        tags = sorted(self.get_tags_in_window(0, 0, count), key=lambda tag: tag.offset)
        # Hand off at most what the hub's ingress holds; older vectors of a large backlog
        # would only be dropped there. Their sequence numbers still pass, so clients see it.
        keep_from = max(0, count - DEFAULT_INGRESS_DEPTH)
        tag_index = 0
        guard = self._guard
        rate = guard.measure(count)
        if rate is not None:
            self.logger.warn(
                f"{rate:.0f} vectors/s arrive but fps (Frame Rate) is {guard.fps:g}: every "
                f"vector is a frame for every client. Make frames at the display rate before "
                f"this block (a Spectrum Detector, or a Log Power FFT with that Frame Rate) or "
                f"set fps to the real rate. Beyond {guard.limit:g} frames/s (max_fps) frames "
                f"are skipped and counted in frames_skipped.")
        for index in range(count):
            held = []
            while tag_index < len(tags) and tags[tag_index].offset <= first + index:
                held.append(tags[tag_index])
                tag_index += 1
            # A frame of a period of samples (period_time) holding an rx_freq tag holds
            # samples of both tunings, unlike a sweep's vector, which is all of its own.
            period = any(pmt.eq(tag.key, PERIOD_TIME) for tag in held)
            for tag in held:
                self._apply_tag(stream, tag, period)
            if index < keep_from or not guard.admit():
                stream.skip(1)
            else:
                stream.publish(vectors[index], None if second is None else second[index])
        return count

    def _apply_tag(self, stream: SpectrumStream, tag: Any, period: bool) -> None:
        """Apply a stream tag to the frames from this one (``period``: this frame is a
        period of samples, the tag on one of them)."""
        key, value = tag.key, tag.value
        try:
            if pmt.eq(key, RX_FREQ):
                center_freq_hz = pmt.to_double(value)
                if period and center_freq_hz != stream.center_freq_hz:
                    # As a live retune: the frame is dropped (counted), the next relabelled.
                    stream.retune_within(center_freq_hz=center_freq_hz)
                else:
                    stream.retune(center_freq_hz=center_freq_hz)
            elif pmt.eq(key, RX_RATE):
                stream.retune(span_hz=pmt.to_double(value))
            elif pmt.eq(key, RX_TIME):
                seconds = pmt.to_uint64(pmt.tuple_ref(value, 0))
                fraction = pmt.to_double(pmt.tuple_ref(value, 1))
                stream.set_capture_time(seconds * 1_000_000_000 + round(fraction * 1e9))
            elif pmt.eq(key, ROT_PHASE_INC):
                stream.retune_tag_seen(pmt.to_double(value))
            elif pmt.eq(key, PERIOD_TIME):
                stream.set_period(pmt.to_double(pmt.tuple_ref(value, 0)),
                                  pmt.to_double(pmt.tuple_ref(value, 1)))
        except (RuntimeError, ValueError, TypeError) as exc:
            self.logger.warn(f"ignored malformed {pmt.symbol_to_string(key)} tag "
                             f"{pmt.write_string(value)}: {exc}")

    # -- settings that change while running (GRC callbacks) ------------------------------------

    def set_center_freq(self, center_freq: float) -> None:
        """The centre frequency (Hz) of the frames from the next one on, as a QT GUI range or
        a variable changes it in GRC (an ``rx_freq`` tag changes it too)."""
        self.settings = dataclasses.replace(self.settings, center_freq=center_freq)  # checks it
        assert self.stream is not None  # made with the block
        self.stream.retune(center_freq_hz=self.settings.center_freq)

    @property
    def center_freq(self) -> float:
        """The centre frequency (Hz) the source is tuned to now (its frames may still be in
        the spectrum chain)."""
        return self.settings.center_freq

    def retuned(self, center_freq: float, settle_s: float = 0.0,
                shift: Shift | None = None) -> None:
        """The source was retuned to ``center_freq`` (Hz) just now: frames of samples taken
        ``settle_s`` after now get it, frames of samples on both sides of the change are
        dropped (counted in ``frames_retuning``), earlier ones keep the old label. With
        ``shift``, a rotator changes its increment exactly at the first sample of a frame,
        which its ``rot_phase_inc`` tag marks: that frame and the later ones get the new
        label, none is dropped (call it before the rotator is told). Any thread."""
        self.settings = dataclasses.replace(self.settings, center_freq=center_freq)
        assert self.stream is not None  # made with the block
        if shift is not None:
            self.stream.retune_at_tag(shift, center_freq_hz=center_freq)
        else:
            self.stream.retune_at(time.time_ns(), round(settle_s * 1e9),
                                  center_freq_hz=center_freq)

    def set_span(self, span: float) -> None:
        """The span (Hz) of the frames from the next one on (an ``rx_rate`` tag changes it
        too)."""
        self.settings = dataclasses.replace(self.settings, span=span)
        assert self.stream is not None
        self.stream.retune(span_hz=self.settings.span)

    def set_fps(self, fps: float) -> None:
        """The frame rate the stream's descriptor announces (``hello``'s ``fps``): the rate
        the spectrum chain upstream makes frames at."""
        self.settings = dataclasses.replace(self.settings, fps=fps)
        self._info.fps = self.settings.fps
        self._guard = FrameRateGuard(self.settings.fps, self.settings.max_fps)
        if self.stream is not None and self.stream.finder is not None:
            self.stream.finder.frame_period_s = 1.0 / self.settings.fps
        if self.destination is not None:
            self.destination.update_stream(self._info.stream_id, fps=self.settings.fps)

    def set_detector(self, detector: str) -> None:
        """What the frames from the next one on show of their period (``peak``,
        ``average``, ``sample``), as their header and ``hello`` say: the spectrum chain
        upstream was built anew with it."""
        self.settings = dataclasses.replace(self.settings, detector=detector)  # checks it
        self._info.detector = self.settings.detector
        if self.destination is not None:
            self.destination.update_stream(self._info.stream_id, detector=self._info.detector)

    # -- messages ----------------------------------------------------------------------------

    def set_source_status(self, fields: dict[str, Any]) -> None:
        """Describe the source in every periodic ``status`` message (kind, args, gains...).

        Thread-safe; the fields are merged with what arrives on the ``status`` port.
        """
        if self.status is not None:
            self.status.update_source(fields)

    def _handle_status(self, msg: Any) -> None:
        body = self._pmt_dict(msg, "status")
        if body is not None:
            self.set_source_status(body)

    def _pmt_dict(self, msg: Any, port: str) -> dict[str, Any] | None:
        """A PMT dict (or a PDU's metadata dict) as a Python dict with string keys, or None
        (logged) for anything else."""
        if pmt.is_pair(msg) and not pmt.is_dict(msg) and pmt.is_dict(pmt.car(msg)):
            msg = pmt.car(msg)  # a PDU, as blocks.probe_rate posts: (metadata . data)
        if not pmt.is_dict(msg):
            self.logger.warn(f"dropped a message on port '{port}': expected a PMT dict, got "
                             f"{pmt.write_string(msg)[:200]}")
            return None
        try:
            body = pmt.to_python(msg)
        except Exception as exc:  # pmt.to_python raises bare ValueError/TypeError variants
            self.logger.warn(f"dropped a message on port '{port}' that cannot be converted: "
                             f"{exc}")
            return None
        if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
            self.logger.warn(f"dropped a message on port '{port}': its keys must be symbols")
            return None
        return body

    def _handle_msg(self, msg: Any) -> None:
        body = self._pmt_dict(msg, "msg")
        if body is not None:
            if self.settings.msg_channel == "gps":
                self._last_fix = (body, time.monotonic())
            self._publish(self.settings.msg_channel, {"stream": self._info.stream_id, **body})

    def _publish_detection(self, event: dict[str, Any]) -> None:
        """A detection event for every client (and the ``detect_log`` file), with the
        stream's tuning and the latest GPS fix from the msg port (its position, fix and age;
        null before the first)."""
        body: dict[str, Any] = {"stream": self._info.stream_id, **event,
                                "tuning": {"center_freq_hz": self._info.center_freq_hz,
                                           "span_hz": self._info.span_hz}}
        if self._last_fix is None:
            body["gps"] = None
        else:
            fix, seen = self._last_fix
            body["gps"] = {**{key: fix[key] for key in ("fix", "mode", "lat", "lon", "alt_m", "time")
                              if key in fix},
                           "age_s": round(time.monotonic() - seen, 3)}
        self._publish("detection", body)
        if self.detection_log is not None:
            self.detection_log.write(body)
        for listener in self.detection_listeners:
            listener(body)

    def _publish(self, msg_type: str, body: dict[str, Any]) -> None:
        destination = self.destination
        if destination is None:
            self.logger.warn(f"dropped a {msg_type} message: the sink is not running")
            return
        destination.publish_message(msg_type, body)
