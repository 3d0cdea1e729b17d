"""The soak: the load test's mixed traffic (loadtest/locustfile.py) against
the stack for a long, bounded time, with workers recycled as production
recycles them (GUNICORN_MAX_REQUESTS), watching what only time shows: a
failed request, a worker's memory creeping up, the metrics directory
growing with every recycle, the scrape slowing down, a container's memory.

Not part of `make test`'s default (pyproject.toml deselects the `soak`
marker): `make test PYTEST_ARGS="-m soak"`, 30 minutes by default;
`SOAK_SECONDS=180` for a quick one. The load test allows runs of 10 minutes
at most, so the soak is several of them back to back against the same
stack. One locust process from one address at the load it reaches here
(several hundred requests a second) would meet nginx's default per-client
limit (1,000 r/s, burst 2,000), so the soak lifts that limit, as the lab
does: it measures the stack, not the limit.
The figures go to the test's output (`soak:`); docs/operations.md states
what is asserted, not a run's figures.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.stack import Stack
from tests.replica_metrics import exec_python, metrics_files, scrape_seconds

pytestmark = pytest.mark.soak

SECONDS = int(os.environ.get("SOAK_SECONDS", "1800"))
USERS = int(os.environ.get("SOAK_USERS", "300"))
WORKER_CLASS = os.environ.get("SOAK_WORKER_CLASS", "gthread")
#: Each worker recycled after about 2,000 requests, give or take 200: at
#: several hundred requests a second over 10 workers, every 20-40 s.
MAX_REQUESTS, JITTER = 2000, 200
#: How often the soak looks at the stack, s.
EVERY = 30
#: Each load-test run's length: at most the longest run the load test allows
#: (loadtest/locustfile.py's MAX_RUN_TIME_S, 600 s).
SEGMENT_SECONDS = min(int(os.environ.get("SOAK_SEGMENT_SECONDS", "600")), 600)
#: A recycled worker has lived at most about 2,200 requests, so a leak can
#: show only as what 2,200 requests add; 25 % over the largest worker after
#: the warm-up, plus 8 MB for the allocator's noise, is well past that noise
#: (seen: a few MB) and well below what a leak of a few kB a request adds.
RSS_GROWTH, RSS_SLACK_KB = 1.25, 8 * 1024


@dataclass
class Look:
    at: float
    worker_rss_kb: list[int]
    metrics_files: list[int]
    scrape_seconds: list[float]
    memory_mb: dict[str, float] = field(default_factory=dict)


def rss_kb(pid: str) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # recycled meanwhile
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) if match else None


def container_memory_mb(stack: Stack) -> dict[str, float]:
    ids = [c.id for c in (*stack.containers("app"), *stack.containers("nginx"))]
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}", *ids],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    memory = {}
    for line in out.splitlines():
        row = json.loads(line)
        used = row["MemUsage"].split("/")[0].strip()
        number, unit = re.fullmatch(r"([\d.]+)\s*([KMG]i?B)", used).groups()
        memory[row["Name"]] = float(number) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(unit, 1)
    return memory


def look(stack: Stack, started: float) -> Look:
    workers = [p["pid"] for p in stack.processes("app") if "gunicorn: worker" in p["args"]]
    apps = stack.containers("app")
    return Look(
        at=time.monotonic() - started,
        worker_rss_kb=[kb for kb in map(rss_kb, workers) if kb is not None],
        metrics_files=[metrics_files(c.id) for c in apps],
        scrape_seconds=[scrape_seconds(c.id) for c in apps],
        memory_mb=container_memory_mb(stack),
    )


def nginx_statuses(stack: Stack) -> dict[int, int]:
    """Every answer nginx logged, by status (its access log is one JSON line a request)."""
    command = ["docker", "logs", stack.container("nginx").id]
    counts: dict[int, int] = {}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as logs:
        for line in logs.stdout:
            if match := re.search(r'"logger":"nginx.access".*?"status":(\d{3})', line):
                status = int(match[1])
                counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.fixture(scope="module")
def soaked(built_images, tmp_path_factory):
    stack = Stack(
        "soak",
        WORKER_CLASS=WORKER_CLASS,
        GUNICORN_MAX_REQUESTS=str(MAX_REQUESTS),
        GUNICORN_MAX_REQUESTS_JITTER=str(JITTER),
        NGINX_RATE_LIMIT="1000000r/s",
        NGINX_RATE_BURST="1000000",
        NGINX_CONNECTIONS_PER_CLIENT="65535",
    )
    reports = tmp_path_factory.mktemp("soak-reports")
    built = stack.compose("--profile", "loadtest", "build", "--quiet", "loadtest", timeout=600)
    assert built.returncode == 0, built.stderr
    try:
        stack.up()
        started = time.monotonic()
        looks: list[Look] = []
        done = threading.Event()

        def watch() -> None:
            while not done.wait(EVERY):
                looks.append(look(stack, started))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        runs, summaries = [], []
        remaining = SECONDS
        while remaining > 0:
            # The load test refuses runs over MAX_RUN_TIME_S (loadtest/
            # locustfile.py, on purpose not a variable): the soak is several
            # such runs back to back, on the same stack, its workers never
            # restarted between them.
            segment = min(SEGMENT_SECONDS, remaining)
            remaining -= segment
            segment_reports = reports / str(len(runs))
            segment_reports.mkdir()
            segment_reports.chmod(0o1777)
            env = {
                "LOADTEST_REPORTS_DIR": str(segment_reports),
                "LOCUST_USERS": str(USERS),
                "LOCUST_SPAWN_RATE": str(max(1, USERS // 10)),
                "LOCUST_RUN_TIME": f"{segment}s",
                # The soak's verdict is its own (below); the load test's
                # latency threshold is for a quiet 30 s run, not hours on 2 cores.
                "LOADTEST_MAX_P95_MS": "60000",
            }
            runs.append(stack.compose("run", "--rm", "-T", "--no-deps", "loadtest", env=env, timeout=segment + 600))
            summary_files = list(segment_reports.glob("loadtest-*_summary.json"))
            summaries.append(json.loads(summary_files[0].read_text()) if summary_files else None)
            if runs[-1].returncode or summaries[-1] is None:
                break
        done.set()
        watcher.join(timeout=120)
        looks.append(look(stack, started))
        yield {
            "runs": runs,
            "summaries": summaries,
            "looks": looks,
            "statuses": nginx_statuses(stack),
            "boots": [int(exec_python(c.id, BOOTS)) for c in stack.containers("app")],
        }
    finally:
        stack.down()


BOOTS = (
    "import re, urllib.request as u; text = u.urlopen('http://127.0.0.1:9100/metrics').read().decode(); "
    "print(int(float(re.search(r'^gunicorn_worker_boots_total (\\S+)', text, re.M)[1])))"
)


def combined(summaries: list[dict | None]) -> dict | None:
    """The runs' figures together: counts added up, the rate over their
    time, and the worst run's percentiles (percentiles do not add up)."""
    if not summaries or None in summaries:
        return None
    seconds = sum(each["requests"] / each["rps"] for each in summaries if each["rps"])
    return {
        "requests": sum(each["requests"] for each in summaries),
        "failures": sum(each["failures"] for each in summaries),
        "rps": round(sum(each["requests"] for each in summaries) / seconds, 1) if seconds else 0,
        "p50_ms": max(each["p50_ms"] for each in summaries),
        "p95_ms": max(each["p95_ms"] for each in summaries),
        "p99_ms": max(each["p99_ms"] for each in summaries),
    }


def test_the_soak_fails_no_request_and_nothing_grows(soaked):
    runs, looks = soaked["runs"], soaked["looks"]
    summary = combined(soaked["summaries"])
    statuses = soaked["statuses"]
    warm = next((each for each in looks if each.at >= min(300, SECONDS / 5)), looks[0])
    end = looks[-1]
    report = {
        "seconds": SECONDS,
        "users": USERS,
        "worker_class": WORKER_CLASS,
        "requests": summary and summary["requests"],
        "failures": summary and summary["failures"],
        "requests_per_second": summary and summary["rps"],
        "load_test_runs": len(runs),
        # The worst run's, of the runs back to back.
        "latency_ms_p50_p95_p99": summary and [summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]],
        "nginx_statuses": statuses,
        "worker_boots_per_replica": soaked["boots"],
        "worker_rss_mb_after_warmup": [
            round(max(warm.worker_rss_kb) / 1024, 1),
            round(statistics.median(warm.worker_rss_kb) / 1024, 1),
        ],
        "worker_rss_mb_at_end": [
            round(max(end.worker_rss_kb) / 1024, 1),
            round(statistics.median(end.worker_rss_kb) / 1024, 1),
        ],
        "metrics_files_per_replica": {
            "after_warmup": warm.metrics_files,
            "largest": max(max(x.metrics_files) for x in looks),
            "at_end": end.metrics_files,
        },
        "scrape_seconds": {
            "after_warmup": warm.scrape_seconds,
            "largest": max(max(x.scrape_seconds) for x in looks),
            "at_end": end.scrape_seconds,
        },
        "container_memory_mb": {"after_warmup": warm.memory_mb, "at_end": end.memory_mb},
    }
    print("soak:", json.dumps(report, indent=2))
    output = runs[-1].stdout + runs[-1].stderr
    assert summary is not None, output[-3000:]
    assert all(run.returncode == 0 for run in runs), output[-3000:]
    assert len(runs) == -(-SECONDS // SEGMENT_SECONDS)
    # Every answer nginx gave: the mix's 200s and its deliberate 404s, nothing else.
    assert set(statuses) <= {200, 404}, statuses
    assert summary["failures"] == 0
    assert sum(statuses.values()) >= summary["requests"] > 0
    # Workers were really recycled: each replica booted more than its 5 at start.
    assert min(soaked["boots"]) > 5, soaked["boots"]
    assert max(end.worker_rss_kb) <= max(warm.worker_rss_kb) * RSS_GROWTH + RSS_SLACK_KB, report
    # Four files per live worker (5 per replica) and two archives; a few retired ones may wait a merge.
    bound = 5 * 4 + 2 + 4
    assert max(max(x.metrics_files) for x in looks) <= bound, report["metrics_files_per_replica"]
    assert max(end.scrape_seconds) < 0.5, report["scrape_seconds"]
