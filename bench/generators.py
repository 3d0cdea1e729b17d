"""The load generators, as the lab runs them in its loadgen containers: their
command lines, and their output turned into the same figures for both.

wrk runs the fast, I/O-bound and CPU-bound workloads (bench/loadgen/report.lua
prints its result as one BENCH_JSON line); locust runs the mixed one
(bench/loadgen/mix_locustfile.py, its summary as --json).
"""

from __future__ import annotations

import json
import re

from bench.matrix import Workload

#: wrk's threads: one per core of this 2-core reference machine, which is
#: what its docs advise.
WRK_THREADS = 2
#: Slowest answer a run records. Longer than any run, so that wrk records
#: every answer it gets (it drops slower ones into a "timeout" count).
WRK_TIMEOUT_S = 60

LATENCY_KEYS = ("p50", "p90", "p99", "p999", "max", "mean")


# --- wrk --------------------------------------------------------------------


def wrk_command(url: str, connections: int, seconds: int) -> list[str]:
    return [
        "wrk",
        f"-t{min(WRK_THREADS, connections)}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={WRK_TIMEOUT_S}s",
        "-s",
        "/opt/bench/report.lua",
        url,
    ]


def parse_wrk(output: str, connections: int) -> dict | None:
    """The run's figures from wrk's output; None when it printed none."""
    match = re.search(r"^BENCH_JSON (.*)$", output, flags=re.MULTILINE)
    if not match:
        return None
    raw = json.loads(match.group(1))
    latency = raw["latency_us"]
    seconds_run = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": seconds_run,
        "rps": raw["requests"] / seconds_run,
        "errors": raw["errors"],
        "latency_ms": {k: latency[k] / 1000 for k in LATENCY_KEYS},
        "connections": connections,
    }


# --- locust -----------------------------------------------------------------


def locust_command(url: str, workload: Workload, seconds: int, spawn_seconds: int) -> list[str]:
    """`env BENCH_MIX=… BENCH_THINK=… locust …`: the locustfile takes the
    mix and the think time from its environment."""
    users = workload.concurrency
    env = [
        "env",
        f"BENCH_MIX={json.dumps([list(m) for m in workload.mix])}",
        f"BENCH_THINK={workload.think[0]},{workload.think[1]}",
    ]
    return env + [
        "locust",
        "-f",
        "/opt/bench/mix_locustfile.py",
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(max(1, users // spawn_seconds)),
        "--run-time",
        f"{seconds + spawn_seconds}s",
        # The figures count from the moment every user is running.
        "--reset-stats",
        "--stop-timeout",
        "0",
        "--host",
        url,
        "--json",
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]


def summarize_locust(stats: list[dict], users: int, seconds: int) -> dict:
    """wrk-like figures from locust's --json output (one entry per endpoint)."""
    requests = sum(s["num_requests"] for s in stats)
    span = _locust_span(stats) or float(seconds)
    return {
        "requests": requests,
        "seconds": span,
        "rps": requests / span,
        "errors": {"failures": sum(s["num_failures"] for s in stats)},
        "latency_ms": _locust_latency(stats, requests),
        "connections": users,
        "endpoints": {
            s["name"]: {
                "requests": s["num_requests"],
                "failures": s["num_failures"],
                "p50_ms": _percentile(_histogram([s]), 50),
                "p99_ms": _percentile(_histogram([s]), 99),
            }
            for s in stats
        },
    }


def _locust_span(stats: list[dict]) -> float:
    """Seconds from the first request to the last; 0 when unknown."""
    if not stats:
        return 0
    span = max(s["last_request_timestamp"] or 0 for s in stats) - min(s["start_time"] for s in stats)
    return span if span > 0 else 0


def _locust_latency(stats: list[dict], requests: int) -> dict[str, float]:
    histogram = _histogram(stats)
    total_time = sum(s["total_response_time"] for s in stats)
    return {
        "p50": _percentile(histogram, 50),
        "p90": _percentile(histogram, 90),
        # make tune's latency target (wrk's report has no p95).
        "p95": _percentile(histogram, 95),
        "p99": _percentile(histogram, 99),
        "p999": _percentile(histogram, 99.9),
        "max": max((s["max_response_time"] or 0 for s in stats), default=0),
        "mean": total_time / requests if requests else 0,
    }


def _histogram(stats: list[dict]) -> dict[float, int]:
    """Answers per response time (ms), over the given endpoints' entries."""
    histogram: dict[float, int] = {}
    for entry in stats:
        for ms, count in entry["response_times"].items():
            histogram[float(ms)] = histogram.get(float(ms), 0) + count
    return histogram


def _percentile(histogram: dict[float, int], q: float) -> float:
    total = sum(histogram.values())
    if total == 0:
        return 0.0
    rank = q / 100 * total
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)
