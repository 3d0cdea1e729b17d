"""Liveness and readiness, what Docker's HEALTHCHECK, nginx and an
orchestrator poll. Part of the stack, not of your views: keep it."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app import lifecycle

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    # Liveness: answers as long as a worker can run a view; checks nothing else.
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    # Readiness: not while draining (whatever polls this stops sending work
    # at once), and every check in READINESS_CHECKS (name -> callable
    # returning truthy when ready) must pass. A fork adds its database ping here.
    if lifecycle.is_draining():
        return jsonify(status="draining"), 503
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
