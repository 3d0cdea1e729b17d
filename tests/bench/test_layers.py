"""What the server's layers cost each request, held to the figures measured
before the server wrapped any app (bench/layers.py): the demo's request in
CPU time, in-process, the app alone and inside the layers (without and with
metrics), side by side in one run, alternating. Ratios, not microseconds:
the machine is shared, and a ratio of runs made together is what holds."""

from __future__ import annotations

import pytest

from bench.layers import measure

pytestmark = pytest.mark.bench

#: Measured on the demo's /healthz before the move, CPU µs per request
#: (5 alternating runs, medians): the app alone, inside the layers, and
#: with metrics as well.
BEFORE = {"alone": 175, "layers": 198, "metrics": 224}


def test_the_layers_cost_no_more_than_before_the_move():
    least = measure(requests=2000, rounds=7)
    print(
        "CPU µs per request: "
        + ", ".join(f"{variant} {value:.1f}" for variant, value in least.items())
        + f" (before the move: {BEFORE})"
    )
    for variant in ("layers", "metrics"):
        assert least[variant] / least["alone"] <= BEFORE[variant] / BEFORE["alone"], (variant, least)
