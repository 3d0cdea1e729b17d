"""The load test: a traffic mix over the app's endpoints, and the thresholds
that decide the exit code (docs/loadtest.md).

Thresholds are locust command-line options that read LOADTEST_* variables, so
a bad value stops locust before any request, naming the variable. They are
checked on the `quitting` event, on the process that holds the whole run's
statistics (the only process, or the master), which sets the exit code:
0 when every threshold holds, 1 when one fails. The same process writes
<report prefix>_summary.json next to locust's HTML and CSV reports.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import glob
import json
import logging
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import jsonify, request
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV, StatsEntry
from locust.util.timespan import parse_timespan

log = logging.getLogger("loadtest")

#: Only the stack's own nginx may be targeted (LOCUST_HOST, the web UI's host
#: field): the load test runs on the Compose network and has no business
#: anywhere else.
ALLOWED_HOSTS = frozenset({"nginx"})
#: Hard bounds on any run, headless or started from the web UI. Deliberately
#: not variables: raise them here if you really mean a longer or bigger run.
MAX_RUN_TIME_S = 600
MAX_USERS = 500

#: Milliseconds asked of /work/io (blocking wait) and /work/cpu (CPU burn).
IO_MS = (20, 50, 100, 200)
CPU_MS = (5, 10, 20)

#: Request names in the statistics, one per endpoint of the mix: the query
#: string and the 404 path vary, the name does not, so each endpoint keeps
#: its own line.
NAME_IO = "/work/io?ms=[N]"
NAME_CPU = "/work/cpu?ms=[N]"
NAME_NOT_FOUND = "/missing/[id] (404)"
NAME_DB_SLEEP = "/db/sleep?ms=[N]"
NAME_DB_ITEM = "/db/items/[id]"
#: Milliseconds asked of /db/sleep (a wait inside the database).
DB_MS = (10, 20, 50)


class StackUser(FastHttpUser):
    """One visitor: mostly fast requests, some waiting on I/O, a few burning
    CPU, and some for pages that do not exist (a 404 is the right answer)."""

    wait_time = between(0.1, 0.5)
    # Fail a request instead of hanging the run on it.
    connection_timeout = 5.0
    network_timeout = 10.0

    @task(40)
    def index(self):
        self.client.get("/", name="/")

    @task(15)
    def healthz(self):
        self.client.get("/healthz", name="/healthz")

    @task(10)
    def readyz(self):
        self.client.get("/readyz", name="/readyz")

    @task(20)
    def work_io(self):
        self.client.get(f"/work/io?ms={random.choice(IO_MS)}", name=NAME_IO)

    @task(5)
    def work_cpu(self):
        self.client.get(f"/work/cpu?ms={random.choice(CPU_MS)}", name=NAME_CPU)

    @task(10)
    def not_found(self):
        path = f"/missing/{random.randrange(10**9)}"
        with self.client.get(path, name=NAME_NOT_FOUND, catch_response=True) as response:
            if response.status_code == 404:
                response.success()
            else:
                response.failure(f"expected 404, got {response.status_code}")

    def on_start(self):
        # With a database (the stack's readiness checks it: docs/database.md),
        # its endpoints join the mix: waits inside it, rows written and read.
        response = self.client.get("/readyz", name="/readyz")
        checks = response.json().get("checks", []) if response.status_code == 200 else []
        if "database" in checks:
            self.tasks = [*type(self).tasks, *[database_sleep] * 10, *[database_write_read] * 3]


def database_sleep(user):
    user.client.get(f"/db/sleep?ms={random.choice(DB_MS)}", name=NAME_DB_SLEEP)


def database_write_read(user):
    created = user.client.post("/db/items", json={"name": f"load-{random.randrange(10**9)}"}, name="/db/items")
    if created.status_code == 201:
        user.client.get(f"/db/items/{created.json()['id']}", name=NAME_DB_ITEM)


# --- thresholds --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Threshold:
    """One limit on the whole run's statistics, read from an environment
    variable (or a command-line option) by locust's own argument parser."""

    option: str
    variable: str
    default: str
    expected: str  # what a valid value is, for the error message
    label: str
    unit: str
    measure: Callable[[StatsEntry], float]
    #: True: the limit is a maximum; False: a minimum.
    maximum: bool = True

    @property
    def dest(self) -> str:
        return self.option.removeprefix("--").replace("-", "_")

    def parse(self, raw: str) -> float | None:
        """A number >= 0, or None for "off"; an empty value means the default."""
        value = raw.strip() or self.default
        if value.lower() == "off":
            return None
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise argparse.ArgumentTypeError(
                f"{self.variable}={raw!r} is not valid: expected {self.expected}, or "
                f'"off" to disable this threshold; unset or empty means {self.default}'
            )
        return number

    def passes(self, measured: float, limit: float | None) -> bool:
        if limit is None:
            return True
        return measured <= limit if self.maximum else measured >= limit

    def describe(self, measured: float, limit: float | None) -> str:
        """E.g. "p95 response time 230 ms > 200 ms (LOADTEST_MAX_P95_MS)"."""
        if limit is None:
            return f"{self.label} {_fmt(measured)}{self.unit} (no limit: {self.variable}=off)"
        ok = self.passes(measured, limit)
        sign = ("<=" if ok else ">") if self.maximum else (">=" if ok else "<")
        return f"{self.label} {_fmt(measured)}{self.unit} {sign} {_fmt(limit)}{self.unit} ({self.variable})"


THRESHOLDS = (
    Threshold(
        "--max-fail-ratio",
        "LOADTEST_MAX_FAIL_RATIO",
        "0.01",
        "a fraction of failed requests from 0 to 1",
        "failure ratio",
        "",
        lambda total: total.fail_ratio,
    ),
    Threshold(
        "--max-p95-ms",
        "LOADTEST_MAX_P95_MS",
        "500",
        "a number of milliseconds >= 0",
        "p95 response time",
        " ms",
        lambda total: total.get_response_time_percentile(0.95),
    ),
    Threshold(
        "--min-rps",
        "LOADTEST_MIN_RPS",
        "20",
        "a number of requests per second >= 0",
        "throughput",
        " req/s",
        lambda total: total.total_rps,
        maximum=False,
    ),
)


@events.init_command_line_parser.add_listener
def add_threshold_options(parser, **_kwargs):
    for threshold in THRESHOLDS:
        parser.add_argument(
            threshold.option,
            env_var=threshold.variable,
            type=threshold.parse,
            default=threshold.default,
            include_in_web_ui=False,
            help=f"{'Maximum' if threshold.maximum else 'Minimum'} {threshold.label}: {threshold.expected}, "
            f'or "off". Default {threshold.default}.',
        )


# --- guards: only this stack, bounded runs ------------------------------------


def host_problem(host: str | None) -> str | None:
    if not host:
        return "no host is set (LOCUST_HOST or --host)"
    parts = urlsplit(host)
    if parts.scheme != "http" or parts.hostname not in ALLOWED_HOSTS:
        allowed = ", ".join(f"http://{name}:8080" for name in sorted(ALLOWED_HOSTS))
        return f"host {host!r} is not this stack's nginx; the load test only targets {allowed}"
    return None


def bounds_problem(users: int | None, run_time: float | None) -> str | None:
    if users is not None and users > MAX_USERS:
        return f"{users} users is more than this load test allows ({MAX_USERS}, MAX_USERS in locustfile.py)"
    if not run_time:
        return f"every run needs a run time of at most {MAX_RUN_TIME_S} s (LOCUST_RUN_TIME; in the web UI: Run time)"
    if run_time > MAX_RUN_TIME_S:
        return f"a run time of {run_time:g} s is longer than this load test allows ({MAX_RUN_TIME_S} s)"
    return None


def configuration_error(environment, message: str) -> None:
    """Stop before the first request (exit code 2), leaving no empty reports."""
    log.error("configuration error: %s", message)
    prefix = environment.parsed_options.csv_prefix
    if prefix:
        for path in glob.glob(glob.escape(prefix) + "_*.csv"):
            with contextlib.suppress(OSError):
                if os.path.getsize(path) == 0:
                    os.remove(path)
    sys.exit(2)


@events.init.add_listener
def check_configuration(environment, web_ui=None, **_kwargs):
    options = environment.parsed_options
    if problem := host_problem(environment.host):
        configuration_error(environment, problem)
    if isinstance(environment.runner, WorkerRunner):
        return
    if options.headless and (problem := bounds_problem(options.num_users, options.run_time)):
        configuration_error(environment, problem)
    if web_ui is not None:
        guard_web_ui(web_ui, environment)


def guard_web_ui(web_ui, environment) -> None:
    """Refuse a start from the web UI with another host, too many users or no
    (or too long a) run time; the UI shows the message."""

    @web_ui.app.before_request
    def check_swarm():
        if request.method != "POST" or not request.path.endswith("/swarm"):
            return None
        form = request.form
        try:
            users = int(form.get("user_count", "0"))
            run_time = parse_run_time(form.get("run_time", ""))
        except ValueError as exc:
            return jsonify(success=False, message=str(exc), host=environment.host)
        problem = host_problem(form.get("host", environment.host)) or bounds_problem(users, run_time)
        if problem:
            log.error("refused to start: %s", problem)
            return jsonify(success=False, message=problem, host=environment.host)
        return None


def parse_run_time(value: str) -> float | None:
    return parse_timespan(value) if value.strip() else None


# --- the verdict ----------------------------------------------------------------

#: Requests each worker reported, by worker id (distributed mode, on the master).
worker_requests: Counter[str] = Counter()
#: What check_thresholds found, for print_verdict to repeat after the summary.
verdict: dict = {"problems": [], "reports": [], "headless": True}


@events.worker_report.add_listener
def count_worker_requests(client_id, data, **_kwargs):
    worker_requests[client_id] += data.get("stats_total", {}).get("num_requests", 0)


@events.quitting.add_listener
def check_thresholds(environment, **_kwargs):
    """Compare the whole run with each threshold, log each result and, in a
    headless run, set the exit code: 1 if any threshold fails."""
    if isinstance(environment.runner, WorkerRunner):
        return
    options = environment.parsed_options
    total = environment.stats.total
    results, problems = [], []
    if total.num_requests == 0:
        problems.append("no request was made")
    for threshold in THRESHOLDS:
        limit = getattr(options, threshold.dest)
        measured = threshold.measure(total)
        passed = threshold.passes(measured, limit)
        line = threshold.describe(measured, limit)
        results.append(
            {
                "variable": threshold.variable,
                "threshold": threshold.label,
                "limit": limit,
                "maximum": threshold.maximum,
                "measured": measured,
                "passed": passed,
            }
        )
        if passed:
            log.info("threshold passed: %s", line)
        else:
            log.error("threshold FAILED: %s", line)
            problems.append(line)
    # Thresholds decide headless runs (CI); after a web UI session they are
    # only reported.
    if options.headless:
        environment.process_exit_code = 1 if problems else 0
    verdict.update(problems=problems, headless=options.headless)
    write_final_csv(environment)
    write_summary(environment, results, problems)


def write_final_csv(environment) -> None:
    """Rewrite the _stats, _failures and _exceptions CSV files with the final
    figures: locust refreshes them every 2 s only, so at exit they can miss the
    last requests and disagree with the HTML report and the summary."""
    prefix = environment.parsed_options.csv_prefix
    if not prefix:
        return
    final = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("_stats.csv", final.requests_csv),
        ("_failures.csv", final.failures_csv),
        ("_exceptions.csv", final.exceptions_csv),
    ):
        with open(prefix + suffix, "w", encoding="utf-8") as f:
            write(csv.writer(f))


@events.quit.add_listener
def print_verdict(exit_code, **_kwargs):
    """After locust's summary tables, on the same stream: where the reports
    are and the line to look for in a CI log."""
    console = logging.getLogger("locust.stats_logger")
    for prefix in verdict["reports"]:
        if prefix:
            console.info("Reports: %s.html, %s_stats.csv, %s_summary.json", prefix, prefix, prefix)
        else:
            console.info("Reports: none kept (the reports directory is not writable: see the warning above)")
    problems = "; ".join(verdict["problems"])
    if not verdict["headless"]:
        if problems:
            console.info("Thresholds not met (not enforced in the web UI): %s", problems)
    elif problems:
        console.info("Load test FAILED (exit code %s): %s", exit_code, problems)
    elif exit_code == 0:
        console.info("Load test passed: every threshold holds (exit code 0).")


def _fmt(value) -> str:
    if value is None:
        return "off"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_summary(environment, results, problems) -> None:
    """<report prefix>_summary.json: the verdict and the figures, for CI."""
    options = environment.parsed_options
    if not options.csv_prefix:
        return
    total = environment.stats.total
    summary = {
        "passed": not problems,
        "problems": problems,
        "host": environment.host,
        "users": options.num_users,
        "run_time_s": options.run_time,
        "distributed": isinstance(environment.runner, MasterRunner),
        "worker_requests": dict(worker_requests),
        **_figures(total),
        "thresholds": results,
        "endpoints": {entry.name: _figures(entry) for entry in environment.stats.entries.values()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = f"{options.csv_prefix}_summary.json"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    # As the host names them (loadtest/entrypoint.py): LOADTEST_REPORTS_SHOWN,
    # empty when the run keeps none; locust's own prefix when run otherwise.
    verdict["reports"] = [os.environ.get("LOADTEST_REPORTS_SHOWN", options.csv_prefix)]


def _figures(entry) -> dict:
    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "fail_ratio": entry.fail_ratio,
        "rps": entry.total_rps,
        "p50_ms": entry.get_response_time_percentile(0.5),
        "p95_ms": entry.get_response_time_percentile(0.95),
        "p99_ms": entry.get_response_time_percentile(0.99),
    }
