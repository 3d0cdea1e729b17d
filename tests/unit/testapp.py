"""The app gunicorn serves in the unit tests that need more than its routes:
`gunicorn -c python:serving.gunicorn_conf tests.unit.testapp:application`. The
real app (demo.factory.create_app), plus a route that fails, one with a
variable in its rule, and one that logs twice around a wait, inside the
server's middleware as serving/wsgi.py puts the app APP_MODULE names."""

from __future__ import annotations

import logging
import time

from flask import jsonify, request

from demo import demo
from demo.factory import create_app
from serving import request_id, settings
from serving.app import answer_errors_in_json
from serving.middleware import wrap

log = logging.getLogger("tests.unit.testapp")

app = create_app()
answer_errors_in_json(app)
application = wrap(app, settings.current())


@app.get("/_test/boom")
def boom():
    raise RuntimeError("boom-detail")


@app.get("/_test/items/<int:item>")
def item(item: int):
    """Waits ?ms= (0 by default), then names the worker."""
    time.sleep(int(request.args.get("ms", "0")) / 1000)
    return jsonify(item=item, worker=demo.worker_id())


@app.get("/_test/log/<tag>")
def log_twice(tag: str):
    """Logs `tag=TAG` before and after waiting ?ms= (time.sleep: the other
    threads or greenlets run meanwhile)."""
    log.info("tag=%s before", tag)
    time.sleep(int(request.args.get("ms", "50")) / 1000)
    log.info("tag=%s after", tag)
    return jsonify(tag=tag, request_id=request_id.current())
