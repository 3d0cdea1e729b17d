"""Whether this worker process is draining: gunicorn told it to stop
(SIGTERM, on shutdown or a HUP reload), so it finishes what it has and takes
nothing new. Set by the hook in serving/gunicorn_conf.py; while it is set,
serving/wsgi.py answers /readyz with a 503.

Standard library only and no threading primitive: gunicorn_conf imports this
before gevent patches, and a plain flag needs no lock.
"""

from __future__ import annotations

_draining = False


def begin_draining() -> None:
    global _draining
    _draining = True


def is_draining() -> bool:
    return _draining
