"""What the gunicorn master does for the metrics, with the standard library only.

prometheus_client's multiprocess mode: each worker writes its metrics to
files of its own (`<kind>_<pid>.db`) in PROMETHEUS_MULTIPROC_DIR, and the
metrics server (serving/metrics_server.py, a process of its own) adds them up
when scraped. The master prepares the directory, removes a dead worker's
live gauges, and starts and stops the metrics server. It never imports
prometheus_client: serving.gunicorn_conf imports this module in the master,
before gevent's worker monkey-patches, and prometheus_client makes a lock
when imported.
"""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

ENVIRONMENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: On the container's /tmp, a tmpfs (docker-compose.yml): private to the
#: replica, emptied with it.
DEFAULT_DIRECTORY = "/tmp/metrics"

#: Gauge modes whose values leave with their process: those
#: prometheus_client.multiprocess.mark_process_dead removes (a unit test
#: compares them with prometheus_client's own).
LIVE_GAUGE_MODES = ("liveall", "livemin", "livemax", "livesum", "livemostrecent")

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
    for file in glob.glob(os.path.join(path, "*.db")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(file)


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
