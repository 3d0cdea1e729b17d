"""What the server adds around the app, for every request (serving/wsgi.py
applies it to the app's entry point).

From the outside in:
- ProxyFix, trusting exactly the proxies there are (TRUSTED_PROXY_HOPS; 1,
  nginx, by default): each appends what it saw, so the value N from the
  right is the outermost proxy's, and whatever a client wrote itself sits
  further left. Trusting more hops than there are would let a client forge
  its address or scheme.
- the request id (serving/request_id.py);
- while this worker drains, /readyz answers 503 before the app is asked;
- metrics, while they are on (serving/metrics.py, through Flask's signals:
  the app is not touched).
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


def wrap(app, settings: Settings):
    """The app as the server serves it (the layers above)."""
    request_id.install_log_record_factory()
    if metrics_master.enabled(settings.metrics_port):
        from serving import metrics  # prometheus_client: only where its directory is ready

        metrics.instrument()
    hops = settings.trusted_proxy_hops
    return ProxyFix(request_id.RequestIdMiddleware(DrainingGate(app)), x_for=hops, x_proto=hops, x_host=hops)
