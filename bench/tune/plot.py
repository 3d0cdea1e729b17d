"""The tune's plot, drawn in the lab's load-generator image (matplotlib never
reaches `make test`'s venv), as bench/plots.py draws the lab's:

    python3 plot.py < tune.json > tune.png

Throughput against p95 for every candidate, the winner marked, the p95
target as a line; each point's whiskers are its min-max over the runs.
Standard library and matplotlib only.
"""

from __future__ import annotations

import io
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"sync": "#4c72b0", "gthread": "#55a868", "gevent": "#dd8452"}


def draw(results: dict) -> bytes:
    fig, ax = plt.subplots(figsize=(9, 6))
    classes = {c["key"]: c["worker_class"] for c in results["candidates"]}
    winner = (results["verdict"]["winner"] or {}).get("key")
    for row in results["verdict"]["table"]:
        x, y = row["p95_ms"] or 0, row["rps"]
        ax.errorbar(
            x,
            y,
            xerr=[[x - row["p95_ms_min"]], [row["p95_ms_max"] - x]],
            yerr=[[y - row["rps_min"]], [row["rps_max"] - y]],
            fmt="*" if row["key"] == winner else "o",
            markersize=16 if row["key"] == winner else 7,
            color=COLOURS.get(classes.get(row["key"]), "grey"),
            alpha=0.9 if not row["problems"] else 0.45,
            capsize=2,
        )
        ax.annotate(row["key"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
    target = results["settings"]["p95_ms"]
    ax.axvline(target, color="black", linestyle="--", linewidth=1)
    ax.text(target, ax.get_ylim()[1], f" p95 target {target:g} ms", fontsize=8, va="top")
    for cls, colour in COLOURS.items():
        ax.plot([], [], "o", color=colour, label=cls)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("p95 latency, ms (median over the runs; whiskers: min–max)")
    ax.set_ylabel("throughput, requests/s (median; whiskers: min–max)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    meta = results["meta"]
    ax.set_title(
        f"make tune: {results['workload']['description']}\n"
        f"{meta['date']} · app container {results['settings']['app_cpus']:g} CPUs · "
        f"winner: {winner or 'none'} (faded: misses a target)",
        fontsize=9,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


if __name__ == "__main__":
    sys.stdout.buffer.write(draw(json.load(sys.stdin)))
