"""Notes: a small Flask app in the layout most Flask apps use. The
extensions are made here, unbound, and the factory binds them."""

from flask import Flask
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from config import Config

db = SQLAlchemy()
migrate = Migrate()
login = LoginManager()
login.login_view = "auth.login"
csrf = CSRFProtect()


def create_app(config_class=Config):
    app = Flask(__name__)
    app.config.from_object(config_class)

    db.init_app(app)
    migrate.init_app(app, db)
    login.init_app(app)
    csrf.init_app(app)

    from notes.errors import bp as errors_bp

    app.register_blueprint(errors_bp)

    from notes.auth import bp as auth_bp

    app.register_blueprint(auth_bp, url_prefix="/auth")

    from notes.main import bp as main_bp

    app.register_blueprint(main_bp)

    from notes import cli

    cli.register(app)

    return app


from notes import models  # noqa: E402,F401
