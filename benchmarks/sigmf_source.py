# SPDX-License-Identifier: GPL-3.0-or-later
"""Playing a SigMF recording: what ``sigmf_source`` costs, against gr-osmosdr's ``file=``.

    .venv/bin/python -m benchmarks.sigmf_source                    # 20 MS/s, 3 x 10 s
    .venv/bin/python -m benchmarks.sigmf_source --rate 8e6 --seconds 5

A recording of one second of noise (cf32_le, two capture segments, in a temporary directory
under /var/tmp) plays, throttled at ``--rate``, into a ``null_sink`` for ``--seconds``, three
ways: GNU Radio's ``file_source`` + ``throttle`` alone (``file_source``), gr-osmosdr's
``file=`` source, as ``argos-spectrum --source file=`` plays it (``osmosdr file=``), and
``sigmf_source`` (``sigmf_source``: the same two blocks, and its Python block tagging the
capture segments). Per run: the process's CPU (utime + stime from /proc) as a share of one
core, the samples per second delivered, and ``uptime``'s load. Results: docs/performance.md,
"Playing a SigMF recording".
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from gnuradio import blocks, gr

from benchmarks.iq_recording import process_cpu_s, uptime
from gr_argos.sigmf_source import sigmf_source


def write_recording(directory: Path, rate: float) -> Path:
    """One second of noise at ``rate`` as a cf32_le recording with two capture segments."""
    count = int(rate)
    noise = np.random.default_rng(1).standard_normal(2 * count).astype(np.float32) * 0.1
    data = directory / "noise.sigmf-data"
    noise.view(np.complex64).tofile(data)
    meta = data.with_suffix(".sigmf-meta")
    meta.write_text(json.dumps({
        "global": {"core:datatype": "cf32_le", "core:sample_rate": rate,
                   "core:version": "1.2.0"},
        "captures": [{"core:sample_start": 0, "core:frequency": 100e6},
                     {"core:sample_start": count // 2, "core:frequency": 101e6}]}))
    return meta


def source_for(way: str, meta: Path, rate: float) -> list[Any]:
    data = str(meta.with_suffix(".sigmf-data"))
    if way == "file_source":
        return [blocks.file_source(gr.sizeof_gr_complex, data, True),
                blocks.throttle(gr.sizeof_gr_complex, rate, True)]
    if way == "osmosdr file=":
        import osmosdr

        return [osmosdr.source(f"file={data},rate={rate:g},repeat=true,throttle=true")]
    return [sigmf_source(path=str(meta))]


def run(way: str, meta: Path, rate: float, seconds: float) -> dict[str, Any]:
    top = gr.top_block("sigmf-source-benchmark")
    chain = source_for(way, meta, rate)
    probe = blocks.probe_rate(gr.sizeof_gr_complex, 500.0, 0.15)
    top.connect(*chain, blocks.null_sink(gr.sizeof_gr_complex))
    top.connect(chain[-1], probe)
    load_before = uptime()
    top.start()
    time.sleep(1.0)  # past the start
    cpu_before, wall_before = process_cpu_s(), time.monotonic()
    time.sleep(seconds)
    cpu_s, wall_s = process_cpu_s() - cpu_before, time.monotonic() - wall_before
    delivered = probe.rate()
    top.stop()
    top.wait()
    return {"run": way, "cpu_share": round(cpu_s / wall_s, 3),
            "samples_per_s": round(delivered), "load_before": load_before,
            "load_after": uptime()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20e6, help="samples per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per run")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="argos-sigmf-bench-", dir="/var/tmp"))
    try:
        meta = write_recording(directory, args.rate)
        results = [run(way, meta, args.rate, args.seconds)
                   for way in ("file_source", "osmosdr file=", "sigmf_source")]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
