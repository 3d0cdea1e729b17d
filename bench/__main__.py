"""`python -m bench`: run the concurrency lab and write its figures.

    .venv/bin/python -m bench                  # full mode, into docs/benchmarks/
    .venv/bin/python -m bench --quick --out /tmp/lab   # CI's quick mode
    .venv/bin/python -m bench --configs apache # Apache's configurations and their nginx partners,
                                               # merged into docs/benchmarks/ beside the rest

Builds the images, starts every configuration (bench/compose.yml), runs the
matrix (interleaved repetitions), writes results.{json,md}, runs.csv,
summary.csv and the plots, and always removes the lab's containers and
networks at the end, also on failure or Ctrl-C. Exit status: 0 when every
configuration served every workload without errors, 1 otherwise, 2 when the
lab itself failed, or refused to start: it writes docs/benchmarks/ only from
a tree with no uncommitted changes, so that the published figures name the
commit that was measured.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException

from bench import report
from bench.lab import PROJECT, Lab, LabError, interrupt_on_sigterm, stderr_log, tear_down
from bench.matrix import (
    APP_CPUS,
    CONFIGS,
    CONFIGS_BY_KEY,
    FULL,
    QUICK,
    Config,
    Profile,
    Workload,
    configs_named,
    workloads,
)
from harness.stack import REPO, scrub_environment

DEFAULT_OUT = REPO / "docs" / "benchmarks"
#: The quick mode's figures are not the docs': they go to a scratch directory.
QUICK_OUT = REPO / ".cache" / "bench-quick"


def machine() -> dict:
    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    os_release = dict(
        line.split("=", 1) for line in read("/etc/os-release").splitlines() if "=" in line and not line.startswith("#")
    )
    cpuinfo, meminfo = read("/proc/cpuinfo").splitlines(), read("/proc/meminfo").splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    mem_kib = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    try:
        compose = subprocess.run(
            ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        compose = "?"
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor() or "?",
        "memory_gib": mem_kib / 1024 / 1024,
        "os": os_release.get("PRETTY_NAME", "").strip('"') or platform.system(),
        "kernel": platform.release(),
        "docker_engine": _engine_version(),
        "compose": compose or "?",
    }


def _engine_version() -> str:
    try:
        server = DockerClient().version().server
    except (DockerException, OSError):
        return "?"
    return (server.version if server else None) or "?"


def commit(repo: Path = REPO) -> str:
    """HEAD's short hash, `+changes` after it when the tree differs from it;
    `?` outside a git checkout."""
    changes = uncommitted_changes(repo)
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return sha + ("+changes" if changes else "")


def uncommitted_changes(repo: Path = REPO) -> list[str] | None:
    """`git status --porcelain`'s lines: every file that differs from HEAD,
    untracked ones included (an untracked file in the build context is
    measured too); None when git cannot tell (no checkout, no git)."""
    try:
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [line for line in status.splitlines() if line.strip()]


def refuse_to_publish_from_uncommitted_tree(out_dir: Path, repo: Path = REPO) -> str | None:
    """Why the figures may not be written into the docs now, or None. The
    docs' figures name the commit they were measured on, so that anyone can
    measure that code again; a tree with uncommitted changes has no such
    name (`+changes`). Elsewhere (--out, the quick mode) anything goes."""
    if out_dir.resolve() != DEFAULT_OUT.resolve():
        return None
    changes = uncommitted_changes(repo)
    if changes is None:
        return f"not writing {DEFAULT_OUT.relative_to(REPO)}/: git cannot name the commit measured"
    if changes:
        shown = "; ".join(changes[:5]) + ("; ..." if len(changes) > 5 else "")
        return (
            f"not writing {DEFAULT_OUT.relative_to(REPO)}/ from a tree with uncommitted changes ({shown}): "
            "commit them first (the published figures name the commit they were measured on), "
            "or measure into another directory with --out"
        )
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI's mode: one short pass (well under 3 minutes)")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output directory (default {DEFAULT_OUT}; quick mode: {QUICK_OUT})"
    )
    parser.add_argument("--project", default=PROJECT, help=f"Compose project name (default {PROJECT})")
    parser.add_argument("--repetitions", type=int, help="override the profile's repetitions")
    parser.add_argument("--duration", type=int, help="override the profile's seconds per run")
    parser.add_argument("--warmup", type=int, help="override the profile's warm-up seconds")
    parser.add_argument(
        "--configs",
        help="comma-separated configurations, families or fronts (e.g. apache: its configurations and the nginx "
        "ones its ratios pair with), of: " + ",".join(CONFIGS_BY_KEY) + ". Their figures are merged into the "
        "output directory's earlier results of the same profile (see --replace)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="with --configs: write only this run's figures, dropping the output directory's earlier ones",
    )
    parser.add_argument(
        "--workloads", help="comma-separated subset of: " + ",".join(w.key for w in workloads(quick=False))
    )
    parser.add_argument("--no-build", action="store_true", help="use the images as they are")
    parser.add_argument(
        "--gunicorn-args", default="", help="extra gunicorn options for every gunicorn configuration, to try one"
    )
    parser.add_argument(
        "--app-cpus", type=float, default=APP_CPUS, help=f"CPU limit of every app server container (default {APP_CPUS})"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: rewrite the tables and plots from the output directory's results.json",
    )
    parser.add_argument("--keep", action="store_true", help="leave the lab running at the end (to look around)")
    return parser.parse_args(argv)


#: One run of the plan: the pass (from 1), the workload, the configuration.
PlannedRun = tuple[int, Workload, Config]


@dataclass(frozen=True)
class Selection:
    """What this invocation measures, and where the figures go."""

    profile: Profile
    configs: tuple[Config, ...]
    workloads: tuple[Workload, ...]
    out_dir: Path
    #: Configurations measured only for the ratios of the others (--configs
    #: apache brings nginx's in front of the same classes): they run only
    #: the workloads the others run.
    partners: tuple[str, ...] = ()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selection = select(args)
    if selection is None:
        return 2
    scrub_environment("BENCH_")
    if args.render:
        return render(selection.out_dir)
    if refusal := refuse_to_publish_from_uncommitted_tree(selection.out_dir):
        stderr_log(refusal)
        return 2
    return run_lab(args, selection)


def select(args: argparse.Namespace) -> Selection | None:
    """The profile, configurations and workloads the options ask for; None
    (after saying why) when they name an unknown configuration."""
    profile = _profile(args)
    chosen = _configs(args)
    if chosen is None:
        return None
    configs, partners = chosen
    out_dir = (args.out or (QUICK_OUT if profile.quick else DEFAULT_OUT)).resolve()
    return Selection(profile, configs, _workloads(args, profile.quick), out_dir, partners)


def _profile(args: argparse.Namespace) -> Profile:
    """The quick or full profile, with the options' overrides."""
    base = QUICK if args.quick else FULL
    return Profile(
        name=base.name,
        repetitions=args.repetitions or base.repetitions,
        duration=float(args.duration or base.duration),
        warmup=float(base.warmup if args.warmup is None else args.warmup),
        quick=base.quick,
    )


def _workloads(args: argparse.Namespace, quick: bool) -> tuple[Workload, ...]:
    every = workloads(quick)
    if not args.workloads:
        return every
    wanted = args.workloads.split(",")
    return tuple(w for w in every if w.key in wanted)


def _configs(args: argparse.Namespace) -> tuple[tuple[Config, ...], tuple[str, ...]] | None:
    """The configurations and, among them, the partners-only ones."""
    if not args.configs:
        # The quick mode checks the lab, not the figures: one of the
        # configurations that differ only in the class behind them will do.
        return (tuple(c for c in CONFIGS if c.quick) if args.quick else CONFIGS), ()
    configs, partners, unknown = configs_named(args.configs.split(","))
    if unknown:
        stderr_log(f"unknown configuration(s): {', '.join(sorted(unknown))}")
        return None
    return configs, partners


def run_lab(args: argparse.Namespace, selection: Selection) -> int:
    """Measure and write the figures; whatever happens, take the lab down
    (unless --keep). The exit status: see the module's docstring."""
    interrupt_on_sigterm()
    plan = plan_runs(selection)
    _announce(selection, plan)
    started = time.monotonic()
    # Every run carries it: a merged results file pairs runs of one session.
    args.session = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lab = Lab(
        selection.profile,
        selection.configs,
        selection.workloads,
        log=stderr_log,
        gunicorn_args=args.gunicorn_args,
        app_cpus=args.app_cpus,
        project=args.project,
        session=args.session,
    )
    try:
        status = measure_and_report(lab, args, selection, plan, started)
    except KeyboardInterrupt:
        stderr_log("interrupted: tearing the lab down")
        status = 130
    except (LabError, subprocess.SubprocessError, OSError) as exc:
        stderr_log(f"the lab failed: {exc}")
        status = 2
    except Exception as exc:  # noqa: BLE001 - python-on-whales raises its own; report, tear down
        stderr_log(f"the lab failed: {type(exc).__name__}: {exc}")
        status = 2
    finally:
        if not args.keep:
            tear_down(lab)
    stderr_log(f"done in {(time.monotonic() - started) / 60:.1f} min, exit status {status}")
    return status


def plan_runs(selection: Selection) -> list[PlannedRun]:
    """Every (pass, workload, configuration) run, pass after pass."""
    own = [c for c in selection.configs if c.key not in selection.partners]

    def runs(config: Config, workload: Workload) -> bool:
        if config.key in selection.partners:
            return config.runs(workload.key) and any(c.runs(workload.key) for c in own)
        return config.runs(workload.key)

    return [
        (rep, workload, config)
        for rep in range(1, selection.profile.repetitions + 1)
        for workload in selection.workloads
        # A different order each pass, so that no configuration always runs
        # right after the same neighbour.
        for config in _rotate([c for c in selection.configs if runs(c, workload)], rep - 1)
    ]


def measure_and_report(
    lab: Lab, args: argparse.Namespace, selection: Selection, plan: list[PlannedRun], started: float
) -> int:
    """Build, start, run the plan, write the files: 0, or 1 when a run
    counted errors."""
    if not args.no_build:
        lab.build()
    lab.up()
    described = lab.describe()
    isolation = lab.isolation()
    runs = run_plan(lab, plan)
    results = {
        "meta": _meta(args, selection.profile, started, selection.partners),
        "configs": [asdict(c) for c in selection.configs],
        "workloads": [asdict(w) for w in selection.workloads],
        "described": described,
        "isolation": isolation,
        "runs": runs,
    }
    previous = earlier_results(args, selection)
    if previous is not None:
        results = report.merge(previous, results)
    complete(results, selection.profile.quick)
    write_reports(lab, results, selection.out_dir)
    return 1 if any(r["errors_total"] for r in runs) else 0


def earlier_results(args: argparse.Namespace, selection: Selection) -> dict | None:
    """The output directory's results, when this run's figures go beside
    them: a run of some configurations (--configs, without --replace) into a
    directory holding results of the same profile. None otherwise."""
    path = selection.out_dir / "results.json"
    if not args.configs or args.replace or not path.exists():
        return None
    previous = json.loads(path.read_text())
    if previous["meta"]["profile"] != asdict(selection.profile):
        stderr_log(
            f"not merging into {path}: its profile ({previous['meta']['profile']}) is not this run's; "
            "its figures are replaced"
        )
        return None
    stderr_log(f"merging into {path}: the configurations measured now replace theirs, the others are kept")
    return previous


def complete(results: dict, quick: bool) -> None:
    """The summary, ratios and targets, over every run the results hold."""
    configs = tuple(CONFIGS_BY_KEY[c["key"]] for c in results["configs"] if c["key"] in CONFIGS_BY_KEY)
    keys = [w["key"] for w in results["workloads"]]
    chosen = tuple(sorted((w for w in workloads(quick) if w.key in keys), key=lambda w: keys.index(w.key)))
    results["summary"] = report.summarize(results["runs"], configs, chosen)
    results["ratios"] = report.ratios(results["runs"], chosen)
    results["targets"] = report.targets(results["ratios"])


def run_plan(lab: Lab, plan: list[PlannedRun]) -> list[dict]:
    """Every run of the plan, with a progress line each."""
    runs = []
    loop_started = time.monotonic()
    for index, (rep, workload, config) in enumerate(plan, start=1):
        result = lab.run(config, workload, rep)
        runs.append(result)
        elapsed = time.monotonic() - loop_started
        eta = elapsed / index * (len(plan) - index)
        stderr_log(_progress_line(index, len(plan), (rep, workload, config), result, eta))
    return runs


def _progress_line(index: int, total: int, planned: PlannedRun, result: dict, eta: float) -> str:
    rep, workload, config = planned
    flags = []
    if result["errors_total"]:
        flags.append(f"ERRORS {result['errors']}")
    if result.get("served_share") is not None and result["served_share"] < 0.5:
        flags.append(f"served {result['served_share']:.0%} of connections")
    if result.get("drain_s", 0) > 2:
        flags.append(f"waited {result['drain_s']:.0f} s for an earlier run's queue")
    return (
        f"[{index:3d}/{total}] pass {rep} {workload.key:4s} {config.label:40s} "
        f"{result['rps']:9.1f} req/s  p50 {result['latency_ms']['p50']:8.1f} ms  "
        f"p99 {result['latency_ms']['p99']:8.1f} ms  generator {_cores(result.get('generator_cpu'))}  "
        f"app {_cores(result.get('app_cpu'))}  other {_cores(result.get('other_cpu'))}  "
        f"eta {eta / 60:.1f} min" + (f"  [{'; '.join(flags)}]" if flags else "")
    )


def _meta(args: argparse.Namespace, profile: Profile, started: float, partners: tuple[str, ...] = ()) -> dict:
    return {
        "session": args.session,
        "partners": list(partners),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "profile": asdict(profile),
        "machine": machine(),
        "commit": commit(),
        "gunicorn_args": args.gunicorn_args,
        "app_cpus": args.app_cpus,
        "elapsed_s": time.monotonic() - started,
    }


def write_reports(lab: Lab, results: dict, out_dir: Path) -> None:
    """results.{json,md}, the CSV files, the README's tables, the plots;
    then the headline ratios and targets on stderr."""
    written = report.write(results, out_dir)
    written += plots(lab, results, out_dir)
    stderr_log("")
    stderr_log(_headline(results))
    stderr_log("wrote " + ", ".join(str(p.relative_to(out_dir)) for p in written) + f" in {out_dir}")


def _announce(selection: Selection, plan: list[PlannedRun]) -> None:
    profile = selection.profile
    stderr_log(
        f"concurrency lab, {profile.name} mode: {len(selection.configs)} configurations × "
        f"{len(selection.workloads)} workloads, "
        f"{profile.repetitions} repetition(s) of {profile.duration:.0f} s (+{profile.warmup:.0f} s warm-up): "
        f"{len(plan)} runs; results into {selection.out_dir}"
    )


def render(out_dir: Path) -> int:
    """Rewrite results.md, the CSV files, the README's tables and the plots
    from results.json, in a throwaway load-generator container without a
    network (the image must have been built by an earlier run)."""
    results = json.loads((out_dir / "results.json").read_text())
    written = report.write(results, out_dir)
    data = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "--read-only", "--tmpfs", "/tmp"]
        + ["flask-concurrency/bench-loadgen:local", "python3", "/opt/bench/plots.py"],
        input=json.dumps(results).encode(),
        capture_output=True,
        timeout=180,
        check=True,
    ).stdout
    written += _extract_plots(data, out_dir)
    stderr_log("wrote " + ", ".join(str(p.relative_to(out_dir)) for p in written) + f" in {out_dir}")
    return 0


def plots(lab: Lab, results: dict, out_dir: Path) -> list[Path]:
    data = lab.exec("loadgen", ["python3", "/opt/bench/plots.py"], timeout=120, stdin=json.dumps(results).encode())
    return _extract_plots(data, out_dir)


def _extract_plots(data: bytes, out_dir: Path) -> list[Path]:
    written = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            if not member.isfile() or "/" in member.name or not member.name.endswith(".png"):
                continue
            target = out_dir / member.name
            target.write_bytes(tar.extractfile(member).read())
            written.append(target)
    return written


def _rotate(items: list, by: int) -> list:
    if not items:
        return items
    by %= len(items)
    return items[by:] + items[:by]


def _cores(value: float | None) -> str:
    return "  –  " if value is None else f"{value:4.2f}c"


def _headline(results: dict) -> str:
    lines = ["headline ratios (measured in this run):"]
    for r in results["ratios"]:
        if r["group"].startswith("vs the dev server") and not r["group"].endswith("(dev-single)"):
            continue
        lines.append(f"  {r['group']}: {r['name']}: {report._ratio(r)}")
    lines.append("targets:")
    for t in results["targets"]:
        state = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        value = "–" if t["measured"] is None else f"{t['measured']:.2f}"
        lines.append(f"  [{state}] {t['target']}: {value} (threshold {t['threshold']:g})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
