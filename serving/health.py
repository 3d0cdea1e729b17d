"""Liveness and readiness, what Docker's HEALTHCHECK, nginx and an
orchestrator poll: the server's, answered before the app is asked, for
whatever app it serves.

- `GET /healthz` (liveness): 200 as long as a worker can run a request
  through the app. The same GET is handed to the app, its whole pipeline
  (before-request hooks, error handlers) run, and only a server error (5xx,
  or an exception) makes it a 503: a 404, a redirect to a login page, any
  answer the app gives short of a 5xx is an app that runs. So a release
  that fails every request is unhealthy, and `make deploy` refuses it,
  while a database outage (the app's own routes are not asked) never
  restarts the app. The probe is not counted in the metrics.
- `GET /readyz` (readiness): 503 while this worker drains (gunicorn told it
  to stop), so whatever polls it stops sending work at once; otherwise the
  liveness probe and each check the app lists run, and any that fails or
  raises makes it a 503 naming it (`app` for the probe).

Each database the app's pools connect to (serving/pools.py) is pinged by the
server itself, on a connection of its own with a short connect timeout, so a
busy pool is not taken for a database that is down and the app opens no
second engine for it: `database` in the answer (`database <pool>` for each,
when there are several).

The app adds its own checks through one documented hook, its own Flask config,
with nothing of the server imported: `app.config["READINESS_CHECKS"]`, a
dict of name -> callable returning truthy when ready, each run inside the
app's application context (so `db.session` works):

    app.config.setdefault("READINESS_CHECKS", {})["database"] = ping_my_database

These paths are the server's in every app: a route of the app's own at
/healthz is run by the probe (its 5xx counts), at /readyz never.
"""

from __future__ import annotations

import json
import logging
from functools import partial

from serving import errors, lifecycle, pools

log = logging.getLogger(__name__)

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
PATHS = (LIVENESS_PATH, READINESS_PATH)
#: The app's hook: its Flask config key.
READINESS_CHECKS = "READINESS_CHECKS"
#: Marks the probe's environ, so that the metrics leave it out.
PROBE = "serving.health_probe"


def probe(app, environ) -> int:
    """The status `app` answers this GET with, run through its whole
    request pipeline, its body read and dropped; 500 for an exception."""
    statuses: list[str] = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)
        return lambda data: None

    try:
        body = app({**environ, "REQUEST_METHOD": "GET", PROBE: True}, start_response)
        try:
            for _ in body:
                pass
        finally:
            getattr(body, "close", lambda: None)()
    except Exception:  # noqa: BLE001 - an app that raises is the answer: not healthy
        log.exception("the health probe raised")
        return 500
    return int(statuses[-1].split(" ", 1)[0]) if statuses else 500


def readiness_checks(app) -> dict:
    """The checks a Flask app lists; none for any other WSGI app."""
    config = getattr(app, "config", None)
    return dict(config.get(READINESS_CHECKS) or {}) if isinstance(config, dict) else {}


def database_checks(databases) -> dict:
    """name -> ping, one for each database the pools connect to."""
    distinct = {pool.url: pool for pool in databases if pool.counted}
    if len(distinct) == 1:
        return {"database": partial(pools.ping, *distinct.values())}
    return {f"database {pool.name}": partial(pools.ping, pool) for pool in distinct.values()}


def _passes(name: str, check) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - a failing check is a result, not an error
        log.exception("readiness check %s raised", name)
        return False


def run_checks(app, server_checks: dict | None = None) -> list[str]:
    """The names of the failed checks: the server's, then the app's, each
    of these run in the app's context."""
    failed = [name for name, check in (server_checks or {}).items() if not _passes(name, check)]
    checks = readiness_checks(app)
    if not checks:
        return failed
    with app.app_context():
        failed += [name for name, check in checks.items() if not _passes(name, check)]
    return failed


class ServerEndpoints:
    """/healthz and /readyz, before `app` (the served stack); `root` is the
    app the readiness checks come from."""

    def __init__(self, app, root, databases=()) -> None:
        self.app = app
        self.root = root
        self.server_checks = database_checks(databases)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO")
        if path not in PATHS:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return errors.respond(
                start_response,
                environ,
                405,
                "The method is not allowed for the requested URL.",
                headers=[("Allow", "GET, HEAD")],
            )
        if path == LIVENESS_PATH:
            if probe(self.app, environ) >= 500:
                return self._json(start_response, environ, 503, {"status": "failing"})
            return self._json(start_response, environ, 200, {"status": "ok"})
        if lifecycle.is_draining():
            return self._json(start_response, environ, 503, {"status": "draining"})
        failed = (["app"] if probe(self.app, environ) >= 500 else []) + run_checks(self.root, self.server_checks)
        if failed:
            return self._json(start_response, environ, 503, {"status": "not ready", "failed": failed})
        checks = sorted([*self.server_checks, *readiness_checks(self.root)])
        return self._json(start_response, environ, 200, {"status": "ready", "checks": checks})

    @staticmethod
    def _json(start_response, environ, status: int, document: dict):
        payload = json.dumps(document).encode()
        start_response(
            "200 OK" if status == 200 else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [payload]
