# SPDX-License-Identifier: GPL-3.0-or-later
"""GNU Radio sink that publishes dB spectra over ZeroMQ, for argos-gateway processes to serve."""

from __future__ import annotations

import dataclasses
from typing import Any

from gr_argos.settings import init_signature
from gr_argos.spectrum_sink_base import Destination, SpectrumSinkBase, split_arguments
from gr_argos.stream import StreamSettings
from gr_argos.zmq_transport import FramePublisher, PublisherSettings, gateway_command

__all__ = ["zmq_sink"]


class zmq_sink(SpectrumSinkBase):
    """Publish float32 dB spectrum vectors on a ZeroMQ PUB socket for ``argos-gateway``.

    The same frames and JSON messages as :class:`~gr_argos.websocket_sink.websocket_sink`
    serves, encoded once here and published for gateway processes (one per core, or on other
    machines) that serve the WebSocket clients with the same protocol and viewer
    (docs/zmq.md). Publishing never blocks: a send a slow gateway cannot take is dropped and
    counted in the heartbeat. The socket is bound when the block is made.

    Keyword arguments: the stream's settings (:class:`~gr_argos.stream.StreamSettings`:
    ``bins``, ``center_freq``, ``span``, ``fps``, ...), ``zmq_endpoint`` and the CURVE
    settings ``zmq_secret_key``, ``zmq_allowed_keys``, ``zmq_trusted_network``
    (:class:`~gr_argos.zmq_transport.PublisherSettings`). ``help(zmq_sink)`` lists them
    with their defaults.

    Raises:
        TypeError: an argument that is not a setting of this block.
        ConfigError: a bad value or key file, naming the setting; plain ZeroMQ on an
            endpoint other machines can reach without ``zmq_trusted_network``.
        PublisherError: the endpoint is malformed or in use.
    """

    def __init__(self, **settings: Any) -> None:
        stream, publisher = split_arguments("zmq_sink", settings, PublisherSettings)
        self._endpoint = publisher.zmq_endpoint
        self._security = {name: value for name, value in dataclasses.asdict(publisher).items()
                          if name != "zmq_endpoint"}
        SpectrumSinkBase.__init__(self, "zmq_sink", stream)

    def _take_over(self, predecessor: SpectrumSinkBase) -> None:
        assert isinstance(predecessor, zmq_sink)
        self._endpoint, self._security = predecessor._endpoint, predecessor._security
        SpectrumSinkBase._take_over(self, predecessor)

    def _open(self) -> Destination:
        publisher = FramePublisher(self._endpoint, **self._security)
        self._endpoint = publisher.endpoint  # a restart binds the same port, also for :0
        return publisher

    def _close(self, destination: Destination) -> None:
        assert isinstance(destination, FramePublisher)
        destination.close()

    def _describe(self, destination: Destination) -> str:
        assert isinstance(destination, FramePublisher)
        return (f"publishing {self._info.name!r} (stream {self._info.stream_id}) over ZeroMQ "
                f"on {destination.endpoint}: serve it with "
                f"{gateway_command(destination.endpoint, self._security['zmq_secret_key'])}")


zmq_sink.__init__.__signature__ = init_signature(StreamSettings, PublisherSettings)  # type: ignore[attr-defined]
