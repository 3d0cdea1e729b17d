"""The tune's answer: the .env lines, the winner's figures, the runner-up
and how far behind it is, the full candidate table; as text for the
terminal, and as tune.md, tune.json and tune.png beside each other."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench.tune.verdict import Verdict

PLOT_SCRIPT = Path(__file__).with_name("plot.py")
PLOT_IMAGE = "flask-concurrency/bench-loadgen:local"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def env_lines(verdict: Verdict, candidates: dict) -> list[str]:
    if verdict.winner is None:
        return []
    return [f"{k}={v}" for k, v in candidates[verdict.winner["key"]]["environment"].items()]


def table(verdict: Verdict) -> list[str]:
    lines = [
        "| # | candidate | req/s (range) | p50 ms | p95 ms (range) | p99 ms | errors | app CPU cores | memory MiB "
        "| other CPU | meets the targets |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    winner = (verdict.winner or {}).get("key")
    for row in verdict.table:
        name = f"**{row['key']}**" if row["key"] == winner else row["key"]
        lines.append(
            f"| {row['rank']} | {name} | {row['rps']:.1f} ({row['rps_min']:.1f}–{row['rps_max']:.1f}) "
            f"| {_ms(row['p50_ms'])} | {_ms(row['p95_ms'])} ({_ms(row['p95_ms_min'])}–{_ms(row['p95_ms_max'])}) "
            f"| {_ms(row['p99_ms'])} | {row['failures']} of {row['requests']} ({row['error_ratio']:.2%}) "
            f"| {_num(row['app_cpu'])} | {_num(row['memory_mib'], 0)} | {_num(row['other_cpu'])} "
            f"| {'yes' if not row['problems'] else 'no: ' + '; '.join(row['problems'])} |"
        )
    return lines


def answer(results: dict) -> str:
    """The recommendation (or why there is none), in Markdown that reads as text."""
    verdict: Verdict = results["_verdict"]
    candidates = {c["key"]: c for c in results["candidates"]}
    lines = []
    if verdict.winner is None:
        lines += ["**No recommendation.**", ""] + [f"- {r}" for r in verdict.refusals]
    else:
        w = verdict.winner
        lines += [
            f"**Recommendation: {w['label']}**, measured at {w['rps']:.1f} req/s "
            f"({w['rps_min']:.1f}–{w['rps_max']:.1f} over {w['runs']} runs), p50 {_ms(w['p50_ms'])} ms, "
            f"p95 {_ms(w['p95_ms'])} ms, p99 {_ms(w['p99_ms'])} ms, error ratio {w['error_ratio']:.2%}, "
            f"{_num(w['app_cpu'])} CPU cores and {_num(w['memory_mib'], 0)} MiB per replica. In `.env`:",
            "",
            "```",
            *env_lines(verdict, candidates),
            "```",
            "",
        ]
        if verdict.runner_up is not None:
            b = verdict.behind
            spread = f"{b['min']:.2f}–{b['max']:.2f} over {b['n']} paired passes" if b["n"] else "unpaired medians"
            kind = (
                f"a tie (inside the run-to-run spread of {b['noise']:.0%}): the simpler one wins"
                if b["tie"]
                else "behind"
            )
            lines.append(
                f"Runner-up: {verdict.runner_up['label']} at {b['median']:.2f}× the winner's throughput "
                f"({spread}), {kind}."
            )
    lines += [f"- {n}" for n in verdict.notes]
    return "\n".join(lines) + "\n"


def markdown(results: dict) -> str:
    s, meta = results["settings"], results["meta"]
    return "\n".join(
        [
            "# make tune",
            "",
            f"Measured {meta['date']}, commit `{meta['commit']}`, in {meta['elapsed_s'] / 60:.1f} min "
            f"(budget {s['budget_s'] / 60:.0f} min), on {meta['host_cores']} cores. Profile: "
            f"{results['workload']['description']}; {results['passes']} passes of {s['run_seconds']} s runs "
            f"(+{results['profile']['warmup']:.0f} s ramp-up), the candidates in a new order each pass. "
            f"App container: {s['app_cpus']:g} CPUs, {s['memory']} memory"
            + (f"; database: {results['database']}" if results.get("database") else "; no database")
            + f". Objective: highest throughput with p95 ≤ {s['p95_ms']:g} ms and error ratio ≤ "
            f"{s['max_error_ratio']:.2%}.",
            "",
            answer(results),
            "## Every candidate",
            "",
            *table(results["_verdict"]),
            "",
            "Throughput against p95: tune.png. Every run: tune.json.",
            "",
        ]
    )


def write(results: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    serialisable = {k: v for k, v in results.items() if not k.startswith("_")}
    json_path = out_dir / "tune.json"
    json_path.write_text(json.dumps(serialisable, indent=1, ensure_ascii=False) + "\n")
    md_path = out_dir / "tune.md"
    md_path.write_text(markdown(results))
    return [md_path, json_path]


def render(results: dict, *args: str) -> bytes:
    """plot.py's output (the PNG; with --boxes, where it drew what), from a
    throwaway container of the lab's load-generator image without a
    network, plot.py mounted read-only."""
    serialisable = {k: v for k, v in results.items() if not k.startswith("_")}
    return subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", "--read-only", "--tmpfs", "/tmp"]
        + ["-v", f"{PLOT_SCRIPT}:/opt/tune/plot.py:ro", PLOT_IMAGE, "python3", "/opt/tune/plot.py", *args],
        input=json.dumps(serialisable).encode(),
        capture_output=True,
        timeout=180,
        check=True,
    ).stdout


def plot(results: dict, out_dir: Path) -> Path:
    """tune.png."""
    path = out_dir / "tune.png"
    path.write_bytes(render(results))
    return path
