"""The demonstration surface: the workloads the concurrency tests, the load
test and the lab drive, and the client as the app sees it.

On while DEMO_ENDPOINTS is true (the default here); a fork sets it to false
and keeps everything else. No request can ask for more than DEMO_MAX_WORK_MS
(1 s by default), so no public request costs more than a worker's timeout
budget. Responses carry the server's own start and end times, so that a
client can count how many requests were in progress at once, and an opaque
id of the worker process (never its pid), so that it can count workers.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time

from flask import Blueprint, current_app, jsonify, request

from app.errors import BadParameter

bp = Blueprint("demo", __name__)

DEFAULT_WORK_MS = 100

#: One random id per process: distinct per worker, meaningless outside it.
_worker_ids: dict[int, str] = {}


def worker_id() -> str:
    return _worker_ids.setdefault(os.getpid(), secrets.token_hex(6))


def work_ms() -> int:
    """The `ms` query parameter: a whole number of milliseconds, 0..DEMO_MAX_WORK_MS."""
    limit = current_app.config["DEMO_MAX_WORK_MS"]
    message = f"ms must be a whole number of milliseconds from 0 to {limit}"
    values = request.args.getlist("ms")
    if not values:
        return min(DEFAULT_WORK_MS, limit)
    if len(values) > 1:
        raise BadParameter("ms", "ms must be given once")
    raw = values[0]
    if not (raw.isascii() and raw.isdigit()) or int(raw) > limit:
        raise BadParameter("ms", message)
    return int(raw)


def timing(started_at: float, **extra: object):
    return jsonify(worker=worker_id(), started_at=started_at, finished_at=time.time(), **extra)


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


@bp.get("/client")
def client():
    """The client as the app sees it once ProxyFix has applied nginx's
    X-Forwarded-* headers: what a forged header could change, if it could."""
    return jsonify(remote_addr=request.remote_addr, scheme=request.scheme, host=request.host)
