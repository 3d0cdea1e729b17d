"""Liveness and readiness, what Docker's HEALTHCHECK, nginx and an
orchestrator poll: the server's, answered before the app is asked, for
whatever app it serves.

- `GET /healthz` (liveness): 200 as long as a worker can answer; checks
  nothing else, so that a database outage never restarts the app.
- `GET /readyz` (readiness): 503 while this worker drains (gunicorn told it
  to stop), so whatever polls it stops sending work at once; otherwise each
  check the app lists runs, and any that fails or raises makes it a 503
  naming it.

The app adds its checks through one documented hook, its own Flask config,
with nothing of the server imported: `app.config["READINESS_CHECKS"]`, a
dict of name -> callable returning truthy when ready, each run inside the
app's application context (so `db.session` works):

    app.config.setdefault("READINESS_CHECKS", {})["database"] = ping_my_database

These paths are the server's in every app: a route of the app's own at
either is never reached.
"""

from __future__ import annotations

import json
import logging

from serving import errors, lifecycle

log = logging.getLogger(__name__)

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
PATHS = (LIVENESS_PATH, READINESS_PATH)
#: The app's hook: its Flask config key.
READINESS_CHECKS = "READINESS_CHECKS"


def readiness_checks(app) -> dict:
    """The checks a Flask app lists; none for any other WSGI app."""
    config = getattr(app, "config", None)
    return dict(config.get(READINESS_CHECKS) or {}) if isinstance(config, dict) else {}


def run_checks(app) -> list[str]:
    """The names of the failed checks, each run in the app's context."""
    failed = []
    checks = readiness_checks(app)
    if not checks:
        return failed
    with app.app_context():
        for name, check in checks.items():
            try:
                ok = bool(check())
            except Exception:  # noqa: BLE001 - a failing check is a result, not an error
                log.exception("readiness check %s raised", name)
                ok = False
            if not ok:
                failed.append(name)
    return failed


class ServerEndpoints:
    """/healthz and /readyz, before `app` (the served stack); `root` is the
    app the readiness checks come from."""

    def __init__(self, app, root) -> None:
        self.app = app
        self.root = root

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
            return self._json(start_response, environ, 200, {"status": "ok"})
        if lifecycle.is_draining():
            return self._json(start_response, environ, 503, {"status": "draining"})
        failed = run_checks(self.root)
        if failed:
            return self._json(start_response, environ, 503, {"status": "not ready", "failed": failed})
        return self._json(
            start_response, environ, 200, {"status": "ready", "checks": sorted(readiness_checks(self.root))}
        )

    @staticmethod
    def _json(start_response, environ, status: int, document: dict):
        payload = json.dumps(document).encode()
        start_response(
            "200 OK" if status == 200 else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [payload]
