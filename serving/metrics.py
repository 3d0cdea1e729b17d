"""The app's Prometheus metrics, recorded by each gunicorn worker.

prometheus_client in multiprocess mode (PROMETHEUS_MULTIPROC_DIR, which
serving.gunicorn_conf sets): each worker writes to files of its own, and the
metrics server (serving/metrics_server.py) adds them up across the workers,
the living and the dead, when Prometheus scrapes it. Imported in the workers
only (after gevent's monkey-patching: prometheus_client makes a lock at
import), and only while metrics are on (serving.metrics_master.enabled).

Requests are counted through Flask's signals, which every Flask app in the
process sends: the app's code is not touched.

Labels are bounded: `app` is `/` for the app and the prefix of each app
APP_MOUNTS mounts beside it (serving/dispatch.py); `endpoint` is the URL rule
(`/work/io`, `/items/<int:id>`), `none` for a request no rule matched, `*` for
every request of a mounted app that is not Flask (its routes are its own),
never the raw path; `method` is one of the standard methods or `other`.
Mounted Flask apps send the same signals; any other mounted app is counted
around its WSGI call (`labelled`).
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request, request_finished, request_started, request_tearing_down
from prometheus_client import Counter, Gauge, Histogram

from serving.health import PROBE

#: 1 ms to 30 s (GUNICORN_TIMEOUT's default), finer where requests mostly are.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_RULE = "none"
#: The `app` label of the app's own requests; a mounted app's is its prefix.
ROOT = "/"
#: The endpoint of every request of a mounted app that is not Flask.
WHOLE_APP = "*"

REQUESTS = Counter(
    "flask_http_requests_total",
    "HTTP requests the app answered, by app (its mount prefix), URL rule, method and status.",
    ["app", "endpoint", "method", "status"],
)
DURATION = Histogram(
    "flask_http_request_duration_seconds",
    "Time the app took to produce a response (before the body is sent), by app, URL rule and method.",
    ["app", "endpoint", "method"],
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


#: Mounted Flask apps -> their `app` label; any other Flask app is the root's.
_flask_labels: dict[int, str] = {}


def _method(method: str) -> str:
    return method if method in METHODS else "other"


def _started(sender, **extra) -> None:
    if request.environ.get(PROBE):  # the health probe (serving/health.py): not a request anyone made
        return
    IN_FLIGHT.inc()
    g.metrics_in_flight = True
    g.metrics_started = time.perf_counter()


def _answered(sender, response: Response, **extra) -> None:
    # Popped: the request counts once, whatever sends the signal again.
    started = g.pop("metrics_started", None)
    if started is not None:
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else NO_RULE
        app, method = _flask_labels.get(id(sender), ROOT), _method(request.method)
        REQUESTS.labels(app, endpoint, method, str(response.status_code)).inc()
        DURATION.labels(app, endpoint, method).observe(time.perf_counter() - started)


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


class _CountedApp:
    """A mounted app that is not Flask, counted and timed as Flask's signals
    count the others: once, with the last status it started (a JSON 500
    from serving/errors.py's CrashGuard included), when it returns."""

    def __init__(self, app, label: str) -> None:
        self.app = app
        self.label = label

    def __call__(self, environ, start_response):
        started, status = time.perf_counter(), None

        def start(status_line, headers, exc_info=None):
            nonlocal status
            status = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info)

        IN_FLIGHT.inc()
        try:
            return self.app(environ, start)
        finally:
            IN_FLIGHT.dec()
            if status is not None:
                method = _method(environ.get("REQUEST_METHOD", ""))
                REQUESTS.labels(self.label, WHOLE_APP, method, status).inc()
                DURATION.labels(self.label, WHOLE_APP, method).observe(time.perf_counter() - started)


def labelled(app, prefix: str):
    """A mounted app whose requests are counted under `app=prefix`."""
    if isinstance(app, Flask):
        _flask_labels[id(app)] = prefix
        return app
    return _CountedApp(app, prefix)
