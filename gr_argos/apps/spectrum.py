# SPDX-License-Identifier: GPL-3.0-or-later
"""``argos-spectrum``: a headless live-spectrum server for a HackRF, any osmosdr device, an IQ
recording (raw or SigMF), the built-in simulated band or a wideband HackRF sweep
(hackrf_sweep).

    argos-spectrum --source sim
    argos-spectrum --source sweep --freq-min 2400e6 --freq-max 2500e6 --bins 1024
    argos-spectrum --source hackrf --center-freq 433.92e6 --samp-rate 10e6 --host 0.0.0.0
    argos-spectrum --source sigmf=argos-iq-20261207T130000Z-000001.sigmf-meta
    argos-spectrum --config field.yaml --port 9000

Exit codes: 0 stopped by SIGINT/SIGTERM (or the source ended); 1 the source or server failed
(no device, port in use, ...); 2 bad flags or configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gr_argos.apps.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    LogSettings,
    connect_line,
    setup_logging,
    stop_event_on_signals,
)
from gr_argos.apps.sources import SIGMF_SUFFIXES, SourceError, take_recording_settings
from gr_argos.detectors import DetectorSettings
from gr_argos.gpsd import parse_address
from gr_argos.recording.files import SEGMENT_SUFFIX
from gr_argos.recording.sigmf import IqRecordSettings
from gr_argos.server.config import SERVER, ServerConfig, ServerError
from gr_argos.settings import (
    ConfigError,
    Setting,
    add_flags,
    declared,
    non_negative,
    resolve,
    setting,
)
from gr_argos.stream import StreamSettings
from gr_argos.sweep import HACKRF, SweepSettings
from gr_argos.zmq_transport import PublisherSettings

__all__ = ["AppSettings", "SETTINGS", "argument_parser", "check_combination", "main"]

log = logging.getLogger("argos-spectrum")

SOURCE = "source"
GPS = "GPS"


def _source(value: str) -> str | None:
    kind, _, argument = value.partition("=")
    path = argument if kind in ("file", "sigmf") else value
    if path.endswith(SEGMENT_SUFFIX) or (
            os.path.isdir(path) and any(Path(path).glob("*" + SEGMENT_SUFFIX))):
        return (f"{path} is a gr-argos recording of spectra, not of IQ samples: serve it with "
                f"argos-replay {path} (--source takes IQ: file=PATH or a SigMF recording)")
    if value in ("sim", "sweep") or kind in ("hackrf", "osmosdr", "file", "sigmf"):
        if kind in ("osmosdr", "file", "sigmf") and not argument:
            example = {"osmosdr": "rtl=0", "file": "capture.cfile",
                       "sigmf": "capture.sigmf-meta"}[kind]
            return f"--source {kind}= needs a value, e.g. {kind}={example}"
        return None
    return "expected sim, sweep, hackrf[=ARGS], osmosdr=ARGS, file=PATH or sigmf=PATH"


def _sigmf_path_as_source(value: object) -> object:
    """A SigMF recording's path given alone (``rec.sigmf-meta``) as ``sigmf=rec.sigmf-meta``."""
    if isinstance(value, str) and value.endswith(SIGMF_SUFFIXES) and not value.startswith(
            ("sigmf=", "file=")):
        return f"sigmf={value}"
    return value


def _gps_address(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_address(value)
    except ValueError:
        return "expected HOST:PORT of a gpsd, e.g. 127.0.0.1:2947 (empty = no GPS)"
    return None


@dataclass(frozen=True)
class AppSettings:
    """The settings only argos-spectrum has: the source, the spectrum chain, GPS, transport.

    The app's other settings are the stream's (:class:`~gr_argos.stream.StreamSettings`), the
    HackRF's and hackrf_sweep's (:class:`~gr_argos.sweep.SweepSettings`), and the server's
    (:class:`~gr_argos.server.ServerConfig`) or the publisher's.
    """

    source: str = setting("sim", "sim | sweep | hackrf[=ARGS] | osmosdr=ARGS | file=PATH (raw "
                          "complex64 IQ, paced at --samp-rate) | sigmf=PATH (a SigMF "
                          "recording, at its recorded rate and frequencies)", check=_source,
                          convert=_sigmf_path_as_source, group=SOURCE)
    bandwidth: float = setting(0.0, "baseband filter bandwidth in Hz (0 = automatic)",
                               check=non_negative, group=HACKRF)
    gps: str = setting("", "HOST:PORT of a gpsd whose fixes go to clients as 'gps' messages "
                       "(empty = off)", check=_gps_address, group=GPS)
    transport: str = setting("websocket", "websocket = serve clients from this process; zmq = "
                             "publish on --zmq-endpoint for argos-gateway processes "
                             "(docs/zmq.md)", choices=("websocket", "zmq"), group=SERVER)


#: Every setting of argos-spectrum, in ``--help`` order.
SETTINGS: tuple[Setting, ...] = (
    *declared(AppSettings, only=("source",)),
    *declared(DetectorSettings, only=("samp_rate",)),
    *declared(SweepSettings, only=("lna_gain", "vga_gain", "amp")),
    *declared(AppSettings, only=("bandwidth",)),
    *declared(SweepSettings, only=("freq_min", "freq_max", "bin_width", "sweep_executable")),
    *declared(StreamSettings, only=("bins", "center_freq", "fps", "encoding", "step_db",
                                    "status_interval_s"),
              defaults={"center_freq": 100e6}),
    *declared(StreamSettings, only=("detect", "detect_threshold_db", "detect_min_bandwidth_hz",
                                    "detect_min_duration_s", "detect_ranges", "detect_log"),
              defaults={"detect": True}),
    *declared(DetectorSettings, only=("detector", "second_detector", "window", "overlap",
                                      "avg_alpha"),
              defaults={"second_detector": "average"}),
    *declared(AppSettings, only=("gps", "transport")),
    *declared(ServerConfig, exclude=("reuse_port", "write_limit")),
    *declared(IqRecordSettings),
    *declared(PublisherSettings),
    *declared(LogSettings),
)


def check_combination(settings: dict[str, Any]) -> None:
    """Raise ConfigError for settings that are fine alone but not together: a sweep's
    freq_min not below its freq_max, or bins and fps that the spectrum's FFTs cannot have
    at samp_rate.

    With ``transport`` zmq, the publisher's settings are checked together too (CURVE keys
    given in full, plain ZeroMQ only where ``zmq_trusted_network`` allows it).

    A ``second_detector`` equal to the ``detector`` (``--detector average`` with the
    default second trace, the average) leaves one trace: it is set to none here.
    """
    if settings["second_detector"] == settings["detector"]:
        settings["second_detector"] = ""
    if settings["transport"] == "zmq":
        try:
            PublisherSettings(**{s.name: settings[s.name] for s in declared(PublisherSettings)})
        except ConfigError as exc:
            raise ConfigError(str(exc).removeprefix("PublisherSettings: ")) from None
    if settings["source"] == "sweep":
        if settings["record_iq_dir"]:
            raise ConfigError("--record-iq-dir records IQ samples, and --source sweep has "
                              "none (hackrf_sweep gives spectra): use --record-dir, or "
                              "another source")
        if not settings["freq_min"] < settings["freq_max"]:
            raise ConfigError(f"--freq-min ({settings['freq_min']:g}) must be below "
                              f"--freq-max ({settings['freq_max']:g})")
        return
    try:
        detector_settings(settings)
    except ConfigError as exc:
        raise ConfigError(str(exc).removeprefix("DetectorSettings: ")) from None


def detector_settings(settings: dict[str, Any]) -> DetectorSettings:
    """The every-sample spectrum's settings out of the app's."""
    return DetectorSettings(**{s.name: settings[s.name] for s in declared(DetectorSettings)
                               if s.name in settings})


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argos-spectrum",
        description="Stream live spectrum from a HackRF, an osmosdr device, an IQ file or "
                    "SigMF recording, a simulated band or a wideband HackRF sweep to "
                    "WebSocket clients and browsers.",
        epilog="Every setting can also be given in a YAML file (--config) under the same name, "
               "e.g. 'center_freq: 433.92e6'; flags override the file. Exit codes: 0 stopped, "
               "1 source or server failure, 2 bad flags or configuration.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE.yaml",
                        help="YAML file of settings (keys: the names below)")
    add_flags(parser, SETTINGS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    given: set[str] = set()
    try:
        settings = resolve(args, SETTINGS, args.config, given)
        take_recording_settings(settings, given)
        check_combination(settings)
    except ConfigError as exc:
        print(f"argos-spectrum: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SourceError as exc:
        print(f"argos-spectrum: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    setup_logging(settings["log_level"])

    from gr_argos.apps.spectrum_flowgraph import SpectrumFlowgraph

    try:
        flowgraph = SpectrumFlowgraph(settings)
    except (SourceError, ServerError) as exc:
        print(f"argos-spectrum: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ConfigError as exc:  # a key file named by a setting
        print(f"argos-spectrum: {exc}", file=sys.stderr)
        return EXIT_USAGE

    # The sources' drivers say they dropped samples with an "O" on stderr: count them into
    # every status message ("overflows").
    from gr_argos.apps.overflows import OverflowCounter

    sink = flowgraph.sink
    sink.set_source_status({"overflows": 0})
    overflows = OverflowCounter(lambda total: sink.set_source_status({"overflows": total}))
    overflows.start()
    try:
        serve(flowgraph, settings)
    finally:  # stderr back before anything else is written (a traceback included)
        overflows.stop()
    print("argos-spectrum: stopped", flush=True)
    return EXIT_OK


def serve(flowgraph: Any, settings: dict[str, Any]) -> None:
    """Run the flowgraph, say where it serves, and stop it on a signal or when it ends."""
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
              f"{settings['bins']} bins, {settings['fps']:g} frames/s", flush=True)
    if settings["record_iq_dir"]:
        print(f"argos-spectrum: recording the IQ samples as SigMF to {settings['record_iq_dir']}",
              flush=True)
    if settings["transport"] == "zmq":
        from gr_argos.zmq_transport import gateway_command

        print(f"argos-spectrum: publishing on {url}  (serve it with: "
              f"{gateway_command(url, settings['zmq_secret_key'])})", flush=True)
    else:
        print(connect_line("argos-spectrum", url), flush=True)

    # The flowgraph ends on its own only if a source ends (its sink stops then); otherwise
    # wait for a signal. No thread waits in flowgraph.wait() meanwhile: a client's change
    # (rebuild_spectrum) stops and starts the flowgraph, which would end that wait.
    while not stop_requested.is_set() and not flowgraph.sink.stopped:
        stop_requested.wait(0.2)
    flowgraph.stop()
    flowgraph.wait()


if __name__ == "__main__":
    sys.exit(main())
