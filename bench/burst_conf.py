"""gunicorn's configuration for `python -m bench.burst`: the server's own
(serving/gunicorn_conf.py), with the worker class BURST_WORKER_CLASS names,
a lab variant of the gevent worker (bench/burst_workers.py) or the server's.

    gunicorn -c python:bench.burst_conf

The server's on_starting logs its effective configuration by worker family,
which knows only the server's classes: not needed here, left out."""

from __future__ import annotations

import os

from serving.gunicorn_conf import *  # noqa: F403 - every setting and hook of the server's

worker_class = os.environ.get("BURST_WORKER_CLASS") or worker_class  # noqa: F405


def on_starting(server) -> None:
    pass
