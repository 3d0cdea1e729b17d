"""The lab's plots, drawn with matplotlib in the load-generator image (so that
neither matplotlib nor its dependencies reach `make test`'s venv).

    python3 /opt/bench/plots.py < results.json > plots.tar

Reads the lab's results.json on stdin, writes a tar of PNG files on stdout:
throughput.png (req/s per configuration, one panel per workload, min-max
whiskers) and latency.png (p50 and p99 per configuration, log scale).
Standard library and matplotlib only: it runs outside the bench package.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import textwrap
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FAMILY_COLOURS = {
    "dev": "#c44e52",
    "gunicorn": "#8172b3",
    "nginx+gunicorn": "#4c72b0",
    "nginx+uwsgi": "#dd8452",
    "granian": "#937860",
    "nginx+granian": "#da8bc3",
    "host-port": "#55a868",
}


def _cells(results: dict, workload: str) -> list[dict]:
    order = [c["key"] for c in results["configs"]]
    cells = [s for s in results["summary"] if s["workload"] == workload]
    return sorted(cells, key=lambda s: order.index(s["config"]))


def _title(workload: dict) -> str:
    return textwrap.fill(f"{workload['label']}: {workload['description']}", 110)


def _subtitle(results: dict) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    return (
        f"{meta['date']} · {machine['cpus']} cores, {machine['memory_gib']:.0f} GiB · "
        f"profile {meta['profile']['name']} ({meta['profile']['repetitions']}× {meta['profile']['duration']:.0f} s)"
    )


def throughput(results: dict) -> bytes:
    workloads = results["workloads"]
    fig, axes = plt.subplots(len(workloads), 1, figsize=(10, 3.2 * len(workloads)), squeeze=False)
    for ax, workload in zip(axes[:, 0], workloads, strict=True):
        cells = _cells(results, workload["key"])
        labels = [c["label"] for c in cells]
        values = [c["rps"] for c in cells]
        low = [c["rps"] - c["rps_min"] for c in cells]
        high = [c["rps_max"] - c["rps"] for c in cells]
        colours = [FAMILY_COLOURS.get(c["family"], "grey") for c in cells]
        y = range(len(cells))
        ax.barh(y, values, xerr=[low, high], color=colours, capsize=3)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(_title(workload), fontsize=9, loc="left")
        ax.set_xlabel("requests/s (median; whiskers: min–max)", fontsize=8)
        if workload.get("ideal_rps"):
            ax.axvline(workload["ideal_rps"], color="black", linestyle="--", linewidth=1)
            ax.text(workload["ideal_rps"], len(cells) - 0.5, " ideal", fontsize=7, va="bottom")
        top = max([c["rps_max"] for c in cells] + [workload.get("ideal_rps") or 0]) or 1
        for yi, cell in zip(y, cells, strict=True):
            ax.text(max(cell["rps"], cell["rps_max"]) + top * 0.01, yi, f"{cell['rps']:,.0f}", va="center", fontsize=7)
        ax.set_xlim(0, top * 1.15)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Throughput per configuration and workload\n" + _subtitle(results), fontsize=10)
    fig.tight_layout()
    return _png(fig)


def latency(results: dict) -> bytes:
    workloads = results["workloads"]
    fig, axes = plt.subplots(len(workloads), 1, figsize=(10, 3.2 * len(workloads)), squeeze=False)
    for ax, workload in zip(axes[:, 0], workloads, strict=True):
        cells = _cells(results, workload["key"])
        labels = [c["label"] for c in cells]
        y = list(range(len(cells)))
        p50 = [max(c["p50_ms"] or 0, 0.01) for c in cells]
        p99 = [max(c["p99_ms"] or 0, 0.01) for c in cells]
        ax.barh([i + 0.2 for i in y], p50, height=0.4, color="#4c72b0", label="p50")
        ax.barh([i - 0.2 for i in y], p99, height=0.4, color="#c44e52", label="p99")
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log scale; answered requests only)", fontsize=8)
        ax.set_title(_title(workload), fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Latency per configuration and workload (p50, p99)\n" + _subtitle(results), fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def main() -> int:
    results = json.load(sys.stdin)
    images = {"throughput.png": throughput(results), "latency.png": latency(results)}
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
        for name, data in images.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
