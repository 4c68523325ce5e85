# SPDX-License-Identifier: GPL-3.0-or-later
"""``argos-export``: a recording's frames as CSV, in the layout of rtl_power and hackrf_sweep.

    argos-export /var/lib/argos/rec > spectrum.csv
    argos-export rec --stream 1 --from-s 60 --to-s 120 --output band.csv

Exit codes: 0 done; 1 the recording cannot be read; 2 bad flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence, TextIO

from gr_argos.apps.common import EXIT_FAILURE, EXIT_OK
from gr_argos.protocol import ProtocolError
from gr_argos.recording.export import write_csv
from gr_argos.recording.files import RecordingError, read_recording, read_sidecar, segments

__all__ = ["argument_parser", "main"]


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argos-export",
        description="Write the frames of one stream of a gr-argos recording as CSV lines "
                    "'date, time, hz_low, hz_high, hz_bin_width, num_samples, dB, ...' (the "
                    "layout of rtl_power and hackrf_sweep).",
        epilog="Exit codes: 0 done, 1 the recording cannot be read, 2 bad flags.")
    parser.add_argument("path", type=Path, metavar="PATH",
                        help="the recording: a record_dir or one of its .args files")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE.csv",
                        help="write here instead of standard output")
    parser.add_argument("--stream", type=int, metavar="ID",
                        help="the stream id (default: the first stream recorded)")
    parser.add_argument("--from-s", type=float, default=0.0, metavar="SECONDS",
                        help="start this many seconds into the recording")
    parser.add_argument("--to-s", type=float, default=None, metavar="SECONDS",
                        help="stop this many seconds into the recording (default: its end)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    try:
        first = segments(args.path)[0]
        start_ns = read_sidecar(first).get("start_ns")
        if not isinstance(start_ns, int):
            start_ns = next(iter(read_recording(args.path))).time_ns
        records = read_recording(args.path, start_ns + round(args.from_s * 1e9))
        if args.to_s is not None:
            end_ns = start_ns + round(args.to_s * 1e9)
            records = (r for r in records if r.time_ns <= end_ns)
        out: TextIO = sys.stdout if args.output is None else args.output.open(
            "w", encoding="ascii")
        try:
            count = write_csv(records, out, args.stream)
        finally:
            if out is not sys.stdout:
                out.close()
    except (RecordingError, ProtocolError, StopIteration, OSError) as exc:
        print(f"argos-export: {exc or 'the recording holds no record'}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"argos-export: {count} frames", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
