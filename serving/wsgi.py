"""What gunicorn serves: `serving.wsgi:application`, the app's WSGI entry
point (app/wsgi.py) inside what the server adds to every request
(serving/middleware.py).

This is the only module of the package that imports the app, and only its
entry point. A ValueError while the app is made is a setting the app
refused (app/config.py): gunicorn then prints its one line and stops.
"""

from __future__ import annotations

from gunicorn.errors import AppImportError

from serving import settings
from serving.middleware import wrap

try:
    from app.wsgi import application as app
except ValueError as exc:  # app/config.py's ConfigError, naming the variable
    raise AppImportError(f"configuration error: {exc}") from None

application = wrap(app, settings.current())
