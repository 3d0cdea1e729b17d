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
is answered in JSON by the server's CrashGuard (serving/errors.py).
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from serving.errors import CrashGuard


def guarded(mounted: dict[str, object]) -> dict[str, object]:
    """Each mounted app as it is served: Flask apps as they are (their
    errors answered as the app's are), others inside the server's CrashGuard."""
    return {
        prefix: app if isinstance(app, Flask) else CrashGuard(app, f"the app mounted at {prefix}")
        for prefix, app in mounted.items()
    }


def dispatch(root, mounted: dict[str, object]) -> DispatcherMiddleware:
    """The root app with the others under their prefixes."""
    return DispatcherMiddleware(root, mounted)
