"""The server that runs the app: gunicorn's configuration and worker
classes, the settings, logging, metrics, the request id, and the container's
command and health check.

It reaches the app only through its WSGI entry point, `demo.wsgi:application`
(imported in serving/wsgi.py alone), and the app imports nothing of it.

Kept free of imports: gunicorn's master imports serving.gunicorn_conf before
gevent's worker monkey-patches, so nothing may be imported as a side effect
of importing this package.
"""
