# SPDX-License-Identifier: GPL-3.0-or-later
"""The WebSocket server: streams, health, metrics and the browser viewer on one port.

The path of a frame, top-down: a producer (the sink's ``work()``, a ZeroMQ subscriber) calls
:meth:`SpectrumServer.publish_frame`; the :mod:`~gr_argos.server.hub` takes it onto the
server's event loop and offers it to every client's
:class:`~gr_argos.server.connection.Connection`, which writes it at once through the
:mod:`~gr_argos.server.wire` writer when the socket can take it, or sends it later from the
client's queue (drop-oldest, counted).

Modules, each with one job:

- :mod:`~gr_argos.server.config`: the settings, declared once (:class:`ServerConfig`);
- :mod:`~gr_argos.server.spectrum_server`: :class:`SpectrumServer`, its thread, streams and
  the gate in front of the upgrade;
- :mod:`~gr_argos.server.admission`: who may upgrade (origin, limits, token), plain code;
- :mod:`~gr_argos.server.listener`: the listening sockets, which answer 503 even when the
  process is out of file descriptors;
- :mod:`~gr_argos.server.connection`: one client: authentication, replies, its sender;
- :mod:`~gr_argos.server.client_messages`: what a client may send, and how often;
- :mod:`~gr_argos.server.hub`: per-client queues, drop-oldest, encode once per variant;
- :mod:`~gr_argos.server.wire`: the one place that writes beside ``websockets``;
- :mod:`~gr_argos.server.routes`: HTTP routes and the browser's files;
- :mod:`~gr_argos.server.metrics`: counters and the Prometheus collector;
- :mod:`~gr_argos.server.tls`: the TLS context and its policy;
- :mod:`~gr_argos.server.logs`: log lines no client can forge or flood, without tokens;
- :mod:`~gr_argos.server.outgoing`: each frame's variants, encoded once;
- :mod:`~gr_argos.server.resume`: the ring of recent frames, resume and backfill requests;
- :mod:`~gr_argos.server.registry`: one server per host and port for the sinks of a process.

Imports run one way: the server builds connections and routes and hands them what they need;
neither imports the server.
"""

from __future__ import annotations

from gr_argos.server.config import ServerConfig, ServerError
from gr_argos.server.registry import acquire_server, release_server
from gr_argos.server.spectrum_server import SpectrumServer, http_url

__all__ = ["ServerConfig", "ServerError", "SpectrumServer", "acquire_server", "http_url",
           "release_server"]
