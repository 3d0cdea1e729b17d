"""The WSGI entry point: `demo.wsgi:application`, the one name the server
(serving/wsgi.py) imports from this package."""

from demo.factory import create_app

application = create_app()
