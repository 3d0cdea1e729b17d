"""The Flask application factory: `create_app()`, served through
`app.wsgi:application`.

It wires the parts: your settings (app/config.py), JSON errors
(app/errors.py), the static files' hashed names (app/static/), the database
when one is configured (app/db.py), health
(app/health.py), your views (app/views.py) and, while DEMO_ENDPOINTS is on,
the demonstration endpoints (app/demo.py). What the
server owes every request (the request id, the trusted proxies' headers,
metrics) is added around the app by serving/wsgi.py, not here. It is never
served by Werkzeug's development server outside development.
"""

from __future__ import annotations

import os

from flask import Flask, Request
from flask_static_digest import FlaskStaticDigest
from werkzeug.exceptions import RequestEntityTooLarge

from app import config, db, demo, errors, health, views

#: 1 MiB. nginx refuses larger bodies first (client_max_body_size); this is the
#: app's own limit for when it runs behind something else.
MAX_CONTENT_LENGTH = 1024 * 1024


class DevServerRefused(RuntimeError):
    """Raised when something tries to serve the app with the development server."""


def is_development() -> bool:
    return os.environ.get("APP_ENV", "production") == "development"


class BodyLimitedRequest(Request):
    """A body of unknown length (Transfer-Encoding: chunked) over
    MAX_CONTENT_LENGTH is a JSON 413, as one that declares its length is:
    Werkzeug alone stops reading it at the limit and hands the view what it
    read, silently cut. nginx refuses such a body first; this holds behind
    anything else. Only a request whose body is read pays for it."""

    def _read_chunked_body(self) -> None:
        if self.content_length is not None or getattr(self, "_cached_data", None) is not None:
            return
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return
        data = self.stream.read()
        limit = self.max_content_length
        # At the limit, one byte more from the input itself tells a cut body from a whole one.
        if limit is not None and len(data) >= limit and self.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
        # get_data() and the form parser read it from here.
        self._cached_data = data

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False):  # noqa: FBT001, FBT002
        self._read_chunked_body()
        return super().get_data(cache=cache, as_text=as_text, parse_form_data=parse_form_data)

    def _load_form_data(self) -> None:
        self._read_chunked_body()
        super()._load_form_data()


class ProductionFlask(Flask):
    """Flask whose `run()` refuses unless APP_ENV=development, and whose
    requests never hand a view a body cut at the limit."""

    request_class = BodyLimitedRequest

    def run(self, *args, **kwargs):  # noqa: ANN002, ANN003
        if not is_development():
            raise DevServerRefused(
                "refusing to start Werkzeug's development server: it is not a "
                "production server. Serve the app with gunicorn (see README), or "
                "set APP_ENV=development for local development."
            )
        super().run(*args, **kwargs)


def create_app() -> Flask:
    app = ProductionFlask(__name__)
    app.config.update(config.from_environ(), MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH, READINESS_CHECKS={})
    app.json.sort_keys = False
    errors.register(app)
    # static_url_for() in templates: app/static/'s content-hashed names, from
    # the manifest the image build wrote (docs/static.md); the plain names
    # where there is none (make dev).
    FlaskStaticDigest(app)
    has_database = db.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(views.bp)
    if app.config["DEMO_ENDPOINTS"]:
        app.register_blueprint(demo.bp)
        if has_database:
            app.register_blueprint(demo.database_bp)
    return app
