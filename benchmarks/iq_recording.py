# SPDX-License-Identifier: GPL-3.0-or-later
"""IQ recording (SigMF): what ``sigmf_sink`` costs, and whether it keeps up with a radio.

    .venv/bin/python -m benchmarks.iq_recording                     # 10 MS/s, 2 x 20 s
    .venv/bin/python -m benchmarks.iq_recording --rate 20e6 --seconds 10

A GNU Radio flowgraph, ``fastnoise_source_c`` -> ``throttle`` at ``--rate``, runs twice for
``--seconds``: into a ``null_sink`` (``off``), and into a ``sigmf_sink`` recording to
``--dir`` (default: a temporary directory under /var/tmp, on disk; deleted after) with its
default settings (``on``). Per run: the process's CPU (utime + stime from /proc over the
run) as a share of one core, the samples the source made, those written and those dropped
(the disk too slow: counted, never waited for), the bytes written, and ``uptime``'s load
before and after. Results: docs/performance.md, "IQ recording".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from gnuradio import analog, blocks, gr

from gr_argos.sigmf_sink import sigmf_sink


def process_cpu_s() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run(rate: float, seconds: float, directory: Path | None) -> dict[str, Any]:
    """One run: the flowgraph into a null sink (``directory`` None) or a sigmf_sink."""
    top = gr.top_block("iq-recording-benchmark")
    source = analog.fastnoise_source_c(analog.GR_GAUSSIAN, 0.1, 0, 8192)
    throttle = blocks.throttle(gr.sizeof_gr_complex, rate)
    head = blocks.head(gr.sizeof_gr_complex, int(rate * seconds))
    top.connect(source, throttle, head)
    sink: Any = (blocks.null_sink(gr.sizeof_gr_complex) if directory is None else
                 sigmf_sink(samp_rate=rate, center_freq=100e6, hw="benchmark",
                            record_iq_dir=str(directory)))
    top.connect(head, sink)
    load_before = uptime()
    cpu_before, wall_before = process_cpu_s(), time.monotonic()
    top.start()
    top.wait()
    top.stop()
    top.wait()
    cpu_s, wall_s = process_cpu_s() - cpu_before, time.monotonic() - wall_before
    result: dict[str, Any] = {"run": "off" if directory is None else "on",
                              "cpu_share": round(cpu_s / wall_s, 3),
                              "seconds": round(wall_s, 2), "samples": int(rate * seconds),
                              "load_before": load_before, "load_after": uptime()}
    if directory is not None:
        status = sink.recorder.status()
        result.update(written=status["samples"], dropped=status["dropped_samples"],
                      bytes=status["bytes"], files=status["files"], error=status["error"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10e6, help="samples per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per run")
    parser.add_argument("--dir", type=Path, help="where to record (default: under /var/tmp)")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="argos-iq-bench-", dir="/var/tmp"))
    try:
        results = [run(args.rate, args.seconds, None), run(args.rate, args.seconds, directory)]
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
