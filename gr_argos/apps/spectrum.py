"""``argos-spectrum``: a headless live-spectrum server for a HackRF, any osmosdr device, an IQ
recording, the built-in simulated band or a wideband HackRF sweep (hackrf_sweep).

    argos-spectrum --source sim
    argos-spectrum --source sweep --freq-min 2400e6 --freq-max 2500e6 --bins 1024
    argos-spectrum --source hackrf --center-freq 433.92e6 --samp-rate 10e6 --host 0.0.0.0
    argos-spectrum --config field.yaml --port 9000

Exit codes: 0 stopped by SIGINT/SIGTERM (or the source ended); 1 the source or server failed
(no device, port in use, ...); 2 bad flags or configuration.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from gr_argos.apps.common import connect_line, setup_logging, stop_event_on_signals
from gr_argos.config import ConfigError, Setting, add_settings, resolve_settings
from gr_argos.gpsd import parse_address
from gr_argos.protocol import UINT8_STEP_DB_MAX, UINT8_STEP_DB_MIN

__all__ = ["SECURITY_SETTINGS", "SETTINGS", "SpectrumFlowgraph", "argument_parser", "main"]

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


def _sweep_freq(value: float) -> str | None:
    return None if 0 <= value <= 7250e6 else "must be between 0 and 7250e6 Hz"


def _bin_width(value: float) -> str | None:
    return None if 2445 <= value <= 5e6 else "must be between 2445 and 5e6 Hz (hackrf_sweep -w)"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be between 0 and 65535 (0 = any free port)"


def _alpha(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1]; 1 turns averaging off"


def _step_db(value: float) -> str | None:
    if value == 0 or UINT8_STEP_DB_MIN <= value <= UINT8_STEP_DB_MAX:
        return None
    return (f"must be 0 (automatic) or from {UINT8_STEP_DB_MIN:g} to {UINT8_STEP_DB_MAX:g} dB")


def _gps_address(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_address(value)
    except ValueError:
        return "expected HOST:PORT of a gpsd, e.g. 127.0.0.1:2947 (empty = no GPS)"
    return None


def _source(value: str) -> str | None:
    kind = value.split("=", 1)[0]
    if value in ("sim", "sweep") or kind in ("hackrf", "osmosdr", "file"):
        if kind in ("osmosdr", "file") and not value.partition("=")[2]:
            return f"--source {kind}= needs a value, e.g. {kind}={'rtl=0' if kind == 'osmosdr' else 'capture.cfile'}"
        return None
    return "expected sim, sweep, hackrf[=ARGS], osmosdr=ARGS or file=PATH"


SOURCE = "source"
SPECTRUM = "spectrum"
HACKRF = "HackRF / osmosdr gains"
SERVER = "server"
GPS = "GPS"
SWEEP = "wideband sweep (--source sweep)"
SECURITY = "security and limits (docs/operations.md)"


def _at_least(minimum: float) -> Any:
    return lambda value: None if value >= minimum else f"must be at least {minimum:g}"


#: Settings of the server's security and limits, also those of argos-gateway and the sink.
SECURITY_SETTINGS: tuple[Setting, ...] = (
    Setting("allowed_origins", str, "",
            "comma-separated browser origins allowed to connect, exact "
            "scheme://host[:port] (empty = any)", group=SECURITY),
    Setting("token", str, "",
            "shared secret clients must present (Authorization: Bearer header or a first "
            "auth message); empty = no authentication", group=SECURITY),
    Setting("allow_query_token", bool, False,
            "also accept the token as ?token= in the URL (it may land in proxy logs)",
            group=SECURITY),
    Setting("max_clients", int, 256, "clients served at once (0 = no limit); more get 503",
            check=_at_least(0), group=SECURITY),
    Setting("max_clients_per_ip", int, 32,
            "clients per address (0 = no limit); more get 429", check=_at_least(0),
            group=SECURITY),
    Setting("handshake_timeout", float, 10.0,
            "seconds to complete the WebSocket handshake and authenticate",
            check=_positive, group=SECURITY),
    Setting("max_messages_per_s", float, 10.0,
            "messages per second a client may send (0 = no limit); over it: closed with 1008",
            check=_non_negative, group=SECURITY),
    Setting("max_messages_burst", int, 20,
            "messages a client may send at once above that rate", check=_at_least(1),
            group=SECURITY),
    Setting("tls_cert", str, "",
            "PEM certificate (chain) file to serve TLS with: wss:// and https:// (empty = "
            "plain ws:// and http://); needs --tls-key", group=SECURITY),
    Setting("tls_key", str, "",
            "PEM private key file of --tls-cert (unencrypted; chmod 600)", group=SECURITY),
)

SETTINGS: tuple[Setting, ...] = (
    Setting("source", str, "sim",
            "sim | sweep | hackrf[=ARGS] | osmosdr=ARGS | file=PATH (raw complex64 IQ, paced "
            "at --samp-rate)", check=_source, group=SOURCE),
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
    Setting("freq_min", float, 2400e6, "start of the swept range in Hz", check=_sweep_freq,
            group=SWEEP),
    Setting("freq_max", float, 2500e6, "end of the swept range in Hz", check=_sweep_freq,
            group=SWEEP),
    Setting("bin_width", float, 1e6, "hackrf_sweep FFT bin width in Hz (-w)",
            check=_bin_width, group=SWEEP),
    Setting("bins", int, 1024, "bins per sweep frame",
            check=lambda v: None if v >= 1 else "must be at least 1", group=SWEEP),
    Setting("sweep_executable", str, "hackrf_sweep", "the hackrf_sweep program (name or path)",
            group=SWEEP),
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
    Setting("permessage_deflate", bool, False,
            "negotiate permessage-deflate with clients that offer it (compatibility; costs "
            "CPU and memory per client); never for ?compress=1 clients", group=SERVER),
    *SECURITY_SETTINGS,
    Setting("encoding", str, "float32",
            "frame encoding for clients that do not choose one: float32 (exact), int16 "
            "(0.005 dB) or uint8 (half a step of each frame's range)",
            choices=("float32", "int16", "uint8"), group=SERVER),
    Setting("step_db", float, 0.0,
            "with --encoding uint8: the step in dB for clients that do not choose one; 0 = "
            "automatic (each frame's range / 255), 0.01-20 = fixed, aligned levels (coarser "
            "deflates better; error half a step)", check=_step_db, group=SERVER),
    Setting("transport", str, "websocket",
            "websocket = serve clients from this process; zmq = publish on --zmq-endpoint "
            "for argos-gateway processes (docs/zmq.md)", choices=("websocket", "zmq"),
            group=SERVER),
    Setting("zmq_endpoint", str, "tcp://127.0.0.1:5555",
            "with --transport zmq: ZeroMQ endpoint to publish on (tcp://HOST:PORT or "
            "ipc://PATH)", group=SERVER),
    Setting("gps", str, "",
            "HOST:PORT of a gpsd whose fixes go to clients as 'gps' messages (empty = off)",
            check=_gps_address, group=GPS),
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


def check_sweep_range(settings: dict[str, Any]) -> None:
    """Raise ConfigError unless ``--source sweep`` has freq_min below freq_max."""
    if settings["source"] == "sweep" and not settings["freq_min"] < settings["freq_max"]:
        raise ConfigError(f"--freq-min ({settings['freq_min']:g}) must be below --freq-max "
                          f"({settings['freq_max']:g})")


def _open_sweep(settings: dict[str, Any]) -> Any:
    from gr_argos.hackrf_sweep_source import hackrf_sweep_source

    try:
        return hackrf_sweep_source(
            freq_min=settings["freq_min"],
            freq_max=settings["freq_max"],
            bin_width=settings["bin_width"],
            bins=settings["bins"],
            lna_gain=settings["lna_gain"],
            vga_gain=settings["vga_gain"],
            amp=settings["amp"],
            executable=settings["sweep_executable"],
        )
    except (FileNotFoundError, ValueError) as exc:
        raise SourceError(f"{exc}; or use --source sim") from exc


def source_status(settings: dict[str, Any]) -> dict[str, Any]:
    """What the periodic ``status`` message says about the source (no secrets in ``args``)."""
    kind = settings["source"].partition("=")[0]
    status: dict[str, Any] = {
        "source": kind,
        "samp_rate": settings["samp_rate"],
    }
    if kind != "sim":
        args = osmosdr_args(settings["source"], settings["samp_rate"])
        status["args"] = _SECRET_ARG.sub(r"\1=***", args)
    if kind == "hackrf":
        status.update(lna_gain=settings["lna_gain"], vga_gain=settings["vga_gain"],
                      amp=settings["amp"])
    if settings["bandwidth"]:
        status["bandwidth"] = settings["bandwidth"]
    return status


# Device-string parameters that may carry credentials (e.g. a remote SDR's password).
_SECRET_ARG = re.compile(r"\b(pass(?:word)?|key|token|secret|auth)=[^,\s]*", re.IGNORECASE)


def _make_flowgraph_class() -> type:
    from gnuradio import blocks, gr
    from gnuradio.fft import logpwrfft

    from gr_argos.sim_band_source import sim_band_source
    from gr_argos.websocket_sink import websocket_sink

    class SpectrumFlowgraph(gr.top_block):
        """source -> GNU Radio log-power FFT at ``fps`` -> websocket_sink."""

        def __init__(self, settings: dict[str, Any]) -> None:
            gr.top_block.__init__(self, "argos-spectrum", catch_exceptions=True)
            if settings["source"] == "sweep":
                self._build_sweep(settings)
            else:
                self._build_fft(settings)
            self._attach_gps(settings)

        def _build_fft(self, settings: dict[str, Any]) -> None:
            """source -> log-power FFT -> websocket_sink, with the sample rate measured."""
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
            self.sink = self._make_sink(settings, settings["fft_size"],
                                        settings["center_freq"], settings["samp_rate"])
            self.connect(self.source, self.fft, self.sink)
            # The sink's periodic status reports the rate the source really delivers.
            self.rate_probe = blocks.probe_rate(gr.sizeof_gr_complex, 1000.0, 0.15)
            self.connect(self.source, self.rate_probe)
            self.msg_connect(self.rate_probe, "rate", self.sink, "status")
            self.sink.set_source_status(source_status(settings))

        def _attach_gps(self, settings: dict[str, Any]) -> None:
            """gpsd_source -> the sink's msg port, if --gps names a gpsd. gpsd not running is
            not fatal: the block logs it and keeps retrying."""
            if not settings["gps"]:
                return
            from gr_argos.gpsd_source import gpsd_source

            host, port = parse_address(settings["gps"])
            self.gps = gpsd_source(host=host, port=port)
            self.msg_connect(self.gps, "gps", self.sink, "msg")

        def _build_sweep(self, settings: dict[str, Any]) -> None:
            """hackrf_sweep source -> websocket_sink: one frame per sweep, no FFT here."""
            self.source = _open_sweep(settings)
            self.sink = self._make_sink(
                settings, settings["bins"], (settings["freq_min"] + settings["freq_max"]) / 2,
                settings["freq_max"] - settings["freq_min"], stream_name="sweep")
            self.connect(self.source, self.sink)
            self.msg_connect(self.source, "status", self.sink, "status")

        @staticmethod
        def _make_sink(settings: dict[str, Any], bins: int, center_freq_hz: float,
                       span_hz: float, stream_name: str = "spectrum") -> Any:
            return websocket_sink(
                vlen=bins,
                center_freq=center_freq_hz,
                samp_rate=span_hz,
                host=settings["host"],
                port=settings["port"],
                stream_name=stream_name,
                fps=settings["fps"],
                queue_depth=settings["queue_depth"],
                message_queue_depth=settings["message_queue_depth"],
                ping_interval=settings["ping_interval"],
                ping_timeout=settings["ping_timeout"],
                msg_channel="gps",
                transport=settings["transport"],
                zmq_endpoint=settings["zmq_endpoint"],
                encoding=settings["encoding"],
                step_db=settings["step_db"],
                **{setting.name: settings[setting.name] for setting in SECURITY_SETTINGS},
                permessage_deflate=settings["permessage_deflate"],
            )

    return SpectrumFlowgraph


def __getattr__(name: str) -> Any:
    # The top block class needs GNU Radio; build it only when asked for.
    if name == "SpectrumFlowgraph":
        return _make_flowgraph_class()
    raise AttributeError(name)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argos-spectrum",
        description="Stream live spectrum from a HackRF, an osmosdr device, an IQ file, a "
                    "simulated band or a wideband HackRF sweep to WebSocket clients and "
                    "browsers.",
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
        check_sweep_range(settings)
    except ConfigError as exc:
        print(f"argos-spectrum: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings["log_level"])

    from gr_argos.server import ServerError

    try:
        flowgraph = _make_flowgraph_class()(settings)
    except (SourceError, ServerError) as exc:
        print(f"argos-spectrum: {exc}", file=sys.stderr)
        return EXIT_FAILURE

    stop_requested = stop_event_on_signals()
    flowgraph.start()
    url = flowgraph.sink.url
    if settings["source"] == "sweep":
        print(f"argos-spectrum: streaming sweep of {settings['freq_min'] / 1e6:g}-"
              f"{settings['freq_max'] / 1e6:g} MHz, {settings['bins']} bins, hackrf_sweep "
              f"bin width {settings['bin_width'] / 1e3:g} kHz", flush=True)
    else:
        print(f"argos-spectrum: streaming {settings['source']} at "
              f"{settings['center_freq'] / 1e6:g} MHz, {settings['samp_rate'] / 1e6:g} MS/s, "
              f"{settings['fft_size']} bins, {settings['fps']:g} frames/s", flush=True)
    if settings["transport"] == "zmq":
        print(f"argos-spectrum: publishing on {url}  (serve it with: argos-gateway --connect "
              f"{url})", flush=True)
    else:
        print(connect_line("argos-spectrum", url), flush=True)

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
