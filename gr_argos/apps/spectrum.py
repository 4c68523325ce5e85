"""``argos-spectrum``: a headless live-spectrum server for a HackRF, any osmosdr device, an IQ
recording or the built-in simulated band.

    argos-spectrum --source sim
    argos-spectrum --source hackrf --center-freq 433.92e6 --samp-rate 10e6 --host 0.0.0.0
    argos-spectrum --config field.yaml --port 9000

Exit codes: 0 stopped by SIGINT/SIGTERM (or the source ended); 1 the source or server failed
(no device, port in use, ...); 2 bad flags or configuration.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from gr_argos.config import ConfigError, Setting, add_settings, resolve_settings

__all__ = ["SETTINGS", "SpectrumFlowgraph", "argument_parser", "main"]

log = logging.getLogger("argos-spectrum")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _positive(value: float) -> str | None:
    return None if value > 0 and math.isfinite(value) else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 and math.isfinite(value) else "must be 0 or more"


def _fft_size(value: int) -> str | None:
    return None if 16 <= value <= 65536 else "must be between 16 and 65536"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be between 0 and 65535 (0 = any free port)"


def _alpha(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1]; 1 turns averaging off"


def _source(value: str) -> str | None:
    kind = value.split("=", 1)[0]
    if value == "sim" or kind in ("hackrf", "osmosdr", "file"):
        if kind in ("osmosdr", "file") and not value.partition("=")[2]:
            return f"--source {kind}= needs a value, e.g. {kind}={'rtl=0' if kind == 'osmosdr' else 'capture.cfile'}"
        return None
    return "expected sim, hackrf[=ARGS], osmosdr=ARGS or file=PATH"


SOURCE = "source"
SPECTRUM = "spectrum"
HACKRF = "HackRF / osmosdr gains"
SERVER = "server"

SETTINGS: tuple[Setting, ...] = (
    Setting("source", str, "sim",
            "sim | hackrf[=ARGS] | osmosdr=ARGS | file=PATH (raw complex64 IQ, paced at "
            "--samp-rate)", check=_source, group=SOURCE),
    Setting("center_freq", float, 100e6, "centre frequency in Hz", check=_positive,
            group=SOURCE),
    Setting("samp_rate", float, 8e6, "sample rate in samples/s (= span of the spectrum in Hz)",
            check=_positive, aliases=("rate",), group=SOURCE),
    Setting("lna_gain", float, 16.0, "HackRF LNA (IF) gain in dB, 0-40 in 8 dB steps",
            check=_non_negative, group=HACKRF),
    Setting("vga_gain", float, 20.0, "HackRF VGA (baseband) gain in dB, 0-62 in 2 dB steps",
            check=_non_negative, group=HACKRF),
    Setting("amp", bool, False, "HackRF RF amplifier (+14 dB)", group=HACKRF),
    Setting("bandwidth", float, 0.0, "baseband filter bandwidth in Hz (0 = automatic)",
            check=_non_negative, group=HACKRF),
    Setting("fft_size", int, 2048, "bins per spectrum", check=_fft_size, group=SPECTRUM),
    Setting("fps", float, 30.0, "spectrum frames per second", check=_positive, group=SPECTRUM),
    Setting("avg_alpha", float, 0.5,
            "averaging factor per frame (1 = no averaging, smaller = smoother)", check=_alpha,
            group=SPECTRUM),
    Setting("host", str, "127.0.0.1",
            "address to listen on (0.0.0.0 = every interface)", group=SERVER),
    Setting("port", int, 8765, "TCP port for WebSocket, browser and /healthz (0 = any free)",
            check=_port, group=SERVER),
    Setting("queue_depth", int, 8,
            "spectrum frames queued per client before its oldest is dropped",
            check=lambda v: None if v >= 1 else "must be at least 1", group=SERVER),
    Setting("message_queue_depth", int, 256,
            "JSON messages queued per client before it is closed as too slow",
            check=lambda v: None if v >= 1 else "must be at least 1", group=SERVER),
    Setting("ping_interval", float, 20.0, "seconds between WebSocket pings (0 = off)",
            check=_non_negative, group=SERVER),
    Setting("ping_timeout", float, 20.0, "seconds without a pong before a client is dropped",
            check=_non_negative, group=SERVER),
    Setting("log_level", str, "info", "log level",
            choices=("debug", "info", "warning", "error"), group=SERVER),
)


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


def _open_osmosdr(source: str, settings: dict[str, Any]) -> Any:
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


def _make_flowgraph_class() -> type:
    from gnuradio import gr
    from gnuradio.fft import logpwrfft

    from gr_argos.sim_band_source import sim_band_source
    from gr_argos.websocket_sink import websocket_sink

    class SpectrumFlowgraph(gr.top_block):
        """source -> GNU Radio log-power FFT at ``fps`` -> websocket_sink."""

        def __init__(self, settings: dict[str, Any]) -> None:
            gr.top_block.__init__(self, "argos-spectrum", catch_exceptions=True)
            if settings["source"] == "sim":
                self.source = sim_band_source(samp_rate=settings["samp_rate"])
            else:
                self.source = _open_osmosdr(settings["source"], settings)
            self.fft = logpwrfft.logpwrfft_c(
                sample_rate=settings["samp_rate"],
                fft_size=settings["fft_size"],
                ref_scale=2.0,
                frame_rate=settings["fps"],
                avg_alpha=settings["avg_alpha"],
                average=settings["avg_alpha"] < 1.0,
                shift=True,
            )
            self.sink = websocket_sink(
                vlen=settings["fft_size"],
                center_freq=settings["center_freq"],
                samp_rate=settings["samp_rate"],
                host=settings["host"],
                port=settings["port"],
                fps=settings["fps"],
                queue_depth=settings["queue_depth"],
                message_queue_depth=settings["message_queue_depth"],
                ping_interval=settings["ping_interval"],
                ping_timeout=settings["ping_timeout"],
            )
            self.connect(self.source, self.fft, self.sink)

    return SpectrumFlowgraph


def __getattr__(name: str) -> Any:
    # The top block class needs GNU Radio; build it only when asked for.
    if name == "SpectrumFlowgraph":
        return _make_flowgraph_class()
    raise AttributeError(name)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argos-spectrum",
        description="Stream live spectrum from a HackRF, an osmosdr device, an IQ file or a "
                    "simulated band to WebSocket clients and browsers.",
        epilog="Every setting can also be given in a YAML file (--config) under the same name, "
               "e.g. 'center_freq: 433.92e6'; flags override the file. Exit codes: 0 stopped, "
               "1 source or server failure, 2 bad flags or configuration.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE.yaml",
                        help="YAML file of settings (keys: the names below)")
    add_settings(parser, SETTINGS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    try:
        settings = resolve_settings(args, SETTINGS, args.config)
    except ConfigError as exc:
        print(f"argos-spectrum: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=settings["log_level"].upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # websockets logs every connection at INFO; gr_argos.server already says what matters.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, logging.root.level))

    from gr_argos.server import ServerError

    try:
        flowgraph = _make_flowgraph_class()(settings)
    except (SourceError, ServerError) as exc:
        print(f"argos-spectrum: {exc}", file=sys.stderr)
        return EXIT_FAILURE

    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    flowgraph.start()
    url = flowgraph.sink.url
    print(f"argos-spectrum: streaming {settings['source']} at "
          f"{settings['center_freq'] / 1e6:g} MHz, {settings['samp_rate'] / 1e6:g} MS/s, "
          f"{settings['fft_size']} bins, {settings['fps']:g} frames/s", flush=True)
    print(f"argos-spectrum: connect to {url}  (try: argos-client {url}; "
          f"health: {url.replace('ws://', 'http://')}healthz)", flush=True)
    if settings["host"] in ("0.0.0.0", "::"):
        log.warning("listening on every interface without authentication")

    # The flowgraph ends on its own only if a source ends; otherwise wait for a signal.
    finished = threading.Event()
    waiter = threading.Thread(target=lambda: (flowgraph.wait(), finished.set()), daemon=True)
    waiter.start()
    while not stop_requested.is_set() and not finished.is_set():
        stop_requested.wait(0.2)
    flowgraph.stop()
    flowgraph.wait()
    print("argos-spectrum: stopped", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
