"""The metrics listener: `python -m app.metrics_server`.

A process of its own, which the gunicorn master starts when it is ready and
stops when it exits (app/gunicorn_conf.py), serving on METRICS_PORT on all
the container's interfaces what the workers wrote to PROMETHEUS_MULTIPROC_DIR,
added up by prometheus_client's MultiProcessCollector. A scrape never takes a
gunicorn worker away from traffic, answers while every worker is busy, and
never goes through nginx: the port is not published, and nginx does not
proxy to it. It exits with SIGTERM, or when the master that started it is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from app.logs import configure_standalone
from app.metrics_master import ENVIRONMENT_VARIABLE
from app.settings import SettingsError, load

#: Every interface of the container: Prometheus scrapes it over the internal network.
ADDRESS = "0.0.0.0"

log = logging.getLogger("app.metrics_server")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        settings = load()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    configure_standalone(settings.log_format, settings.loglevel)
    path = os.environ.get(ENVIRONMENT_VARIABLE)
    if not settings.metrics_port or not path or not os.path.isdir(path):
        log.error(
            "metrics are off (METRICS_PORT=%s) or %s is not a directory: %r",
            settings.metrics_port,
            ENVIRONMENT_VARIABLE,
            path,
        )
        return 2
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    try:
        start_http_server(settings.metrics_port, addr=ADDRESS, registry=registry)
    except OSError as exc:
        log.error("metrics cannot be served on %s:%s: %s", ADDRESS, settings.metrics_port, exc)
        return 1
    log.info("serving metrics on %s:%s from %s", ADDRESS, settings.metrics_port, path)
    parent = os.getppid()
    while os.getppid() == parent:  # reparented: the master is gone
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
