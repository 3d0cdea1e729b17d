"""The rejected gevent workers that `python -m bench.burst` compares with the
chosen one (serving.gevent_worker.BalancedGeventWorker), named by
GUNICORN_CMD_ARGS="--worker-class bench.burst_workers.X".

A module of its own, importing nothing else: gunicorn imports the worker
class in the master, before gevent patches anything in the workers."""

from __future__ import annotations

from serving.gevent_worker import BalancedGeventWorker


class RequestSlotsOnly(BalancedGeventWorker):
    """Before: accepting stops only when every request slot (1,000) is taken."""

    database_gate = False


class StopWhileSaturated(BalancedGeventWorker):
    """Accepting stops while the pool is saturated, until a connection is checked in."""

    database_defer = None
