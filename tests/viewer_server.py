# SPDX-License-Identifier: GPL-3.0-or-later
"""In-process gr-argos servers for the browser viewer's tests: a real
:class:`~gr_argos.server.SpectrumServer` on port 0 fed by a publisher thread with a synthetic
spectrum at about 30 frames/s, which the tests can restart, retune, or give a second trace.

A plain module like ``helpers``: ``from viewer_server import serve, start_server``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from gr_argos.protocol import StreamInfo, encode_frame
from gr_argos.server import ServerConfig, SpectrumServer

# The synthetic stream of the in-process servers.
BINS = 1024
CENTER_FREQ_HZ = 100e6
SPAN_HZ = 2e6
FPS = 30.0
NOISE_FLOOR_DB = -90.0
CARRIER_BIN = 700
CARRIER_DB = -30.0
# The second trace of a two-trace stream (the "average" under the "peak"): lower, and with
# its carrier in another bin, so the waterfall shows which trace it follows.
SECOND_NOISE_FLOOR_DB = -100.0
SECOND_CARRIER_BIN = 300
SECOND_CARRIER_DB = -45.0


class Publisher:
    """A thread publishing a synthetic spectrum at ~30 frames/s to the current server.

    The sequence counter keeps running when the server is swapped, like a flowgraph whose
    server restarts; ``center_freq_hz`` may be changed to retune, and ``carrier_db`` to
    change the carrier's level (None: no carrier), and ``extra_carriers`` ({bin: dB}) adds
    one-bin carriers. With ``second_trace`` the
    frames are a peak trace with a second, average, trace (for the clients that ask).
    """

    def __init__(self, server: SpectrumServer, *, second_trace: bool = False) -> None:
        self.server = server
        self.second_trace = second_trace
        self.center_freq_hz = CENTER_FREQ_HZ
        self.carrier_db: float | None = CARRIER_DB
        self.extra_carriers: dict[int, float] = {}
        self.sequence = 0
        self._stop = threading.Event()
        self._rng = np.random.default_rng(1)
        self._thread = threading.Thread(target=self._run, name="viewer-test-publisher",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1 / FPS):
            power = NOISE_FLOOR_DB + self._rng.normal(0.0, 2.0, BINS)
            carrier_db = self.carrier_db
            if carrier_db is not None:
                power[CARRIER_BIN - 1:CARRIER_BIN + 2] = (carrier_db - 20, carrier_db,
                                                          carrier_db - 20)
            for bin_index, level_db in self.extra_carriers.items():
                power[bin_index] = level_db
            traces: dict[str, Any] = {}
            if self.second_trace:
                average = SECOND_NOISE_FLOOR_DB + self._rng.normal(0.0, 1.0, BINS)
                average[SECOND_CARRIER_BIN] = SECOND_CARRIER_DB
                traces = {"detector": "peak", "second_power_db": average,
                          "second_detector": "average"}
            self.server.publish_frame(0, encode_frame(
                power, center_freq_hz=self.center_freq_hz, span_hz=SPAN_HZ,
                timestamp_ns=time.time_ns(), sequence=self.sequence, **traces))
            self.sequence += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def start_server(port: int = 0, *, second_trace: bool = False, bins: int = BINS,
                 **settings: Any) -> SpectrumServer:
    server = SpectrumServer(ServerConfig(port=port, **settings))
    detectors = {"detector": "peak", "second_detector": "average"} if second_trace else {}
    server.add_stream(StreamInfo(stream_id=0, bins=bins, center_freq_hz=CENTER_FREQ_HZ,
                                 span_hz=SPAN_HZ, fps=FPS, **detectors))
    server.start()
    return server


@dataclass
class Served:
    """An in-process server with a publisher; ``page_url`` is the viewer on it."""

    server: SpectrumServer
    publisher: Publisher

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/"


def serve(*, second_trace: bool = False, **settings: Any) -> Iterator[Served]:
    """A server with these ServerConfig settings and its publisher, stopped afterwards."""
    server = start_server(second_trace=second_trace, **settings)
    publisher = Publisher(server, second_trace=second_trace)
    served = Served(server, publisher)
    try:
        yield served
    finally:
        publisher.stop()
        served.server.stop()
