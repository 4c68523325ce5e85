# SPDX-License-Identifier: GPL-3.0-or-later
"""Plot results and print the markdown tables for docs/performance.md.

    .venv/bin/python -m benchmarks.report RESULTS.json [--png docs/performance.png] [--bins 4096]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.run import table


def plot(results: list[dict[str, Any]], png: Path, title: str, bins: int | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("bytes_per_frame", "bytes on the wire per frame", True),
        ("cpu_s_per_1000", "server CPU s per 1000 deliveries (30 fps)", True),
        ("sat_deliveries_per_s", "deliveries/s at saturation", True),
        ("p99_ms", "p99 latency publish -> client (ms, 30 fps)", True),
    )
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    bins = bins or sorted({r["bins"] for r in results})[0]
    names = list(dict.fromkeys(r["scenario"] for r in results))
    for ax, (key, label, log) in zip(axes.flat, panels):
        for name in names:
            rows = sorted((r for r in results if r["scenario"] == name and r["bins"] == bins
                           and r.get(key) is not None), key=lambda r: r["clients"])
            if rows:
                ax.plot([r["clients"] for r in rows], [r[key] for r in rows], "o-", label=name)
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("clients (N)")
        ax.set_title(label, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(f"{title} ({bins} bins)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(png, dpi=90)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--bins", type=int, help="bins to plot (default: the smallest)")
    parser.add_argument("--title", default="gr-argos vs JSON baseline vs socket ceiling")
    args = parser.parse_args(argv)
    info = json.loads(args.results.read_text())
    print("machine:", json.dumps(info["machine"]))
    print("command:", info["command"], "| steady", info["steady_s"], "s, saturation",
          info["saturation_s"], "s")
    print(table(info["results"]))
    if args.png:
        plot(info["results"], args.png, args.title, args.bins)


if __name__ == "__main__":
    main()
