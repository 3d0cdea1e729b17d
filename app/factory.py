"""The Flask application factory gunicorn loads through `app.wsgi:application`.

It wires the parts: the request id (app/request_id.py), the metrics
(app/metrics.py, while METRICS_PORT is not 0 under gunicorn), JSON errors
(app/errors.py), health (app/health.py), your views (app/views.py) and, while
DEMO_ENDPOINTS is on, the demonstration endpoints (app/demo.py). It is never
served by Werkzeug's development server outside development: see
`app.devserver`.
"""

from __future__ import annotations

import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import demo, errors, health, metrics_master, request_id, settings, views

#: 1 MiB. nginx refuses larger bodies first (client_max_body_size); this is the
#: app's own limit for when it runs behind something else.
MAX_CONTENT_LENGTH = 1024 * 1024


class DevServerRefused(RuntimeError):
    """Raised when something tries to serve the app with the development server."""


def is_development() -> bool:
    return os.environ.get("APP_ENV", "production") == "development"


class ProductionFlask(Flask):
    """Flask whose `run()` refuses unless APP_ENV=development."""

    def run(self, *args, **kwargs):  # noqa: ANN002, ANN003
        if not is_development():
            raise DevServerRefused(
                "refusing to start Werkzeug's development server: it is not a "
                "production server. Serve the app with gunicorn (see README), or "
                "set APP_ENV=development for local development."
            )
        super().run(*args, **kwargs)


def create_app() -> Flask:
    config = settings.load()
    app = ProductionFlask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        READINESS_CHECKS={},
        DEMO_MAX_WORK_MS=config.demo_max_work_ms,
    )
    app.json.sort_keys = False
    # Trust exactly the proxies there are (TRUSTED_PROXY_HOPS; 1, nginx, by
    # default): each appends what it saw, so the value N from the right is the
    # outermost proxy's, and whatever a client wrote itself sits further left.
    # Trusting more hops than there are would let a client forge its address
    # or scheme.
    hops = config.trusted_proxy_hops
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    request_id.register(app)
    if metrics_master.enabled(config.metrics_port):
        from app import metrics  # prometheus_client: only where its directory is ready

        metrics.instrument(app)
    errors.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(views.bp)
    if config.demo_endpoints:
        app.register_blueprint(demo.bp)
    return app
