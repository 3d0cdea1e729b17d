"""The endpoints: process info, health, and the two workloads the concurrency
tests and benchmarks drive (blocking I/O and pure-Python CPU)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import socket
import time

from flask import Blueprint, current_app, jsonify, request

from app import runtime
from app.errors import BadParameter

bp = Blueprint("app", __name__)

#: Longest /work/* request accepted, in milliseconds. Longer than gunicorn's
#: default timeout on purpose, so that a test can provoke a worker timeout.
MAX_WORK_MS = 30_000
DEFAULT_WORK_MS = 100


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def work_ms() -> int:
    """The `ms` query parameter: a whole number of milliseconds, 0..MAX_WORK_MS."""
    values = request.args.getlist("ms")
    if not values:
        return DEFAULT_WORK_MS
    if len(values) > 1:
        raise BadParameter("ms", "ms must be given once")
    raw = values[0]
    if not (raw.isascii() and raw.isdigit()):
        raise BadParameter("ms", f"ms must be a whole number of milliseconds from 0 to {MAX_WORK_MS}")
    ms = int(raw)
    if ms > MAX_WORK_MS:
        raise BadParameter("ms", f"ms must be a whole number of milliseconds from 0 to {MAX_WORK_MS}")
    return ms


def timing(started_at: float, **extra: object):
    """Wall-clock start and end as seen by the server, so that a client can
    count how many requests were in progress at once, whatever its own
    scheduling delays were."""
    return jsonify(
        pid=os.getpid(),
        started_at=started_at,
        finished_at=time.time(),
        **extra,
    )


@bp.get("/")
def index():
    return jsonify(
        service="flask-concurrency",
        server=runtime.server,
        pid=os.getpid(),
        hostname=socket.gethostname(),
        # As the app sees the client once ProxyFix has applied nginx's headers.
        client={"remote_addr": request.remote_addr, "scheme": request.scheme, "host": request.host},
        versions={
            "python": platform.python_version(),
            "flask": _version("flask"),
            "werkzeug": _version("werkzeug"),
            "gunicorn": _version("gunicorn"),
            "gevent": _version("gevent"),
        },
    )


@bp.get("/healthz")
def healthz():
    # Liveness: answers as long as a worker can run a view; checks nothing else.
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    # Readiness: every check in READINESS_CHECKS (name -> callable returning
    # truthy when ready) must pass. A fork adds its database ping here.
    checks = current_app.config.get("READINESS_CHECKS", {})
    failed = []
    for name, check in checks.items():
        try:
            ok = bool(check())
        except Exception:  # noqa: BLE001 - a failing check is a result, not an error
            current_app.logger.exception("readiness check %s raised", name)
            ok = False
        if not ok:
            failed.append(name)
    if failed:
        return jsonify(status="not ready", failed=failed), 503
    return jsonify(status="ready", checks=sorted(checks))


@bp.get("/work/io")
def work_io():
    """Wait the way blocking I/O does. time.sleep releases the GIL for threads
    and, once gevent has monkey-patched it, yields to other greenlets."""
    ms = work_ms()
    started_at = time.time()
    time.sleep(ms / 1000)
    return timing(started_at, kind="io", ms=ms)


@bp.get("/work/cpu")
def work_cpu():
    """Burn `ms` of this thread's CPU time in pure Python. Counting CPU time,
    not wall time, makes GIL contention visible: two threads asking for 100 ms
    each take about 200 ms of wall time on one interpreter."""
    ms = work_ms()
    started_at = time.time()
    deadline = time.thread_time() + ms / 1000
    spins = 0
    while time.thread_time() < deadline:
        spins += sum(range(200))
    return timing(started_at, kind="cpu", ms=ms, spins=spins)


@bp.post("/work/upload")
def work_upload():
    """Read the whole request body, as any API taking JSON or files does. A
    client that sends its body slowly holds whoever reads it: behind nginx
    (request buffering on) that is nginx, never a gunicorn worker."""
    started_at = time.time()
    body = request.get_data(cache=False)
    return timing(started_at, kind="upload", bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
