# SPDX-License-Identifier: GPL-3.0-or-later
"""gr-argos: live RF spectrum from GNU Radio flowgraphs to WebSocket clients.

The pure core (:mod:`gr_argos.protocol`, :mod:`gr_argos.server`, :mod:`gr_argos.client`)
imports no GNU Radio, so clients and gateways run without it. The GNU
Radio blocks load on first use: ``from gr_argos import websocket_sink`` gives the block class,
as GNU Radio Companion expects, without importing GNU Radio for the rest of the package.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

__version__ = "0.1.0"

# The dependencies a CMake install put beside the package, because the Python it was
# installed for lacked them (CMakeLists.txt, ARGOS_BUNDLE_DEPS): first on the path, ahead of
# a system package too old for gr-argos (Debian 12's websockets 10.4).
_DEPS = os.path.join(os.path.dirname(__file__), "_deps")
if os.path.isdir(_DEPS) and _DEPS not in sys.path:
    sys.path.insert(0, _DEPS)

# Block name -> module that defines it (one block per module, named like the block).
_BLOCKS = {
    "websocket_sink": "gr_argos.websocket_sink",
    "zmq_sink": "gr_argos.zmq_sink",
    "sim_band_source": "gr_argos.sim_band_source",
    "gpsd_source": "gr_argos.gpsd_source",
    "retune_sweep": "gr_argos.retune_sweep",
    "hackrf_sweep_source": "gr_argos.hackrf_sweep_source",
    "spectrum_detector": "gr_argos.spectrum_detector",
    "sigmf_sink": "gr_argos.sigmf_sink",
    "sigmf_source": "gr_argos.sigmf_source",
}

# Helpers for GRC expressions (a Variable block), loaded on first use like the blocks.
_HELPERS = {
    "sweep_bins": "gr_argos.retune_sweep",
    "sigmf_rate_and_freq": "gr_argos.recording.sigmf_reader",
}

__all__ = ["__version__", *_BLOCKS, *_HELPERS]


def __getattr__(name: str) -> Any:
    module_name = _BLOCKS.get(name) or _HELPERS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'gr_argos' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)


class _Package(types.ModuleType):
    """Resolves a block name to its class even after Python bound the name to its module.

    Importing ``gr_argos.websocket_sink`` sets the package attribute ``websocket_sink`` to the
    module; a block's name must still mean the block.
    """

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name in _BLOCKS and isinstance(value, types.ModuleType):
            return getattr(value, name)
        return value


sys.modules[__name__].__class__ = _Package
