"""A burst on a gevent worker's database pool (bench/burst.py), in quick mode:
the worker before and the chosen gate side by side, 3 rounds, on a
throwaway PostgreSQL 15 and gunicorns of their own on 127.0.0.1 (no Docker).

What is asserted is a degree, read from the server's own timestamps, not a
time: every burst of 10 one-second queries on 2 workers x 5 connections ran
all 10 at once, in one round, under the gate. The worker before is measured
beside it, and printed, not asserted: whether one worker takes more than
its pool can run depends on a race between the two (most bursts here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import burst

pytestmark = [
    pytest.mark.bench,
    pytest.mark.timing,
    pytest.mark.skipif(
        not (burst.PG_BIN / "initdb").exists() or not shutil.which("runuser"),
        reason="PostgreSQL 15's server binaries (Debian's postgresql-15) are not installed",
    ),
]


@pytest.fixture(scope="module")
def measured() -> dict:
    designs = [d for d in burst.DESIGNS if d.key in ("before", burst.CHOSEN)]
    figures = burst.measure(designs, 3, fast_seconds=None)
    rows = burst.summary(designs, figures)
    print("\n" + burst.table(rows))
    return {"figures": figures, "rows": {row["design"]: row for row in rows}}


def test_the_gate_runs_every_burst_at_the_design_degree_in_one_round(measured):
    bursts = measured["figures"][burst.CHOSEN].burst
    assert len(bursts) == 3
    for b in bursts:
        assert b["ok"] == burst.DESIGN, b
        assert (b["degree"], b["rounds"], b["split"]) == (burst.DESIGN, 1, [burst.POOL] * burst.WORKERS), b


def test_under_the_gate_the_excess_of_an_overload_is_a_json_503(measured):
    for o in measured["figures"][burst.CHOSEN].overload:
        assert (o["ok"], o["json_503"], o["other"]) == (burst.DESIGN, burst.OVERLOAD - burst.DESIGN, 0), o


def test_every_design_was_measured_in_every_round_and_nothing_is_left(measured):
    for figures in measured["figures"].values():
        assert len(figures.burst) == len(figures.kept_alive) == len(figures.healthz_s) == len(figures.overload) == 3
    assert not list(Path("/tmp").glob("burst-pg-*")) or all(  # noqa: S108 - where the lab's cluster lives
        not (p / "data" / "postmaster.pid").exists() for p in Path("/tmp").glob("burst-pg-*")
    )
