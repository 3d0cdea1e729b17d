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
import subprocess
import sys
import time
from pathlib import Path

from bench.lab import LabError, interrupt_on_sigterm, stderr_log, tear_down
from bench.tune import report
from bench.tune.compose import APP_IMAGE
from bench.tune.run import PROJECT, TuneLab
from bench.tune.settings import TuneError, TuneSettings, load
from bench.tune.tuner import Tune, limits_for
from bench.tune.verdict import Verdict
from harness.stack import REPO, scrub_environment

DEFAULT_OUT = REPO / ".cache" / "tune"


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
        "the locustfile's LoadTestShape, stopped at each run's end whatever it returns "
        "(TUNE_USERS and TUNE_SPAWN_RATE do not apply)"
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

    interrupt_on_sigterm()
    try:
        if not args.no_build:
            lab.build(app=args.app_image is None)
        lab.check_locustfile()
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
            tear_down(lab)


if __name__ == "__main__":
    sys.exit(main())
