"""Every internal of gunicorn, gevent and prometheus_client this package stands on.

None of what is listed here is documented API: a release may rename or
reshape it without notice. An override whose name no longer exists upstream
is simply never called, and the worker silently becomes stock gunicorn (or
worse, half of it). So each entry names what is relied on, what must hold,
and the file to review, and `broken()` checks them against what is
installed:
- tests/unit/test_internals.py runs every check first, before any timing
  test, and stops the run with one line per broken entry;
- serving/gunicorn_conf.py runs the checks of the configured worker class
  at start and refuses to start on a broken one, naming it; the escape hatch
  is GUNICORN_STOCK_WORKERS=true (gunicorn's own classes).

Standard library only, plus whatever an entry imports when it is checked:
gunicorn_conf runs this in the master before gevent patches, and only the
gevent entries import gevent (gunicorn imports it there for a gevent worker
anyway).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

#: Which checks apply: every configuration, or one worker class (gthread,
#: gevent), or the tests alone (METRICS: importing prometheus_client in the
#: master would make its lock before gevent patches the workers).
ALL = "all"
METRICS = "metrics"
#: SQLAlchemy's pool, read by the gevent worker's database gate: checked by
#: the tests and by each gevent worker whose app loaded SQLAlchemy (never in
#: the master, which must not import it, nor where the app has no database).
DATABASE = "database"


@dataclass(frozen=True)
class Internal:
    #: The dotted name of what is relied on.
    name: str
    #: What must hold, in words.
    expect: str
    #: The file whose code relies on it: what to review when it breaks.
    relied_on_by: str
    #: ALL, METRICS, or the worker class (gthread, gevent) whose code relies on it.
    family: str
    #: None when it holds, else what is wrong.
    check: Callable[[], str | None]

    def problem(self) -> str | None:
        try:
            return self.check()
        except Exception as exc:  # noqa: BLE001 - any failure to find it is the finding
            return f"cannot be checked ({type(exc).__name__}: {exc})"


def _resolve(dotted: str) -> object:
    """The object a dotted name names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(f"no module in {dotted}")


def _find(dotted: str) -> tuple[object | None, str | None]:
    try:
        return _resolve(dotted), None
    except (ImportError, AttributeError):
        return None, "missing"


def method(dotted: str, parameters: str, relied_on_by: str, family: str, why: str) -> Internal:
    """A function or method that must exist with exactly these parameters."""
    wanted = [p.strip() for p in parameters.split(",") if p.strip()]

    def check() -> str | None:
        obj, missing = _find(dotted)
        if missing:
            return missing
        found = list(inspect.signature(obj).parameters)
        if found != wanted:
            return f"parameters are ({', '.join(found)}), not ({', '.join(wanted)})"
        return None

    return Internal(dotted, f"({', '.join(wanted)}): {why}", relied_on_by, family, check)


def mentions(dotted: str, text: str, relied_on_by: str, family: str, why: str) -> Internal:
    """An attribute set, or a method called, inside upstream code: its source
    must still contain `text`."""

    def check() -> str | None:
        obj, missing = _find(dotted)
        if missing:
            return missing
        if text not in inspect.getsource(obj):
            return f"no longer contains {text!r}"
        return None

    return Internal(dotted, f"contains {text!r}: {why}", relied_on_by, family, check)


GTHREAD = "serving/gthread_worker.py"
GEVENT = "serving/gevent_worker.py"
CONF = "serving/gunicorn_conf.py"
THREAD_WORKER = "gunicorn.workers.gthread.ThreadWorker"

INTERNALS: tuple[Internal, ...] = (
    # --- the gthread worker: overrides, the loop that calls them, the state it shares
    method(f"{THREAD_WORKER}.enqueue_req", "self, conn", GTHREAD, "gthread", "counted in, then handed to a thread"),
    method(f"{THREAD_WORKER}.finish_request", "self, conn, fs", GTHREAD, "gthread", "counted out, then the line moves"),
    method(
        f"{THREAD_WORKER}.set_accept_enabled", "self, enabled", GTHREAD, "gthread", "replaced: listeners wait in line"
    ),
    method(f"{THREAD_WORKER}.accept", "self, listener", GTHREAD, "gthread", "accepts only while a thread is free"),
    method(
        f"{THREAD_WORKER}.on_client_socket_readable",
        "self, conn, client",
        GTHREAD,
        "gthread",
        "a kept-alive request waits in line while no thread is free",
    ),
    method(
        f"{THREAD_WORKER}.on_pending_socket_readable",
        "self, conn, client",
        GTHREAD,
        "gthread",
        "a deferred connection waits in line while no thread is free",
    ),
    mentions(
        f"{THREAD_WORKER}.run", "self.set_accept_enabled(", GTHREAD, "gthread", "the loop turns accepting on and off"
    ),
    mentions(
        f"{THREAD_WORKER}.enqueue_req", "self.finish_request", GTHREAD, "gthread", "a finished request comes back"
    ),
    mentions(f"{THREAD_WORKER}.__init__", "self._accepting =", GTHREAD, "gthread", "whether the loop wants to accept"),
    mentions(f"{THREAD_WORKER}.__init__", "self.keepalived_conns =", GTHREAD, "gthread", "idle kept-alive connections"),
    mentions(f"{THREAD_WORKER}.__init__", "self.pending_conns =", GTHREAD, "gthread", "connections waiting for data"),
    mentions(f"{THREAD_WORKER}.init_process", "self.poller =", GTHREAD, "gthread", "the selector listeners are put in"),
    mentions(
        "gunicorn.workers.gthread.TConn", "self.data_ready", GTHREAD, "gthread", "set when a deferred one is ready"
    ),
    # --- the gevent worker: the pool gunicorn builds, the semaphore gevent's server watches
    mentions("gunicorn.workers.ggevent.GeventWorker.run", "Pool(", GEVENT, "gevent", "builds each pool by that name"),
    mentions(
        "gunicorn.workers.ggevent", "from gevent.pool import Pool", GEVENT, "gevent", "the module global replaced"
    ),
    method(
        "gunicorn.workers.ggevent.GeventWorker.handle_request",
        "self, listener_name, req, sock, addr",
        GEVENT,
        "gevent",
        "a slot is held around each request",
    ),
    mentions("gevent.pool.Pool.__init__", "self._semaphore =", GEVENT, "gevent", "the pool's slots"),
    method("gevent.pool.Pool._discard", "self, greenlet", GEVENT, "gevent", "a slot is released when a greenlet ends"),
    method("gevent.pool.Group._discard", "self, greenlet", GEVENT, "gevent", "called without the pool's release"),
    mentions(
        "gevent.baseserver.BaseServer", "pool._semaphore.rawlink(", GEVENT, "gevent", "accepting resumes on a slot"
    ),
    # --- the gevent worker's database gate: the server gunicorn builds, its accept, the pool's count
    mentions(
        "gunicorn.workers.ggevent",
        "from gevent.server import StreamServer",
        GEVENT,
        "gevent",
        "the module global replaced by the gated server",
    ),
    mentions(
        "gunicorn.workers.ggevent.GeventWorker.run",
        "StreamServer(s, handle=hfun",
        GEVENT,
        "gevent",
        "builds each server by that name",
    ),
    method("gevent.server.StreamServer.do_read", "self", GEVENT, "gevent", "the accept: the gate is asked first"),
    mentions(
        "gevent.baseserver.BaseServer._do_read",
        "if not args:",
        GEVENT,
        "gevent",
        "None from do_read is nothing accepted, and the watcher is left as the gate set it",
    ),
    method(
        "sqlalchemy.pool.QueuePool.checkedout",
        "self",
        GEVENT,
        DATABASE,
        "the connections taken, read at each accept",
    ),
    mentions(
        "sqlalchemy.pool.QueuePool._do_get",
        "self._inc_overflow()",
        GEVENT,
        DATABASE,
        "a new connection is counted out before it connects, so checkedout() is current at once",
    ),
    mentions(
        "sqlalchemy.pool.QueuePool.__init__",
        "self._max_overflow =",
        GEVENT,
        DATABASE,
        "the pool's bound, which the gate and serving/pools.py's capacity count (no public reader of it)",
    ),
    mentions(
        "sqlalchemy.pool.base._ConnectionFairy.__init__",
        "self._pool = pool",
        GEVENT,
        DATABASE,
        "the checkout event's proxy names its pool: how the gate learns the pools",
    ),
    # --- the configuration: JSON errors from gunicorn itself, the logger, effective config
    method("gunicorn.util.write_error", "sock, status_int, reason, mesg", CONF, ALL, "replaced: a JSON body"),
    mentions("gunicorn.workers.base.Worker.handle_error", "util.write_error(", CONF, ALL, "called by module name"),
    method("gunicorn.util.write_nonblock", "sock, data, chunked", CONF, ALL, "writes the JSON error"),
    mentions("gunicorn.glogging.Logger", "def access_log_enabled", "serving/logs.py", ALL, "overridden"),
    method("gunicorn.glogging.Logger.access", "self, resp, req, environ, request_time", "serving/logs.py", ALL, "kept"),
    mentions("gunicorn.glogging.Logger.setup", "self.error_log", CONF, ALL, "flushed before a timed-out worker dies"),
    mentions("gunicorn.config.Config", "def worker_class_str", CONF, ALL, "the class that runs, for the config line"),
    # --- the master retires a dead worker's files before it forks the next one
    mentions(
        "gunicorn.arbiter.Arbiter.reap_workers",
        "self.cfg.child_exit(self, worker)",
        "serving/metrics_master.py",
        ALL,
        "called as each worker is reaped: its pid is not reused before",
    ),
    # --- prometheus_client's multiprocess files (serving/metrics_master.py mirrors it without importing it)
    mentions(
        "prometheus_client.multiprocess.mark_process_dead",
        "gauge_{mode}_{pid}.db",
        "serving/metrics_master.py",
        METRICS,
        "a dead worker's live gauges are these files",
    ),
    method(
        "prometheus_client.mmap_dict.MmapedDict.read_all_values_from_file",
        "filename",
        "serving/metrics_server.py",
        METRICS,
        "a retired file's (key, value, timestamp, position)",
    ),
    method(
        "prometheus_client.mmap_dict.MmapedDict.write_value",
        "self, key, value, timestamp",
        "serving/metrics_server.py",
        METRICS,
        "the archive is written in the workers' own format",
    ),
    mentions(
        "prometheus_client.multiprocess.MultiProcessCollector._read_metrics",
        "typ = parts[0]",
        "serving/metrics_server.py",
        METRICS,
        "a file's kind is its name up to the first _: counter_archive.db is a counter",
    ),
    # --- the app's database pools, read and sized from outside (serving/pools.py)
    mentions("sqlalchemy.pool.Pool.__init__", "self._pre_ping =", "serving/pools.py", "pools", "reported"),
    mentions(
        "flask.config.Config.from_object",
        "self[key] = getattr(obj, key)",
        "serving/pools.py",
        "pools",
        "an app's config class reaches the config through __setitem__, where its pool options are laid over the "
        "server's",
    ),
    mentions(
        "flask.config.Config.from_mapping",
        "self[key] = value",
        "serving/pools.py",
        "pools",
        "as from_object",
    ),
    # --- Werkzeug's development server, refused from outside the app
    mentions(
        "flask.Flask.run",
        "from werkzeug.serving import run_simple",
        "serving/devguard.py",
        "devserver",
        "app.run() looks run_simple up when it is called, so the guard's replacement is the one it finds",
    ),
    mentions(
        "flask.cli",
        "from werkzeug import run_simple",
        "serving/devguard.py",
        "devserver",
        "`flask run` binds run_simple from the werkzeug package when flask.cli is imported",
    ),
    # --- the image build: flask-static-digest's digester, without making the app
    method(
        "flask_static_digest.digester.compile",
        "input_path, output_path, digest_blacklist_filter, gzip_files, brotli_files",
        "serving/static.py",
        "static",
        "the image build hashes and gzips each package's static/ as `flask digest compile` does, without making "
        "the app",
    ),
)


def broken(worker_class: str | None = None) -> list[str]:
    """One line per internal that no longer holds: those of `worker_class`
    (sync, gthread, gevent) and of every configuration, or all of them."""
    lines = []
    for internal in INTERNALS:
        if worker_class is not None and internal.family not in (ALL, worker_class):
            continue
        problem = internal.problem()
        if problem:
            hatch = " (or set GUNICORN_STOCK_WORKERS=true)" if internal.family in ("gthread", "gevent") else ""
            lines.append(
                f"{internal.name}: {problem}; expected {internal.expect}; review {internal.relied_on_by}{hatch}"
            )
    return lines
