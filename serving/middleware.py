"""What the server adds around the app, for every request (serving/wsgi.py
applies it to the app APP_MODULE names, whatever it is).

From the outside in:
- ProxyFix, trusting nginx alone, one hop: nginx has already decided who
  the client is (trusting only the proxies named in TRUSTED_PROXY_ADDRESSES
  in front of it) and says so in the last value of X-Forwarded-For, and in
  X-Forwarded-Proto and -Host. Trusting more hops would let a client that
  reaches nginx directly choose its address by writing the values further
  left.
- the request id (serving/request_id.py);
- the server's own endpoints, answered before the app is asked
  (serving/health.py): /healthz, and /readyz, 503 while this worker drains;
- a crash before the app answers: a JSON 500, the traceback in the log;
- the body limit: a body over MAX_BODY_BYTES is a JSON 413 before the app
  reads it, chunked ones included;
- metrics, while they are on (serving/metrics.py, through Flask's signals:
  the app is not touched);
- the apps APP_MOUNTS mounts beside the app, if any (serving/dispatch.py):
  every layer above covers them too.
"""

from __future__ import annotations

import io

from werkzeug.middleware.proxy_fix import ProxyFix

from serving import errors, health, metrics_master, request_id
from serving.settings import Settings

#: 1 MiB: nginx's client_max_body_size (nginx/nginx.conf) refuses larger
#: bodies first; this holds behind anything else.
MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """A request body over `limit` bytes is a JSON 413 before the app reads
    any of it. One that declares its length is judged by it; one of unknown
    length (Transfer-Encoding: chunked, which gunicorn decodes) is read here
    up to one byte past the limit, and handed to the app whole, with its
    length, when it fits: Werkzeug alone would stop reading it at the limit
    and hand the view what it read, silently cut. Only chunked requests pay
    for the read; nginx sends every body with its length."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ, start_response):
        declared = environ.get("CONTENT_LENGTH", "")
        if declared.isdigit() and int(declared) > self.limit:
            return self._refuse(environ, start_response)
        if not declared and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            data = environ["wsgi.input"].read(self.limit + 1)
            if len(data) > self.limit:
                return self._refuse(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(data)
            environ["CONTENT_LENGTH"] = str(len(data))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input_terminated"] = True
        return self.app(environ, start_response)

    def _refuse(self, environ, start_response):
        return errors.respond(
            start_response,
            environ,
            413,
            f"The request body is larger than {self.limit} bytes.",
            headers=[("Connection", "close")],
        )


def wrap(app, settings: Settings, mounted: dict[str, object] | None = None, databases=()):
    """The app as the server serves it (the layers above), with the apps
    `mounted` under their prefixes (serving/wsgi.py imports them); readiness
    pings the databases of the pools `databases` (serving/pools.py)."""
    request_id.install_log_record_factory()
    root = app
    if mounted:
        from serving import dispatch  # only with APP_MOUNTS: nothing of it otherwise

        mounted = dispatch.guarded(mounted)
    if metrics_master.enabled(settings.metrics_port):
        from serving import metrics  # prometheus_client: only where its directory is ready

        metrics.instrument()
        mounted = {prefix: metrics.labelled(mounted_app, prefix) for prefix, mounted_app in (mounted or {}).items()}
    if mounted:
        app = dispatch.dispatch(app, mounted)
    served = health.ServerEndpoints(errors.CrashGuard(BodyLimit(app)), root, databases)
    return ProxyFix(request_id.RequestIdMiddleware(served), x_for=1, x_proto=1, x_host=1)
