"""The metrics listener: `python -m serving.metrics_server --port N ...`.

A process of its own, which the gunicorn master starts when it is ready and
stops when it exits (serving/gunicorn_conf.py), serving on the given port on
all the container's interfaces what the workers wrote to
PROMETHEUS_MULTIPROC_DIR, added up by prometheus_client's
MultiProcessCollector: the live workers' files, the retired workers' files
and the archives (serving/metrics_master.py). It also merges retired files
into the archives, as soon as the master says it retired some (SIGWINCH)
and every few seconds in any case. A scrape never takes a gunicorn worker away from
traffic, answers while every worker is busy, and never goes through nginx:
the port is not published, and nginx does not proxy to it. It exits with
SIGTERM, or when the master that started it is gone. The master hands it
the settings it needs (METRICS_PORT, LOG_FORMAT, GUNICORN_LOG_LEVEL), so it
reads none itself.
"""

# Beyond their public API, this file relies on
# `MultiProcessCollector._read_metrics`: serving/internals.py checks them (at
# start for the worker class in use, and first in the test suite).

from __future__ import annotations

import argparse
import glob
import logging
import os
import signal
import sys
import threading
import time
from collections import defaultdict

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from serving.logs import configure_standalone
from serving.metrics_master import (
    ARCHIVE_PID,
    CUMULATIVE_KINDS,
    ENVIRONMENT_VARIABLE,
    MERGE_SIGNAL,
    RETIRED,
    locked,
)
from serving.settings import LOG_FORMATS, LOG_LEVELS

#: Every interface of the container: Prometheus scrapes it over the internal network.
ADDRESS = "0.0.0.0"

#: The longest retired files wait for a merge when no signal comes, s.
MERGE_EVERY = 5.0

log = logging.getLogger("serving.metrics_server")


class RetiringCollector:
    """MultiProcessCollector's sum over the live workers' files, the retired
    ones and the archives, read under the directory's shared lock: a file
    being moved or merged is counted once, before or after, never twice or
    not at all."""

    def __init__(self, path: str) -> None:
        self.path = path

    def files(self) -> list[str]:
        found = glob.glob(os.path.join(self.path, "*.db")) + glob.glob(os.path.join(self.path, RETIRED, "*.db"))
        # A worker booting creates its file empty, then sizes it: an empty
        # one holds nothing yet, and prometheus_client cannot read it.
        return [file for file in found if _size(file) > 0]

    def collect(self):
        with locked(self.path, exclusive=False):
            return MultiProcessCollector.merge(self.files(), accumulate=True)


def _size(file: str) -> int:
    try:
        return os.path.getsize(file)
    except FileNotFoundError:  # a live gauge's, gone with its worker
        return 0


def merge_retired(path: str) -> int:
    """Add every retired counter and histogram file into its kind's archive,
    then remove it; returns how many were merged. Every value in these files
    is a sum over processes (a count, a bucket, a total), so a merge adds
    values key by key. Written here because prometheus_client leaves dead
    processes' files in place (prometheus/client_python#443, #518) and no
    maintained library merges them."""
    merged = 0
    with locked(path, exclusive=True):
        for kind in CUMULATIVE_KINDS:
            retired = glob.glob(os.path.join(path, RETIRED, f"{kind}_*.db"))
            if not retired:
                continue
            archive = os.path.join(path, f"{kind}_{ARCHIVE_PID}.db")
            totals: dict[str, float] = defaultdict(float)
            for source in ([archive] if os.path.exists(archive) else []) + retired:
                for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(source):
                    totals[key] += value
            # Written aside, then renamed: the scrape's glob never meets a half-written archive.
            staging = os.path.join(path, RETIRED, f".{kind}_{ARCHIVE_PID}.next")
            if os.path.exists(staging):
                os.remove(staging)
            written = MmapedDict(staging)
            try:
                for key, value in totals.items():
                    written.write_value(key, value, 0.0)
            finally:
                written.close()
            os.replace(staging, archive)
            for source in retired:
                os.remove(source)
            merged += len(retired)
    return merged


def keep_merging(path: str, wake: threading.Event) -> None:
    while True:
        wake.wait(MERGE_EVERY)
        wake.clear()
        try:
            merge_retired(path)
        except Exception:  # noqa: BLE001 - the scrape must go on; the next round retries
            log.exception("merging retired metrics files failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="json")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    configure_standalone(args.log_format, args.log_level)
    path = os.environ.get(ENVIRONMENT_VARIABLE)
    if not args.port or not path or not os.path.isdir(path):
        log.error("metrics are off (port %s) or %s is not a directory: %r", args.port, ENVIRONMENT_VARIABLE, path)
        return 2
    registry = CollectorRegistry()
    registry.register(RetiringCollector(path))
    wake = threading.Event()
    signal.signal(MERGE_SIGNAL, lambda signum, frame: wake.set())
    threading.Thread(target=keep_merging, args=(path, wake), name="merge-retired", daemon=True).start()
    try:
        start_http_server(args.port, addr=ADDRESS, registry=registry)
    except OSError as exc:
        log.error("metrics cannot be served on %s:%s: %s", ADDRESS, args.port, exc)
        return 1
    log.info("serving metrics on %s:%s from %s", ADDRESS, args.port, path)
    parent = os.getppid()
    while os.getppid() == parent:  # reparented: the master is gone
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
