"""The metrics listener: `python -m serving.metrics_server --port N ...`.

A process of its own, which the gunicorn master starts when it is ready and
stops when it exits (serving/gunicorn_conf.py), serving on the given port on
all the container's interfaces what the workers wrote to
PROMETHEUS_MULTIPROC_DIR, added up by prometheus_client's
MultiProcessCollector. A scrape never takes a gunicorn worker away from
traffic, answers while every worker is busy, and never goes through nginx:
the port is not published, and nginx does not proxy to it. It exits with
SIGTERM, or when the master that started it is gone. The master hands it
the settings it needs (METRICS_PORT, LOG_FORMAT, GUNICORN_LOG_LEVEL), so it
reads none itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from serving.logs import configure_standalone
from serving.metrics_master import ENVIRONMENT_VARIABLE
from serving.settings import LOG_FORMATS, LOG_LEVELS

#: Every interface of the container: Prometheus scrapes it over the internal network.
ADDRESS = "0.0.0.0"

log = logging.getLogger("serving.metrics_server")


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
    MultiProcessCollector(registry, path=path)
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
