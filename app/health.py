"""Liveness and readiness, what Docker's HEALTHCHECK, nginx and an
orchestrator poll. Part of the stack, not of your views: keep it.

A worker that is draining (gunicorn told it to stop) answers /readyz with a
503 before the app is asked: the server owns that (serving/wsgi.py)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    # Liveness: answers as long as a worker can run a view; checks nothing else.
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    # Readiness: every check in READINESS_CHECKS (name -> callable returning
    # truthy when ready) must pass. A fork adds its database ping here.
    checks = current_app.config.get("READINESS_CHECKS", {})
    failed = []
    for name, check in checks.items():
        try:
            ok = bool(check())
        except Exception:  # noqa: BLE001 - a failing check is a result, not an error
            current_app.logger.exception("readiness check %s raised", name)
            ok = False
        if not ok:
            failed.append(name)
    if failed:
        return jsonify(status="not ready", failed=failed), 503
    return jsonify(status="ready", checks=sorted(checks))
