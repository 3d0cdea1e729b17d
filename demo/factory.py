"""The Flask application factory: `create_app()`, served through
`demo.wsgi:application` (APP_MODULE's default).

It wires the parts: the settings (demo/config.py), its 400s
(demo/errors.py), the static files' hashed names (demo/static/), the
database when one is configured (demo/db.py), the views (demo/views.py)
and, while DEMO_ENDPOINTS is on, the demonstration endpoints
(demo/demo.py). What the server owes every app (health, JSON errors, the
body limit, the request id, the trusted proxies' headers, metrics, refusing
the development server) is added from the outside by serving/, not here.
"""

from __future__ import annotations

from flask import Flask
from flask_static_digest import FlaskStaticDigest

from demo import config, db, demo, errors, migrate, views


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(config.from_environ(), READINESS_CHECKS={})
    app.json.sort_keys = False
    errors.register(app)
    # static_url_for() in templates: demo/static/'s content-hashed names, from
    # the manifest the image build wrote (docs/static.md); the plain names
    # where there is none (make dev).
    FlaskStaticDigest(app)
    has_database = db.init_app(app)
    # `flask db upgrade`, the command the server migrates with, as
    # Flask-Migrate names it (serving/migrate.py): the demo's own Alembic run.
    app.cli.add_command(migrate.cli)
    app.register_blueprint(views.bp)
    if app.config["DEMO_ENDPOINTS"]:
        app.register_blueprint(demo.bp)
        if has_database:
            app.register_blueprint(demo.database_bp)
    return app
