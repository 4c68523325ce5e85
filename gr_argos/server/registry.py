# SPDX-License-Identifier: GPL-3.0-or-later
"""Servers shared by the sinks of one process: one server per host and port.

Several sinks in one flowgraph (a spectrum and a sweep, say) name the same host and port
and so serve their streams on one port, each with its own ``stream_id``.
"""

from __future__ import annotations

import logging
import threading

from gr_argos.server.config import ServerConfig
from gr_argos.server.spectrum_server import SpectrumServer

__all__ = ["acquire_server", "release_server"]

log = logging.getLogger(__name__)

_shared_lock = threading.Lock()
_shared: dict[tuple[str, int], tuple[SpectrumServer, int]] = {}


def acquire_server(config: ServerConfig) -> SpectrumServer:
    """A running server for ``config``, shared by every sink that asks for the same host:port.

    Several sinks in one flowgraph (a spectrum and a sweep, say) can so serve their streams on
    one port. Port 0 always gets a server of its own. Release it with :func:`release_server`.

    Raises:
        ServerError: the server could not start.
    """
    key = (config.host, config.port)
    with _shared_lock:
        if config.port != 0 and key in _shared:
            server, users = _shared[key]
            if server.config != config:
                log.warning("sinks sharing %s:%d have different settings; the first one's "
                            "apply: %s", config.host, config.port, server.config)
            _shared[key] = (server, users + 1)
            return server
        server = SpectrumServer(config)
        server.start()
        _shared[(config.host, server.port)] = (server, 1)
        return server


def release_server(server: SpectrumServer) -> None:
    """Give back a server from :func:`acquire_server`; the last user stops it."""
    with _shared_lock:
        for key, (shared, users) in list(_shared.items()):
            if shared is server:
                if users > 1:
                    _shared[key] = (shared, users - 1)
                    return
                del _shared[key]
                break
    server.stop()
