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

from flask import Blueprint, current_app, jsonify, render_template, request
from sqlalchemy import text
from werkzeug.exceptions import NotFound

from demo import db
from demo.errors import BadParameter

bp = Blueprint("demo", __name__)
#: With a database configured (demo/db.py): a wait inside it, and a row written and read.
database_bp = Blueprint("demo_database", __name__, url_prefix="/db")

#: Longest item name the table holds (demo/db.py's Item).
NAME_MAX = 100

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


@bp.get("/demo")
def demo_page():
    """An HTML page from a template, whose stylesheet and script are served
    by nginx under content-hashed names (demo/static/, docs/static.md)."""
    return render_template("demo.html")


@bp.get("/client")
def client():
    """The client as the app sees it once ProxyFix has applied nginx's
    X-Forwarded-* headers: what a forged header could change, if it could."""
    return jsonify(remote_addr=request.remote_addr, scheme=request.scheme, host=request.host)


# --- on the database ---------------------------------------------------------------


@database_bp.get("/sleep")
def database_sleep():
    """Wait `ms` inside the database (pg_sleep), on one of this worker's
    pooled connections: what the pool, not the worker class, bounds. The
    times it answers are the query's, from the moment it had a connection."""
    ms = work_ms()
    session = db.session()
    session.connection()  # waits for a free one, at most DATABASE_POOL_TIMEOUT
    started_at = time.time()
    session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": ms / 1000})
    return timing(started_at, kind="database", ms=ms)


@database_bp.post("/items")
def create_item():
    """Write a row through the ORM: JSON {"name": "..."}, 1 to 100 characters."""
    body = request.get_json(silent=True)
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX:
        raise BadParameter("name", f"name must be a JSON string of 1 to {NAME_MAX} characters")
    session = db.session()
    item = db.Item(name=name)
    session.add(item)
    session.commit()
    return jsonify(item_body(item)), 201


@database_bp.get("/items/<int:item_id>")
def read_item(item_id: int):
    item = db.session().get(db.Item, item_id)
    if item is None:
        raise NotFound(f"no item {item_id}")
    return jsonify(item_body(item))


def item_body(item) -> dict[str, object]:
    return {"id": item.id, "name": item.name, "created_at": item.created_at.isoformat()}
