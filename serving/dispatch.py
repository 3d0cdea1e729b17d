"""Application dispatching: other WSGI apps served by the same workers under
path prefixes, as APP_MOUNTS names them (docs/concurrency.md), with
Werkzeug's DispatcherMiddleware.

serving/wsgi.py imports the apps; serving/middleware.py puts the dispatcher
inside everything the server adds to a request (ProxyFix, the request id,
the draining gate), so that all of it covers every mounted app. With no
mount, this module is not even imported.

Each mounted app sees its prefix in SCRIPT_NAME and the rest of the path in
PATH_INFO, so Flask's `url_for` builds prefixed URLs. A Flask app answers
its own errors (or the server answers them in JSON, serving/errors.py) and is
counted through Flask's signals; any other WSGI app is counted by the server
(serving/metrics.py) and an exception it lets out before its response starts
is answered here, as JSON.
"""

from __future__ import annotations

import json
import logging
import sys

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

log = logging.getLogger(__name__)


class JsonErrors:
    """A 500 as JSON, naming the request id, for an exception a mounted app
    that is not Flask lets out; the traceback goes to the log. Once its
    body has started, the connection is closed instead (as for any app):
    the status line is gone."""

    def __init__(self, app, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    def __call__(self, environ, start_response):
        started = False

        def start(*args):
            nonlocal started
            started = True
            return start_response(*args)

        try:
            return self.app(environ, start)
        except Exception:
            log.exception("unhandled exception in the app mounted at %s", self.prefix)
            error = {"status": 500, "name": "Internal Server Error", "message": "The server hit an unexpected error."}
            if "HTTP_X_REQUEST_ID" in environ:
                error["request_id"] = environ["HTTP_X_REQUEST_ID"]
            body = json.dumps({"error": error}).encode()
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                # PEP 3333: exc_info only when replacing a response already
                # started; the server raises it again if its headers are sent.
                sys.exc_info() if started else None,
            )
            return [body]


def guarded(mounted: dict[str, object]) -> dict[str, object]:
    """Each mounted app as it is served: Flask apps as they are, others
    inside JsonErrors."""
    return {prefix: app if isinstance(app, Flask) else JsonErrors(app, prefix) for prefix, app in mounted.items()}


def dispatch(root, mounted: dict[str, object]) -> DispatcherMiddleware:
    """The root app with the others under their prefixes."""
    return DispatcherMiddleware(root, mounted)
