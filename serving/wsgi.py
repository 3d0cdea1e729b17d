"""What gunicorn serves: `serving.wsgi:application`, the app's WSGI entry
point (app/wsgi.py) inside what the server adds to every request
(serving/middleware.py), with the apps APP_MOUNTS names mounted beside it
(serving/dispatch.py).

This is the only module of the package that imports the app: its entry
point, and the mounted apps by the names the setting gives. A ValueError
while the app is made is a setting the app refused (app/config.py); a mount
that cannot be loaded is a bad APP_MOUNTS: gunicorn then prints its one line
and stops.
"""

from __future__ import annotations

from importlib import import_module

from gunicorn.errors import AppImportError

from serving import settings
from serving.middleware import wrap


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
        mounted[prefix] = app
    return mounted


try:
    from app.wsgi import application as app
except ValueError as exc:  # app/config.py's ConfigError, naming the variable
    raise AppImportError(f"configuration error: {exc}") from None

application = wrap(app, settings.current(), load_mounted(settings.current().app_mounts))
