"""gunicorn's configuration: `gunicorn -c python:serving.gunicorn_conf`.

Values come from serving.settings (environment variables with defaults, read
once in this process); this file only hands them to gunicorn and adds the
hooks. An invalid variable stops the start here with one line naming it.

The master imports this before gevent's worker monkey-patches (the workers
fork from it, and preload_app is off): nothing beyond the standard library
and gunicorn may be imported here, nor by the modules it imports: settings,
logs, lifecycle, metrics_master and internals. The JSON log
formatters are named by string (serving/logs.py), and prometheus_client is
imported by the workers only, in post_worker_init and by serving/middleware.py.
"""

# Beyond their public API, this file relies on `Worker.handle_error`,
# `Logger.setup`, `config.Config`: serving/internals.py checks them (at start
# for the worker class in use, and first in the test suite).

from __future__ import annotations

import json
import os
import signal
import sys
import traceback

from gunicorn import util as gunicorn_util

from serving import internals, lifecycle, logs, metrics_master
from serving.settings import SettingsError, available_cpus, current, gunicorn_options, max_concurrent_requests

try:
    _settings = current()
except SettingsError as exc:
    # SystemExit passes through gunicorn's config loader, which would print a
    # traceback for any other exception.
    print(f"configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None

# The app's entry point (demo/wsgi.py) inside what the server adds to it.
wsgi_app = "serving.wsgi:application"
# worker_class, workers, threads, timeouts, bind, ...: every setting in
# serving.settings.VARIABLES that is gunicorn's, under gunicorn's own name.
_options = gunicorn_options(_settings)
#: The class gunicorn runs for each WORKER_CLASS but sync: gunicorn's own,
#: made to take a connection only while it can start a request on it, so a
#: burst spreads over the workers (serving/gthread_worker.py,
#: serving/gevent_worker.py). They stand on gunicorn's and gevent's
#: internals (serving/internals.py); GUNICORN_STOCK_WORKERS=true runs
#: gunicorn's own classes instead.
WORKERS = {
    "gthread": "serving.gthread_worker.BalancedThreadWorker",
    "gevent": "serving.gevent_worker.BalancedGeventWorker",
}
if not _settings.stock_workers:
    _broken = internals.broken(_options["worker_class"])
    if _broken:
        more = f" (and {len(_broken) - 1} more)" if len(_broken) > 1 else ""
        print(f"configuration error: {_broken[0]}{more}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    _options["worker_class"] = WORKERS.get(_options["worker_class"], _options["worker_class"])
globals().update(_options)
errorlog = "-"
# LOG_FORMAT: one JSON line per event (default), or gunicorn's plain lines.
logconfig_dict = logs.logconfig_dict(_settings.log_format, _settings.loglevel, _settings.accesslog)
logger_class = logs.Logger

# Metrics (METRICS_PORT, 0: off): PROMETHEUS_MULTIPROC_DIR, /tmp/metrics unless
# set, is in the environment the workers and the metrics server inherit.
_metrics_dir = metrics_master.directory(_settings.metrics_port)
_metrics_process = None

# The workers' heartbeat files go to a tmpfs: on an overlay or disk-backed
# /tmp a slow fsync can make the arbiter think a healthy worker hung.
worker_tmp_dir = "/dev/shm"
# gunicorn >= 25 opens a control socket (for `gunicornc`) under $HOME by
# default, which a read-only root filesystem refuses. /tmp is a tmpfs in the
# compose file; the socket stays private to the app user (mode 0600).
control_socket = "/tmp/gunicorn.ctl"
# Loading the app in each worker after fork keeps gevent's monkey patching
# ahead of every import of Flask and the app (preloading would import them
# unpatched in the master).
preload_app = False
# `gunicorn: master [yourapp]` in ps and top: the app's module, as APP_MODULE names it.
proc_name = _settings.app_module.partition(":")[0]
# nginx refuses oversized requests first, in JSON: its buffers (8 kB a line,
# 32 kB of headers: large_client_header_buffers in nginx/nginx.conf) are the bound. Left at
# their defaults (4094-byte line, 100 headers), gunicorn would answer some
# requests nginx passes with an HTML 414 or 431 of its own.
limit_request_line = 8190  # gunicorn's maximum
limit_request_fields = 32768  # gunicorn's maximum; 32 kB holds fewer header lines
limit_request_field_size = 0  # unlimited: nginx's 8 kB line buffer bounds it

#: The names logged as the effective configuration, read back from gunicorn's
#: own parsed config so that GUNICORN_CMD_ARGS or CLI flags show up too.
EFFECTIVE_SETTINGS = (*_options, "worker_tmp_dir", "control_socket", "preload_app")


def worker_family(worker_class_str: str) -> str:
    """sync, gthread or gevent: what gunicorn runs, named as WORKER_CLASS names it."""
    return {path: family for family, path in WORKERS.items()}.get(worker_class_str, worker_class_str)


def effective_config(cfg) -> dict[str, object]:
    values = {name: cfg.settings[name].get() for name in EFFECTIVE_SETTINGS}
    values["worker_class"] = worker_family(cfg.worker_class_str)
    values["worker"] = cfg.worker_class_str
    values["max_concurrent_requests"] = max_concurrent_requests(
        values["worker_class"], values["workers"], values["threads"], values["worker_connections"]
    )
    values["cpus_available"] = available_cpus()
    # With a database, what the workers open at most (docs/database.md).
    values["database_pool_size"] = _settings.database_pool_size
    values["database_connections_per_replica"] = values["workers"] * _settings.database_pool_size
    return values


def on_starting(server) -> None:
    # One JSON line, easy to grep from `docker compose logs app`: the
    # integration tests compare what they measure with it.
    print(json.dumps({"event": "gunicorn.config", **effective_config(server.cfg)}), file=sys.stderr, flush=True)
    if _metrics_dir:
        # A previous run's files (gunicorn started again with the same
        # directory) would add dead workers' counts to this run's.
        metrics_master.reset_directory(_metrics_dir)


def when_ready(server) -> None:
    """Start the metrics server, a process of its own (serving/metrics_server.py)."""
    global _metrics_process
    if _metrics_dir and _metrics_process is None:
        _metrics_process = metrics_master.start_server(_settings)
        server.log.info("metrics server started (pid %s, port %s)", _metrics_process.pid, _settings.metrics_port)


def on_exit(server) -> None:
    if _metrics_process is not None:
        metrics_master.stop_server(_metrics_process)


def child_exit(server, worker) -> None:
    """A worker is gone (stopped, recycled, killed): its live gauges (in
    flight, gunicorn_workers) go with it; its counters and histograms are
    retired into the archive the scrape reads, so that no count goes down
    and the directory does not grow with every recycle."""
    if _metrics_dir:
        metrics_master.retire(worker.pid, _metrics_dir, _metrics_process)


def post_worker_init(worker) -> None:
    """In each worker once the app is loaded (after gevent's patching).

    SIGTERM (shutdown, or the old workers of a HUP reload) marks the
    worker as draining before gunicorn's own handler stops it: from then on
    /readyz answers 503 on any connection the worker still serves.

    With metrics on, the worker counts itself: live, booted once more, and
    the replica's design concurrency (as gunicorn really runs, CLI included)."""
    if _metrics_dir:
        from serving import metrics  # in the worker, after gevent's patching

        cfg = worker.cfg
        family = worker_family(cfg.worker_class_str)
        metrics.worker_booted(max_concurrent_requests(family, cfg.workers, cfg.threads, cfg.worker_connections))
    stop = signal.getsignal(signal.SIGTERM)

    def drain_then_stop(signum, frame) -> None:
        lifecycle.begin_draining()
        if callable(stop):
            stop(signum, frame)

    signal.signal(signal.SIGTERM, drain_then_stop)


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own answer to a request it refuses before the app runs (a
    header it finds invalid, say), as JSON like every other error here.
    gunicorn has no hook for this page, so its writer is replaced: same
    status line and Connection: close, a JSON body instead of HTML."""
    body = json.dumps({"error": {"status": status_int, "name": reason, "message": mesg, "source": "gunicorn"}})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, (head + body).encode("latin1"))


gunicorn_util.write_error = write_json_error


def worker_abort(worker) -> None:
    """A worker past its timeout. Log where every thread was stuck, then die
    at once: left to itself, gunicorn would unwind the request with
    SystemExit and answer it with an HTML 500 page. A closed connection
    instead lets nginx answer with its JSON 502."""
    stacks = []
    for thread_id, frame in sys._current_frames().items():
        stacks.append(f"thread {thread_id}:\n{''.join(traceback.format_stack(frame))}")
    worker.log.critical("worker %s timed out; its threads were at:\n%s", worker.pid, "\n".join(stacks))
    logging_flush(worker)
    os._exit(1)


def logging_flush(worker) -> None:
    for handler in worker.log.error_log.handlers:
        handler.flush()
