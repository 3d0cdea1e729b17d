"""The passes over one profile: the coarse pass over every candidate, the
fine pass around its choice, within the time budget; then the results the
report is written from."""

from __future__ import annotations

import math
import os
import subprocess
import time
from dataclasses import asdict
from datetime import UTC, datetime

from bench.lab import stderr_log
from bench.tune import candidates as cands
from bench.tune.candidates import Candidate, Limits
from bench.tune.run import TuneLab, config_for
from bench.tune.settings import TuneError, TuneSettings
from bench.tune.verdict import Objective, decide
from harness.stack import REPO
from serving.budget import Budget

#: Seconds a run costs beyond its load: the snapshots, locust's start, the
#: drain probe; the plan's first estimate, replaced by the measured figure.
RUN_OVERHEAD_S = 5
#: Seconds to start a pass's new candidates, and to plot and tear down at the end.
START_S = 30
FINISH_S = 20
#: The coarse pass's share of what the budget leaves after the start.
COARSE_SHARE = 0.6
MAX_REPETITIONS = 3


def limits_for(lab: TuneLab, settings: TuneSettings) -> tuple[Limits, dict | None]:
    """The CPU quota, and with a database its limits, read from the server."""
    if not settings.database:
        return Limits(settings.app_cpus), None
    max_connections, superuser, role = lab.start_database()
    budget = Budget(
        replicas=settings.replicas,
        workers=1,
        per_worker=1,
        reserved=settings.reserved_connections,
        max_connections=max_connections,
        superuser_reserved=superuser,
        role_reserved=role,
    )
    described = {
        "max_connections": max_connections,
        "superuser_reserved": superuser,
        "reserved_connections": role,
        "allowed": budget.allowed,
        "replicas": settings.replicas,
        "reserve": settings.reserved_connections,
    }
    return Limits(settings.app_cpus, budget), described


class Tune:
    """The passes over one profile, on candidates a TuneLab runs."""

    def __init__(self, lab: TuneLab, settings: TuneSettings, limits: Limits, started: float) -> None:
        self.lab, self.settings, self.limits, self.started = lab, settings, limits, started
        self.objective = Objective(settings.p95_ms, settings.max_error_ratio)
        self.runs: list[dict] = []
        self.tried: list[Candidate] = []
        self.passes = 0
        self.notes: list[str] = []
        self._run_seconds: list[float] = []

    def left_s(self) -> float:
        return self.settings.budget_s - (time.monotonic() - self.started)

    def per_run_s(self) -> float:
        if self._run_seconds:
            return sum(self._run_seconds) / len(self._run_seconds)
        return self.settings.run_seconds + self.settings.spawn_seconds + RUN_OVERHEAD_S

    def measure(self) -> None:
        coarse = cands.coarse(self.limits, quick=self.settings.quick)
        if not coarse:
            raise TuneError(
                "no candidate fits the CPU quota and the database's connection budget: lower APP_REPLICAS "
                "or DATABASE_RESERVED_CONNECTIONS, or raise the server's max_connections"
            )
        self.lab.add(coarse)
        if self.settings.quick:
            repetitions = 1
        else:
            fits = math.floor(self.left_s() * COARSE_SHARE / (len(coarse) * self.per_run_s()))
            repetitions = max(1, min(MAX_REPETITIONS, fits))
            if fits < 1:
                self.notes.append(
                    f"the coarse pass alone needs about {len(coarse) * self.per_run_s() / 60:.1f} min, "
                    "more than TUNE_BUDGET leaves: one pass, no fine pass"
                )
        stderr_log(f"coarse pass: {len(coarse)} candidates × {repetitions} repetition(s)")
        self.passes_over(coarse, repetitions)
        if self.settings.quick:
            return
        first = decide(self.runs, self.tried, self.objective)
        if first.winner is None:
            self.notes.append("no fine pass: no candidate of the coarse pass met the targets")
            return
        centre = next(c for c in self.tried if c.key == first.winner["key"])
        fine = cands.fine(centre, self.limits, set(self.tried))
        if not fine:
            return
        fastest = next(row for row in first.table if not row["problems"])
        best = next(c for c in self.tried if c.key == fastest["key"])
        # The coarse winner (and the fastest, if it is another) run again
        # beside its neighbours: the comparison is paired, pass by pass.
        group = list(dict.fromkeys([centre, best, *fine]))
        left = self.left_s() - START_S - FINISH_S
        repetitions = min(repetitions, math.floor(left / (len(group) * self.per_run_s())))
        if repetitions < 1:
            self.notes.append(f"no fine pass: TUNE_BUDGET leaves {max(0, left) / 60:.1f} min")
            return
        stderr_log(f"fine pass around {centre.key}: {len(group)} candidates × {repetitions} repetition(s)")
        self.lab.add(fine)
        self.passes_over(group, repetitions)

    def passes_over(self, group: list[Candidate], repetitions: int) -> None:
        for candidate in group:
            if candidate not in self.tried:
                self.tried.append(candidate)
        total = len(group) * repetitions
        done = 0
        workload = self.lab.workloads[0]
        for _ in range(repetitions):
            self.passes += 1
            # A new order each pass, so that no candidate always runs right
            # after the same neighbour.
            shift = (self.passes - 1) % len(group)
            for candidate in group[shift:] + group[:shift]:
                began = time.monotonic()
                result = self.lab.run(config_for(candidate, self.settings.database), workload, self.passes)
                self._run_seconds.append(time.monotonic() - began)
                self.runs.append(result)
                done += 1
                stderr_log(self.progress(done, total, candidate, result))

    def progress(self, done: int, total: int, candidate: Candidate, result: dict) -> str:
        latency = result["latency_ms"]
        flags = []
        if result["errors_total"]:
            flags.append(f"{result['errors_total']} failed requests")
        other = result.get("other_cpu")
        if other is not None and other > 0.25 * (os.cpu_count() or 1):
            flags.append(f"machine busy: other CPU {other:.2f} cores")
        if result.get("ended_early_s") is not None:
            flags.append(f"the shape ended the load after {result['ended_early_s']:g} s")
        eta = (total - done) * self.per_run_s()
        return (
            f"[{done:3d}/{total}] pass {self.passes} {candidate.key:24s} {result['rps']:8.1f} req/s  "
            f"p50 {latency['p50']:6.0f} ms  p95 {latency['p95']:6.0f} ms  p99 {latency['p99']:6.0f} ms  "
            f"app {result.get('app_cpu') or 0:4.2f} cores  {result.get('app_memory_mib') or 0:5.0f} MiB  "
            f"left: this pass {eta / 60:.1f} min, budget {max(0, self.left_s()) / 60:.1f} min"
            + (f"  [{'; '.join(flags)}]" if flags else "")
        )

    def results(self, database: dict | None) -> dict:
        verdict = decide(self.runs, self.tried, self.objective, host_cores=os.cpu_count())
        verdict.notes[:0] = self.notes + early_notes(self.runs, self.settings)
        return {
            "meta": {
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "commit": commit(),
                "host_cores": os.cpu_count(),
                "elapsed_s": time.monotonic() - self.started,
            },
            "settings": self.settings.as_dict(),
            "workload": asdict(self.lab.workloads[0]),
            "profile": asdict(self.lab.profile),
            "database": database,
            "passes": self.passes,
            "candidates": [c.as_dict() for c in self.tried],
            "runs": self.runs,
            "verdict": asdict(verdict),
            "_verdict": verdict,
        }


def early_notes(runs: list[dict], settings: TuneSettings) -> list[str]:
    """What the report says of runs whose LoadTestShape ended the load before
    the run's end: they are measured over the seconds they ran."""
    early = [r["ended_early_s"] for r in runs if r.get("ended_early_s") is not None]
    if not early:
        return []
    planned = settings.run_seconds + settings.spawn_seconds
    after = f"{min(early):g}" if min(early) == max(early) else f"{min(early):g}–{max(early):g}"
    return [
        f"the locustfile's LoadTestShape ended the load before the run's end in {len(early)} of {len(runs)} runs, "
        f"after {after} s of the {planned} s planned: those runs are measured over the seconds they ran"
    ]


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
