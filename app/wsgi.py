"""The WSGI entry point: `app.wsgi:application`, the one name the server
(serving/wsgi.py) imports from this package."""

from app.factory import create_app

application = create_app()
