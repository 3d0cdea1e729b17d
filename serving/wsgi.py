"""What gunicorn serves: `serving.wsgi:application`, the app APP_MODULE
names (serving/app.py loads it) inside what the server adds to every request
(serving/middleware.py), with the apps APP_MOUNTS names mounted beside it
(serving/dispatch.py).

This is the only module of the package that imports the app: by the names
the settings give, never by a name of its own. An app that cannot be served
(it cannot be loaded, it refuses one of its settings, or the preflight
refuses it) is one line, and gunicorn stops.
"""

from __future__ import annotations

from importlib import import_module

from gunicorn.errors import AppImportError

from serving import pools, preflight, settings
from serving.app import AppLoadError, answer_errors_in_json, flask_app, load
from serving.middleware import wrap
from serving.settings import SettingsError


def load_mounted(mounts: tuple[tuple[str, str], ...]) -> dict[str, object]:
    """prefix -> the WSGI app `module:attribute` names, imported."""
    mounted = {}
    for prefix, target in mounts:
        module, _, attribute = target.partition(":")
        try:
            app = getattr(import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise AppImportError(
                f"configuration error: APP_MOUNTS: {prefix}={target} cannot be loaded: {type(exc).__name__}: {exc}"
            ) from None
        if not callable(app):
            raise AppImportError(f"configuration error: APP_MOUNTS: {prefix}={target} is not a WSGI app (not callable)")
        if flask_app(app) is not None:
            answer_errors_in_json(app)
        mounted[prefix] = app
    return mounted


def _load():
    try:
        loaded = load(settings.current())
    except (AppLoadError, SettingsError) as exc:
        raise AppImportError(f"configuration error: {exc}") from None
    except ValueError as exc:  # an app's own config error, naming its variable
        raise AppImportError(f"configuration error: {exc}") from None
    found = flask_app(loaded)
    if found is not None:
        answer_errors_in_json(found)
    refusals = preflight.refusals(loaded, settings.current())
    if refusals:
        raise AppImportError(
            f"preflight: {refusals[0]}" + (f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else "")
        )
    return loaded


def _pools(loaded) -> list[pools.Pool]:
    found = pools.discover(loaded, settings.current())
    refusals = pools.refusals(found, settings.current())
    if refusals:
        raise AppImportError(
            f"configuration error: {refusals[0]}" + (f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else "")
        )
    return found


#: The app as it was loaded, before the server's layers (its Flask object
#: for a Flask app): for the one-off processes that read it (serving/static.py).
app = _load()
_mounted = load_mounted(settings.current().app_mounts)
#: The database pools it and the mounted apps opened, found once they are
#: loaded and checked against each worker's share (serving/pools.py): the
#: budget counts them (serving/budget.py), readiness pings their databases.
database_pools = _pools(app)
application = wrap(app, settings.current(), _mounted, database_pools)
