"""The tune's plot, drawn in the lab's load-generator image (matplotlib never
reaches `make test`'s venv), as bench/plots.py draws the lab's:

    python3 plot.py < tune.json > tune.png
    python3 plot.py --boxes < tune.json     # where everything landed, as JSON

Throughput against p95 for every candidate, the winner marked, the p95
target as a line; each point's whiskers are its min-max over the runs.

Read at a glance: the latency axis is logarithmic, so that the candidates
that meet the target (tens to hundreds of ms) are spread over the plot
instead of crushed against 0 by one that misses it by seconds; the legend is
beside the axes, over no point; each label is placed by place_labels(), over
no other label, marker, the legend or the target's label, with a leader line
when it had to move away from its point. --boxes prints the boxes
matplotlib's renderer drew (tests/tune/test_tune_plot.py checks them).

Standard library and matplotlib only; place_labels() is standard library
alone (tests/unit/test_tune.py runs it without matplotlib).
"""

from __future__ import annotations

import io
import json
import math
import sys

COLOURS = {"sync": "#4c72b0", "gthread": "#55a868", "gevent": "#dd8452"}
DPI = 110
#: Pixels between a point's marker and its label, and around every box.
GAP = 4.0
#: A label moved farther than this from its point gets a leader line.
LEADER_PX = 3 * GAP
#: The lowest p95 drawn, in ms: a log axis has no 0.
MIN_MS = 1.0

Box = tuple[float, float, float, float]  # x0, y0, x1, y1, display pixels (y up)


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(a: Box, area: Box) -> bool:
    return area[0] <= a[0] and area[1] <= a[1] and a[2] <= area[2] and a[3] <= area[3]


def _spots(marker: Box, size: tuple[float, float], area: Box):
    """Where a label of this size may go, nearest its marker first: beside it
    in eight directions at growing distances, up to across the whole area."""
    (mx0, my0, mx1, my1), (w, h) = marker, size
    cx, cy = (mx0 + mx1) / 2, (my0 + my1) / 2
    rings = int(max(area[2] - area[0], area[3] - area[1]) / h) + 1
    for ring in range(rings):
        d = GAP + ring * h
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            x0 = mx1 + d if dx > 0 else mx0 - d - w if dx < 0 else cx - w / 2
            y0 = my1 + d if dy > 0 else my0 - d - h if dy < 0 else cy - h / 2
            yield (x0, y0, x0 + w, y0 + h)


def place_labels(markers: list[Box], sizes: list[tuple[float, float]], obstacles: list[Box], area: Box) -> list[Box]:
    """A box for each marker's label (its size: width, height), in the order
    given (the first placed nearest its marker): each inside the area, over
    no other label, no marker and no obstacle (the legend, the target's
    label), GAP pixels apart; ValueError when one cannot fit."""
    placed: list[Box] = []
    taken = [(b[0] - GAP, b[1] - GAP, b[2] + GAP, b[3] + GAP) for b in [*markers, *obstacles]]
    for marker, size in zip(markers, sizes, strict=True):
        for box in _spots(marker, size, area):
            if inside(box, area) and not any(overlaps(box, other) for other in taken):
                placed.append(box)
                taken.append((box[0] - GAP, box[1] - GAP, box[2] + GAP, box[3] + GAP))
                break
        else:
            raise ValueError(f"no room for a label of {size[0]:.0f}x{size[1]:.0f} px near {marker}")
    return placed


def _distance(point: tuple[float, float], box: Box) -> float:
    dx = max(box[0] - point[0], 0, point[0] - box[2])
    dy = max(box[1] - point[1], 0, point[1] - box[3])
    return math.hypot(dx, dy)


def _figure(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6), dpi=DPI)
    classes = {c["key"]: c["worker_class"] for c in results["candidates"]}
    winner = (results["verdict"]["winner"] or {}).get("key")
    target = results["settings"]["p95_ms"]
    rows = results["verdict"]["table"]
    points = []
    #: Each point's whiskers: p95's min-max, throughput's min-max.
    whiskers = []
    #: The x axis's reach: every whisker, and the target.
    reach = [target]
    for row in rows:
        x = max(row["p95_ms"] or MIN_MS, MIN_MS)
        y = row["rps"]
        low, high = max(row["p95_ms_min"] or MIN_MS, MIN_MS), max(row["p95_ms_max"] or MIN_MS, MIN_MS)
        reach += [min(low, x), max(high, x)]
        size = 16 if row["key"] == winner else 7
        ax.errorbar(
            x,
            y,
            xerr=[[x - min(low, x)], [max(high, x) - x]],
            yerr=[[y - row["rps_min"]], [row["rps_max"] - y]],
            fmt="*" if row["key"] == winner else "o",
            markersize=size,
            color=COLOURS.get(classes.get(row["key"]), "grey"),
            alpha=0.9 if not row["problems"] else 0.45,
            capsize=2,
        )
        points.append((row["key"], x, y, size))
        whiskers.append(((min(low, x), max(high, x)), (row["rps_min"], row["rps_max"])))
    ax.set_xscale("log")
    ax.set_xlim(min(reach) / 1.3, max(reach) * 1.3)
    top = max([row["rps_max"] for row in rows] + [1])
    # Head room above the highest point, for labels and the target's.
    ax.set_ylim(0, top * 1.25)
    ax.axvline(target, color="black", linestyle="--", linewidth=1)
    target_text = ax.text(
        target, top * 1.25, f" p95 target {target:g} ms", fontsize=8, va="top", ha="left", clip_on=False
    )
    for cls, colour in COLOURS.items():
        ax.plot([], [], "o", color=colour, label=cls)
    ax.plot([], [], "*", color="grey", markersize=10, label="winner")
    # Beside the axes: the legend covers no point.
    legend = ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_xlabel("p95 latency, ms, log scale (median over the runs; whiskers: min–max)")
    ax.set_ylabel("throughput, requests/s (median; whiskers: min–max)")
    ax.grid(alpha=0.3, which="both")
    meta = results["meta"]
    ax.set_title(
        f"make tune: {results['workload']['description']}\n"
        f"{meta['date']} · app container {results['settings']['app_cpus']:g} CPUs · "
        f"winner: {winner or 'none'} (faded: misses a target)",
        fontsize=9,
    )
    # The layout is fixed before the labels are placed, in pixels of the
    # final figure: nothing moves after.
    fig.tight_layout()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    to_pixels = ax.transData.transform
    sizes = []
    for key, *_ in points:
        probe = ax.text(0, 0, key, fontsize=7, transform=None)
        extent = probe.get_window_extent(renderer)
        sizes.append((extent.width, extent.height))
        probe.remove()
    centres = [tuple(to_pixels((x, y))) for _, x, y, _ in points]
    # A marker's box: its size in points, as pixels, around its centre.
    markers = [
        (cx - r, cy - r, cx + r, cy + r)
        for (cx, cy), (*_, size) in zip(centres, points, strict=True)
        for r in [size / 2 * DPI / 72]
    ]
    area = tuple(ax.get_window_extent(renderer).bounds)
    area = (area[0], area[1], area[0] + area[2], area[1] + area[3])
    obstacles = [tuple(target_text.get_window_extent(renderer).extents)]
    # The whiskers too, a pixel either side of their lines: a label over
    # them is hard to read.
    for (cx, cy), ((x0, x1), (y0, y1)) in zip(centres, whiskers, strict=True):
        left, right = to_pixels((x0, 1))[0], to_pixels((x1, 1))[0]
        bottom, top_px = to_pixels((x0, y0))[1], to_pixels((x0, y1))[1]
        obstacles += [(left, cy - 1, right, cy + 1), (cx - 1, bottom, cx + 1, top_px)]
    # The winner's label first, nearest its point; then by throughput.
    order = sorted(range(len(points)), key=lambda i: (points[i][0] != winner, -points[i][2]))
    boxes = place_labels([markers[i] for i in order], [sizes[i] for i in order], obstacles, area)
    labels = []
    for i, box in zip(order, boxes, strict=True):
        key, x, y, _ = points[i]
        cx, cy = centres[i]
        far = _distance((cx, cy), box) > LEADER_PX + (markers[i][2] - cx)
        labels.append(
            ax.annotate(
                key,
                (x, y),
                xytext=((box[0] - cx) * 72 / DPI, (box[1] - cy) * 72 / DPI),
                textcoords="offset points",
                ha="left",
                va="bottom",
                fontsize=7,
                arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.6, "shrinkB": 4} if far else None,
                annotation_clip=False,
            )
        )
    return fig, ax, legend, target_text, labels, markers


def draw(results: dict) -> bytes:
    import matplotlib.pyplot as plt

    fig, *_ = _figure(results)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def boxes(results: dict) -> dict:
    """Where the renderer drew the labels, the legend, the target's label, the
    markers and the axes (display pixels, x0 y0 x1 y1), and the x axis's scale."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    fig, ax, legend, target_text, labels, markers = _figure(results)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = {
        # The text's own box: an annotation's would take in its leader line.
        "labels": {label.get_text(): list(Text.get_window_extent(label, renderer).extents) for label in labels},
        "legend": list(legend.get_window_extent(renderer).extents),
        "target": list(target_text.get_window_extent(renderer).extents),
        "markers": [list(m) for m in markers],
        "axes": list(ax.get_window_extent(renderer).extents),
        "figure": list(fig.bbox.extents),
        "xscale": ax.get_xscale(),
        "target_x": float(ax.transData.transform((results["settings"]["p95_ms"], 0))[0]),
        "x_pixels": {
            row["key"]: float(ax.transData.transform((max(row["p95_ms"] or MIN_MS, MIN_MS), 0))[0])
            for row in results["verdict"]["table"]
        },
    }
    plt.close(fig)
    return out


if __name__ == "__main__":
    data = json.load(sys.stdin)
    if sys.argv[1:] == ["--boxes"]:
        print(json.dumps(boxes(data)))
    else:
        sys.stdout.buffer.write(draw(data))
