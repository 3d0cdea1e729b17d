"""What the server adds around the app, for every request (serving/wsgi.py
applies it to the app's entry point).

From the outside in:
- ProxyFix, trusting nginx alone, one hop: nginx has already decided who
  the client is (trusting only the proxies named in TRUSTED_PROXY_ADDRESSES
  in front of it) and says so in the last value of X-Forwarded-For, and in
  X-Forwarded-Proto and -Host. Trusting more hops would let a client that
  reaches nginx directly choose its address by writing the values further
  left.
- the request id (serving/request_id.py);
- while this worker drains, /readyz answers 503 before the app is asked;
- metrics, while they are on (serving/metrics.py, through Flask's signals:
  the app is not touched);
- the apps APP_MOUNTS mounts beside the app, if any (serving/dispatch.py):
  every layer above covers them too.
"""

from __future__ import annotations

import json

from werkzeug.middleware.proxy_fix import ProxyFix

from serving import lifecycle, metrics_master, request_id
from serving.settings import Settings

#: The readiness path, the app's (app/health.py) and the orchestrators'.
READINESS_PATH = "/readyz"
_DRAINING_BODY = json.dumps({"status": "draining"}).encode()


class DrainingGate:
    """/readyz answers 503 while this worker drains: whatever polls it stops
    sending work at once, whatever the app's own checks say."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == READINESS_PATH and lifecycle.is_draining():
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(_DRAINING_BODY)))],
            )
            return [_DRAINING_BODY]
        return self.app(environ, start_response)


def wrap(app, settings: Settings, mounted: dict[str, object] | None = None):
    """The app as the server serves it (the layers above), with the apps
    `mounted` under their prefixes (serving/wsgi.py imports them)."""
    request_id.install_log_record_factory()
    if mounted:
        from serving import dispatch  # only with APP_MOUNTS: nothing of it otherwise

        mounted = dispatch.guarded(mounted)
    if metrics_master.enabled(settings.metrics_port):
        from serving import metrics  # prometheus_client: only where its directory is ready

        metrics.instrument()
        mounted = {prefix: metrics.labelled(mounted_app, prefix) for prefix, mounted_app in (mounted or {}).items()}
    if mounted:
        app = dispatch.dispatch(app, mounted)
    return ProxyFix(request_id.RequestIdMiddleware(DrainingGate(app)), x_for=1, x_proto=1, x_host=1)
