"""Werkzeug's development server, refused outside development.

`app.run()` starts it through `werkzeug.serving.run_simple`, looked up when
it is called; `flask run` through the same function, bound when flask.cli is
imported (`from werkzeug import run_simple`). Once `install()` has run (serving/app.py
does, before the app's module is imported), that function refuses unless
APP_ENV=development: an app whose module calls `app.run()` at import, or
anything it runs later, gets DevServerRefused instead of a server that is not
one for production. The lab's development-server configurations set
APP_ENV=development (serving/devserver.py).
"""

# Beyond their public API, this file relies on `Flask.run`:
# serving/internals.py checks them (at start for the worker class in use, and
# first in the test suite).

from __future__ import annotations

import os


class DevServerRefused(RuntimeError):
    """Something tried to serve the app with Werkzeug's development server."""


MESSAGE = (
    "refusing to start Werkzeug's development server: it is not a production server. "
    "Serve the app with gunicorn (see README), or set APP_ENV=development for local development."
)


def is_development() -> bool:
    return os.environ.get("APP_ENV", "production") == "development"


def _refuse(*args, **kwargs):  # noqa: ANN002, ANN003 - run_simple's signature, whatever it is
    raise DevServerRefused(MESSAGE)


def install() -> None:
    """Refuse run_simple in this process, unless APP_ENV=development."""
    if is_development():
        return
    import sys

    import werkzeug
    import werkzeug.serving

    werkzeug.serving.run_simple = werkzeug.run_simple = _refuse
    if "flask.cli" in sys.modules:
        sys.modules["flask.cli"].run_simple = _refuse
