"""The app the server serves: the WSGI app `APP_MODULE` names, in gunicorn's
own form (`module:variable` or `module:factory()`), loaded by gunicorn's own
loader (gunicorn.util.import_app) in each worker after the fork, and in the
one-off processes that check it (make check), publish its static files and
migrate its database.

The app's package is wholly the fork's: nothing here asks it to import or
define anything of the server's. What the server owes every app is applied
from the outside, here around the load and in serving/middleware.py around
each request:

- `SECRET_KEY`: most apps read `os.environ["SECRET_KEY"]` in their config.
  The secret file's value (SECRET_KEY_FILE, a Compose secret) is put in this
  process's `os.environ` just before the app's module is imported, so the
  app reads it the way it already does. It is never in the container's
  environment (`docker inspect`), the image or a log; what it is visible to
  is said in docs/security.md.
- the database's password: libpq's own password file (PGPASSFILE), written
  from DATABASE_PASSWORD_FILE's secret to this container's private /tmp, so
  the app's DATABASE_URL, without a password, reaches the database with it
  (psycopg reads it), and the app's code never knows where it came from.
- what the app may read from the server (`told()`, documented in the README's
  fork guide): the worker class running it, how long a request may run
  (gunicorn's worker timeout), the database connections each
  of its workers may hold and how long a request may wait for one, in its
  environment, under the names it would set them by, before its module is
  imported; and libpq's PGCONNECT_TIMEOUT, so every connection the app
  opens gives up within DATABASE_CONNECT_TIMEOUT.
- its database pools sized from those, through Flask-SQLAlchemy's own config
  where the app uses it (serving/pools.py), and checked once it is loaded
  (serving/wsgi.py).
- Werkzeug's development server refused outside APP_ENV=development
  (serving/devguard.py), installed before the app's module runs.
- A Flask app's errors: JSON for the ones it does not answer itself
  (`answer_errors_in_json`); a page of its own (an HTML 404) stays its own.
  A busy or unreachable database is a JSON 503 with Retry-After, unless the
  app handles those errors by their own classes.
- The preflight (serving/preflight.py), once it is loaded.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from gunicorn.errors import AppImportError
from gunicorn.util import import_app

from serving import devguard, pools
from serving.settings import Settings, SettingsError

#: libpq's variable naming its password file.
PGPASSFILE = "PGPASSFILE"

#: Where the app reads its secret key from: the variable most Flask apps read.
SECRET_KEY_VARIABLE = "SECRET_KEY"  # noqa: S105 - a variable's name, not a key


class AppLoadError(RuntimeError):
    """The app named by APP_MODULE cannot be served: one line saying why."""


def read_secret(name: str, path: str) -> str:
    """The secret in the file `name` points at, trailing newline dropped;
    SettingsError naming it when it is missing, unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(f"{name}={path!r} cannot be read: {exc.strerror}") from None
    if not secret:
        raise SettingsError(f"{name}={path!r} is empty")
    return secret


def bridge_secret_key(settings: Settings) -> None:
    """SECRET_KEY_FILE's content in this process's os.environ, where the app
    reads it; the file wins over anything else there."""
    if settings.secret_key_file:
        os.environ[SECRET_KEY_VARIABLE] = read_secret("SECRET_KEY_FILE", settings.secret_key_file)


def pgpass_line(password: str) -> str:
    """A libpq password file line for any host, port, database and user:
    `:` and `\\` in the password escaped, as libpq reads them."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


def bridge_database_password(settings: Settings) -> None:
    """DATABASE_PASSWORD_FILE's password in a libpq password file of this
    user's alone (0600, which libpq requires), named by PGPASSFILE unless
    the environment names one already."""
    if not settings.database_password_file or PGPASSFILE in os.environ:
        return
    password = read_secret("DATABASE_PASSWORD_FILE", settings.database_password_file)
    target = Path(tempfile.gettempdir()) / f"pgpass-{os.getuid()}"
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=".pgpass-")
    with os.fdopen(fd, "w", encoding="utf-8") as file:  # mkstemp's mode is 0600
        file.write(pgpass_line(password))
    os.replace(staging, target)
    os.environ[PGPASSFILE] = str(target)


def told(settings: Settings) -> dict[str, str]:
    """The documented interface from the server to the app: what the app may
    read, as the server resolved it (a default included), and nothing else."""
    return {
        "WORKER_CLASS": settings.worker_class,
        # How long a request may run before gunicorn takes its worker for
        # stuck: an app's own limit on work (the demo's) stays below it.
        "GUNICORN_TIMEOUT": str(settings.timeout),
        "DATABASE_POOL_SIZE": str(settings.database_pool_size),
        "DATABASE_POOL_TIMEOUT": str(settings.database_pool_timeout),
    }


def load(settings: Settings):
    """The WSGI app APP_MODULE names, imported (and made, for a factory) with
    the secret key in place and the development server refused. AppLoadError
    with one line when it cannot be."""
    os.environ.update(told(settings))
    os.environ.setdefault(pools.PGCONNECT_TIMEOUT, str(settings.database_connect_timeout))
    pools.install_sizing(settings)
    bridge_secret_key(settings)
    bridge_database_password(settings)
    devguard.install()
    # gunicorn puts its working directory first on sys.path; so do the
    # one-off processes that load the app, whatever started them.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return import_app(settings.app_module)
    except devguard.DevServerRefused as exc:
        raise AppLoadError(
            f"APP_MODULE={settings.app_module}: the app's module starts Werkzeug's development server when it is "
            f"imported ({exc}); put app.run() under `if __name__ == '__main__':`"
        ) from None
    except (AppImportError, ImportError) as exc:
        raise AppLoadError(f"APP_MODULE={settings.app_module} cannot be loaded: {type(exc).__name__}: {exc}") from None


def flask_app(app):
    """The Flask object of the loaded app, or None for any other WSGI app."""
    from flask import Flask

    return app if isinstance(app, Flask) else None


def answer_errors_in_json(app) -> None:
    """JSON bodies, naming the request id, for the errors a Flask app has no
    handler of its own for; its own handlers (an HTML 404, an errorhandler
    for every HTTPException or Exception) are left as they are. Flask looks
    for a handler by the error's code first, then by its class, so these are
    reached only where the app has nothing more specific."""
    from werkzeug.exceptions import HTTPException

    from serving import errors

    handlers = app.error_handler_spec[None]
    if not {HTTPException, Exception} & set(handlers[None]):
        app.register_error_handler(HTTPException, errors.flask_http_error)
    if not handlers[500] and Exception not in handlers[None]:
        app.register_error_handler(500, errors.flask_internal_error)
    answer_database_errors(app)


def database_errors() -> dict[type, object]:
    """The database errors the server answers with a 503, by the libraries
    the app imported: SQLAlchemy's, psycopg_pool's, psycopg's."""
    from serving import errors

    handlers: dict[type, object] = {}
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.exc import TimeoutError as PoolTimeout

        handlers[PoolTimeout] = errors.flask_pool_exhausted
        handlers[DBAPIError] = errors.flask_database_error
    if "psycopg_pool" in sys.modules:
        from psycopg_pool import PoolTimeout as PsycopgPoolTimeout

        handlers[PsycopgPoolTimeout] = errors.flask_pool_exhausted
    if "psycopg" in sys.modules:
        from psycopg import OperationalError

        handlers[OperationalError] = errors.flask_database_unreachable
    return handlers


def answer_database_errors(app) -> None:
    """The 503s, for each class of database error the app has no handler of
    its own for, on that class or any base of it short of Exception."""
    own = set(app.error_handler_spec[None][None])
    for error, handler in database_errors().items():
        if not any(base in own for base in error.__mro__ if base not in (Exception, BaseException, object)):
            app.register_error_handler(error, handler)
