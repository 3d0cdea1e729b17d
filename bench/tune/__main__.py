"""make tune: measure the profile's load against candidate serving
configurations and recommend one (docs/tuning.md).

    .venv/bin/python -m bench.tune [--quick] [--out DIR]

Settings: TUNE_* variables (bench/tune/settings.py), printed at the start
with the defaults used. Exit status: 0 with a recommendation; 1 when the run
cannot recommend (no candidate met the targets, or the machine was too busy
to measure); 2 on a bad setting or when the tune itself failed.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.lab import LabError, stderr_log
from bench.tune import candidates as cands
from bench.tune import report
from bench.tune.candidates import Candidate, Limits
from bench.tune.compose import APP_IMAGE
from bench.tune.run import PROJECT, TuneLab, config_for
from bench.tune.settings import TuneError, TuneSettings, load
from bench.tune.verdict import Objective, Verdict, decide
from harness.stack import REPO, scrub_environment
from serving.budget import Budget

DEFAULT_OUT = REPO / ".cache" / "tune"
#: Seconds a run costs beyond its load: the snapshots, locust's start, the
#: drain probe; the plan's first estimate, replaced by the measured figure.
RUN_OVERHEAD_S = 5
#: Seconds to start a pass's new candidates.
START_S = 30
#: The coarse pass's share of what the budget leaves after the start.
COARSE_SHARE = 0.6
MAX_REPETITIONS = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI's mode: fewer candidates, one pass of 4 s runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--project", default=PROJECT, help=f"Compose project name (default {PROJECT})")
    parser.add_argument("--app-image", help="an app image already built (default: build the project's)")
    parser.add_argument("--no-build", action="store_true", help="use the images as they are")
    parser.add_argument("--keep", action="store_true", help="leave the candidates running at the end")
    return parser.parse_args(argv)


def announce(settings: TuneSettings) -> str:
    s = settings
    load_line = (
        "the locustfile's LoadTestShape (TUNE_USERS and TUNE_SPAWN_RATE do not apply)"
        if s.shape
        else f"{s.users} users (TUNE_USERS) spawned at {s.spawn_rate:g}/s (TUNE_SPAWN_RATE); "
        "defaults: loadtest/locust.conf's"
    )
    return "\n".join(
        [
            f"make tune{' (quick mode)' if s.quick else ''}: {s.shown_locustfile} "
            "(TUNE_LOCUSTFILE, default loadtest/locustfile.py)",
            f"  load: {load_line}",
            f"  objective: the highest throughput with p95 <= {s.p95_ms:g} ms (TUNE_P95_MS, default 500) "
            f"and error ratio <= {s.max_error_ratio:g} (TUNE_MAX_ERROR_RATIO, default 0.01)",
            f"  app container: {s.app_cpus:g} CPUs (TUNE_APP_CPUS, default APP_CPUS or this machine's cores), "
            f"{s.memory} memory (APP_MEMORY)",
            f"  database: {'yes' if s.database else 'no'} (TUNE_DATABASE, default: whether COMPOSE_PROFILES has db)"
            + (
                f"; budget for {s.replicas} replicas (APP_REPLICAS) and {s.reserved_connections} reserved "
                "(DATABASE_RESERVED_CONNECTIONS)"
                if s.database
                else ""
            ),
            f"  time: {s.budget_s / 60:g} min in all (TUNE_BUDGET, default 10m), runs of {s.run_seconds} s "
            f"(TUNE_RUN_SECONDS, default 10; quick 4) after a {s.spawn_seconds} s ramp-up",
        ]
    )


def limits_for(lab: TuneLab, settings: TuneSettings) -> tuple[Limits, dict | None]:
    """The CPU quota, and with a database its limits, read from the server."""
    if not settings.database:
        return Limits(settings.app_cpus), None
    max_connections, superuser, role = lab.start_database()
    budget = Budget(
        replicas=settings.replicas,
        workers=1,
        pool_size=1,
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
        best = next(c for c in self.tried if c.key == first.table[0]["key"] or c.key == first.winner["key"])
        # The coarse winner (and the fastest, if it is another) run again
        # beside its neighbours: the comparison is paired, pass by pass.
        group = list(dict.fromkeys([centre, best, *fine]))
        left = self.left_s() - START_S
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
        verdict.notes[:0] = self.notes
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
            "candidates": [c.as_dict() | {"worker_class": c.worker_class} for c in self.tried],
            "runs": self.runs,
            "verdict": asdict(verdict),
            "_verdict": verdict,
        }


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def finish(results: dict, out_dir: Path, lab: TuneLab) -> int:
    """Write the reports, print the answer; the exit status."""
    written = report.write(results, out_dir)
    try:
        written.append(report.plot(results, out_dir))
    except (subprocess.SubprocessError, OSError) as exc:
        stderr_log(f"no plot: {exc}")
    verdict: Verdict = results["_verdict"]
    print()
    print("\n".join(report.table(verdict)))
    print()
    print(report.answer(results))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0 if verdict.winner is not None else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load(quick=args.quick)
    except TuneError as exc:
        print(f"make tune: {exc}", file=sys.stderr)
        return 2
    # Read: from here on nothing exported may change what a stack runs.
    scrub_environment("TUNE_")
    print(announce(settings), flush=True)
    started = time.monotonic()
    lab = TuneLab(
        settings,
        args.out / "compose.tune.yml",
        project=args.project,
        app_image=args.app_image or APP_IMAGE,
        log=stderr_log,
    )

    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    try:
        if not args.no_build:
            lab.build(app=args.app_image is None)
        limits, database = limits_for(lab, settings)
        tune = Tune(lab, settings, limits, started)
        tune.measure()
        lab.log(f"measured in {(time.monotonic() - started) / 60:.1f} min")
        return finish(tune.results(database), args.out, lab)
    except TuneError as exc:
        stderr_log(f"make tune: {exc}")
        return 2
    except KeyboardInterrupt:
        stderr_log("interrupted: removing the candidates")
        return 130
    except (LabError, subprocess.SubprocessError, OSError) as exc:
        stderr_log(f"the tune failed: {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - python-on-whales raises its own; report, tear down
        stderr_log(f"the tune failed: {type(exc).__name__}: {exc}")
        return 2
    finally:
        if not args.keep:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                lab.down()
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
