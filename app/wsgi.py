"""The WSGI entry point gunicorn serves: `app.wsgi:application`."""

from app.factory import create_app

application = create_app()
