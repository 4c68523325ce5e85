# SPDX-License-Identifier: GPL-3.0-or-later
"""``argos-replay``: serve a recording over the same protocol and viewer as the live stream.

    argos-replay /var/lib/argos/rec
    argos-replay rec/argos-20261207T054700Z-000001.args --speed 4 --loop --port 9000

The recording is a server's ``record_dir`` (every segment in it, oldest first) or one
segment. Clients pause, play, seek and change the speed with ``replay`` messages
(docs/recording.md); every ``status`` message says it is a replay.

Exit codes: 0 stopped by SIGINT/SIGTERM (or the replay ended); 1 the recording cannot be read
or the server failed; 2 bad flags or configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from gr_argos.apps.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    LogSettings,
    connect_line,
    setup_logging,
    stop_event_on_signals,
)
from gr_argos.recording.files import RecordingError
from gr_argos.replay import RecordingPlayer, ReplaySettings, streams_of
from gr_argos.server.config import RECORDING, ServerConfig, ServerError
from gr_argos.settings import ConfigError, Setting, add_flags, declared, resolve

__all__ = ["SETTINGS", "argument_parser", "main"]

log = logging.getLogger("argos-replay")

#: Every setting of argos-replay, in ``--help`` order: the replay's, then the server's
#: (those of argos-spectrum, recording aside).
SETTINGS: tuple[Setting, ...] = (
    *declared(ReplaySettings),
    *(s for s in declared(ServerConfig, exclude=("reuse_port", "write_limit"))
      if s.group != RECORDING),
    *declared(LogSettings),
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argos-replay",
        description="Serve a gr-argos recording (a record_dir, or one .args file) to "
                    "WebSocket clients and browsers, as the live stream was served.",
        epilog="Every setting can also be given in a YAML file (--config). Exit codes: 0 "
               "stopped, 1 recording or server failure, 2 bad flags or configuration.",
    )
    parser.add_argument("path", type=Path, metavar="PATH",
                        help="the recording: a record_dir or one of its .args files")
    parser.add_argument("--config", type=Path, metavar="FILE.yaml",
                        help="YAML file of settings (keys: the names below)")
    add_flags(parser, SETTINGS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    try:
        settings = resolve(args, SETTINGS, args.config)
        replay = ReplaySettings(**{s.name: settings[s.name] for s in declared(ReplaySettings)})
        config = ServerConfig(**{s.name: settings[s.name] for s in SETTINGS
                                 if s.name in ServerConfig.__dataclass_fields__})
    except ConfigError as exc:
        print(f"argos-replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(settings["log_level"])

    from gr_argos.server import SpectrumServer

    players: list[RecordingPlayer] = []
    server = SpectrumServer(config, handlers={"replay": lambda m: players[0].control(m)})
    try:
        streams = streams_of(args.path)
        player = RecordingPlayer(args.path, server, replay)
        players.append(player)
        for info in streams:
            server.add_stream(info)
        server.start()
    except (RecordingError, ServerError) as exc:
        print(f"argos-replay: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    stop_requested = stop_event_on_signals()
    try:
        player.start()
        duration_s = (player.end_ns - player.start_ns) / 1e9
        print(f"argos-replay: replaying {args.path} ({duration_s:.1f} s, "
              f"{len(streams)} stream{'s' if len(streams) > 1 else ''}) at "
              f"{replay.speed:g}x{', looping' if replay.loop else ''}"
              f"{', paused' if replay.paused else ''}", flush=True)
        print(connect_line("argos-replay", server.url), flush=True)
        while not stop_requested.is_set() and not player.finished.is_set():
            stop_requested.wait(0.2)
        if player.finished.is_set() and not stop_requested.is_set():
            print(f"argos-replay: the recording ended ({player.frames_published} frames)",
                  flush=True)
    finally:
        player.stop()
        server.stop()
    print("argos-replay: stopped", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
