"""From the runs to the recommendation: each candidate's figures, the
objective (highest throughput with p95 and error ratio within the targets),
the tie rule, and whether the run can recommend at all.

- A candidate's figures are medians over its runs (bench/report.py's
  summary), with the min-max range; its error ratio counts every request of
  every run.
- Two candidates tie when the difference in throughput, measured pass by
  pass (bench/report.py's paired ratio), is inside the run-to-run spread of
  either, or inside TIE_FLOOR (TIE_FLOOR_ONE_RUN with a single run each). Of
  tied candidates the simpler wins (candidates.Candidate.simplicity).
- No recommendation when no candidate meets the targets, or when this
  machine was busy with other work for a share of the runs (bench/cpu.py's
  other_cpu): the figures then say more about the neighbours than the app.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench import report
from bench.tune.candidates import Candidate

#: The smallest difference in throughput that is not a tie, when the runs
#: measured less spread: a shared machine's run-to-run noise. With one run
#: each (quick mode) no spread was measured at all, and a single short run
#: is noisier: the floor is twice as high.
TIE_FLOOR = 0.05
TIE_FLOOR_ONE_RUN = 0.10
#: A run is disturbed when this machine ran more than this share of its
#: cores' worth of other work meanwhile (other_cpu); a tune with more than
#: BUSY_RUNS_SHARE of its runs disturbed does not recommend.
BUSY_SHARE = 0.25
BUSY_RUNS_SHARE = 0.2
WORKLOAD = "tune"


@dataclass(frozen=True)
class Objective:
    """Highest throughput, with p95 (median over the runs) at most p95_ms and
    failed requests at most max_error_ratio of all."""

    p95_ms: float
    max_error_ratio: float

    def problems(self, figures: dict) -> list[str]:
        out = []
        if figures["requests"] == 0:
            out.append("answered no request")
        if figures["p95_ms"] is not None and figures["p95_ms"] > self.p95_ms:
            out.append(f"p95 {figures['p95_ms']:.0f} ms > {self.p95_ms:g} ms")
        if figures["error_ratio"] > self.max_error_ratio:
            out.append(f"error ratio {figures['error_ratio']:.2%} > {self.max_error_ratio:.2%}")
        return out


def figures(runs: list[dict], candidate: Candidate) -> dict:
    """One candidate's figures over its runs: bench/report.py's summary,
    plus p95, the error ratio and memory."""
    mine = [r for r in runs if r["config"] == candidate.key]
    if not mine:
        raise ValueError(f"no run of {candidate.key}")
    requests = sum(r["requests"] for r in mine)
    failures = sum(r["errors_total"] for r in mine)
    rps = [r["rps"] for r in mine]
    median = statistics.median(rps)
    return {
        "key": candidate.key,
        "label": candidate.label,
        "runs": len(mine),
        "rps": median,
        "rps_min": min(rps),
        "rps_max": max(rps),
        "spread": (max(rps) - min(rps)) / median if median else 0.0,
        "p50_ms": _median(r["latency_ms"]["p50"] for r in mine),
        "p95_ms": _median(r["latency_ms"]["p95"] for r in mine),
        "p95_ms_min": min(r["latency_ms"]["p95"] for r in mine),
        "p95_ms_max": max(r["latency_ms"]["p95"] for r in mine),
        "p99_ms": _median(r["latency_ms"]["p99"] for r in mine),
        "requests": requests,
        "failures": failures,
        "error_ratio": failures / requests if requests else 0.0,
        "app_cpu": _median(r.get("app_cpu") for r in mine),
        "memory_mib": _median(r.get("app_memory_mib") for r in mine),
        "other_cpu": _median(r.get("other_cpu") for r in mine),
    }


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def compare(runs: list[dict], a: dict, b: dict) -> dict:
    """b's throughput against a's: the ratio pass by pass where both ran in
    the same pass (median, min, max), else of their medians; and whether
    the difference is a tie."""
    paired = report.paired_ratio(runs, (b["key"], WORKLOAD), (a["key"], WORKLOAD))
    if paired is None:
        ratio = b["rps"] / a["rps"] if a["rps"] else 0.0
        paired = {"median": ratio, "min": ratio, "max": ratio, "n": 0}
    floor = TIE_FLOOR_ONE_RUN if min(a["runs"], b["runs"]) == 1 else TIE_FLOOR
    noise = max(a["spread"], b["spread"], floor)
    return {**paired, "tie": abs(1 - paired["median"]) <= noise, "noise": noise}


@dataclass
class Verdict:
    #: Every candidate's figures, best throughput first, with "problems"
    #: (what keeps it from the objective) and "rank".
    table: list[dict]
    winner: dict | None
    runner_up: dict | None
    #: The runner-up's throughput against the winner's (compare()).
    behind: dict | None
    #: Why there is no recommendation, or the caveats of the one there is.
    refusals: list[str]
    notes: list[str]


def decide(
    runs: list[dict], candidates: list[Candidate], objective: Objective, host_cores: int | None = None
) -> Verdict:
    by_key = {c.key: c for c in candidates}
    table = [figures(runs, c) for c in candidates if any(r["config"] == c.key for r in runs)]
    for row in table:
        row["problems"] = objective.problems(row)
    table.sort(key=lambda row: -row["rps"])
    refusals, notes = [], []
    busy = busy_runs(runs, host_cores)
    if runs and len(busy) > BUSY_RUNS_SHARE * len(runs):
        refusals.append(
            f"this machine was too busy to measure: in {len(busy)} of {len(runs)} runs other work used more "
            f"than {BUSY_SHARE:.0%} of its cores (other CPU up to {max(r['other_cpu'] for r in busy):.2f} cores)"
        )
    elif busy:
        notes.append(f"{len(busy)} of {len(runs)} runs saw other work on this machine (other CPU > {BUSY_SHARE:.0%})")
    errored = [row for row in table if row["failures"]]
    if errored:
        notes.append(
            "failed requests in "
            + ", ".join(f"{row['key']} ({row['failures']} of {row['requests']})" for row in errored)
        )
    eligible = [row for row in table if not row["problems"]]
    if not eligible:
        misses = "; ".join(f"{row['key']}: {', '.join(row['problems'])}" for row in table)
        refusals.append(f"no candidate met the targets: {misses}")
    winner = runner_up = behind = None
    if eligible:
        best = eligible[0]
        tied = [row for row in eligible if row is best or compare(runs, best, row)["tie"]]
        winner = min(tied, key=lambda row: by_key[row["key"]].simplicity())
        others = [row for row in eligible if row is not winner]
        if others:
            runner_up = others[0]
            behind = compare(runs, winner, runner_up)
        if winner is not best:
            notes.append(
                f"{winner['key']} ties {best['key']} (a difference inside the run-to-run spread) and is simpler"
            )
    for rank, row in enumerate(table, start=1):
        row["rank"] = rank
    return Verdict(table, None if refusals else winner, None if refusals else runner_up, behind, refusals, notes)


def busy_runs(runs: list[dict], host_cores: int | None) -> list[dict]:
    if not host_cores:
        return []
    return [r for r in runs if r.get("other_cpu") is not None and r["other_cpu"] > BUSY_SHARE * host_cores]
