"""A second Flask app, served by the same workers under a path prefix when
APP_MOUNTS names it: `APP_MOUNTS=/admin=demo.admin:application` (application
dispatching, docs/concurrency.md). Off by default.

A fork's own second app looks like this: a Flask object of its own, with
the server's JSON errors (serving/errors.py), as any app has. It needs to know nothing of its
prefix: the server hands it SCRIPT_NAME=/admin, so `url_for` builds
/admin/... URLs. The request id, the trusted proxies' headers and metrics
(labelled `app="/admin"`) come from the server, as for the app.
"""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, request, url_for

from demo import demo

bp = Blueprint("admin", __name__)


@bp.get("/")
def index():
    # The prefix as the app sees it, and URLs built from it.
    return jsonify(
        app="admin",
        script_root=request.script_root,
        path=request.path,
        links={"self": url_for(".index"), "worker": url_for(".worker")},
    )


@bp.get("/worker")
def worker():
    # Which worker answered: the same pool serves the app and this one.
    return jsonify(app="admin", worker=demo.worker_id())


def create_admin_app() -> Flask:
    admin = Flask(__name__, static_folder=None)
    admin.json.sort_keys = False
    admin.register_blueprint(bp)
    return admin


application = create_admin_app()
