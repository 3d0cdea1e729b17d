"""The app's Prometheus metrics, recorded by each gunicorn worker.

prometheus_client in multiprocess mode (PROMETHEUS_MULTIPROC_DIR, which
serving.gunicorn_conf sets): each worker writes to files of its own, and the
metrics server (serving/metrics_server.py) adds them up across the workers,
the living and the dead, when Prometheus scrapes it. Imported in the workers
only (after gevent's monkey-patching: prometheus_client makes a lock at
import), and only while metrics are on (serving.metrics_master.enabled).

Requests are counted through Flask's signals, which every Flask app in the
process sends: the app's code is not touched.

Labels are bounded: `endpoint` is the URL rule (`/work/io`, `/items/<int:id>`),
`none` for a request no rule matched, never the raw path; `method` is one of
the standard methods or `other`.
"""

from __future__ import annotations

import time

from flask import Response, g, request, request_finished, request_started, request_tearing_down
from prometheus_client import Counter, Gauge, Histogram

#: 1 ms to 30 s (GUNICORN_TIMEOUT's default), finer where requests mostly are.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_RULE = "none"

REQUESTS = Counter(
    "flask_http_requests_total",
    "HTTP requests the app answered, by URL rule, method and status.",
    ["endpoint", "method", "status"],
)
DURATION = Histogram(
    "flask_http_request_duration_seconds",
    "Time the app took to produce a response (before the body is sent), by URL rule and method.",
    ["endpoint", "method"],
    buckets=DURATION_BUCKETS,
)
IN_FLIGHT = Gauge(
    "flask_http_requests_in_flight",
    "Requests the app is working on now, all live workers together.",
    multiprocess_mode="livesum",
)
WORKERS = Gauge(
    "gunicorn_workers",
    "Live gunicorn workers: each sets 1 when it has booted; a dead one's value goes with it.",
    multiprocess_mode="livesum",
)
WORKER_BOOTS = Counter(
    "gunicorn_worker_boots_total",
    "Workers booted since gunicorn started: beyond the configured count, restarts (crashes, timeouts, "
    "GUNICORN_MAX_REQUESTS, reloads).",
)
MAX_CONCURRENT_REQUESTS = Gauge(
    "gunicorn_max_concurrent_requests",
    "Requests this replica can work on at once, by design (workers x threads, or x greenlets under gevent).",
    # Every live worker states it; a dead one's value goes with its files.
    multiprocess_mode="livemostrecent",
)


def worker_booted(max_concurrent_requests: int) -> None:
    """Called once by each worker when it has booted (gunicorn's post_worker_init)."""
    WORKERS.set(1)
    WORKER_BOOTS.inc()
    MAX_CONCURRENT_REQUESTS.set(max_concurrent_requests)


def _started(sender, **extra) -> None:
    IN_FLIGHT.inc()
    g.metrics_in_flight = True
    g.metrics_started = time.perf_counter()


def _answered(sender, response: Response, **extra) -> None:
    # Popped: the request counts once, whatever sends the signal again.
    started = g.pop("metrics_started", None)
    if started is not None:
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else NO_RULE
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(endpoint, method, str(response.status_code)).inc()
        DURATION.labels(endpoint, method).observe(time.perf_counter() - started)


def _finished(sender, **extra) -> None:
    # Sent whatever happened before it.
    if g.pop("metrics_in_flight", False):
        IN_FLIGHT.dec()


def instrument() -> None:
    """Count and time every request the process's Flask apps answer. Once
    is enough: connecting a receiver again changes nothing."""
    request_started.connect(_started)
    request_finished.connect(_answered)
    request_tearing_down.connect(_finished)
