"""What the gunicorn master does for the metrics, with the standard library only.

prometheus_client's multiprocess mode: each worker writes its metrics to
files of its own (`<kind>_<pid>.db`) in PROMETHEUS_MULTIPROC_DIR, and the
metrics server (serving/metrics_server.py, a process of its own) adds them up
when scraped. The master prepares the directory, starts and stops the
metrics server, and retires a dead worker's files: its live gauges go, and
its counters and histograms move to `retired/`, where the metrics server
still counts them until it has added them to one archive per kind. So the
directory holds files for the live workers and two archives, however often
workers are recycled (GUNICORN_MAX_REQUESTS), and no count is lost or
counted twice: a move and a merge each happen under the directory's lock
held exclusively, and a scrape reads under it held shared.

It never imports prometheus_client: serving.gunicorn_conf imports this
module in the master, before gevent's worker monkey-patches, and
prometheus_client makes a lock when imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path

ENVIRONMENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: On the container's /tmp, a tmpfs (docker-compose.yml): private to the
#: replica, emptied with it.
DEFAULT_DIRECTORY = "/tmp/metrics"

#: Gauge modes whose values leave with their process: those
#: prometheus_client.multiprocess.mark_process_dead removes (a unit test
#: compares them with prometheus_client's own).
LIVE_GAUGE_MODES = ("liveall", "livemin", "livemax", "livesum", "livemostrecent")

#: The kinds of file whose counts outlive their worker: they are added up.
CUMULATIVE_KINDS = ("counter", "histogram")
#: Under the directory: a dead worker's cumulative files, until the metrics
#: server has merged them into `<kind>_archive.db`.
RETIRED = "retired"
ARCHIVE_PID = "archive"
LOCK_FILE = ".lock"
#: What the master sends the metrics server when it has retired files. Its
#: default action is to ignore it: one sent before the server has set its
#: handler (it is still starting) is harmless.
MERGE_SIGNAL = signal.SIGWINCH

#: The directory `python -m serving.metrics_server` is run from: where `serving` is.
_IMPORT_ROOT = Path(__file__).resolve().parent.parent


def directory(metrics_port: int, environ: MutableMapping[str, str] | None = None) -> str | None:
    """The multiprocess directory, set in `environ` (os.environ) for the
    workers to inherit, or None when metrics are off (METRICS_PORT=0)."""
    environ = os.environ if environ is None else environ
    if not metrics_port:
        return None
    return environ.setdefault(ENVIRONMENT_VARIABLE, DEFAULT_DIRECTORY)


def enabled(metrics_port: int, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process should record metrics: they are on, and the
    directory the gunicorn master prepared is there. Neither under
    Werkzeug's development server nor uWSGI (the lab), which never set it."""
    environ = os.environ if environ is None else environ
    path = environ.get(ENVIRONMENT_VARIABLE)
    return bool(metrics_port) and bool(path) and os.path.isdir(path)


def reset_directory(path: str) -> None:
    """Create the directory, or empty it of a previous run's files: every
    pid in them is gone, and their counts with it."""
    os.makedirs(path, exist_ok=True)
    shutil.rmtree(os.path.join(path, RETIRED), ignore_errors=True)
    os.makedirs(os.path.join(path, RETIRED))
    for file in glob.glob(os.path.join(path, "*.db")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(file)


@contextlib.contextmanager
def locked(path: str, exclusive: bool) -> Iterator[None]:
    """The directory's lock: exclusive to move or merge files, shared to read them."""
    with open(os.path.join(path, LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def retire(pid: int, path: str, metrics_server: subprocess.Popen | None = None) -> None:
    """A worker is gone: its live gauges go with it, and its counters and
    histograms move to retired/ for the metrics server to merge (it is told
    so at once). Called from gunicorn's child_exit hook, which
    Arbiter.reap_workers runs as it reaps the worker, before the master
    spawns the next one: no new worker can have this pid yet."""
    moved = False
    with locked(path, exclusive=True):
        mark_process_dead(pid, path)
        for kind in CUMULATIVE_KINDS:
            with contextlib.suppress(FileNotFoundError):
                os.rename(os.path.join(path, f"{kind}_{pid}.db"), os.path.join(path, RETIRED, f"{kind}_{pid}.db"))
                moved = True
    if moved and metrics_server is not None and metrics_server.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(metrics_server.pid, MERGE_SIGNAL)


def mark_process_dead(pid: int, path: str) -> None:
    """prometheus_client.multiprocess.mark_process_dead, line for line."""
    # Not imported: the master must not import prometheus_client before gevent patches the workers, which inherit it.
    for mode in LIVE_GAUGE_MODES:
        for file in glob.glob(os.path.join(path, f"gauge_{mode}_{pid}.db")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(file)


def start_server(settings) -> subprocess.Popen:
    """`python -m serving.metrics_server`, exec'd: the master imports nothing
    of it. It is handed the settings it needs (it reads none itself), and
    inherits PROMETHEUS_MULTIPROC_DIR and stderr."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serving.metrics_server",
            f"--port={settings.metrics_port}",
            f"--log-format={settings.log_format}",
            f"--log-level={settings.loglevel}",
        ],
        cwd=_IMPORT_ROOT,
        stdin=subprocess.DEVNULL,
    )


def stop_server(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not gone within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
